"""Signals: the tenant's log of every AI signal served (model, version, inputs, explanation), so that an order can be
traced to the model and the features it acted on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SIGNALS = r"""
-- Append-only and time-partitioned (a hypertable with TimescaleDB), like usage.events: one row per signal answered.
select pasar_internal.create_timeseries_table(
    'ai', 'signals',
    $def$
    tenant_id uuid not null references tenancy.tenants (id),
    id uuid not null default gen_random_uuid(),
    symbol text not null check (length(symbol) between 1 and 32),
    instrument_id integer references market.instruments (id),
    timeframe text not null,
    score double precision not null check (score >= 0 and score <= 1),  -- P(up after costs), not money
    direction text not null check (direction in ('long', 'short', 'flat')),
    model_name text not null,
    model_version integer not null check (model_version >= 0),
    feature_ts timestamptz not null,  -- the start of the last bar the features were computed from
    features jsonb not null,  -- {name: value} in the model's input order
    contributions jsonb,  -- the explanation when asked for: {"space", "bias", "raw_score", "items": [...]}
    actor_type text not null,
    actor_id text not null,
    request_id text,
    created_at timestamptz not null default now(),
    primary key (tenant_id, id, created_at)
    $def$,
    'created_at', 'month');
select pasar_internal.ensure_time_partitions('ai.signals', now() - interval '1 month', now() + interval '12 months');
create index signals_symbol_idx on ai.signals (tenant_id, symbol, created_at);
create trigger signals_append_only before update or delete on ai.signals
    for each row execute function pasar_internal.forbid_change();

grant select, insert on ai.signals to pasar_app;
grant select on ai.signals to pasar_etl;
"""


def upgrade() -> None:
    op.execute(SIGNALS)


def downgrade() -> None:
    raise NotImplementedError("forward-only: write a new migration instead")
