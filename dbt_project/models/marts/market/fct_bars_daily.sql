{{ config(
    materialized='incremental',
    unique_key=['instrument_id', 'trading_date'],
    indexes=[{'columns': ['instrument_id', 'trading_date']}, {'columns': ['built_at']}],
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    tags=['partitioned_daily']
) }}
-- Daily OHLCV per instrument and local trading day (the calendar's time zone), from the instrument's finest
-- series: open, high, low, close, volume, the bar VWAP (typical price (h+l+c)/3 weighted by volume), and the
-- session's first and last bar. Incremental: each run re-aggregates every trading day that overlaps its window
-- [start, end) — the Dagster partition's (macro partition_window), else from a day before the newest stored bar —
-- and replaces those days (delete+insert on instrument_id, trading_date). Bars are read one day beyond each edge of the window so
-- that a day cut by it is re-aggregated whole.
with instruments as (
    select * from {{ ref('int_instruments_joined_to_bar_series') }}
    where finest_timeframe is not null
),

bars as (
    select
        b.instrument_id,
        i.timezone,
        b.timeframe,
        b.bar_start_at,
        b.bar_end_at,
        b.open_price,
        b.high_price,
        b.low_price,
        b.close_price,
        b.volume,
        {{ local_date('b.bar_start_at', 'i.timezone') }} as trading_date
    from {{ ref('stg_market__bars') }} as b
    inner join instruments as i on i.instrument_id = b.instrument_id and i.finest_timeframe = b.timeframe
    where b.bar_start_at >= {{ window_start('last_bar_start_at') }} - interval '1 day'
      and b.bar_start_at < {{ window_end() }} + interval '1 day'
),

daily as (
    select
        instrument_id,
        trading_date,
        min(timezone) as timezone,
        min(timeframe) as timeframe,
        (array_agg(open_price order by bar_start_at))[1] as open_price,
        max(high_price) as high_price,
        min(low_price) as low_price,
        (array_agg(close_price order by bar_start_at desc))[1] as close_price,
        sum(volume) as volume,
        round(sum((high_price + low_price + close_price) / 3 * volume) / nullif(sum(volume), 0), 8) as vwap,
        count(*) as bar_count,
        min(bar_start_at) as first_bar_start_at,
        max(bar_start_at) as last_bar_start_at,
        max(bar_end_at) as session_close_at
    from bars
    group by instrument_id, trading_date
)

select
    instrument_id,
    trading_date,
    timeframe,
    open_price,
    high_price,
    low_price,
    close_price,
    volume,
    vwap,
    bar_count,
    first_bar_start_at,
    last_bar_start_at,
    session_close_at,
    now() as built_at
from daily
where cast(trading_date as timestamp) at time zone timezone < {{ window_end() }}
  and cast(trading_date + 1 as timestamp) at time zone timezone > {{ window_start('last_bar_start_at') }}
