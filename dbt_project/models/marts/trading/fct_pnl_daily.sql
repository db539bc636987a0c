-- Daily P&L per tenant (account currency units): realized P&L, the change in unrealized P&L since the previous
-- day, fees and taxes, and net P&L = realized + Δ unrealized − commission − tax. Positions without a close on a
-- day (no bar) count no market value that day.
with positions as (
    select
        tenant_id,
        position_date,
        currency,
        sum(realized_pnl) as realized_pnl,
        sum(commission) as commission,
        sum(tax) as tax,
        sum(coalesce(market_value, 0)) as market_value,
        sum(coalesce(unrealized_pnl, 0)) as unrealized_pnl,
        count(*) filter (where not is_flat) as open_positions,
        sum(fills) as fills
    from {{ ref('fct_positions_daily') }}
    group by tenant_id, position_date, currency
)

select
    tenant_id,
    position_date as pnl_date,
    currency,
    realized_pnl,
    unrealized_pnl,
    unrealized_pnl - coalesce(lag(unrealized_pnl) over by_day, 0) as unrealized_pnl_change,
    commission,
    tax,
    realized_pnl + unrealized_pnl - coalesce(lag(unrealized_pnl) over by_day, 0) - commission - tax as net_pnl,
    sum(realized_pnl - commission - tax) over to_date as realized_net_to_date,
    market_value,
    open_positions,
    fills
from positions
window
    by_day as (partition by tenant_id, currency order by position_date),
    to_date as (partition by tenant_id, currency order by position_date rows unbounded preceding)
