select
    instrument_id,
    timeframe,
    (case timeframe
         when '1m' then 1 when '5m' then 2 when '15m' then 3 when '30m' then 4
         when '1h' then 5 when '1d' then 6 when '1w' then 7 else 8 end) as timeframe_rank,
    first_ts as first_bar_at,
    last_ts as last_bar_at,
    updated_at
from {{ source('market', 'bar_series') }}
