-- Activity per tenant, month (reporting time zone), instrument and user: orders by outcome, fills, quantity,
-- notional (filled value), commission and tax in currency units.
with orders as (
    select
        tenant_id,
        period_start,
        symbol,
        user_id,
        count(*) as orders,
        count(*) filter (where status = 'rejected') as rejected_orders,
        count(*) filter (where status = 'cancelled') as cancelled_orders,
        count(*) filter (where status = 'expired') as expired_orders,
        count(*) filter (where status = 'filled') as filled_orders,
        count(*) filter (where status in ('accepted', 'partially_filled', 'new')) as open_orders,
        sum(quantity) as ordered_quantity
    from {{ ref('fct_orders') }}
    group by 1, 2, 3, 4
),

fills as (
    select
        tenant_id,
        period_start,
        symbol,
        user_id,
        min(currency) as currency,
        count(*) as fills,
        sum(quantity) filter (where side = 'buy') as bought_quantity,
        sum(quantity) filter (where side = 'sell') as sold_quantity,
        sum(value) as notional,
        sum(commission) as commission,
        sum(tax) as tax
    from {{ ref('fct_fills') }}
    group by 1, 2, 3, 4
)

select
    coalesce(o.tenant_id, f.tenant_id) as tenant_id,
    coalesce(o.period_start, f.period_start) as period_start,
    to_char(coalesce(o.period_start, f.period_start), 'YYYY-MM') as period,
    coalesce(o.symbol, f.symbol) as symbol,
    coalesce(o.user_id, f.user_id) as user_id,
    coalesce(o.orders, 0) as orders,
    coalesce(o.rejected_orders, 0) as rejected_orders,
    coalesce(o.cancelled_orders, 0) as cancelled_orders,
    coalesce(o.expired_orders, 0) as expired_orders,
    coalesce(o.filled_orders, 0) as filled_orders,
    coalesce(o.open_orders, 0) as open_orders,
    coalesce(o.ordered_quantity, 0) as ordered_quantity,
    coalesce(f.fills, 0) as fills,
    coalesce(f.bought_quantity, 0) as bought_quantity,
    coalesce(f.sold_quantity, 0) as sold_quantity,
    coalesce(f.currency, 'IDR') as currency,
    coalesce(f.notional, 0) as notional,
    coalesce(f.commission, 0) as commission,
    coalesce(f.tax, 0) as tax
from orders as o
full outer join fills as f
    on f.tenant_id = o.tenant_id and f.period_start = o.period_start and f.symbol = o.symbol and f.user_id = o.user_id
