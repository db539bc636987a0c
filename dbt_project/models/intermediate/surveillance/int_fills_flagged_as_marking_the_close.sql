-- Marking the close: aggressive orders (market, or limit marketable at arrival) of a tenant executed in the last
-- var('marking_close_minutes') of an instrument's trading day, taking at least var('marking_close_min_participation')
-- of the market volume of that window, while the price moved at least var('marking_close_min_move_bps') in their
-- direction from the last close before the window to the day's closing price. The session close is the end of
-- the day's last bar of the instrument's finest series (data-driven: it holds for every calendar).
-- One alert per tenant, instrument, trading day and side.
{%- set minutes = var('marking_close_minutes') | int %}
{%- set min_move = var('marking_close_min_move_bps') %}
{%- set min_participation = var('marking_close_min_participation') %}

with instruments as (
    select * from {{ ref('int_instruments_joined_to_bar_series') }}
    where finest_timeframe is not null
),

fills as (
    select
        f.tenant_id,
        f.fill_id,
        f.order_id,
        f.instrument_id,
        o.symbol,
        o.user_id,
        f.side,
        f.quantity,
        f.price,
        f.executed_at,
        i.timezone,
        i.finest_timeframe,
        i.finest_interval,
        -- A fill executes at the end of a bar: its trading day is that of the bar's start.
        {{ local_date('f.executed_at - i.finest_interval', 'i.timezone') }} as trading_date
    from {{ ref('stg_trading__fills') }} as f
    inner join {{ ref('int_orders_joined_to_fills') }} as o
        on o.tenant_id = f.tenant_id and o.order_id = f.order_id
    inner join instruments as i on i.instrument_id = f.instrument_id
    where o.is_aggressive
),

days as (
    select distinct instrument_id, trading_date, timezone, finest_timeframe, finest_interval
    from fills
),

-- Materialized: the price lookups run once per instrument and day, not once per fill.
sessions as materialized (
    select
        d.instrument_id,
        d.trading_date,
        d.finest_timeframe,
        d.finest_interval,
        last_bar.bar_end_at as session_close_at,
        last_bar.close_price as closing_price,
        last_bar.bar_end_at - interval '{{ minutes }} minutes' as window_start_at
    from days as d
    cross join lateral (
        select b.bar_end_at, b.close_price
        from {{ ref('stg_market__bars') }} as b
        where b.instrument_id = d.instrument_id
          and b.timeframe = d.finest_timeframe
          and b.bar_start_at >= cast(d.trading_date as timestamp) at time zone d.timezone
          and b.bar_start_at < cast(d.trading_date + 1 as timestamp) at time zone d.timezone
        order by b.bar_start_at desc
        limit 1
    ) as last_bar
),

windows as (
    select
        s.*,
        reference.close_price as reference_price,
        coalesce(volume.window_volume, 0) as window_volume
    from sessions as s
    left join lateral (
        select b.close_price
        from {{ ref('stg_market__bars') }} as b
        where b.instrument_id = s.instrument_id
          and b.timeframe = s.finest_timeframe
          and b.bar_start_at <= s.window_start_at - s.finest_interval
        order by b.bar_start_at desc
        limit 1
    ) as reference on true
    left join lateral (
        select sum(b.volume) as window_volume
        from {{ ref('stg_market__bars') }} as b
        where b.instrument_id = s.instrument_id
          and b.timeframe = s.finest_timeframe
          and b.bar_start_at >= s.window_start_at
          and b.bar_start_at < s.session_close_at
    ) as volume on true
),

in_window as (
    select
        f.tenant_id,
        f.instrument_id,
        f.symbol,
        f.trading_date,
        f.side,
        w.session_close_at,
        w.window_start_at,
        w.reference_price,
        w.closing_price,
        w.window_volume,
        count(distinct f.order_id) as orders,
        count(*) as fills,
        sum(f.quantity) as window_quantity,
        min(f.user_id::text) as any_user_id,
        max(f.user_id::text) as other_user_id,
        max(f.executed_at) as last_executed_at,
        jsonb_agg(distinct f.order_id) as order_ids
    from fills as f
    inner join windows as w on w.instrument_id = f.instrument_id and w.trading_date = f.trading_date
    where f.executed_at > w.window_start_at
      and f.executed_at <= w.session_close_at
    group by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
),

measured as (
    select
        *,
        {{ side_sign('side') }} * {{ bps('closing_price', 'reference_price') }} as directional_move_bps,
        window_quantity / nullif(window_volume, 0) as participation
    from in_window
)

select
    tenant_id,
    {{ alert_id('marking_the_close', ['tenant_id', 'instrument_id', 'trading_date', 'side']) }} as alert_id,
    'marking_the_close' as alert_type,
    case when directional_move_bps >= 2 * {{ min_move }} then 'high' else 'medium' end as severity,
    last_executed_at as detected_at,
    instrument_id,
    symbol,
    case when any_user_id = other_user_id then any_user_id::uuid end as user_id,
    orders as order_count,
    jsonb_build_object(
        'trading_date', trading_date,
        'side', side,
        'order_ids', order_ids,
        'fills', fills,
        'window_start_at', window_start_at,
        'session_close_at', session_close_at,
        'window_quantity', window_quantity,
        'window_volume', window_volume,
        'participation', round(participation, 4),
        'reference_price', reference_price,
        'closing_price', closing_price,
        'directional_move_bps', round(directional_move_bps, 2),
        'thresholds', jsonb_build_object(
            'minutes', {{ minutes }}, 'min_move_bps', {{ min_move }}, 'min_participation', {{ min_participation }})
    ) as evidence
from measured
where directional_move_bps >= {{ min_move }}
  and participation >= {{ min_participation }}
