-- Every instrument with its calendar's time zone and the finest series of bars stored for it (shared market data).
select
    i.instrument_id,
    i.symbol,
    i.instrument_name,
    i.exchange,
    i.asset_class,
    i.currency,
    i.lot_size,
    i.price_precision,
    i.tick_rule,
    i.calendar,
    i.timezone,
    i.is_tradable,
    i.allows_short,
    i.origin,
    s.finest_timeframe,
    s.first_bar_at,
    s.last_bar_at,
    s.finest_timeframe is not null as has_bars,
    i.created_at,
    i.updated_at
from {{ ref('stg_market__instruments') }} as i
left join {{ ref('int_instruments_joined_to_bar_series') }} as s on s.instrument_id = i.instrument_id
