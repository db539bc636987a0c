-- Spoofing: a large order cancelled quickly, (almost) unfilled. Large: a notional of at least
-- var('spoofing_min_notional') (currency units), or var('spoofing_size_multiple') times the tenant's median order
-- size in the instrument once it has var('spoofing_min_history_orders') orders. Quickly: cancelled within
-- var('spoofing_max_lifetime_seconds'); unfilled: at most var('spoofing_max_fill_ratio') of it filled.
-- High severity when the tenant executed on the other side of the instrument while the order rested (the
-- classic pattern: fake interest on one side, a real trade on the other).
{%- set min_notional = var('spoofing_min_notional') %}
{%- set multiple = var('spoofing_size_multiple') %}
{%- set min_history = var('spoofing_min_history_orders') %}
{%- set max_lifetime = var('spoofing_max_lifetime_seconds') %}
{%- set max_fill_ratio = var('spoofing_max_fill_ratio') %}

with orders as (
    select * from {{ ref('int_orders_joined_to_fills') }}
    where instrument_id is not null
),

history as (
    select
        tenant_id,
        instrument_id,
        cast(percentile_cont(0.5) within group (order by quantity) as numeric) as median_quantity,
        count(*) as history_orders
    from orders
    where not is_rejected
    group by tenant_id, instrument_id
),

candidates as (
    select
        o.*,
        h.median_quantity,
        h.history_orders,
        o.quantity / nullif(h.median_quantity, 0) as size_multiple
    from orders as o
    inner join history as h on h.tenant_id = o.tenant_id and h.instrument_id = o.instrument_id
    where o.is_cancelled
      and o.lifetime_seconds <= {{ max_lifetime }}
      and o.filled_quantity <= {{ max_fill_ratio }} * o.quantity
      and (
          o.order_notional >= {{ min_notional }}
          or (h.history_orders >= {{ min_history }} and o.quantity >= {{ multiple }} * h.median_quantity)
      )
),

opposite as (
    select
        c.tenant_id,
        c.order_id,
        count(f.fill_id) as opposite_fills,
        coalesce(sum(f.quantity), 0) as opposite_quantity,
        coalesce(jsonb_agg(f.fill_id order by f.recorded_at, f.fill_id) filter (where f.fill_id is not null),
                 '[]'::jsonb) as opposite_fill_ids
    from candidates as c
    left join {{ ref('stg_trading__fills') }} as f
        on f.tenant_id = c.tenant_id
        and f.instrument_id = c.instrument_id
        and f.side <> c.side
        and f.recorded_at >= c.created_at
        and f.recorded_at <= c.closed_at
    group by c.tenant_id, c.order_id
)

select
    c.tenant_id,
    {{ alert_id('spoofing', ['c.tenant_id', 'c.order_id']) }} as alert_id,
    'spoofing' as alert_type,
    case when x.opposite_fills > 0 then 'high' else 'medium' end as severity,
    c.closed_at as detected_at,
    c.instrument_id,
    c.symbol,
    c.user_id,
    1 as order_count,
    jsonb_build_object(
        'order_id', c.order_id,
        'side', c.side,
        'order_type', c.order_type,
        'quantity', c.quantity,
        'limit_price', c.limit_price,
        'arrival_price', c.arrival_price,
        'order_notional', round(c.order_notional, 2),
        'median_quantity', c.median_quantity,
        'size_multiple', round(c.size_multiple, 2),
        'history_orders', c.history_orders,
        'filled_quantity', c.filled_quantity,
        'created_at', c.created_at,
        'cancelled_at', c.closed_at,
        'lifetime_seconds', round(c.lifetime_seconds::numeric, 3),
        'opposite_fills', x.opposite_fills,
        'opposite_quantity', x.opposite_quantity,
        'opposite_fill_ids', x.opposite_fill_ids,
        'thresholds', jsonb_build_object(
            'min_notional', {{ min_notional }}, 'size_multiple', {{ multiple }},
            'min_history_orders', {{ min_history }}, 'max_lifetime_seconds', {{ max_lifetime }},
            'max_fill_ratio', {{ max_fill_ratio }})
    ) as evidence
from candidates as c
inner join opposite as x on x.tenant_id = c.tenant_id and x.order_id = c.order_id
