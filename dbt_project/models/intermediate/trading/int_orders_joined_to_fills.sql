{{ config(
    materialized='incremental',
    unique_key=['tenant_id', 'order_id'],
    indexes=[{'columns': ['tenant_id', 'order_id']}, {'columns': ['built_at']}],
    incremental_strategy='delete+insert',
    on_schema_change='fail'
) }}
-- One row per order with everything the marts and the surveillance rules need: its fills, its audit trail
-- times, the arrival price (the close of the instrument's finest series known when the order arrived),
-- whether it was aggressive (a market order, or a limit order marketable at arrival) and its notional.
-- Incremental: each build recomputes the orders that are new or differ from their stored row (updated_at, status,
-- filled quantity, number of fills), and those whose audit trail was re-pivoted — a comparison with the stored rows,
-- not a time watermark, so rows written late or with past times are never skipped; built_at tells the children
-- which rows this build wrote.
with orders as (
    select o.* from {{ ref('stg_trading__orders') }} as o
    {% if is_incremental() %}
    left join {{ this }} as stored on stored.tenant_id = o.tenant_id and stored.order_id = o.order_id
    left join {{ ref('int_fills_aggregated_to_orders') }} as f
        on f.tenant_id = o.tenant_id and f.order_id = o.order_id
    left join {{ ref('int_order_events_pivoted_to_orders') }} as e
        on e.tenant_id = o.tenant_id and e.order_key = o.order_id::text
    where stored.order_id is null
       or stored.updated_at is distinct from o.updated_at
       or stored.status is distinct from o.status
       or stored.reported_filled_quantity is distinct from o.filled_quantity
       or stored.fill_count <> coalesce(f.fill_count, 0)
       or {{ rebuilt_since_last_build('e') }}
    {% endif %}
),

fills as (
    select * from {{ ref('int_fills_aggregated_to_orders') }}
),

events as (
    select * from {{ ref('int_order_events_pivoted_to_orders') }}
),

instruments as (
    select * from {{ ref('int_instruments_joined_to_bar_series') }}
),

accounts as (
    select * from {{ ref('stg_trading__accounts') }}
),

enriched as (
    select
        o.*,
        i.timezone,
        coalesce(a.currency, 'IDR') as currency,
        coalesce(completed.close_price, replayed.close_price) as arrival_price,
        coalesce(completed.bar_end_at, replayed.bar_end_at) as arrival_price_at,
        f.fill_count,
        f.filled_quantity as fills_quantity,
        f.average_fill_price,
        f.filled_value,
        f.commission,
        f.tax,
        f.realized_pnl,
        f.first_executed_at,
        f.last_executed_at,
        f.first_recorded_at,
        f.last_recorded_at,
        e.accepted_at,
        e.cancelled_at,
        e.closed_at as closed_event_at,
        e.amendments,
        coalesce(e.event_count, 0) as event_count
    from orders as o
    left join instruments as i on i.instrument_id = o.instrument_id
    left join accounts as a on a.tenant_id = o.tenant_id
    left join fills as f on f.tenant_id = o.tenant_id and f.order_id = o.order_id
    left join events as e on e.tenant_id = o.tenant_id and e.order_key = o.order_id::text
    -- The last complete bar before the order; when there is none (the paper venue's 'market' clock replays stored
    -- bars, so an order may precede in wall time the bars it traded against), the newest bar the platform had
    -- ingested when the order arrived. Either way: the price known at arrival, never a later one.
    left join lateral (
        select b.close_price, b.bar_end_at
        from {{ ref('stg_market__bars') }} as b
        where b.instrument_id = o.instrument_id
          and b.timeframe = i.finest_timeframe
          and b.bar_start_at <= o.created_at - i.finest_interval
        order by b.bar_start_at desc
        limit 1
    ) as completed on true
    left join lateral (
        select b.close_price, b.bar_end_at
        from {{ ref('stg_market__bars') }} as b
        where completed.close_price is null
          and b.instrument_id = o.instrument_id
          and b.timeframe = i.finest_timeframe
          and b.ingested_at <= o.created_at
        order by b.bar_start_at desc
        limit 1
    ) as replayed on true
)

select
    tenant_id,
    order_id,
    client_order_id,
    user_id,
    instrument_id,
    symbol,
    side,
    order_type,
    time_in_force,
    quantity,
    limit_price,
    stop_price,
    status,
    reject_reason,
    reject_message,
    status = 'rejected' as is_rejected,
    status = 'cancelled' as is_cancelled,
    status in ('filled', 'rejected', 'cancelled', 'expired') as is_closed,
    coalesce(
        order_type = 'market'
        or (order_type = 'limit' and side = 'buy' and limit_price >= arrival_price)
        or (order_type = 'limit' and side = 'sell' and limit_price <= arrival_price),
        false
    ) as is_aggressive,
    currency,
    timezone,
    arrival_price,
    arrival_price_at,
    quantity * coalesce(limit_price, arrival_price) as order_notional,
    coalesce(fill_count, 0) as fill_count,
    coalesce(fills_quantity, 0) as filled_quantity,
    filled_quantity as reported_filled_quantity,
    average_fill_price,
    coalesce(filled_value, 0) as filled_value,
    coalesce(commission, 0) as commission,
    coalesce(tax, 0) as tax,
    coalesce(realized_pnl, 0) as realized_pnl,
    first_executed_at,
    last_executed_at,
    first_recorded_at,
    last_recorded_at,
    created_at,
    updated_at,
    accepted_at,
    cancelled_at,
    -- A closed order's close time: its closing audit event, else its last update.
    case
        when status in ('filled', 'rejected', 'cancelled', 'expired') then coalesce(closed_event_at, updated_at)
    end as closed_at,
    case
        when status in ('filled', 'rejected', 'cancelled', 'expired')
            then extract(epoch from coalesce(closed_event_at, updated_at) - created_at)
    end as lifetime_seconds,
    coalesce(amendments, 0) as amendments,
    event_count,
    now() as built_at
from enriched
