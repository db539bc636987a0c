{#
    The partition window of an incremental model: Dagster passes vars start/end (ISO timestamps, [start, end)).
    Without them an incremental run starts `lookback` before the newest stored value of `column` in the target;
    a full refresh (or the first build) takes everything.
#}
{% macro window_start(column, lookback="interval '1 day'") -%}
    {%- if var('start', none) is not none -%}
        cast('{{ var("start") }}' as timestamptz)
    {%- elif is_incremental() -%}
        coalesce((select max({{ column }}) from {{ this }}) - {{ lookback }}, '-infinity'::timestamptz)
    {%- else -%}
        '-infinity'::timestamptz
    {%- endif -%}
{%- endmacro %}

{% macro window_end() -%}
    {%- if var('end', none) is not none -%}
        cast('{{ var("end") }}' as timestamptz)
    {%- else -%}
        'infinity'::timestamptz
    {%- endif -%}
{%- endmacro %}
