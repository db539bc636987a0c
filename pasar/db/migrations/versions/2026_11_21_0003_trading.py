"""Trading: accounts, orders, fills, positions, a double-entry cash ledger, idempotency keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TRADING = r"""
-- One paper trading account per tenant. The row is also the tenant's order lock: placing an order locks it,
-- so cash reservations and the order rate are decided one order at a time.
create table trading.accounts (
    tenant_id uuid primary key references tenancy.tenants (id),
    currency char(3) not null default 'IDR',
    cash bigint not null default 0 check (cash >= 0),  -- the ledger's cash balance, kept with every entry
    kill_switch boolean not null default false,
    kill_switch_reason text,
    loss_limited_on date,  -- the day the daily loss limit was hit: reducing-only for the rest of it
    day date,
    day_start_equity bigint not null default 0,
    updated_at timestamptz not null default now()
);
select pasar_internal.apply_tenant_rls('trading.accounts');

create table trading.orders (
    tenant_id uuid not null references tenancy.tenants (id),
    id uuid not null default gen_random_uuid(),
    client_order_id text not null check (length(client_order_id) between 1 and 64),
    user_id uuid not null,
    instrument_id integer references market.instruments (id),
    symbol text not null,
    side text not null check (side in ('buy', 'sell')),
    type text not null check (type in ('market', 'limit', 'stop', 'stop_limit')),
    time_in_force text not null check (time_in_force in ('day', 'gtc', 'ioc')),
    quantity numeric not null,
    limit_price numeric,
    stop_price numeric,
    status text not null check (status in ('new', 'accepted', 'partially_filled', 'filled', 'rejected',
                                           'cancelled', 'expired')),
    filled_quantity numeric not null default 0,
    average_price numeric,
    reserved_cash bigint not null default 0 check (reserved_cash >= 0),
    stop_triggered boolean not null default false,
    matched_until timestamptz,  -- the last market bar this order was matched against (paper venue)
    reject_reason text,
    reject_message text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    expires_at timestamptz,
    primary key (tenant_id, id),
    unique (tenant_id, client_order_id),
    foreign key (tenant_id, user_id) references tenancy.users (tenant_id, id)
);
create index orders_created_idx on trading.orders (tenant_id, created_at);
create index orders_open_idx on trading.orders (tenant_id, instrument_id)
    where status in ('accepted', 'partially_filled');
select pasar_internal.apply_tenant_rls('trading.orders');

create table trading.fills (
    tenant_id uuid not null references tenancy.tenants (id),
    id uuid not null default gen_random_uuid(),
    order_id uuid not null,
    execution_id text not null,
    instrument_id integer not null references market.instruments (id),
    side text not null check (side in ('buy', 'sell')),
    quantity numeric not null check (quantity > 0),
    price numeric not null check (price > 0),
    value bigint not null,
    commission bigint not null,
    tax bigint not null,
    realized_pnl bigint not null,
    executed_at timestamptz not null,
    created_at timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, execution_id),
    foreign key (tenant_id, order_id) references trading.orders (tenant_id, id)
);
create index fills_order_idx on trading.fills (tenant_id, order_id);
create index fills_time_idx on trading.fills (tenant_id, executed_at);
select pasar_internal.apply_tenant_rls('trading.fills');

create table trading.positions (
    tenant_id uuid not null references tenancy.tenants (id),
    instrument_id integer not null references market.instruments (id),
    quantity numeric not null,
    avg_cost numeric not null,
    realized_pnl bigint not null default 0,
    updated_at timestamptz not null default now(),
    primary key (tenant_id, instrument_id)
);
select pasar_internal.apply_tenant_rls('trading.positions');

-- The cash ledger: append-only entries of balanced lines (debit positive, credit negative, whole rupiah).
create table trading.ledger_entries (
    tenant_id uuid not null references tenancy.tenants (id),
    id uuid not null default gen_random_uuid(),
    kind text not null,
    reference text,
    created_at timestamptz not null default now(),
    primary key (tenant_id, id)
);
create table trading.ledger_lines (
    tenant_id uuid not null,
    entry_id uuid not null,
    line_no smallint not null,
    account text not null check (account in ('cash', 'capital', 'securities', 'fees', 'taxes', 'realized_pnl')),
    amount bigint not null,
    currency char(3) not null default 'IDR',
    primary key (tenant_id, entry_id, line_no),
    foreign key (tenant_id, entry_id) references trading.ledger_entries (tenant_id, id)
);
create index ledger_lines_account_idx on trading.ledger_lines (tenant_id, account);
select pasar_internal.apply_tenant_rls('trading.ledger_entries');
select pasar_internal.apply_tenant_rls('trading.ledger_lines');
create trigger ledger_entries_append_only before update or delete on trading.ledger_entries
    for each row execute function pasar_internal.forbid_change();
create trigger ledger_lines_append_only before update or delete on trading.ledger_lines
    for each row execute function pasar_internal.forbid_change();

-- Every entry balances per currency, checked at commit (after all its lines are in).
create or replace function pasar_internal.check_entry_balanced() returns trigger language plpgsql as $$
begin
    if exists (
        select 1 from trading.ledger_lines
        where tenant_id = new.tenant_id and entry_id = new.entry_id
        group by currency having sum(amount) <> 0
    ) then
        raise exception 'ledger entry % does not balance', new.entry_id using errcode = 'check_violation';
    end if;
    return null;
end
$$;
create constraint trigger ledger_lines_balanced after insert on trading.ledger_lines
    deferrable initially deferred for each row execute function pasar_internal.check_entry_balanced();

-- Idempotency-Key: the same key and body replay the stored answer; another body is refused.
create table trading.idempotency_keys (
    tenant_id uuid not null references tenancy.tenants (id),
    scope text not null,
    key text not null check (length(key) between 1 and 200),
    request_hash text not null,
    response_status integer,
    response_body text,  -- the exact bytes sent: a replay is byte-identical
    created_at timestamptz not null default now(),
    primary key (tenant_id, scope, key)
);
select pasar_internal.apply_tenant_rls('trading.idempotency_keys');

grant select, insert, update on trading.accounts, trading.orders, trading.positions, trading.idempotency_keys
    to pasar_app;
grant select, insert on trading.fills, trading.ledger_entries, trading.ledger_lines to pasar_app;
"""


def upgrade() -> None:
    op.execute(TRADING)


def downgrade() -> None:
    raise NotImplementedError("forward-only: write a new migration instead")
