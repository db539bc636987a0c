"""Tenant isolation in PostgreSQL (acceptance tests, section A): catalog coverage, role posture, cross-tenant
CRUD, fail-closed context, pool leaks, covert channels, the append-only audit log, the time-series fallback,
and a source grep for session-level tenant settings."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from api.app import create_app
from pasar.config import Settings
from pasar.db.pool import Database, tenant_transaction
from pasar.db.urls import DatabaseUrls
from pasar.tenancy.models import Principal

OUR_SCHEMAS = ["tenancy", "market", "trading", "billing", "payments", "ai", "usage", "audit"]
REPO = Path(__file__).resolve().parents[2]
RLS_VIOLATION = "row-level security"

# Every non-system schema: not pg_catalog, pg_toast, pg_temp_N or information_schema.
USER_SCHEMA = sql.SQL("n.nspname !~ '^pg_' and n.nspname <> 'information_schema'")


@pytest.fixture
def owner_conn(urls: DatabaseUrls) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """An autocommit connection as the owner (a superuser: RLS never applies to it)."""
    with psycopg.connect(urls.owner, autocommit=True) as conn:
        yield conn


def _scalar(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _set_tenant(conn: psycopg.Connection[Any], tenant_id: str) -> None:
    conn.execute("select set_config('app.tenant_id', %s, true)", [tenant_id])


def _scratch_schema() -> str:
    return "scratch_" + uuid4().hex[:10]


# 1. Catalog walk --------------------------------------------------------------------------------------------


def _tenant_tables(conn: psycopg.Connection[Any]) -> dict[str, tuple[bool, bool, int]]:
    """Every table with a tenant_id column (and tenancy.tenants): (relrowsecurity, relforcerowsecurity, policies)."""
    rows = conn.execute(
        sql.SQL(
            """
            select c.oid::regclass::text, c.relrowsecurity, c.relforcerowsecurity,
                   (select count(*) from pg_policy p where p.polrelid = c.oid)
            from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.relkind in ('r', 'p') and {user_schema}
              and (c.oid = 'tenancy.tenants'::regclass
                   or exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id'
                              and a.attnum > 0 and not a.attisdropped))
            """
        ).format(user_schema=USER_SCHEMA)
    ).fetchall()
    return {name: (enabled, forced, policies) for name, enabled, forced, policies in rows}


def _rls_gaps(tables: dict[str, tuple[bool, bool, int]]) -> list[str]:
    return sorted(name for name, (enabled, forced, policies) in tables.items() if not (enabled and forced and policies))


def _views_without_security_invoker(conn: psycopg.Connection[Any], schemas: list[str]) -> tuple[int, list[str]]:
    """(views seen, views lacking security_invoker) in the given schemas."""
    rows = conn.execute(
        """
        select c.oid::regclass::text,
               coalesce((select lower(option_value) in ('true', 'on', 'yes', '1')
                         from pg_options_to_table(c.reloptions) where option_name = 'security_invoker'), false)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind = 'v' and n.nspname = any(%s)
        """,
        [schemas],
    ).fetchall()
    return len(rows), sorted(name for name, invoker in rows if not invoker)


def _matviews_granted_to_app(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        sql.SQL(
            """
            select c.oid::regclass::text
            from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.relkind = 'm' and {user_schema}
              and has_table_privilege('pasar_app', c.oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')
            """
        ).format(user_schema=USER_SCHEMA)
    ).fetchall()
    return sorted(name for (name,) in rows)


def test_every_tenant_table_has_forced_rls_and_a_policy(owner_conn: psycopg.Connection[Any]) -> None:
    tables = _tenant_tables(owner_conn)
    assert {"tenancy.tenants", "tenancy.users", "tenancy.api_keys", "tenancy.refresh_tokens", "audit.events"} <= set(
        tables
    ), sorted(tables)
    assert any(name.startswith("audit.events_p") for name in tables), "partitions of audit.events are tenant tables too"
    assert _rls_gaps(tables) == []


def test_views_are_security_invoker_and_no_matview_is_granted_to_app(owner_conn: psycopg.Connection[Any]) -> None:
    """There may be no view yet: the query still runs and the check then passes vacuously."""
    _seen, lacking = _views_without_security_invoker(owner_conn, OUR_SCHEMAS)  # _seen may be 0 today
    assert lacking == []
    assert _matviews_granted_to_app(owner_conn) == []


def test_catalog_checks_catch_violations(owner_conn: psycopg.Connection[Any]) -> None:
    """The checks above are not vacuous: they flag bad objects made in a scratch schema (rolled back)."""
    scratch = _scratch_schema()

    def name(relation: str) -> sql.Identifier:
        return sql.Identifier(scratch, relation)

    with owner_conn.transaction(force_rollback=True):
        owner_conn.execute(sql.SQL("create schema {}").format(sql.Identifier(scratch)))
        for table in ("no_rls", "no_policy", "good"):
            owner_conn.execute(sql.SQL("create table {} (tenant_id uuid not null, v int)").format(name(table)))
        owner_conn.execute(sql.SQL("alter table {} enable row level security").format(name("no_policy")))
        owner_conn.execute(sql.SQL("alter table {} force row level security").format(name("no_policy")))
        owner_conn.execute("select pasar_internal.apply_tenant_rls(%s::regclass)", [f"{scratch}.good"])
        owner_conn.execute(sql.SQL("create view {} as select 1 as one").format(name("definer_view")))
        owner_conn.execute(
            sql.SQL("create view {} with (security_invoker = true) as select 1 as one").format(name("invoker_view"))
        )
        owner_conn.execute(sql.SQL("create materialized view {} as select 1 as one").format(name("mv")))
        owner_conn.execute(sql.SQL("grant select on {} to pasar_app").format(name("mv")))

        gaps = [gap for gap in _rls_gaps(_tenant_tables(owner_conn)) if gap.startswith(scratch)]
        assert gaps == [f"{scratch}.no_policy", f"{scratch}.no_rls"]
        assert _views_without_security_invoker(owner_conn, [scratch]) == (2, [f"{scratch}.definer_view"])
        assert _matviews_granted_to_app(owner_conn) == [f"{scratch}.mv"]


# 2. Role posture --------------------------------------------------------------------------------------------


def test_app_role_posture(owner_conn: psycopg.Connection[Any]) -> None:
    row = owner_conn.execute(
        "select rolsuper, rolbypassrls, rolcreaterole, rolcreatedb from pg_roles where rolname = 'pasar_app'"
    ).fetchone()
    assert row == (False, False, False, False)
    assert _scalar(owner_conn, "select count(*) from pg_class where relowner = 'pasar_app'::regrole") == 0
    # Owns nothing at all in this database (schemas, functions, types …): no owner dependency.
    owned = owner_conn.execute(
        "select classid::regclass::text, objid from pg_shdepend "
        "where refobjid = 'pasar_app'::regrole and deptype = 'o' "
        "and (dbid = 0 or dbid = (select oid from pg_database where datname = current_database()))"
    ).fetchall()
    assert owned == []
    # Cannot become a role that escapes RLS.
    escapes = owner_conn.execute(
        "select rolname from pg_roles where (rolsuper or rolbypassrls) and rolname <> 'pasar_app' "
        "and pg_has_role('pasar_app', oid, 'MEMBER')"
    ).fetchall()
    assert escapes == []


def test_app_role_has_no_truncate(owner_conn: psycopg.Connection[Any]) -> None:
    rows = owner_conn.execute(
        sql.SQL(
            """
            select c.oid::regclass::text, has_table_privilege('pasar_app', c.oid, 'TRUNCATE')
            from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.relkind in ('r', 'p') and {user_schema}
            """
        ).format(user_schema=USER_SCHEMA)
    ).fetchall()
    assert {name for name, _ in rows} >= {"tenancy.users", "audit.events"}
    assert [name for name, can_truncate in rows if can_truncate] == []


def test_etl_role_bypasses_rls_with_row_security_off(
    owner_conn: psycopg.Connection[Any], urls: DatabaseUrls, tenant_a, tenant_b
) -> None:
    bypass, config = owner_conn.execute(
        "select rolbypassrls, rolconfig from pg_roles where rolname = 'pasar_etl'"
    ).fetchone() or (None, None)
    assert bypass is True
    assert "row_security=off" in (config or [])
    settings = owner_conn.execute(
        "select setdatabase, setconfig from pg_db_role_setting where setrole = 'pasar_etl'::regrole"
    ).fetchall()
    assert any(database == 0 and "row_security=off" in setconfig for database, setconfig in settings), settings
    with psycopg.connect(urls.etl) as etl:
        assert _scalar(etl, "show row_security") == "off"
        seen = _scalar(
            etl,
            "select count(distinct tenant_id) from tenancy.users where tenant_id = any(%s)",
            [[tenant_a.id, tenant_b.id]],
        )
        assert seen == 2  # every tenant, with no tenant context


# 3. Cross-tenant CRUD ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    rows: int | None  # rows returned, for statements that return rows
    rowcount: int
    error: psycopg.Error | None


Probes = dict[str, tuple[str, list[Any]]]


def _cross_tenant_probes(a: Any, b: Any) -> Probes:
    b_key, a_user = str(b.made.api_key.api_key.id), a.admin_id
    return {
        "select own user": ("select id from tenancy.users where id = %s", [a_user]),
        "select own tenant": ("select id from tenancy.tenants where id = %s", [a.id]),
        "select B user": ("select id from tenancy.users where id = %s", [b.admin_id]),
        "select B users by tenant": ("select id from tenancy.users where tenant_id = %s", [b.id]),
        "select B api key": ("select id from tenancy.api_keys where id = %s", [b_key]),
        "select B tenant": ("select id from tenancy.tenants where id = %s", [b.id]),
        "select B audit": ("select id from audit.events where tenant_id = %s", [b.id]),
        "update B user": ("update tenancy.users set display_name = %s where id = %s", ["pwned", b.admin_id]),
        "update B api key": ("update tenancy.api_keys set revoked_at = now() where id = %s", [b_key]),
        "delete B user": ("delete from tenancy.users where id = %s", [b.admin_id]),
        "delete B api key": ("delete from tenancy.api_keys where id = %s", [b_key]),
        "insert user into B": (
            "insert into tenancy.users (tenant_id, username, role) values (%s, %s, %s)",
            [b.id, "intruder", "trader"],
        ),
        "insert api key into B": (
            "insert into tenancy.api_keys (tenant_id, user_id, name, prefix, key_hash, scopes) "
            "values (%s, %s, %s, %s, %s, %s)",
            [b.id, b.admin_id, "intruder", uuid4().hex, "x", ["read"]],
        ),
        "move own user to B": ("update tenancy.users set tenant_id = %s where id = %s", [b.id, a_user]),
    }


def _probe(conn: psycopg.Connection[Any], query: str, params: list[Any]) -> Outcome:
    """Runs one statement in a savepoint that is always rolled back."""
    try:
        with conn.transaction(force_rollback=True):
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return Outcome(len(cur.fetchall()) if cur.description else None, cur.rowcount, None)
    except psycopg.Error as exc:
        return Outcome(None, -1, exc)


async def _probe_async(conn: psycopg.AsyncConnection[Any], query: str, params: list[Any]) -> Outcome:
    try:
        async with conn.transaction(force_rollback=True):
            cur = await conn.execute(query, params)  # type: ignore[arg-type]
            return Outcome(len(await cur.fetchall()) if cur.description else None, cur.rowcount, None)
    except psycopg.Error as exc:
        return Outcome(None, -1, exc)


def _probe_raw(app_conn: psycopg.Connection[Any], tenant_id: str, probes: Probes) -> dict[str, Outcome]:
    with app_conn.transaction():
        _set_tenant(app_conn, tenant_id)
        return {name: _probe(app_conn, query, params) for name, (query, params) in probes.items()}


async def _probe_tenant_transaction(app_url: str, tenant_id: str, probes: Probes) -> dict[str, Outcome]:
    database = Database(app_url, min_size=1, max_size=1)
    await database.open()
    try:
        async with tenant_transaction(Principal.system(UUID(tenant_id)), database=database) as conn:
            return {name: await _probe_async(conn, query, params) for name, (query, params) in probes.items()}
    finally:
        await database.close()


def _assert_refused_by_rls(outcome: Outcome) -> None:
    assert isinstance(outcome.error, psycopg.errors.InsufficientPrivilege), outcome
    assert RLS_VIOLATION in str(outcome.error), outcome


@pytest.mark.parametrize("path", ["raw_sql", "tenant_transaction"])
def test_cross_tenant_crud_is_invisible_and_refused(
    path: str,
    app_conn: psycopg.Connection[Any],
    owner_conn: psycopg.Connection[Any],
    urls: DatabaseUrls,
    tenant_a,
    tenant_b,
) -> None:
    probes = _cross_tenant_probes(tenant_a, tenant_b)
    if path == "raw_sql":
        outcomes = _probe_raw(app_conn, tenant_a.id, probes)
    else:
        outcomes = asyncio.run(_probe_tenant_transaction(urls.app, tenant_a.id, probes))

    # Controls: the same context sees its own rows, so the zeros below are RLS, not a broken query.
    assert outcomes["select own user"] == Outcome(1, 1, None)
    assert outcomes["select own tenant"] == Outcome(1, 1, None)
    for name in ("select B user", "select B users by tenant", "select B api key", "select B tenant", "select B audit"):
        assert outcomes[name] == Outcome(0, 0, None), name
    for name in ("update B user", "update B api key"):
        assert outcomes[name] == Outcome(None, 0, None), name
    for name in ("delete B user", "delete B api key"):
        outcome = outcomes[name]  # no DELETE grant on these tables; were there one, RLS would match 0 rows
        refused = isinstance(outcome.error, psycopg.errors.InsufficientPrivilege)
        assert refused or outcome == Outcome(None, 0, None), (name, outcome)
    for name in ("insert user into B", "insert api key into B", "move own user to B"):
        _assert_refused_by_rls(outcomes[name])

    # B's rows are intact, seen by the owner.
    user = owner_conn.execute(
        "select tenant_id::text, display_name from tenancy.users where id = %s", [tenant_b.admin_id]
    ).fetchone()
    assert user is not None
    assert user == (tenant_b.id, tenant_b.made.admin_user.display_name)
    key = owner_conn.execute(
        "select tenant_id::text, revoked_at from tenancy.api_keys where id = %s", [tenant_b.made.api_key.api_key.id]
    ).fetchone()
    assert key == (tenant_b.id, None)
    assert _scalar(owner_conn, "select count(*) from tenancy.users where username = %s", ["intruder"]) == 0
    own = _scalar(owner_conn, "select tenant_id::text from tenancy.users where id = %s", [tenant_a.admin_id])
    assert own == tenant_a.id


def test_cross_tenant_read_through_the_api_is_404(client: TestClient, tenant_a, tenant_b) -> None:
    assert client.get(f"/v1/users/{tenant_a.admin_id}", headers=tenant_a.headers).status_code == 200
    response = client.get(f"/v1/users/{tenant_b.admin_id}", headers=tenant_a.headers)
    assert response.status_code == 404, response.text


# 4. No context fails closed ---------------------------------------------------------------------------------

CONTEXT_TABLES = [
    ("tenancy", "users"),
    ("tenancy", "api_keys"),
    ("tenancy", "refresh_tokens"),
    ("tenancy", "tenants"),
    ("audit", "events"),
]


def _visible(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {
        f"{schema}.{table}": _scalar(conn, sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table)))
        for schema, table in CONTEXT_TABLES
    }


NOTHING = {f"{schema}.{table}": 0 for schema, table in CONTEXT_TABLES}


@pytest.mark.parametrize("ending", ["commit", "rollback"])
@pytest.mark.parametrize("setter", ["set_config", "set_local"])
def test_no_tenant_context_sees_no_rows(setter: str, ending: str, app_conn: psycopg.Connection[Any], tenant_a) -> None:
    assert _scalar(app_conn, "select current_setting('app.tenant_id', true)") in ("", None)
    assert _visible(app_conn) == NOTHING
    with app_conn.transaction():
        assert _visible(app_conn) == NOTHING  # an explicit transaction with no tenant: still nothing

    with app_conn.transaction():
        if setter == "set_config":
            _set_tenant(app_conn, tenant_a.id)
        else:
            app_conn.execute(sql.SQL("set local app.tenant_id = {}").format(sql.Literal(tenant_a.id)))
        seen = _visible(app_conn)
        assert seen["tenancy.tenants"] == 1
        assert seen["tenancy.users"] >= 1
        assert seen["tenancy.api_keys"] >= 1
        assert seen["audit.events"] >= 1
        if ending == "rollback":
            raise psycopg.Rollback  # psycopg rolls back and swallows it at the block's exit

    for _ in range(2):  # a new transaction on the same connection, then plain autocommit statements
        with app_conn.transaction():
            assert _scalar(app_conn, "select current_setting('app.tenant_id', true)") in ("", None)
            assert _visible(app_conn) == NOTHING
    assert _scalar(app_conn, "select current_setting('app.tenant_id', true)") in ("", None)
    assert _visible(app_conn) == NOTHING


# 5. Pool leak -----------------------------------------------------------------------------------------------


class DeliberateFailure(Exception):
    """Raised inside some tenant transactions, so the rollback path is exercised too."""


def _users_by_tenant(owner_conn: psycopg.Connection[Any], *tenants: Any) -> dict[UUID, set[UUID]]:
    ids = [UUID(tenant.id) for tenant in tenants]
    expected: dict[UUID, set[UUID]] = {tenant_id: set() for tenant_id in ids}
    for tenant_id, user_id in owner_conn.execute(
        "select tenant_id, id from tenancy.users where tenant_id = any(%s)", [ids]
    ):
        expected[tenant_id].add(user_id)
    assert all(expected.values())
    return expected


async def _pool_leak_run(app_url: str, plan: list[UUID]) -> tuple[list[Any], list[tuple[Any, int]]]:
    database = Database(app_url, min_size=1, max_size=2)
    await database.open()
    try:

        async def request(index: int) -> tuple[UUID, str | None, set[UUID], set[UUID]] | None:
            tenant_id = plan[index]
            try:
                async with tenant_transaction(Principal.system(tenant_id), database=database) as conn:
                    await asyncio.sleep(0)  # let the other coroutines interleave mid-transaction
                    setting = await (
                        await conn.execute("select current_setting('app.tenant_id', true) as s")
                    ).fetchone()
                    rows = await (await conn.execute("select tenant_id, id from tenancy.users")).fetchall()
                    if index % 7 == 3:
                        raise DeliberateFailure
                    assert setting is not None
                    return tenant_id, setting["s"], {r["tenant_id"] for r in rows}, {r["id"] for r in rows}
            except DeliberateFailure:
                return None

        results: list[Any] = []
        for start in range(0, len(plan), 50):
            results += await asyncio.gather(*(request(i) for i in range(start, min(start + 50, len(plan)))))

        leftovers = []
        async with database.pool.connection() as first, database.pool.connection() as second:
            for conn in (first, second):  # both connections of the pool, without a tenant
                setting = await (await conn.execute("select current_setting('app.tenant_id', true) as s")).fetchone()
                users = await (await conn.execute("select count(*) as n from tenancy.users")).fetchone()
                assert setting is not None
                assert users is not None
                leftovers.append((setting["s"], users["n"]))
        return results, leftovers
    finally:
        await database.close()


def test_pool_does_not_leak_the_tenant(
    urls: DatabaseUrls, owner_conn: psycopg.Connection[Any], tenant_a, tenant_b
) -> None:
    expected = _users_by_tenant(owner_conn, tenant_a, tenant_b)
    rng = random.Random(20261121)
    plan = [rng.choice(list(expected)) for _ in range(500)]

    results, leftovers = asyncio.run(_pool_leak_run(urls.app, plan))

    answered = [result for result in results if result is not None]
    assert len(answered) == 500 - len([i for i in range(500) if i % 7 == 3])
    for tenant_id, setting, tenants_seen, user_ids in answered:
        assert setting == str(tenant_id)
        assert tenants_seen == {tenant_id}
        assert user_ids == expected[tenant_id]
    assert {result[0] for result in answered} == set(expected)
    for setting, users in leftovers:
        assert setting in ("", None)
        assert users == 0


def test_pool_does_not_leak_the_tenant_across_threads(
    settings: Settings, owner_conn: psycopg.Connection[Any], tenant_a, tenant_b
) -> None:
    """The same through the API: 500 requests from 50 threads, a pool of 2, then a raw checkout of its pool."""
    expected = {str(k): {str(v) for v in vs} for k, vs in _users_by_tenant(owner_conn, tenant_a, tenant_b).items()}
    tenants = [tenant_a, tenant_b]
    app = create_app(settings.model_copy(update={"db_pool_min_size": 1, "db_pool_max_size": 2}))

    with TestClient(app) as client:

        def fetch(index: int) -> tuple[str, int, set[str], set[str]]:
            tenant = tenants[index % 2]
            response = client.get("/v1/users", headers=tenant.headers)
            items = response.json().get("items", []) if response.status_code == 200 else []
            return tenant.id, response.status_code, {u["tenant_id"] for u in items}, {u["id"] for u in items}

        with ThreadPoolExecutor(max_workers=50) as executor:
            results = list(executor.map(fetch, range(500)))

        async def raw_checkout() -> list[tuple[Any, int]]:
            pool = app.state.runtime.database.pool
            seen = []
            async with pool.connection() as first, pool.connection() as second:
                for conn in (first, second):
                    setting = await (
                        await conn.execute("select current_setting('app.tenant_id', true) as s")
                    ).fetchone()
                    users = await (await conn.execute("select count(*) as n from tenancy.users")).fetchone()
                    seen.append((setting["s"], users["n"]))
            return seen

        assert client.portal is not None
        leftovers = client.portal.call(raw_checkout)

    for tenant_id, status, tenants_seen, user_ids in results:
        assert status == 200
        assert tenants_seen == {tenant_id}
        assert user_ids == expected[tenant_id]
    assert len(leftovers) == 2
    for setting, users in leftovers:
        assert setting in ("", None)
        assert users == 0


# 6. Covert channel ------------------------------------------------------------------------------------------


def test_same_natural_key_in_two_tenants_and_no_cross_tenant_reference(
    client: TestClient, app_conn: psycopg.Connection[Any], tenant_a, tenant_b
) -> None:
    body = {"username": "shared-name", "role": "trader", "password": "a-long-password"}
    made_a = client.post("/v1/users", headers=tenant_a.headers, json=body)
    made_b = client.post("/v1/users", headers=tenant_b.headers, json=body)
    assert made_a.status_code == 201, made_a.text
    assert made_b.status_code == 201, made_b.text
    a_user, b_user = made_a.json()["id"], made_b.json()["id"]
    assert client.get(f"/v1/users/{b_user}", headers=tenant_a.headers).status_code == 404

    insert_key = (
        "insert into tenancy.api_keys (tenant_id, user_id, name, prefix, key_hash, scopes) "
        "values (%s, %s, %s, %s, %s, %s)"
    )
    with app_conn.transaction(force_rollback=True):
        _set_tenant(app_conn, tenant_a.id)
        with app_conn.transaction():  # control: a key for A's own user is accepted
            app_conn.execute(insert_key, [tenant_a.id, a_user, "own", uuid4().hex, "x", ["read"]])
        with pytest.raises(psycopg.errors.ForeignKeyViolation), app_conn.transaction():
            app_conn.execute(insert_key, [tenant_a.id, b_user, "covert", uuid4().hex, "x", ["read"]])
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=RLS_VIOLATION), app_conn.transaction():
            app_conn.execute(insert_key, [tenant_b.id, b_user, "covert", uuid4().hex, "x", ["read"]])


def test_foreign_keys_between_tenant_tables_carry_the_tenant(owner_conn: psycopg.Connection[Any]) -> None:
    """Composite foreign keys: every FK between tenant tables maps tenant_id onto the referenced tenant column."""
    rows = owner_conn.execute(
        """
        with tenant_column as (
            select a.attrelid as rel, a.attnum from pg_attribute a
            where a.attname = 'tenant_id' and a.attnum > 0 and not a.attisdropped
            union all
            select a.attrelid, a.attnum from pg_attribute a
            where a.attrelid = 'tenancy.tenants'::regclass and a.attname = 'id'
        )
        select con.conrelid::regclass::text, con.conname,
               exists (select 1 from unnest(con.conkey, con.confkey) as k(src, dst)
                       join tenant_column d on d.rel = con.confrelid and d.attnum = k.dst
                       where k.src = s.attnum) as carries_tenant
        from pg_constraint con
        join tenant_column s on s.rel = con.conrelid
        where con.contype = 'f' and con.conrelid <> 'tenancy.tenants'::regclass
          and exists (select 1 from tenant_column t where t.rel = con.confrelid)
        """
    ).fetchall()
    assert ("tenancy.api_keys", "api_keys_tenant_id_user_id_fkey", True) in rows
    assert [(table, name) for table, name, carries in rows if not carries] == []


def test_every_trading_table_reaches_its_tenant_by_foreign_keys(owner_conn: psycopg.Connection[Any]) -> None:
    """Orders and fills reference tenancy.tenants through their composite keys (to users, to orders): the direct
    keys were dropped as implied (migration 0007), and no trading table is left without a path to its tenant."""
    rows = owner_conn.execute(
        """
        with recursive reaches(rel) as (
            select 'tenancy.tenants'::regclass::oid
            union
            select con.conrelid from pg_constraint con join reaches r on con.confrelid = r.rel where con.contype = 'f'
        )
        select c.oid::regclass::text, c.oid in (select rel from reaches)
        from pg_class c
        where c.relnamespace = 'trading'::regnamespace and c.relkind in ('r', 'p') and not c.relispartition
        """
    ).fetchall()
    assert {"trading.orders", "trading.fills", "trading.ledger_lines"} <= {table for table, _ in rows}
    assert [table for table, reaches in rows if not reaches] == []


# 7. Audit log is append-only --------------------------------------------------------------------------------


def test_audit_events_are_append_only(
    owner_conn: psycopg.Connection[Any], app_conn: psycopg.Connection[Any], tenant_a
) -> None:
    with owner_conn.transaction(force_rollback=True):
        events = "select count(*) from audit.events where tenant_id = %s"
        before = _scalar(owner_conn, events, [tenant_a.id])
        assert before >= 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"), owner_conn.transaction():
            owner_conn.execute("update audit.events set action = %s where tenant_id = %s", ["tampered", tenant_a.id])
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"), owner_conn.transaction():
            owner_conn.execute("delete from audit.events where tenant_id = %s", [tenant_a.id])
        # Straight at the partition that holds the rows: the trigger is on every partition too.
        schema, table = owner_conn.execute(
            "select n.nspname, c.relname from audit.events e join pg_class c on c.oid = e.tableoid "
            "join pg_namespace n on n.oid = c.relnamespace where e.tenant_id = %s limit 1",
            [tenant_a.id],
        ).fetchone() or ("", "")
        partition = sql.Identifier(schema, table)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"), owner_conn.transaction():
            owner_conn.execute(sql.SQL("delete from {} where tenant_id = %s").format(partition), [tenant_a.id])
        assert _scalar(owner_conn, events, [tenant_a.id]) == before

    privileges = owner_conn.execute(
        """
        select c.oid::regclass::text, has_table_privilege('pasar_app', c.oid, 'UPDATE'),
               has_table_privilege('pasar_app', c.oid, 'DELETE')
        from pg_class c
        where c.oid = 'audit.events'::regclass
           or c.oid in (select relid from pg_partition_tree('audit.events'))
        """
    ).fetchall()
    assert len(privileges) > 1
    assert [name for name, update, delete in privileges if update or delete] == []
    with app_conn.transaction():
        _set_tenant(app_conn, tenant_a.id)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), app_conn.transaction():
            app_conn.execute("update audit.events set action = %s", ["tampered"])
        with pytest.raises(psycopg.errors.InsufficientPrivilege), app_conn.transaction():
            app_conn.execute("delete from audit.events")


# 8. TimescaleDB detection and the native-partitioning fallback ----------------------------------------------


def _timescaledb_installed(conn: psycopg.Connection[Any]) -> bool:
    return bool(_scalar(conn, "select exists (select 1 from pg_extension where extname = 'timescaledb')"))


def test_timescaledb_detection(owner_conn: psycopg.Connection[Any]) -> None:
    installed = _timescaledb_installed(owner_conn)
    available = _scalar(owner_conn, "select exists (select 1 from pg_available_extensions where name = 'timescaledb')")
    assert _scalar(owner_conn, "select pasar_internal.has_timescaledb()") is installed
    enabled = owner_conn.execute(
        "select enabled from pasar_internal.capabilities where name = 'timescaledb'"
    ).fetchall()
    assert enabled == [(installed,)]
    if not available:  # the case on these machines: no package, so the fallback is in use
        assert installed is False


def _partition_report(conn: psycopg.Connection[Any], parent: str) -> dict[str, tuple[str, bool, bool, int, int]]:
    """Each partition of parent: (bound, relrowsecurity, relforcerowsecurity, policies, cloned row triggers)."""
    rows = conn.execute(
        """
        select c.oid::regclass::text, pg_get_expr(c.relpartbound, c.oid), c.relrowsecurity, c.relforcerowsecurity,
               (select count(*) from pg_policy p where p.polrelid = c.oid),
               (select count(*) from pg_trigger t where t.tgrelid = c.oid and t.tgparentid <> 0)
        from pg_inherits i join pg_class c on c.oid = i.inhrelid
        where i.inhparent = %s::regclass
        """,
        [parent],
    ).fetchall()
    return {name: tuple(rest) for name, *rest in rows}  # type: ignore[misc]


def _insert_audit_row(conn: psycopg.Connection[Any], tenant_id: str, at: Any) -> str:
    return str(
        _scalar(
            conn,
            "insert into audit.events (tenant_id, occurred_at, actor_type, actor_id, action, target_type, target_id) "
            "values (%s, %s, 'system', 'test', 'test.routing', 'test', 'test') returning tableoid::regclass::text",
            [tenant_id, at],
        )
    )


def test_audit_events_fall_back_to_monthly_partitions(owner_conn: psycopg.Connection[Any], tenant_a) -> None:
    if _timescaledb_installed(owner_conn):
        pytest.skip("TimescaleDB is installed: audit.events is a hypertable, not natively partitioned")
    relkind = _scalar(owner_conn, "select relkind from pg_class where oid = 'audit.events'::regclass")
    assert relkind == "p"
    spec = owner_conn.execute(
        "select time_column, partition_unit, is_hypertable from pasar_internal.timeseries_tables "
        "where relation = 'audit.events'::regclass"
    ).fetchone()
    assert spec == ("occurred_at", "month", False)

    partitions = _partition_report(owner_conn, "audit.events")
    assert partitions.get("audit.events_default", ("",))[0] == "DEFAULT"
    for name, (_, enabled, forced, policies, triggers) in partitions.items():
        assert (enabled, forced) == (True, True), name
        assert policies >= 1, name
        assert triggers >= 1, name  # the append-only trigger is cloned onto each partition

    with owner_conn.transaction(force_rollback=True):
        start = _scalar(owner_conn, "select date_trunc('month', now() at time zone 'UTC') at time zone 'UTC'")
        monthly = f"audit.events_p{start.astimezone(UTC):%Y%m%d}"
        assert monthly in partitions
        for at in ("now()", "start", "end"):
            when = {
                "now()": _scalar(owner_conn, "select now()"),
                "start": start,
                "end": _scalar(
                    owner_conn, "select %s::timestamptz + interval '1 month' - interval '1 microsecond'", [start]
                ),
            }[at]
            assert _insert_audit_row(owner_conn, tenant_a.id, when) == monthly, at


def test_ensure_time_partitions_creates_missing_months_idempotently(
    owner_conn: psycopg.Connection[Any], tenant_a
) -> None:
    if _timescaledb_installed(owner_conn):
        pytest.skip("TimescaleDB is installed: chunks are created by TimescaleDB")
    ensure = "select pasar_internal.ensure_time_partitions('audit.events', %s, %s)"
    start, stop = datetime(2040, 1, 15, tzinfo=UTC), datetime(2040, 3, 2, tzinfo=UTC)
    with owner_conn.transaction(force_rollback=True):
        assert _scalar(owner_conn, ensure, [start, stop]) == 3  # January, February and March 2040
        assert _scalar(owner_conn, ensure, [start, stop]) == 0
        assert _scalar(owner_conn, "select pasar_internal.ensure_time_partitions('audit.events', now(), now())") == 0
        partitions = _partition_report(owner_conn, "audit.events")
        for month in ("20400101", "20400201", "20400301"):
            _, enabled, forced, policies, triggers = partitions[f"audit.events_p{month}"]
            assert (enabled, forced, policies >= 1, triggers >= 1) == (True, True, True, True), month
        assert _insert_audit_row(owner_conn, tenant_a.id, datetime(2040, 2, 29, 23, tzinfo=UTC)) == (
            "audit.events_p20400201"
        )


def test_ensure_time_partitions_copes_with_rows_in_the_default_partition(
    owner_conn: psycopg.Connection[Any], tenant_a
) -> None:
    if _timescaledb_installed(owner_conn):
        pytest.skip("TimescaleDB is installed: chunks are created by TimescaleDB")
    with owner_conn.transaction(force_rollback=True):
        assert _insert_audit_row(owner_conn, tenant_a.id, datetime(2045, 5, 10, tzinfo=UTC)) == "audit.events_default"
        created = _scalar(
            owner_conn,
            "select pasar_internal.ensure_time_partitions('audit.events', %s, %s)",
            [datetime(2045, 4, 1, tzinfo=UTC), datetime(2045, 7, 1, tzinfo=UTC)],
        )
        assert created >= 2  # April and June at least
        visible = "select count(*) from audit.events where tenant_id = %s and occurred_at = %s"
        assert _scalar(owner_conn, visible, [tenant_a.id, datetime(2045, 5, 10, tzinfo=UTC)]) == 1


def test_create_timeseries_table_makes_a_partitioned_table_with_rls(
    owner_conn: psycopg.Connection[Any], tenant_a, tenant_b
) -> None:
    if _timescaledb_installed(owner_conn):
        pytest.skip("TimescaleDB is installed: create_timeseries_table makes a hypertable")
    scratch = _scratch_schema()
    create = "select pasar_internal.create_timeseries_table(%s, %s, %s, %s, %s)::text"
    with owner_conn.transaction(force_rollback=True):  # the scratch schema and all in it go with the rollback
        owner_conn.execute(sql.SQL("create schema {}").format(sql.Identifier(scratch)))
        definition = "tenant_id uuid not null, at timestamptz not null, value integer not null"
        ticks = _scalar(owner_conn, create, [scratch, "ticks", definition, "at", "day"])
        assert ticks == f"{scratch}.ticks"
        plain = _scalar(owner_conn, create, [scratch, "plain", "at timestamptz not null, value integer", "at", "day"])

        rows = owner_conn.execute(
            "select c.oid::regclass::text, c.relkind, c.relrowsecurity, c.relforcerowsecurity, "
            "(select count(*) from pg_policy p where p.polrelid = c.oid) "
            "from pg_class c where c.relnamespace = %s::regnamespace and c.relkind in ('r', 'p')",
            [scratch],
        ).fetchall()
        relations = {name: tuple(rest) for name, *rest in rows}
        assert relations[ticks] == ("p", True, True, 1)
        assert relations[f"{ticks}_default"] == ("r", True, True, 1)
        assert relations[plain] == ("p", False, False, 0)  # no tenant_id column: shared data, no policy
        spec = owner_conn.execute(
            "select partition_unit, is_hypertable from pasar_internal.timeseries_tables where relation = %s::regclass",
            [ticks],
        ).fetchone()
        assert spec == ("day", False)

        days = [datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 3, tzinfo=UTC)]
        ensure = "select pasar_internal.ensure_time_partitions(%s::regclass, %s, %s)"
        assert _scalar(owner_conn, ensure, [ticks, *days]) == 2
        assert _scalar(owner_conn, ensure, [ticks, *days]) == 0
        for name, (_, enabled, forced, policies, _) in _partition_report(owner_conn, ticks).items():
            assert (enabled, forced, policies) == (True, True, 1), name

        # The policy works for the serving role.
        owner_conn.execute(sql.SQL("grant usage on schema {} to pasar_app").format(sql.Identifier(scratch)))
        owner_conn.execute(sql.SQL("grant select, insert on {} to pasar_app").format(sql.Identifier(scratch, "ticks")))
        table = sql.Identifier(scratch, "ticks")
        insert = sql.SQL("insert into {} (tenant_id, at, value) values (%s, %s, 1)").format(table)
        count = sql.SQL("select count(*) from {}").format(table)
        owner_conn.execute("set local role pasar_app")
        _set_tenant(owner_conn, tenant_a.id)
        owner_conn.execute(insert, [tenant_a.id, datetime(2030, 1, 2, 12, tzinfo=UTC)])
        owner_conn.execute(insert, [tenant_a.id, datetime(2031, 6, 1, tzinfo=UTC)])  # lands in the default partition
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=RLS_VIOLATION), owner_conn.transaction():
            owner_conn.execute(insert, [tenant_b.id, datetime(2030, 1, 2, tzinfo=UTC)])
        assert _scalar(owner_conn, count) == 2
        _set_tenant(owner_conn, tenant_b.id)
        assert _scalar(owner_conn, count) == 0
        _set_tenant(owner_conn, "")
        assert _scalar(owner_conn, count) == 0
        owner_conn.execute("reset role")


# 9. Source grep: the tenant is only ever set per transaction, in pasar/db/pool.py ---------------------------

SOURCE_DIRS = ("pasar", "api", "orchestration", "dbt_project")
SOURCE_SUFFIXES = {".py", ".sql"}
SESSION_SET = re.compile(r"\bset\s+(?:session\s+)?[\"']?app\.", re.IGNORECASE)
SET_CONFIG = re.compile(r"\bset_config\s*\(", re.IGNORECASE)


def _call_arguments(text: str, start: int) -> list[str]:
    """The top-level, comma-separated arguments of a call whose '(' ends just before start."""
    depth = 0
    current: list[str] = []
    arguments: list[str] = []
    for char in text[start:]:
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                break
            depth -= 1
        if char == "," and depth == 0:
            arguments.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    arguments.append("".join(current).strip())
    return arguments


def _tenant_setting_problems(text: str) -> tuple[list[str], bool]:
    """(session-level or non-local app.* settings, whether app.tenant_id is set at all)."""
    problems = [match.group(0) for match in SESSION_SET.finditer(text)]
    sets_tenant = False
    for match in SET_CONFIG.finditer(text):
        arguments = _call_arguments(text, match.end())
        if "app." not in arguments[0]:
            continue
        sets_tenant = sets_tenant or "app.tenant_id" in arguments[0]
        if len(arguments) != 3 or arguments[2].lower() != "true":
            problems.append(text[match.start() : match.end()] + ", ".join(arguments) + ")")
    return problems, sets_tenant


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("cur.execute(\"SET app.tenant_id = '1'\")", True),
        ('"set session app.tenant_id to %s"', True),
        ("\"select set_config('app.tenant_id', %s, false)\"", True),
        ("\"select set_config('app.tenant_id', %s)\"", True),
        ("\"select set_config('app.tenant_id', %s, true)\"", False),
        ("\"SET LOCAL app.tenant_id = '1'\"", False),
        ("\"select current_setting('app.tenant_id', true)\"", False),
        ("\"select set_config('statement_timeout', '1s', false)\"", False),
    ],
)
def test_tenant_setting_detector(source: str, flagged: bool) -> None:
    problems, _ = _tenant_setting_problems(source)
    assert bool(problems) is flagged, problems


def test_no_session_level_tenant_setting_in_sources() -> None:
    scanned, problems, setters = [], [], set()
    for directory in SOURCE_DIRS:
        root = REPO / directory
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.suffix not in SOURCE_SUFFIXES or not path.is_file():
                continue
            relative = path.relative_to(REPO).as_posix()
            scanned.append(relative)
            found, sets_tenant = _tenant_setting_problems(path.read_text(encoding="utf-8"))
            problems += [f"{relative}: {problem}" for problem in found]
            if sets_tenant:
                setters.add(relative)
    assert "pasar/db/pool.py" in scanned
    assert problems == []
    assert setters == {"pasar/db/pool.py"}
