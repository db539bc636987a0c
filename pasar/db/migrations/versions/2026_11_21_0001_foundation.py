"""Foundation: roles, schemas, tenancy tables, audit log, RLS and time-series helpers.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ROLES = """
do $$
begin
    -- Serves requests: row-level security always applies to it.
    if not exists (select 1 from pg_roles where rolname = 'pasar_app') then
        create role pasar_app nologin;
    end if;
    -- Ingestion and dbt across every tenant.
    if not exists (select 1 from pg_roles where rolname = 'pasar_etl') then
        create role pasar_etl nologin bypassrls;
    end if;
    -- Owns the few security-definer functions that must look across tenants before a tenant is known
    -- (authentication, the operator plane). Never logs in.
    if not exists (select 1 from pg_roles where rolname = 'pasar_auth') then
        create role pasar_auth nologin bypassrls;
    end if;
end
$$;
-- Enforce the posture even when the roles already existed.
alter role pasar_app nosuperuser nobypassrls nocreatedb nocreaterole noreplication;
alter role pasar_etl nosuperuser bypassrls nocreatedb nocreaterole noreplication;
alter role pasar_etl set row_security = off;
alter role pasar_auth nologin nosuperuser bypassrls;
do $$
begin
    execute format('grant connect on database %I to pasar_app, pasar_etl', current_database());
end
$$;
"""

SCHEMAS = """
create schema if not exists pasar_internal;
create schema if not exists tenancy;
create schema if not exists market;
create schema if not exists trading;
create schema if not exists billing;
create schema if not exists payments;
create schema if not exists ai;
create schema if not exists usage;
create schema if not exists audit;
revoke create on schema public from public;
grant usage on schema tenancy, market, trading, billing, payments, ai, usage, audit
    to pasar_app, pasar_etl;
grant usage on schema tenancy, audit to pasar_auth;
grant usage on schema pasar_internal to pasar_etl;
-- The ETL role reads everything and writes what ingestion and dbt own; later migrations grant writes.
alter default privileges in schema tenancy, market, trading, billing, payments, ai, usage, audit
    grant select on tables to pasar_etl;
"""

HELPERS = r"""
-- Row-level security of a tenant table: enable, force (the owner too), one policy on app.tenant_id.
-- No tenant set means no rows: nullif turns the empty setting into NULL, and NULL matches nothing.
create or replace function pasar_internal.apply_tenant_rls(target regclass, tenant_column name default 'tenant_id')
returns void language plpgsql as $$
begin
    execute format('alter table %s enable row level security', target);
    execute format('alter table %s force row level security', target);
    execute format('drop policy if exists tenant_isolation on %s', target);
    execute format(
        'create policy tenant_isolation on %s '
        'using (%2$I = nullif(current_setting(''app.tenant_id'', true), '''')::uuid) '
        'with check (%2$I = nullif(current_setting(''app.tenant_id'', true), '''')::uuid)',
        target, tenant_column);
end
$$;

create or replace function pasar_internal.forbid_change() returns trigger language plpgsql as $$
begin
    -- The one exception: ensure_time_partitions moving rows out of a default partition into a new one.
    if current_setting('pasar.partition_maintenance', true) = 'on' then
        return old;
    end if;
    raise exception '%.% is append-only: write a correcting entry instead', tg_table_schema, tg_table_name
        using errcode = 'insufficient_privilege';
end
$$;

-- TimescaleDB is detected once, here; callers ask pasar_internal.has_timescaledb().
create table pasar_internal.capabilities (
    name text primary key,
    enabled boolean not null,
    detected_at timestamptz not null default now()
);
do $$
begin
    begin
        create extension if not exists timescaledb;
        insert into pasar_internal.capabilities (name, enabled) values ('timescaledb', true);
    exception when others then
        -- Not installed, or installed but not preloaded: fall back to native partitioning.
        insert into pasar_internal.capabilities (name, enabled) values ('timescaledb', false);
    end;
end
$$;

create or replace function pasar_internal.has_timescaledb() returns boolean
language sql stable as $$
    select coalesce((select enabled from pasar_internal.capabilities where name = 'timescaledb'), false)
$$;

create table pasar_internal.timeseries_tables (
    relation regclass primary key,
    time_column name not null,
    partition_unit text not null check (partition_unit in ('day', 'week', 'month')),
    is_hypertable boolean not null
);

-- Create partitions of a natively partitioned time-series table covering [start_at, stop_at).
-- Each partition gets the parent's tenant RLS, since a partition queried directly does not inherit it.
create or replace function pasar_internal.ensure_time_partitions(
    parent regclass, start_at timestamptz, stop_at timestamptz
) returns integer language plpgsql as $$
declare
    spec pasar_internal.timeseries_tables;
    step interval;
    lower_bound timestamptz;
    partition_name text;
    default_name text;
    stragglers boolean;
    parent_schema name;
    parent_table name;
    created integer := 0;
begin
    select * into strict spec from pasar_internal.timeseries_tables where relation = parent;
    if spec.is_hypertable then
        return 0;  -- TimescaleDB creates chunks itself
    end if;
    select n.nspname, c.relname into parent_schema, parent_table
        from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = parent;
    step := ('1 ' || spec.partition_unit)::interval;
    lower_bound := date_trunc(spec.partition_unit, start_at at time zone 'UTC') at time zone 'UTC';
    while lower_bound < stop_at loop
        partition_name := parent_table || '_p' || to_char(lower_bound at time zone 'UTC', 'YYYYMMDD');
        if to_regclass(format('%I.%I', parent_schema, partition_name)) is null then
            default_name := parent_table || '_default';
            execute format('select exists (select 1 from %I.%I where %I >= %L and %I < %L)',
                parent_schema, default_name, spec.time_column, lower_bound, spec.time_column, lower_bound + step)
                into stragglers;
            if stragglers then
                -- Rows already landed in the default partition for this range: a partition cannot be created
                -- over them, so build it apart, move the rows in, and attach it (all in this transaction).
                perform set_config('pasar.partition_maintenance', 'on', true);
                execute format('create table %I.%I (like %s including defaults including constraints)',
                    parent_schema, partition_name, parent);
                execute format('with moved as (delete from %I.%I where %I >= %L and %I < %L returning *) '
                               'insert into %I.%I select * from moved',
                    parent_schema, default_name, spec.time_column, lower_bound, spec.time_column,
                    lower_bound + step, parent_schema, partition_name);
                execute format('alter table %s attach partition %I.%I for values from (%L) to (%L)',
                    parent, parent_schema, partition_name, lower_bound, lower_bound + step);
                perform set_config('pasar.partition_maintenance', 'off', true);
            else
                execute format('create table %I.%I partition of %s for values from (%L) to (%L)',
                    parent_schema, partition_name, parent, lower_bound, lower_bound + step);
            end if;
            if exists (select 1 from pg_attribute where attrelid = parent and attname = 'tenant_id'
                       and not attisdropped) then
                perform pasar_internal.apply_tenant_rls(format('%I.%I', parent_schema, partition_name)::regclass);
            end if;
            created := created + 1;
        end if;
        lower_bound := lower_bound + step;
    end loop;
    return created;
end
$$;

-- A time-series table: a hypertable with TimescaleDB, else range-partitioned on the time column with a
-- default partition (so no insert ever fails for want of a partition). Callers use the same SQL either way.
create or replace function pasar_internal.create_timeseries_table(
    schema_name name, table_name name, definition text, time_column name, partition_unit text
) returns regclass language plpgsql as $$
declare
    target regclass;
    hyper boolean := pasar_internal.has_timescaledb();
begin
    if hyper then
        execute format('create table %I.%I (%s)', schema_name, table_name, definition);
        target := format('%I.%I', schema_name, table_name)::regclass;
        perform public.create_hypertable(target, time_column,
            chunk_time_interval => ('1 ' || partition_unit)::interval);
    else
        execute format('create table %I.%I (%s) partition by range (%I)',
            schema_name, table_name, definition, time_column);
        target := format('%I.%I', schema_name, table_name)::regclass;
        execute format('create table %I.%I partition of %s default',
            schema_name, table_name || '_default', target);
    end if;
    insert into pasar_internal.timeseries_tables values (target, time_column, partition_unit, hyper);
    if exists (select 1 from pg_attribute where attrelid = target and attname = 'tenant_id'
               and not attisdropped) then
        perform pasar_internal.apply_tenant_rls(target);
        if not hyper then
            perform pasar_internal.apply_tenant_rls(format('%I.%I', schema_name, table_name || '_default')::regclass);
        end if;
    end if;
    return target;
end
$$;
"""

TENANCY = """
create table tenancy.tenants (
    id uuid primary key default gen_random_uuid(),
    slug text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    name text not null check (length(name) between 1 and 200),
    plan text not null check (plan in ('basic', 'professional', 'enterprise')),
    status text not null default 'active' check (status in ('active', 'suspended')),
    config jsonb not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
select pasar_internal.apply_tenant_rls('tenancy.tenants', 'id');

create table tenancy.users (
    tenant_id uuid not null references tenancy.tenants (id),
    id uuid not null default gen_random_uuid(),
    username text not null check (username ~ '^[A-Za-z0-9._@+-]{1,120}$'),
    display_name text not null default '',
    role text not null check (role in ('admin', 'trader', 'analyst', 'compliance')),
    password_hash text,
    is_active boolean not null default true,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    last_login_at timestamptz,
    primary key (tenant_id, id),
    unique (tenant_id, username)
);
create index users_username_idx on tenancy.users (username);
select pasar_internal.apply_tenant_rls('tenancy.users');

create table tenancy.api_keys (
    tenant_id uuid not null,
    id uuid not null default gen_random_uuid(),
    user_id uuid not null,
    name text not null check (length(name) between 1 and 100),
    prefix text not null unique,
    key_hash text not null,
    scopes text[] not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,
    primary key (tenant_id, id),
    foreign key (tenant_id, user_id) references tenancy.users (tenant_id, id)
);
create index api_keys_user_idx on tenancy.api_keys (tenant_id, user_id);
select pasar_internal.apply_tenant_rls('tenancy.api_keys');

create table tenancy.refresh_tokens (
    tenant_id uuid not null,
    id uuid not null,
    family_id uuid not null,
    user_id uuid not null,
    api_key_id uuid,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at timestamptz,
    revoked_at timestamptz,
    primary key (tenant_id, id),
    foreign key (tenant_id, user_id) references tenancy.users (tenant_id, id),
    foreign key (tenant_id, api_key_id) references tenancy.api_keys (tenant_id, id)
);
create index refresh_tokens_family_idx on tenancy.refresh_tokens (tenant_id, family_id);
select pasar_internal.apply_tenant_rls('tenancy.refresh_tokens');

-- Platform operators belong to no tenant; only the operator-plane functions below read this table.
create table tenancy.operators (
    id uuid primary key default gen_random_uuid(),
    name text not null unique check (length(name) between 1 and 100),
    prefix text not null unique,
    key_hash text not null,
    created_at timestamptz not null default now(),
    revoked_at timestamptz
);
alter table tenancy.operators enable row level security;
alter table tenancy.operators force row level security;

grant select, insert on tenancy.tenants to pasar_app;
grant select, insert, update on tenancy.users to pasar_app;
grant select, insert, update on tenancy.api_keys to pasar_app;
grant select, insert, update on tenancy.refresh_tokens to pasar_app;
grant select on tenancy.tenants, tenancy.users, tenancy.api_keys to pasar_auth;
grant select on tenancy.operators to pasar_auth;
grant update (status, updated_at) on tenancy.tenants to pasar_auth;
"""

AUDIT = """
select pasar_internal.create_timeseries_table(
    'audit', 'events',
    $def$
    tenant_id uuid not null,
    id uuid not null default gen_random_uuid(),
    occurred_at timestamptz not null default now(),
    actor_type text not null check (actor_type in ('user', 'api_key', 'operator', 'system')),
    actor_id text not null,
    action text not null,
    target_type text not null,
    target_id text not null,
    details jsonb not null default '{}',
    request_id text,
    primary key (tenant_id, occurred_at, id)
    $def$,
    'occurred_at', 'month');
create index events_target_idx on audit.events (tenant_id, target_type, target_id, occurred_at);
select pasar_internal.ensure_time_partitions('audit.events', now() - interval '1 month', now() + interval '12 months');
create trigger events_append_only before update or delete on audit.events
    for each row execute function pasar_internal.forbid_change();
grant select, insert on audit.events to pasar_app;
grant insert on audit.events to pasar_auth;
"""

AUTH_FUNCTIONS = """
-- Authentication happens before the tenant is known, so these look across tenants. They are security
-- definer functions owned by pasar_auth, return only what a login needs, and take the key hash so that
-- no key hash ever leaves the database.
create function tenancy.auth_api_key(p_prefix text, p_key_hash text)
returns table (api_key_id uuid, tenant_id uuid, user_id uuid, role text, scopes text[],
               expires_at timestamptz, revoked_at timestamptz, user_active boolean, tenant_status text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select k.id, k.tenant_id, k.user_id, u.role, k.scopes, k.expires_at, k.revoked_at, u.is_active, t.status
    from tenancy.api_keys k
    join tenancy.users u on u.tenant_id = k.tenant_id and u.id = k.user_id
    join tenancy.tenants t on t.id = k.tenant_id
    where k.prefix = p_prefix and k.key_hash = p_key_hash
$$;

create function tenancy.auth_login_candidates(p_username text, p_tenant_slug text)
returns table (tenant_id uuid, user_id uuid, role text, password_hash text, user_active boolean,
               tenant_status text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select u.tenant_id, u.id, u.role, u.password_hash, u.is_active, t.status
    from tenancy.users u join tenancy.tenants t on t.id = u.tenant_id
    where u.username = p_username and u.password_hash is not null
      and (p_tenant_slug is null or t.slug = p_tenant_slug)
$$;

create function tenancy.auth_operator_key(p_prefix text, p_key_hash text)
returns table (operator_id uuid, name text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select o.id, o.name from tenancy.operators o
    where o.prefix = p_prefix and o.key_hash = p_key_hash and o.revoked_at is null
$$;

create function tenancy.operator_list_tenants(p_operator_id uuid)
returns table (id uuid, slug text, name text, plan text, status text, created_at timestamptz)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
begin
    if not exists (select 1 from tenancy.operators o where o.id = p_operator_id and o.revoked_at is null) then
        raise exception 'not an active operator' using errcode = 'insufficient_privilege';
    end if;
    return query select t.id, t.slug, t.name, t.plan, t.status, t.created_at
        from tenancy.tenants t order by t.created_at, t.id;
end
$$;

create function tenancy.operator_set_tenant_status(
    p_operator_id uuid, p_tenant_id uuid, p_status text, p_reason text, p_request_id text
) returns table (id uuid, slug text, name text, plan text, status text, created_at timestamptz)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
begin
    if not exists (select 1 from tenancy.operators o where o.id = p_operator_id and o.revoked_at is null) then
        raise exception 'not an active operator' using errcode = 'insufficient_privilege';
    end if;
    return query
    with changed as (
        update tenancy.tenants t set status = p_status, updated_at = now()
        where t.id = p_tenant_id
        returning t.id, t.slug, t.name, t.plan, t.status, t.created_at
    ), audited as (
        insert into audit.events (tenant_id, actor_type, actor_id, action, target_type, target_id, details,
                                  request_id)
        -- The operator is named, not identified: tenants read their audit log, and an operator id must stay
        -- as unguessable as it was made.
        select c.id, 'operator', (select o.name from tenancy.operators o where o.id = p_operator_id),
               case p_status when 'suspended' then 'tenant.suspended' else 'tenant.resumed' end,
               'tenant', c.id::text,
               jsonb_build_object('reason', p_reason), p_request_id
        from changed c
    )
    select * from changed;
end
$$;

alter function tenancy.auth_api_key(text, text) owner to pasar_auth;
alter function tenancy.auth_login_candidates(text, text) owner to pasar_auth;
alter function tenancy.auth_operator_key(text, text) owner to pasar_auth;
alter function tenancy.operator_list_tenants(uuid) owner to pasar_auth;
alter function tenancy.operator_set_tenant_status(uuid, uuid, text, text, text) owner to pasar_auth;
revoke execute on all functions in schema tenancy from public;
grant execute on all functions in schema tenancy to pasar_app;
"""


def upgrade() -> None:
    for block in (ROLES, SCHEMAS, HELPERS, TENANCY, AUDIT, AUTH_FUNCTIONS):
        op.execute(block)


def downgrade() -> None:
    raise NotImplementedError("forward-only: write a new migration instead")
