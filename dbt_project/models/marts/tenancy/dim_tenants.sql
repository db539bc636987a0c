-- One row per tenant (RLS: a tenant sees its own row), with its account's trading state.
select
    t.tenant_id,
    t.slug,
    t.tenant_name,
    t.plan,
    t.status,
    t.risk_profile,
    coalesce(a.currency, 'IDR') as account_currency,
    coalesce(a.is_kill_switch_on, false) as is_kill_switch_on,
    t.created_at,
    t.updated_at
from {{ ref('stg_tenancy__tenants') }} as t
left join {{ ref('stg_trading__accounts') }} as a on a.tenant_id = t.tenant_id
