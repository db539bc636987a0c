-- Limit breaches and kill-switch events: every risk.* action of the audit log (daily loss limit reached, kill
-- switch on/off, …) with its actor, reason and details.
select
    tenant_id,
    event_id,
    occurred_at,
    {{ reporting_month('occurred_at') }} as period_start,
    to_char({{ reporting_month('occurred_at') }}, 'YYYY-MM') as period,
    substr(action, length('risk.') + 1) as event_type,
    action,
    action like 'risk.kill_switch%' as is_kill_switch,
    actor_type,
    actor_id,
    details ->> 'reason' as reason,
    details,
    request_id
from {{ ref('stg_audit__events') }}
where action like 'risk.%'
