select
    id as tenant_id,
    slug,
    name as tenant_name,
    plan,
    status,
    config ->> 'risk_profile' as risk_profile,
    created_at,
    updated_at
from {{ source('tenancy', 'tenants') }}
