"""Analytics and compliance: the dbt schema, tenant analyst logins, mart RLS, alert reviews, the report registry.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ROLES = """
do $$
begin
    -- The group role of every tenant analyst login (`pasar tenant analyst-login`): read-only, RLS applies.
    if not exists (select 1 from pg_roles where rolname = 'pasar_analyst') then
        create role pasar_analyst nologin;
    end if;
end
$$;
alter role pasar_analyst nologin nosuperuser nobypassrls nocreatedb nocreaterole noreplication;
do $$
begin
    execute format('grant connect on database %I to pasar_analyst', current_database());
end
$$;
"""

SCHEMAS = """
-- dbt builds here as pasar_etl (which owns what it builds); requests and analysts only read, under RLS.
create schema if not exists analytics;
grant usage, create on schema analytics to pasar_etl;
grant usage on schema analytics to pasar_app, pasar_analyst;

-- Compliance state the platform writes (alert reviews, the report registry).
create schema if not exists compliance;
grant usage on schema compliance to pasar_app, pasar_etl;
alter default privileges in schema compliance grant select on tables to pasar_etl;
"""

ANALYST_LOGINS = """
-- One row per analyst login role: the tenant that RLS confines it to.
create table tenancy.analyst_logins (
    role_name name primary key,
    tenant_id uuid not null references tenancy.tenants (id),
    created_at timestamptz not null default now()
);
create index analyst_logins_tenant_idx on tenancy.analyst_logins (tenant_id);
-- No tenant policy: no request reads this table. An analyst login reads its own row (which tenant it is) and
-- nothing else, whatever app.tenant_id it sets; pasar_auth (current_tenant) and pasar_etl bypass RLS.
alter table tenancy.analyst_logins enable row level security;
alter table tenancy.analyst_logins force row level security;
create policy analyst_self on tenancy.analyst_logins for select to pasar_analyst
    using (role_name = session_user);
grant select on tenancy.analyst_logins to pasar_analyst, pasar_auth, pasar_etl;
grant usage on schema tenancy to pasar_analyst;
"""

FUNCTIONS = r"""
-- The tenant a session may see in the analytics marts. An analyst login (session_user, which SET ROLE and
-- security-definer functions do not change) sees its own tenant whatever app.tenant_id says; a member of
-- pasar_analyst without a registered login sees nothing; every other role gets app.tenant_id as set by
-- tenant_transaction(), and no setting means no tenant (NULL matches no row).
create or replace function pasar_internal.current_tenant() returns uuid
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select case
        when login.tenant_id is not null then login.tenant_id
        when pg_has_role(session_user, 'pasar_analyst', 'MEMBER') then null
        else nullif(current_setting('app.tenant_id', true), '')::uuid
    end
    from (select (select l.tenant_id from tenancy.analyst_logins l where l.role_name = session_user) as tenant_id)
        as login
$$;
alter function pasar_internal.current_tenant() owner to pasar_auth;
revoke execute on function pasar_internal.current_tenant() from public;
grant execute on function pasar_internal.current_tenant() to pasar_app, pasar_etl, pasar_analyst;

-- Called by the dbt post-hook on every build of a model (as pasar_etl, which owns what dbt builds):
--   a table with tenant_id: ENABLE + FORCE row level security and one policy on current_tenant();
--   a view: security_invoker, so the RLS of what it reads applies to its reader;
--   shared (market data): no tenant_id expected, no policy;
--   readers: who gets SELECT among pasar_app and pasar_analyst (the others lose it; none: only pasar_etl reads).
-- A tenant model without tenant_id is an error, not a silently shared table.
create or replace function pasar_internal.apply_mart_rls(
    target regclass, readers name[] default array['pasar_app', 'pasar_analyst']::name[], shared boolean default false
) returns void language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
    kind "char";
    has_tenant boolean;
    reader name;
begin
    select c.relkind into strict kind from pg_class c where c.oid = target;
    select exists (select 1 from pg_attribute a where a.attrelid = target and a.attname = 'tenant_id'
                   and a.attnum > 0 and not a.attisdropped) into has_tenant;
    if shared and has_tenant then
        raise exception '% has a tenant_id column: it cannot be a shared mart', target;
    end if;
    if not shared and not has_tenant then
        raise exception '% has no tenant_id column: a tenant mart must carry one (or be declared shared)', target;
    end if;
    if not readers <@ array['pasar_app', 'pasar_analyst']::name[] then
        raise exception 'mart readers must be among pasar_app and pasar_analyst, got %', readers;
    end if;
    if kind = 'v' then
        execute format('alter view %s set (security_invoker = true)', target);
    elsif kind in ('r', 'p') then
        if has_tenant then
            execute format('alter table %s enable row level security', target);
            execute format('alter table %s force row level security', target);
            execute format('drop policy if exists tenant_isolation on %s', target);
            execute format(
                'create policy tenant_isolation on %s for select '
                'using (tenant_id = (select pasar_internal.current_tenant()))', target);
        end if;
    else
        raise exception '% is neither a table nor a view (relkind %)', target, kind;
    end if;
    foreach reader in array array['pasar_app', 'pasar_analyst']::name[] loop
        if reader = any(readers) then
            execute format('grant select on %s to %I', target, reader);
        else
            execute format('revoke all on %s from %I', target, reader);
        end if;
    end loop;
end
$$;
revoke execute on function pasar_internal.apply_mart_rls(regclass, name[], boolean) from public;
grant execute on function pasar_internal.apply_mart_rls(regclass, name[], boolean) to pasar_etl;
"""

COMPLIANCE = r"""
-- The lifecycle of a surveillance alert (alerts are rebuilt by dbt with stable ids; their review state lives
-- here). Append-only: each transition is a new revision; the latest revision is the alert's status.
create table compliance.alert_reviews (
    tenant_id uuid not null references tenancy.tenants (id),
    alert_id text not null check (length(alert_id) between 1 and 200),
    revision integer not null check (revision > 0),
    status text not null check (status in ('open', 'investigating', 'escalated', 'closed')),
    previous_status text not null check (previous_status in ('open', 'investigating', 'escalated', 'closed')),
    note text not null check (length(note) between 1 and 4000),
    actor_type text not null,
    actor_id text not null,
    request_id text,
    reviewed_at timestamptz not null default now(),
    primary key (tenant_id, alert_id, revision)
);
select pasar_internal.apply_tenant_rls('compliance.alert_reviews');
create trigger alert_reviews_append_only before update or delete on compliance.alert_reviews
    for each row execute function pasar_internal.forbid_change();
grant select, insert on compliance.alert_reviews to pasar_app;

-- Rendered compliance reports: one per tenant and period (a re-render replaces the files and the row).
create table compliance.reports (
    tenant_id uuid not null references tenancy.tenants (id),
    id uuid not null default gen_random_uuid(),
    period char(7) not null check (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    path text not null,  -- relative to PASAR_HOME/reports
    files jsonb not null default '[]',  -- [{"name", "bytes", "sha256", "media_type"}]
    checksum text not null,  -- sha256 over the files' digests
    summary jsonb not null default '{}',
    generated_by text not null,
    created_at timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, period)
);
select pasar_internal.apply_tenant_rls('compliance.reports');
grant select, insert, update on compliance.reports to pasar_app;
"""


def upgrade() -> None:
    for block in (ROLES, SCHEMAS, ANALYST_LOGINS, FUNCTIONS, COMPLIANCE):
        op.execute(block)


def downgrade() -> None:
    raise NotImplementedError("forward-only: write a new migration instead")
