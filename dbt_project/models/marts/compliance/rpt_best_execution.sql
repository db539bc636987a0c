-- Best execution per (partly) filled order: the average fill price against the arrival price, against the VWAP of
-- the bars the fills executed on, and against the day's VWAP. Slippage in bps is signed so that positive is worse
-- for the client (paid more on a buy, received less on a sell); slippage_cost is in currency units.
-- Incremental: each build replaces the filled orders int_orders_joined_to_fills rebuilt since this model's last
-- build, and those first executed on a day whose daily bar fct_bars_daily rebuilt since (its VWAP moved).
{{ config(
    materialized='incremental',
    unique_key=['tenant_id', 'order_id'],
    indexes=[{'columns': ['tenant_id', 'order_id']}, {'columns': ['built_at']}],
    incremental_strategy='delete+insert',
    on_schema_change='fail'
) }}
{%- set outlier_bps = var('best_execution_outlier_bps', 50) %}
with
{% if is_incremental() %}
changed as (
    select o.tenant_id, o.order_id
    from {{ ref('int_orders_joined_to_fills') }} as o
    where {{ rebuilt_since_last_build('o') }}
    union
    select o.tenant_id, o.order_id
    from {{ ref('fct_bars_daily') }} as d
    inner join {{ ref('int_orders_joined_to_fills') }} as o
        on o.instrument_id = d.instrument_id
        and o.first_executed_at > d.first_bar_start_at
        and o.first_executed_at <= d.session_close_at
    where {{ rebuilt_since_last_build('d') }}
),
{% endif %}

orders as (
    select * from {{ ref('int_orders_joined_to_fills') }}
    where filled_quantity > 0
    {% if is_incremental() %}
      and (tenant_id, order_id) in (select tenant_id, order_id from changed)
    {% endif %}
),

fill_bars as (
    select
        f.tenant_id,
        f.order_id,
        sum(f.quantity * (b.high_price + b.low_price + b.close_price) / 3) / nullif(sum(f.quantity), 0)
            as execution_bar_vwap,
        min({{ local_date('f.executed_at - i.finest_interval', 'i.timezone') }}) as trading_date
    from {{ ref('stg_trading__fills') }} as f
    inner join orders as o on o.tenant_id = f.tenant_id and o.order_id = f.order_id
    inner join {{ ref('int_instruments_joined_to_bar_series') }} as i on i.instrument_id = f.instrument_id
    left join {{ ref('stg_market__bars') }} as b
        on b.instrument_id = f.instrument_id
        and b.timeframe = i.finest_timeframe
        and b.bar_start_at = f.executed_at - i.finest_interval
    group by f.tenant_id, f.order_id
),

measured as (
    select
        o.*,
        fb.execution_bar_vwap,
        fb.trading_date,
        d.vwap as day_vwap,
        {{ side_sign('o.side') }} * {{ bps('o.average_fill_price', 'o.arrival_price') }} as slippage_vs_arrival_bps,
        {{ side_sign('o.side') }} * {{ bps('o.average_fill_price', 'fb.execution_bar_vwap') }} as slippage_vs_vwap_bps,
        {{ side_sign('o.side') }} * {{ bps('o.average_fill_price', 'd.vwap') }} as slippage_vs_day_vwap_bps
    from orders as o
    left join fill_bars as fb on fb.tenant_id = o.tenant_id and fb.order_id = o.order_id
    left join {{ ref('fct_bars_daily') }} as d
        on d.instrument_id = o.instrument_id and d.trading_date = fb.trading_date
)

select
    tenant_id,
    order_id,
    {{ reporting_month('first_executed_at') }} as period_start,
    to_char({{ reporting_month('first_executed_at') }}, 'YYYY-MM') as period,
    user_id,
    instrument_id,
    symbol,
    side,
    order_type,
    is_aggressive,
    filled_quantity,
    average_fill_price,
    arrival_price,
    execution_bar_vwap,
    day_vwap,
    round(slippage_vs_arrival_bps, 4) as slippage_vs_arrival_bps,
    round(slippage_vs_vwap_bps, 4) as slippage_vs_vwap_bps,
    round(slippage_vs_day_vwap_bps, 4) as slippage_vs_day_vwap_bps,
    round({{ side_sign('side') }} * (average_fill_price - arrival_price) * filled_quantity, 2) as slippage_cost,
    currency,
    {{ to_currency_units('commission + tax', 'currency') }} as costs,
    round((commission + tax)::numeric / nullif(filled_value, 0) * 10000, 4) as costs_bps,
    coalesce(abs(slippage_vs_arrival_bps) > {{ outlier_bps }}, false) as is_outlier,
    first_executed_at,
    last_executed_at,
    now() as built_at
from measured
