"""Market data (instruments, holidays, bars) and usage events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MARKET = r"""
-- Market data is shared by every tenant: no tenant_id, no RLS; pasar_app reads, pasar_etl writes.
create table market.instruments (
    id integer generated always as identity primary key,
    symbol text not null unique check (symbol ~ '^[A-Z0-9][A-Z0-9._-]{0,31}$'),
    name text not null default '',
    exchange text not null,
    asset_class text not null check (asset_class in ('equity', 'fx', 'crypto', 'index')),
    currency char(3) not null,
    lot_size integer not null check (lot_size > 0),
    price_precision smallint not null check (price_precision between 0 and 8),
    tick_rule text not null check (tick_rule ~ '^(idx_equity|decimal:[0-8])$'),
    calendar text not null,
    is_tradable boolean not null default true,
    allows_short boolean not null default false,
    origin text not null default 'reference',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create table market.holidays (
    calendar text not null,
    day date not null,
    name text not null,
    primary key (calendar, day)
);

select pasar_internal.create_timeseries_table(
    'market', 'bars',
    $def$
    instrument_id integer not null,  -- no foreign key: ids come from market.instruments via the loader, and a
                                     -- per-row FK check would cost a third of every bulk merge
    timeframe text not null check (timeframe in ('1m', '5m', '15m', '30m', '1h', '1d', '1w', '1mo')),
    ts timestamptz not null,
    open numeric not null,
    high numeric not null,
    low numeric not null,
    close numeric not null,
    volume numeric not null check (volume >= 0),
    is_adjusted boolean not null default false,
    source text not null,
    ingested_at timestamptz not null default now(),
    primary key (instrument_id, timeframe, ts)
    $def$,
    'ts', 'month');

-- One row per stored (instrument, timeframe): what exists, from when to when. Maintained by the loader, so
-- the API and the freshness check never scan the bars to learn it.
create table market.bar_series (
    instrument_id integer not null references market.instruments (id),
    timeframe text not null,
    first_ts timestamptz not null,
    last_ts timestamptz not null,
    updated_at timestamptz not null default now(),
    primary key (instrument_id, timeframe)
);

grant select on market.instruments, market.holidays, market.bars, market.bar_series to pasar_app;
grant select, insert, update on market.instruments, market.holidays, market.bar_series to pasar_etl;
grant select, insert, update, delete on market.bars to pasar_etl;
-- Creating a partition needs the parent's owner: ingestion (pasar_etl) asks for partitions through this function.
alter function pasar_internal.ensure_time_partitions(regclass, timestamptz, timestamptz)
    security definer set search_path = pg_catalog, pg_temp;
revoke execute on function pasar_internal.ensure_time_partitions(regclass, timestamptz, timestamptz) from public;
grant execute on function pasar_internal.ensure_time_partitions(regclass, timestamptz, timestamptz) to pasar_etl;

do $$
begin
    if pasar_internal.has_timescaledb() then
        -- Compression of older chunks and hourly/daily rollups, maintained by TimescaleDB itself.
        execute 'alter table market.bars set (timescaledb.compress, '
                'timescaledb.compress_segmentby = ''instrument_id, timeframe'')';
        perform public.add_compression_policy('market.bars', interval '30 days');
        execute $cagg$
            create materialized view market.bars_1h with (timescaledb.continuous) as
            select instrument_id, public.time_bucket('1 hour', ts) as ts,
                   public.first(open, ts) as open, max(high) as high, min(low) as low,
                   public.last(close, ts) as close, sum(volume) as volume
            from market.bars where timeframe in ('1m', '5m', '15m', '30m') group by 1, 2
        $cagg$;
        execute $cagg$
            create materialized view market.bars_1d with (timescaledb.continuous) as
            select instrument_id, public.time_bucket('1 day', ts) as ts,
                   public.first(open, ts) as open, max(high) as high, min(low) as low,
                   public.last(close, ts) as close, sum(volume) as volume
            from market.bars where timeframe in ('1m', '5m', '15m', '30m', '1h') group by 1, 2
        $cagg$;
        perform public.add_continuous_aggregate_policy('market.bars_1h', interval '3 days', interval '1 hour',
                                                       interval '1 hour');
        perform public.add_continuous_aggregate_policy('market.bars_1d', interval '30 days', interval '1 day',
                                                       interval '1 day');
        grant select on market.bars_1h, market.bars_1d to pasar_etl;
    end if;
end
$$;
"""

USAGE = r"""
select pasar_internal.create_timeseries_table(
    'usage', 'events',
    $def$
    tenant_id uuid not null references tenancy.tenants (id),
    ts timestamptz not null,
    idempotency_key text not null check (length(idempotency_key) between 1 and 200),
    kind text not null check (kind in ('api_request', 'ai_tokens', 'order', 'report')),
    quantity bigint not null check (quantity >= 0),
    cost bigint not null default 0 check (cost >= 0),
    currency char(3) not null default 'IDR',
    details jsonb not null default '{}',
    primary key (tenant_id, idempotency_key, ts)
    $def$,
    'ts', 'month');
select pasar_internal.ensure_time_partitions('usage.events', now() - interval '1 month', now() + interval '12 months');

create table usage.daily (
    tenant_id uuid not null references tenancy.tenants (id),
    day date not null,
    kind text not null,
    events bigint not null,
    quantity bigint not null,
    cost bigint not null,
    currency char(3) not null default 'IDR',
    rolled_up_at timestamptz not null default now(),
    primary key (tenant_id, day, kind)
);
select pasar_internal.apply_tenant_rls('usage.daily');

grant select, insert on usage.events to pasar_app;
grant select on usage.daily to pasar_app;
grant select on usage.events to pasar_etl;
grant select, insert, update, delete on usage.daily to pasar_etl;
"""


def upgrade() -> None:
    op.execute(MARKET)
    op.execute(USAGE)


def downgrade() -> None:
    raise NotImplementedError("forward-only: write a new migration instead")
