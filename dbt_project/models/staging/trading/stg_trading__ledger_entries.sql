select
    tenant_id,
    id as entry_id,
    kind,
    reference,
    created_at
from {{ source('trading', 'ledger_entries') }}
