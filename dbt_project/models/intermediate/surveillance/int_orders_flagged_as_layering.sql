-- Layering / excessive cancellation: on one trading day (reporting time zone) and instrument, the tenant
-- cancelled at least var('cancel_fill_min_cancels') orders and at least var('cancel_fill_ratio_threshold') times
-- as many orders as it got (partly) filled.
{%- set ratio = var('cancel_fill_ratio_threshold') %}
{%- set min_cancels = var('cancel_fill_min_cancels') %}

with daily as (
    select
        tenant_id,
        instrument_id,
        symbol,
        {{ local_date('created_at', "'" ~ var('reporting_timezone') ~ "'") }} as trading_date,
        count(*) as orders,
        count(*) filter (where is_cancelled) as cancelled_orders,
        count(*) filter (where filled_quantity > 0) as filled_orders,
        count(*) filter (where is_cancelled and filled_quantity = 0) as cancelled_unfilled_orders,
        count(distinct user_id) as users,
        sum(quantity) filter (where is_cancelled) as cancelled_quantity,
        max(closed_at) filter (where is_cancelled) as last_cancelled_at,
        jsonb_agg(order_id order by created_at, order_id) filter (where is_cancelled) as cancelled_order_ids,
        min(user_id::text) filter (where is_cancelled) as any_user_id,
        max(user_id::text) filter (where is_cancelled) as other_user_id
    from {{ ref('int_orders_joined_to_fills') }}
    where instrument_id is not null
    group by 1, 2, 3, 4
)

select
    tenant_id,
    {{ alert_id('layering', ['tenant_id', 'instrument_id', 'trading_date']) }} as alert_id,
    'layering' as alert_type,
    case when cancelled_orders >= 2 * {{ ratio }} * greatest(filled_orders, 1) then 'high' else 'medium' end
        as severity,
    last_cancelled_at as detected_at,
    instrument_id,
    symbol,
    case when any_user_id = other_user_id then any_user_id::uuid end as user_id,
    cancelled_orders as order_count,
    jsonb_build_object(
        'trading_date', trading_date,
        'orders', orders,
        'cancelled_orders', cancelled_orders,
        'cancelled_unfilled_orders', cancelled_unfilled_orders,
        'filled_orders', filled_orders,
        'cancel_to_fill_ratio', round(cancelled_orders::numeric / greatest(filled_orders, 1), 2),
        'cancelled_quantity', cancelled_quantity,
        'users', users,
        'cancelled_order_ids', cancelled_order_ids,
        'thresholds', jsonb_build_object('cancel_fill_ratio', {{ ratio }}, 'min_cancels', {{ min_cancels }})
    ) as evidence
from daily
where cancelled_orders >= {{ min_cancels }}
  and cancelled_orders >= {{ ratio }} * greatest(filled_orders, 1)
