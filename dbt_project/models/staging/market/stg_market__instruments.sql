select
    id as instrument_id,
    symbol,
    name as instrument_name,
    exchange,
    asset_class,
    currency,
    lot_size,
    price_precision,
    tick_rule,
    calendar,
    {{ calendar_timezone('calendar') }} as timezone,
    is_tradable,
    allows_short,
    origin,
    created_at,
    updated_at
from {{ source('market', 'instruments') }}
