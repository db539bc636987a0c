{{ config(
    materialized='incremental',
    unique_key=['tenant_id', 'order_key'],
    indexes=[{'columns': ['tenant_id', 'order_key']}, {'columns': ['built_at']}],
    incremental_strategy='delete+insert',
    on_schema_change='fail'
) }}
-- The audit trail of each order, pivoted: when it was accepted, cancelled, filled, closed; how often amended; the
-- full event list; the requests behind it; and the model version and signal recorded in event details (if any).
-- Incremental: each build re-pivots, from all their events, the orders whose number of events differs from the
-- stored event_count (the audit log is append-only, so that is exactly the orders with new events, whatever time
-- those carry); built_at tells the children which rows this build wrote.
with events as (
    select *
    from {{ ref('stg_audit__events') }}
    where target_type = 'order'
    {% if is_incremental() %}
      and (tenant_id, target_id) in (
          select e.tenant_id, e.target_id
          from {{ ref('stg_audit__events') }} as e
          left join {{ this }} as stored on stored.tenant_id = e.tenant_id and stored.order_key = e.target_id
          where e.target_type = 'order'
          group by e.tenant_id, e.target_id, stored.event_count
          having count(*) is distinct from stored.event_count
      )
    {% endif %}
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
    (array_agg(details ->> 'signal' order by occurred_at) filter (where details ? 'signal'))[1] as signal,
    now() as built_at
from events
group by tenant_id, target_id
