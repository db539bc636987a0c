{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail') }}
-- One row per fill. Fills are immutable, so each build appends the fills not stored yet (an anti-join on the key,
-- not a time watermark: a fill committed late, or recorded with an earlier time, is never skipped);
-- --full-refresh rebuilds them all.
with fills as (
    select * from {{ ref('stg_trading__fills') }} as f
    {% if is_incremental() %}
    where not exists (
        select 1 from {{ this }} as stored where stored.tenant_id = f.tenant_id and stored.fill_id = f.fill_id
    )
    {% endif %}
)

select
    f.tenant_id,
    f.fill_id,
    f.order_id,
    f.execution_id,
    o.user_id,
    f.instrument_id,
    o.symbol,
    f.side,
    o.order_type,
    f.quantity,
    {{ side_sign('f.side') }} * f.quantity as signed_quantity,
    f.price,
    coalesce(a.currency, 'IDR') as currency,
    {{ to_currency_units('f.value', "coalesce(a.currency, 'IDR')") }} as value,
    {{ to_currency_units('f.commission', "coalesce(a.currency, 'IDR')") }} as commission,
    {{ to_currency_units('f.tax', "coalesce(a.currency, 'IDR')") }} as tax,
    {{ to_currency_units('f.realized_pnl', "coalesce(a.currency, 'IDR')") }} as realized_pnl,
    -- Cash the fill moved: a sell brings its value in, a buy pays it; costs always go out.
    {{ to_currency_units("(case f.side when 'sell' then f.value else -f.value end) - f.commission - f.tax",
                         "coalesce(a.currency, 'IDR')") }} as cash_flow,
    f.executed_at,
    f.recorded_at,
    {{ local_date("f.executed_at - coalesce(i.finest_interval, interval '0 seconds')", "coalesce(i.timezone, 'UTC')") }}
        as trading_date,
    {{ reporting_month('f.executed_at') }} as period_start
from fills as f
inner join {{ ref('stg_trading__orders') }} as o on o.tenant_id = f.tenant_id and o.order_id = f.order_id
left join {{ ref('stg_trading__accounts') }} as a on a.tenant_id = f.tenant_id
left join {{ ref('int_instruments_joined_to_bar_series') }} as i on i.instrument_id = f.instrument_id
