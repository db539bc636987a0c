select
    tenant_id,
    idempotency_key,
    ts as occurred_at,
    kind,
    quantity,
    cost,  -- minor units of currency
    currency,
    details,
    details ->> 'provider' as provider,
    details ->> 'model' as model,
    details ->> 'order_id' as order_id,
    details ->> 'request_id' as request_id
from {{ source('usage', 'events') }}
