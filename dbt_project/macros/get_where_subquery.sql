{#
    The rows a generic data test reads (dbt renders a test's `model` argument through get_where_subquery; this
    overrides dbt's, which applies the `where` config only).

    On a partitioned run (Dagster's daily job passes the window, see partition_window; not --full-refresh) the tests of an incremental
    model with a unique_key read only the rows this build wrote. Such a model stamps the rows each build writes with
    that build's built_at (now() of the build's one transaction), so those are the rows with the newest built_at —
    the previous build's when this one wrote none (each such model has an index on built_at). Nothing is lost: row-level tests read every new row; a unique test
    on the unique_key cannot miss a duplicate of an older row, since delete+insert removed every stored row with a key
    of the batch first; a relationships test reads the new child rows against the whole parent (its `to` is not
    filtered). Every other build, and every other model (tables rebuilt whole, views), is tested whole.
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set scope = 'built_at = (select max(built_at) from ' ~ relation ~ ')' if tests_read_rows_built(model) else '' -%}
    {%- set conditions = [where, scope] | select | list -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ conditions | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {% do return(filtered) %}
    {%- else -%}
        {% do return(relation) %}
    {%- endif -%}
{%- endmacro %}

{# True when `test` (a test node) reads only the rows its model's build wrote (see get_where_subquery). #}
{% macro tests_read_rows_built(test) -%}
    {%- if not execute or partition_window('start') is none or flags.FULL_REFRESH -%}
        {% do return(false) %}
    {%- endif -%}
    {%- set tested = graph.nodes.get(test.attached_node) if test.attached_node else none -%}
    {% do return(
        tested is not none
        and tested.resource_type == 'model'
        and tested.config.materialized == 'incremental'
        and tested.config.unique_key is not none
    ) %}
{%- endmacro %}
