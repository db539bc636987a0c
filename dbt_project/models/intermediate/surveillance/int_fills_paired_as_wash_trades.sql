-- Wash trades: the same tenant on both sides of an instrument — a buy fill and a sell fill executed within
-- var('wash_trade_window_seconds') of each other (and booked within that window too, so a replay of old bars
-- does not pair fills booked hours apart) at prices within var('wash_trade_price_tolerance_bps').
-- One alert per (buy order, sell order) pair; high severity when one user was on both sides.
{%- set window = var('wash_trade_window_seconds') | int %}
{%- set tolerance = var('wash_trade_price_tolerance_bps') %}

with fills as (
    select
        f.tenant_id,
        f.fill_id,
        f.order_id,
        f.instrument_id,
        o.symbol,
        o.user_id,
        f.side,
        f.quantity,
        f.price,
        f.executed_at,
        f.recorded_at,
        -- Time buckets as wide as the window: a pair lies in the same or adjacent buckets (an equi-join).
        floor(extract(epoch from f.executed_at) / {{ window }})::bigint as bucket
    from {{ ref('stg_trading__fills') }} as f
    inner join {{ ref('stg_trading__orders') }} as o
        on o.tenant_id = f.tenant_id and o.order_id = f.order_id
),

-- Each buy with the three buckets a sell may fall in, materialized so that the pairs are one equi-join on the bucket.
buys as materialized (
    select f.*, f.bucket + adjacent.offset_buckets as match_bucket
    from fills as f
    cross join (values (-1), (0), (1)) as adjacent (offset_buckets)
    where f.side = 'buy'
),

pairs as (
    select
        b.tenant_id,
        b.instrument_id,
        b.symbol,
        b.order_id as buy_order_id,
        s.order_id as sell_order_id,
        b.user_id as buy_user_id,
        s.user_id as sell_user_id,
        b.fill_id as buy_fill_id,
        s.fill_id as sell_fill_id,
        b.price as buy_price,
        s.price as sell_price,
        least(b.quantity, s.quantity) as matched_quantity,
        b.executed_at as buy_executed_at,
        s.executed_at as sell_executed_at,
        abs(extract(epoch from s.executed_at - b.executed_at)) as seconds_apart,
        abs({{ bps('s.price', 'b.price') }}) as price_difference_bps
    from buys as b
    inner join fills as s
        on s.tenant_id = b.tenant_id
        and s.instrument_id = b.instrument_id
        and s.bucket = b.match_bucket
        and s.side = 'sell'
    where abs(extract(epoch from s.executed_at - b.executed_at)) <= {{ window }}
      and abs(extract(epoch from s.recorded_at - b.recorded_at)) <= {{ window }}
      and abs({{ bps('s.price', 'b.price') }}) <= {{ tolerance }}
),

grouped as (
    select
        tenant_id,
        instrument_id,
        symbol,
        buy_order_id,
        sell_order_id,
        min(buy_user_id::text)::uuid as buy_user_id,
        min(sell_user_id::text)::uuid as sell_user_id,
        count(*) as fill_pairs,
        sum(matched_quantity) as matched_quantity,
        min(least(buy_executed_at, sell_executed_at)) as first_executed_at,
        max(greatest(buy_executed_at, sell_executed_at)) as last_executed_at,
        min(seconds_apart) as min_seconds_apart,
        max(price_difference_bps) as max_price_difference_bps,
        avg(buy_price) as average_buy_price,
        avg(sell_price) as average_sell_price,
        jsonb_agg(jsonb_build_object('buy_fill_id', buy_fill_id, 'sell_fill_id', sell_fill_id)
                  order by buy_fill_id, sell_fill_id) as fill_ids
    from pairs
    group by tenant_id, instrument_id, symbol, buy_order_id, sell_order_id
)

select
    tenant_id,
    {{ alert_id('wash_trade', ['tenant_id', 'buy_order_id', 'sell_order_id']) }} as alert_id,
    'wash_trade' as alert_type,
    case when buy_user_id = sell_user_id then 'high' else 'medium' end as severity,
    last_executed_at as detected_at,
    instrument_id,
    symbol,
    case when buy_user_id = sell_user_id then buy_user_id end as user_id,
    2 as order_count,
    jsonb_build_object(
        'buy_order_id', buy_order_id,
        'sell_order_id', sell_order_id,
        'buy_user_id', buy_user_id,
        'sell_user_id', sell_user_id,
        'fill_pairs', fill_pairs,
        'fill_ids', fill_ids,
        'matched_quantity', matched_quantity,
        'average_buy_price', round(average_buy_price, 8),
        'average_sell_price', round(average_sell_price, 8),
        'min_seconds_apart', round(min_seconds_apart, 3),
        'max_price_difference_bps', round(max_price_difference_bps, 2),
        'first_executed_at', first_executed_at,
        'last_executed_at', last_executed_at,
        'thresholds', jsonb_build_object(
            'window_seconds', {{ window }}, 'price_tolerance_bps', {{ tolerance }})
    ) as evidence
from grouped
