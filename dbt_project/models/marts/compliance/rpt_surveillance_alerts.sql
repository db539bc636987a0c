-- Every surveillance alert with its evidence: wash trades, spoofing, layering, marking the close and unusual
-- activity (thresholds: dbt vars, see the surveillance_thresholds docs). Alert ids are stable across rebuilds;
-- an alert's review status lives in compliance.alert_reviews (the API joins it).
{%- set rules = [
    'int_fills_paired_as_wash_trades',
    'int_orders_flagged_as_spoofing',
    'int_orders_flagged_as_layering',
    'int_fills_flagged_as_marking_the_close',
    'int_activity_flagged_as_unusual',
] %}

with alerts as (
    {% for rule in rules %}
    select
        tenant_id, alert_id, alert_type, severity, detected_at, instrument_id, symbol, user_id,
        cast(order_count as integer) as order_count, evidence
    from {{ ref(rule) }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select
    tenant_id,
    alert_id,
    alert_type,
    severity,
    detected_at,
    {{ reporting_month('detected_at') }} as period_start,
    to_char({{ reporting_month('detected_at') }}, 'YYYY-MM') as period,
    instrument_id,
    symbol,
    user_id,
    order_count,
    evidence
from alerts
