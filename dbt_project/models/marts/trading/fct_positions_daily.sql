-- End-of-day position per tenant, instrument and trading day (the instrument's local days with a bar, from its
-- first fill), by the average-cost method of pasar.trading.positions:
--   quantity     = Σ signed fill quantities
--   cost_basis   = Σ buy values − Σ sell values + Σ realized P&L   (whole rupiah, signed like the quantity)
--   market_value = round(quantity × close), unrealized_pnl = market_value − cost_basis.
-- Days when the position is flat and nothing was traded are left out.
with instruments as (
    select * from {{ ref('int_instruments_joined_to_bar_series') }}
),

daily_fills as (
    select
        f.tenant_id,
        f.instrument_id,
        {{ local_date("f.executed_at - coalesce(i.finest_interval, interval '0 seconds')", "coalesce(i.timezone, 'UTC')") }}
            as position_date,
        count(*) as fills,
        sum({{ side_sign('f.side') }} * f.quantity) as quantity_change,
        sum(case f.side when 'buy' then f.value else -f.value end) as net_buy_value,
        sum(f.realized_pnl) as realized_pnl,
        sum(f.commission) as commission,
        sum(f.tax) as tax
    from {{ ref('stg_trading__fills') }} as f
    left join instruments as i on i.instrument_id = f.instrument_id
    group by 1, 2, 3
),

firsts as (
    select tenant_id, instrument_id, min(position_date) as first_date
    from daily_fills
    group by 1, 2
),

days as (
    select p.tenant_id, p.instrument_id, d.trading_date as position_date
    from firsts as p
    inner join {{ ref('fct_bars_daily') }} as d
        on d.instrument_id = p.instrument_id and d.trading_date >= p.first_date
    union
    select tenant_id, instrument_id, position_date
    from daily_fills
),

running as (
    select
        d.tenant_id,
        d.instrument_id,
        d.position_date,
        coalesce(f.fills, 0) as fills,
        coalesce(f.realized_pnl, 0) as realized_pnl,
        coalesce(f.commission, 0) as commission,
        coalesce(f.tax, 0) as tax,
        sum(coalesce(f.quantity_change, 0)) over to_date as quantity,
        sum(coalesce(f.net_buy_value, 0) + coalesce(f.realized_pnl, 0)) over to_date as cost_basis,
        sum(coalesce(f.realized_pnl, 0)) over to_date as realized_pnl_to_date
    from days as d
    left join daily_fills as f
        on f.tenant_id = d.tenant_id and f.instrument_id = d.instrument_id and f.position_date = d.position_date
    window to_date as (partition by d.tenant_id, d.instrument_id order by d.position_date rows unbounded preceding)
),

priced as (
    select
        r.*,
        coalesce(a.currency, 'IDR') as currency,
        b.close_price,
        round(r.quantity * b.close_price) as market_value
    from running as r
    left join {{ ref('fct_bars_daily') }} as b
        on b.instrument_id = r.instrument_id and b.trading_date = r.position_date
    left join {{ ref('stg_trading__accounts') }} as a on a.tenant_id = r.tenant_id
)

select
    p.tenant_id,
    p.instrument_id,
    i.symbol,
    p.position_date,
    p.quantity,
    case when p.quantity <> 0 then round(p.cost_basis / p.quantity, 8) end as avg_cost,
    p.close_price,
    p.currency,
    {{ to_currency_units('p.cost_basis', 'p.currency') }} as cost_basis,
    {{ to_currency_units('p.market_value', 'p.currency') }} as market_value,
    {{ to_currency_units('p.market_value - p.cost_basis', 'p.currency') }} as unrealized_pnl,
    {{ to_currency_units('p.realized_pnl', 'p.currency') }} as realized_pnl,
    {{ to_currency_units('p.realized_pnl_to_date', 'p.currency') }} as realized_pnl_to_date,
    {{ to_currency_units('p.commission', 'p.currency') }} as commission,
    {{ to_currency_units('p.tax', 'p.currency') }} as tax,
    p.fills,
    p.quantity = 0 as is_flat
from priced as p
left join instruments as i on i.instrument_id = p.instrument_id
where p.quantity <> 0 or p.fills > 0
