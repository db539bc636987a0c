select
    tenant_id,
    entry_id,
    line_no,
    account,
    amount,  -- minor units: debit positive, credit negative
    currency
from {{ source('trading', 'ledger_lines') }}
