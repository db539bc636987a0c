{#
    The partition window of an incremental model: Dagster passes vars start/end (ISO timestamps, [start, end)).
    Without them an incremental run starts `lookback` before the newest stored value of `column` in the target;
    a full refresh (or the first build) takes everything.
#}
{% macro window_start(column, lookback="interval '1 day'") -%}
    {%- if var('start', none) is not none -%}
        cast('{{ var("start") }}' as timestamptz)
    {%- else -%}
        {{ incremental_watermark(column, lookback) }}
    {%- endif -%}
{%- endmacro %}

{% macro window_end() -%}
    {%- if var('end', none) is not none -%}
        cast('{{ var("end") }}' as timestamptz)
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
