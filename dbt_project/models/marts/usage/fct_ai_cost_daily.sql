-- AI spend per tenant, UTC day, provider and model: requests, tokens and cost (currency units). Empty until the
-- AI services record ai_tokens usage events (details: provider, model).
select
    tenant_id,
    cast(occurred_at at time zone 'UTC' as date) as usage_date,
    coalesce(provider, 'unknown') as provider,
    coalesce(model, 'unknown') as model,
    currency,
    count(distinct idempotency_key) as requests,
    sum(quantity) as tokens,
    {{ to_currency_units('sum(cost)', 'currency') }} as cost
from {{ ref('stg_usage__events') }}
where kind = 'ai_tokens'
group by 1, 2, 3, 4, 5
