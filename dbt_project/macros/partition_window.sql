{#
    The partition window of an incremental model: Dagster's daily job passes [start, end) as ISO timestamps in the
    environment variables PASAR_DBT_WINDOW_START and PASAR_DBT_WINDOW_END (pasar.analytics.dbt.window_env). They are
    read only when the build executes, never while dbt parses: dbt re-parses the whole project when --vars change,
    and every file that read an environment variable whose value changed, which would cost each daily build a full
    parse. Without them an incremental run starts `lookback` before the newest stored value of `column` in the
    target; a full refresh (or the first build) takes everything.
#}
{% macro partition_window(bound) -%}
    {%- if execute -%}
        {{ return(env_var('PASAR_DBT_WINDOW_' ~ bound | upper, '') or none) }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}

{% macro window_start(column, lookback="interval '1 day'") -%}
    {%- if partition_window('start') is not none -%}
        cast('{{ partition_window("start") }}' as timestamptz)
    {%- else -%}
        {{ incremental_watermark(column, lookback) }}
    {%- endif -%}
{%- endmacro %}

{% macro window_end() -%}
    {%- if partition_window('end') is not none -%}
        cast('{{ partition_window("end") }}' as timestamptz)
    {%- else -%}
        'infinity'::timestamptz
    {%- endif -%}
{%- endmacro %}

{#
    The watermark of an incremental model: the newest `column` stored in the target less `lookback` (so that a row
    committed late by a transaction that began earlier is still picked up); -infinity on a full refresh or the
    first build, when everything is taken.
#}
{% macro incremental_watermark(column, lookback="interval '1 day'") -%}
    {%- if is_incremental() -%}
        coalesce((select max({{ column }}) from {{ this }}) - {{ lookback }}, '-infinity'::timestamptz)
    {%- else -%}
        '-infinity'::timestamptz
    {%- endif -%}
{%- endmacro %}

{#
    True for the rows of an upstream incremental model (alias `upstream`) that it (re)built since this model was last
    built. Both stamp their rows with built_at = now() of their own build, and an upstream model is built before its
    children, so the comparison is exact: no lookback. Every row on a full refresh.
#}
{% macro rebuilt_since_last_build(upstream) -%}
    {{ upstream }}.built_at > {{ incremental_watermark('built_at', "interval '0 seconds'") }}
{%- endmacro %}
