select
    tenant_id,
    id as fill_id,
    order_id,
    execution_id,
    instrument_id,
    side,
    quantity,
    price,
    value,  -- whole rupiah
    commission,
    tax,
    realized_pnl,
    executed_at,
    created_at as recorded_at
from {{ source('trading', 'fills') }}
