select
    tenant_id,
    currency,
    kill_switch as is_kill_switch_on,
    kill_switch_reason,
    loss_limited_on,
    updated_at
from {{ source('trading', 'accounts') }}
