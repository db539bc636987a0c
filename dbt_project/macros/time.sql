{# The IANA time zone of a trading calendar (var calendar_timezones), as a SQL CASE over `calendar`. #}
{% macro calendar_timezone(calendar) -%}
    (case {{ calendar }}{% for code, zone in var('calendar_timezones').items() %} when '{{ code }}' then '{{ zone }}'{% endfor %} else 'UTC' end)
{%- endmacro %}

{# The local date of `ts` in the time zone expression `zone`. #}
{% macro local_date(ts, zone) -%}
    cast(({{ ts }}) at time zone {{ zone }} as date)
{%- endmacro %}

{# The first day of the reporting month (WIB by default) of `ts`. #}
{% macro reporting_month(ts) -%}
    cast(date_trunc('month', ({{ ts }}) at time zone '{{ var("reporting_timezone") }}') as date)
{%- endmacro %}

{# Signed difference of `price` from `reference` in basis points; positive = `price` is above. #}
{% macro bps(price, reference) -%}
    (({{ price }}) - ({{ reference }})) / nullif(({{ reference }}), 0) * 10000
{%- endmacro %}

{# +1 for a buy, -1 for a sell. #}
{% macro side_sign(side) -%}
    (case {{ side }} when 'buy' then 1 else -1 end)
{%- endmacro %}

{# A stable alert id: the rule and the parts that identify the pattern, hashed (rebuilds keep it). #}
{% macro alert_id(rule, parts) -%}
    '{{ rule }}:' || md5(concat_ws('|', {{ parts | join(', ') }}))
{%- endmacro %}
