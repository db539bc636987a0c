-- A plain projection, so that filters on (instrument_id, timeframe, ts) reach the bars' primary key and partitions.
select
    instrument_id,
    timeframe,
    ts as bar_start_at,
    ts + (case timeframe
              when '1m' then interval '1 minute' when '5m' then interval '5 minutes'
              when '15m' then interval '15 minutes' when '30m' then interval '30 minutes'
              when '1h' then interval '1 hour' when '1d' then interval '1 day'
              when '1w' then interval '1 week' else interval '1 month' end) as bar_end_at,
    (case timeframe
         when '1m' then 1 when '5m' then 2 when '15m' then 3 when '30m' then 4
         when '1h' then 5 when '1d' then 6 when '1w' then 7 else 8 end) as timeframe_rank,
    open as open_price,
    high as high_price,
    low as low_price,
    close as close_price,
    volume,
    is_adjusted,
    source,
    ingested_at
from {{ source('market', 'bars') }}
