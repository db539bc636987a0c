-- Unusual activity: a day (reporting time zone) on which the tenant's account placed far more orders, or far more
-- notional, than on its own previous var('unusual_lookback_days') active days: a z-score of at least
-- var('unusual_zscore') over at least var('unusual_min_history_days') days of history, or — when the history does
-- not vary — at least var('unusual_min_multiple') times its mean.
{%- set lookback = var('unusual_lookback_days') | int %}
{%- set min_history = var('unusual_min_history_days') %}
{%- set z = var('unusual_zscore') %}
{%- set multiple = var('unusual_min_multiple') %}

with daily as (
    select
        tenant_id,
        {{ local_date('created_at', "'" ~ var('reporting_timezone') ~ "'") }} as activity_date,
        count(*) as orders,
        coalesce(sum(order_notional), 0) as notional,
        count(distinct coalesce(instrument_id::text, symbol)) as instruments,
        max(created_at) as last_order_at
    from {{ ref('int_orders_joined_to_fills') }}
    group by 1, 2
),

history as (
    select
        *,
        count(*) over previous_days as history_days,
        avg(orders) over previous_days as mean_orders,
        stddev_samp(orders) over previous_days as stddev_orders,
        avg(notional) over previous_days as mean_notional,
        stddev_samp(notional) over previous_days as stddev_notional
    from daily
    window previous_days as (
        partition by tenant_id order by activity_date rows between {{ lookback }} preceding and 1 preceding
    )
),

scored as (
    select
        *,
        (orders - mean_orders) / nullif(stddev_orders, 0) as orders_zscore,
        (notional - mean_notional) / nullif(stddev_notional, 0) as notional_zscore,
        coalesce(stddev_orders, 0) = 0 and orders >= {{ multiple }} * mean_orders as orders_flat_outlier,
        coalesce(stddev_notional, 0) = 0 and mean_notional > 0 and notional >= {{ multiple }} * mean_notional
            as notional_flat_outlier
    from history
    where history_days >= {{ min_history }}
),

flagged as (
    select
        *,
        coalesce(orders_zscore >= {{ z }}, false) or orders_flat_outlier as is_orders_unusual,
        coalesce(notional_zscore >= {{ z }}, false) or notional_flat_outlier as is_notional_unusual
    from scored
)

select
    tenant_id,
    {{ alert_id('unusual_activity', ['tenant_id', 'activity_date']) }} as alert_id,
    'unusual_activity' as alert_type,
    case
        when greatest(coalesce(orders_zscore, 0), coalesce(notional_zscore, 0)) >= 2 * {{ z }}
            or (orders_flat_outlier and notional_flat_outlier) then 'high'
        else 'low'
    end as severity,
    last_order_at as detected_at,
    cast(null as integer) as instrument_id,
    cast(null as text) as symbol,
    cast(null as uuid) as user_id,
    orders::integer as order_count,
    jsonb_build_object(
        'activity_date', activity_date,
        'orders', orders,
        'notional', round(notional, 2),
        'instruments', instruments,
        'history_days', history_days,
        'mean_orders', round(mean_orders, 2),
        'stddev_orders', round(stddev_orders, 2),
        'orders_zscore', round(orders_zscore, 2),
        'mean_notional', round(mean_notional, 2),
        'stddev_notional', round(stddev_notional, 2),
        'notional_zscore', round(notional_zscore, 2),
        'unusual_orders', is_orders_unusual,
        'unusual_notional', is_notional_unusual,
        'thresholds', jsonb_build_object(
            'lookback_days', {{ lookback }}, 'min_history_days', {{ min_history }}, 'zscore', {{ z }},
            'min_multiple', {{ multiple }})
    ) as evidence
from flagged
where is_orders_unusual or is_notional_unusual
