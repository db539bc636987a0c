-- password_hash is deliberately not selected: no model downstream can expose it.
select
    tenant_id,
    id as user_id,
    username,
    display_name,
    role,
    is_active,
    created_at,
    updated_at,
    last_login_at
from {{ source('tenancy', 'users') }}
