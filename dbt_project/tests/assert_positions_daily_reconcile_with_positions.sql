-- The newest day of fct_positions_daily holds exactly the trading engine's position and realized P&L, for every
-- tenant and instrument (a position the engine holds must have its fills, and the fills must add up to it).
with latest as (
    select distinct on (tenant_id, instrument_id)
        tenant_id, instrument_id, quantity, realized_pnl_to_date, currency
    from {{ ref('fct_positions_daily') }}
    order by tenant_id, instrument_id, position_date desc
),

engine as (
    select p.tenant_id, p.instrument_id, p.quantity,
           {{ to_currency_units('p.realized_pnl', "coalesce(a.currency, 'IDR')") }} as realized_pnl
    from {{ ref('stg_trading__positions') }} as p
    left join {{ ref('stg_trading__accounts') }} as a on a.tenant_id = p.tenant_id
)

select
    coalesce(l.tenant_id, e.tenant_id) as tenant_id,
    coalesce(l.instrument_id, e.instrument_id) as instrument_id,
    l.quantity as mart_quantity,
    e.quantity as engine_quantity,
    l.realized_pnl_to_date as mart_realized_pnl,
    e.realized_pnl as engine_realized_pnl
from latest as l
full outer join engine as e on e.tenant_id = l.tenant_id and e.instrument_id = l.instrument_id
where coalesce(l.quantity, 0) <> coalesce(e.quantity, 0)
   or coalesce(l.realized_pnl_to_date, 0) <> coalesce(e.realized_pnl, 0)
