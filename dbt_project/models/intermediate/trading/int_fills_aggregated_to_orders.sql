-- The fills of each order: count, quantity, value and costs (whole rupiah), times, and the fill VWAP.
select
    tenant_id,
    order_id,
    count(*) as fill_count,
    sum(quantity) as filled_quantity,
    sum(quantity * price) / nullif(sum(quantity), 0) as average_fill_price,
    sum(value) as filled_value,
    sum(commission) as commission,
    sum(tax) as tax,
    sum(realized_pnl) as realized_pnl,
    min(executed_at) as first_executed_at,
    max(executed_at) as last_executed_at,
    min(recorded_at) as first_recorded_at,
    max(recorded_at) as last_recorded_at
from {{ ref('stg_trading__fills') }}
group by tenant_id, order_id
