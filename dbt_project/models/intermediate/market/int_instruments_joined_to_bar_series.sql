-- Each instrument with its finest stored timeframe: the series the paper venue trades against, and the one every
-- price lookup (arrival price, session close, daily bars) reads.
with finest as (
    select distinct on (instrument_id)
        instrument_id,
        timeframe,
        timeframe_rank
    from {{ ref('stg_market__bar_series') }}
    order by instrument_id, timeframe_rank
),

spans as (
    select instrument_id, min(first_bar_at) as first_bar_at, max(last_bar_at) as last_bar_at
    from {{ ref('stg_market__bar_series') }}
    group by instrument_id
)

select
    i.instrument_id,
    i.symbol,
    i.currency,
    i.calendar,
    i.timezone,
    f.timeframe as finest_timeframe,
    (case f.timeframe
         when '1m' then interval '1 minute' when '5m' then interval '5 minutes'
         when '15m' then interval '15 minutes' when '30m' then interval '30 minutes'
         when '1h' then interval '1 hour' when '1d' then interval '1 day'
         when '1w' then interval '1 week' when '1mo' then interval '1 month' end) as finest_interval,
    s.first_bar_at,
    s.last_bar_at
from {{ ref('stg_market__instruments') }} as i
left join finest as f on f.instrument_id = i.instrument_id
left join spans as s on s.instrument_id = i.instrument_id
