{{ config(
    materialized='incremental',
    unique_key=['tenant_id', 'order_id'],
    indexes=[{'columns': ['tenant_id', 'order_id']}, {'columns': ['built_at']}],
    incremental_strategy='delete+insert',
    on_schema_change='fail'
) }}
-- One row per order (rejected ones included), with its fills, audit trail times and arrival price.
-- Money in currency units via to_currency_units; prices and quantities as stored (numeric).
-- Incremental: each build replaces the orders int_orders_joined_to_fills rebuilt since this model's last build.
select
    tenant_id,
    order_id,
    client_order_id,
    user_id,
    instrument_id,
    symbol,
    side,
    order_type,
    time_in_force,
    quantity,
    limit_price,
    stop_price,
    status,
    reject_reason,
    is_rejected,
    is_cancelled,
    is_closed,
    is_aggressive,
    fill_count,
    filled_quantity,
    average_fill_price,
    arrival_price,
    arrival_price_at,
    order_notional,
    currency,
    {{ to_currency_units('filled_value', 'currency') }} as filled_value,
    {{ to_currency_units('commission', 'currency') }} as commission,
    {{ to_currency_units('tax', 'currency') }} as tax,
    {{ to_currency_units('realized_pnl', 'currency') }} as realized_pnl,
    amendments,
    created_at,
    accepted_at,
    first_executed_at,
    last_executed_at,
    closed_at,
    lifetime_seconds,
    updated_at,
    {{ reporting_month('created_at') }} as period_start,
    now() as built_at
from {{ ref('int_orders_joined_to_fills') }} as o
{% if is_incremental() %}
where {{ rebuilt_since_last_build('o') }}
{% endif %}
