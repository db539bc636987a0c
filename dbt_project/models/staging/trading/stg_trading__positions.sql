select
    tenant_id,
    instrument_id,
    quantity,
    avg_cost,
    realized_pnl,
    updated_at
from {{ source('trading', 'positions') }}
