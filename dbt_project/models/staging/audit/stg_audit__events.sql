select
    tenant_id,
    id as event_id,
    occurred_at,
    actor_type,
    actor_id,
    action,
    split_part(action, '.', 1) as action_domain,
    target_type,
    target_id,
    details,
    request_id
from {{ source('audit', 'events') }}
