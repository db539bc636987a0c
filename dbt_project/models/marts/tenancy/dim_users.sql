-- Users of each tenant, without credentials (no password hash, no API keys).
select
    tenant_id,
    user_id,
    username,
    display_name,
    role,
    is_active,
    created_at,
    updated_at,
    last_login_at
from {{ ref('stg_tenancy__users') }}
