{{ config(materialized='table') }}
-- The audit trail of each order, pivoted: when it was accepted, cancelled, filled, closed; how often amended; the
-- full event list; the requests behind it; and the model version and signal recorded in event details (if any).
with events as (
    select *
    from {{ ref('stg_audit__events') }}
    where target_type = 'order'
)

select
    tenant_id,
    target_id as order_key,
    min(occurred_at) as first_event_at,
    min(occurred_at) filter (where action = 'order.accepted') as accepted_at,
    min(occurred_at) filter (where action = 'order.rejected') as rejected_at,
    min(occurred_at) filter (where action = 'order.cancelled') as cancelled_at,
    min(occurred_at) filter (where action = 'order.expired') as expired_at,
    min(occurred_at) filter (where action = 'order.filled') as filled_at,
    min(occurred_at) filter (
        where action in ('order.rejected', 'order.cancelled', 'order.expired', 'order.filled')
    ) as closed_at,
    count(*) filter (where action = 'order.amended') as amendments,
    count(*) filter (where action = 'order.amend_rejected') as amend_rejections,
    count(*) as event_count,
    jsonb_agg(
        jsonb_build_object(
            'occurred_at', occurred_at,
            'action', action,
            'actor_type', actor_type,
            'actor_id', actor_id,
            'request_id', request_id,
            'details', details
        )
        order by occurred_at, event_id
    ) as events,
    coalesce(
        array_agg(distinct request_id) filter (where request_id is not null), array[]::text[]
    ) as request_ids,
    (array_agg(details ->> 'model_version' order by occurred_at) filter (where details ? 'model_version'))[1]
        as model_version,
    (array_agg(details ->> 'signal' order by occurred_at) filter (where details ? 'signal'))[1] as signal
from events
group by tenant_id, target_id
