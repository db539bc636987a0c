-- Usage per tenant, UTC day, kind and currency: events (distinct idempotency keys), quantity and cost.
select
    tenant_id,
    cast(occurred_at at time zone 'UTC' as date) as usage_date,
    kind,
    currency,
    count(distinct idempotency_key) as events,
    sum(quantity) as quantity,
    {{ to_currency_units('sum(cost)', 'currency') }} as cost
from {{ ref('stg_usage__events') }}
group by 1, 2, 3, 4
