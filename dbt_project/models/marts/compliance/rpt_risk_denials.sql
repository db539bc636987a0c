-- Pre-trade risk denials per tenant, month and reason code: rejected orders and rejected amendments.
with denials as (
    select tenant_id, period_start, reject_reason, order_id::text as denial_key, user_id, symbol, created_at as denied_at,
           'order' as denied
    from {{ ref('fct_orders') }}
    where is_rejected
    union all
    select
        tenant_id,
        {{ reporting_month('occurred_at') }},
        coalesce(details ->> 'reason', 'unknown'),
        event_id::text,
        case when actor_type = 'user' and actor_id ~ '^[0-9a-f-]{36}$' then actor_id::uuid end,
        details ->> 'symbol',
        occurred_at,
        'amendment'
    from {{ ref('stg_audit__events') }}
    where action = 'order.amend_rejected'
)

select
    tenant_id,
    period_start,
    to_char(period_start, 'YYYY-MM') as period,
    coalesce(reject_reason, 'unknown') as reject_reason,
    count(*) as denials,
    count(*) filter (where denied = 'order') as rejected_orders,
    count(*) filter (where denied = 'amendment') as rejected_amendments,
    count(distinct user_id) as users,
    array_agg(distinct symbol order by symbol) filter (where symbol is not null) as symbols,
    min(denied_at) as first_denied_at,
    max(denied_at) as last_denied_at
from denials
group by tenant_id, period_start, coalesce(reject_reason, 'unknown')
