-- The audit trail behind each order: every audit event (actor, request, details) in order, the requests involved,
-- the model version and signal recorded with it (when an automated strategy placed it), and the AI usage linked
-- to it (ai_tokens usage events naming the order, or made by the same requests).
-- Incremental: each build replaces the orders int_orders_joined_to_fills rebuilt since this model's last build, and
-- those whose linked AI usage differs from the stored ai_requests (usage is metered once per idempotency key).
{{ config(
    materialized='incremental',
    unique_key=['tenant_id', 'order_id'],
    indexes=[{'columns': ['tenant_id', 'order_id']}, {'columns': ['built_at']}],
    incremental_strategy='delete+insert',
    on_schema_change='fail'
) }}
with all_orders as (
    select * from {{ ref('int_orders_joined_to_fills') }}
),

events as (
    select * from {{ ref('int_order_events_pivoted_to_orders') }}
),

ai as (
    select * from {{ ref('stg_usage__events') }}
    where kind = 'ai_tokens'
),

order_requests as (
    select e.tenant_id, e.order_key, r.request_id
    from events as e
    cross join lateral unnest(e.request_ids) as r (request_id)
),

linked_ai as (
    select distinct o.tenant_id, o.order_id, a.idempotency_key, a.occurred_at, a.quantity, a.cost, a.currency
    from all_orders as o
    inner join ai as a on a.tenant_id = o.tenant_id and a.order_id = o.order_id::text
    union
    select distinct o.tenant_id, o.order_id, a.idempotency_key, a.occurred_at, a.quantity, a.cost, a.currency
    from all_orders as o
    inner join order_requests as r on r.tenant_id = o.tenant_id and r.order_key = o.order_id::text
    inner join ai as a on a.tenant_id = r.tenant_id and a.request_id = r.request_id
),

ai_per_order as (
    select
        tenant_id,
        order_id,
        count(*) as ai_requests,
        sum(quantity) as ai_tokens,
        min(currency) as ai_currency,
        sum(cost) as ai_cost
    from linked_ai
    group by tenant_id, order_id
),

{% if is_incremental() %}
changed as (
    select o.tenant_id, o.order_id from all_orders as o where {{ rebuilt_since_last_build('o') }}
    union
    select a.tenant_id, a.order_id
    from ai_per_order as a
    left join {{ this }} as stored on stored.tenant_id = a.tenant_id and stored.order_id = a.order_id
    where stored.ai_requests is distinct from a.ai_requests
),
{% endif %}

orders as (
    select * from all_orders
    {% if is_incremental() %}
    where (tenant_id, order_id) in (select tenant_id, order_id from changed)
    {% endif %}
)

select
    o.tenant_id,
    o.order_id,
    o.client_order_id,
    o.user_id,
    o.symbol,
    o.side,
    o.order_type,
    o.quantity,
    o.status,
    o.reject_reason,
    o.created_at,
    o.closed_at,
    {{ reporting_month('o.created_at') }} as period_start,
    to_char({{ reporting_month('o.created_at') }}, 'YYYY-MM') as period,
    coalesce(e.event_count, 0) as event_count,
    coalesce(e.events, '[]'::jsonb) as events,
    coalesce(e.request_ids, array[]::text[]) as request_ids,
    e.model_version,
    e.signal,
    coalesce(a.ai_requests, 0) as ai_requests,
    coalesce(a.ai_tokens, 0) as ai_tokens,
    {{ to_currency_units('coalesce(a.ai_cost, 0)', "coalesce(a.ai_currency, 'IDR')") }} as ai_cost,
    coalesce(a.ai_requests, 0) > 0 as has_ai_usage,
    e.model_version is not null or e.signal is not null as has_model_decision,
    now() as built_at
from orders as o
left join events as e on e.tenant_id = o.tenant_id and e.order_key = o.order_id::text
left join ai_per_order as a on a.tenant_id = o.tenant_id and a.order_id = o.order_id
