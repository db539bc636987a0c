"""Per-tenant read-only database logins for BI tools (``pasar tenant analyst-login``, revoked by
``pasar tenant analyst-logout``).

Each login is a PostgreSQL LOGIN role, member of the group role ``pasar_analyst`` (NOLOGIN, NOBYPASSRLS: it may only
SELECT the analytics marts granted to it), and registered in ``tenancy.analyst_logins`` with its tenant. The mart
policies compare ``tenant_id`` with ``pasar_internal.current_tenant()``, which for an analyst login is the
registered tenant of ``session_user`` — so the login sees its own tenant's rows, whatever ``app.tenant_id`` it
sets. Created and revoked by the database owner (roles are the owner's business, never pasar_app's).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pasar.errors import NotFound

ANALYST_GROUP = "pasar_analyst"
CONNECTION_LIMIT = 10


@dataclass(frozen=True)
class AnalystLogin:
    tenant_id: UUID
    tenant_slug: str
    role_name: str
    password: str
    url: str

    def document(self) -> dict[str, Any]:
        return {
            "tenant_id": str(self.tenant_id),
            "tenant_slug": self.tenant_slug,
            "role": self.role_name,
            "password": self.password,
            "url": self.url,
            "schema": "analytics",
        }


@dataclass(frozen=True)
class RevokedLogins:
    tenant_id: UUID
    tenant_slug: str
    role_names: list[str]
    sessions_ended: int

    def document(self) -> dict[str, Any]:
        return {
            "tenant_id": str(self.tenant_id),
            "tenant_slug": self.tenant_slug,
            "revoked": self.role_names,
            "sessions_ended": self.sessions_ended,
        }


def resolve_tenant(conn: psycopg.Connection[Any], tenant: str) -> tuple[UUID, str]:
    """(id, slug) of the tenant named by slug or id (the owner sees every tenant)."""
    row = conn.execute(
        "select id, slug from tenancy.tenants where slug = %s or id::text = %s", [tenant.strip(), tenant.strip()]
    ).fetchone()
    if row is None:
        raise NotFound(f"no tenant {tenant!r}", code="tenant_not_found")
    return UUID(str(row[0])), str(row[1])


def _role_name(slug: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", slug.lower()).strip("_")[:32] or "tenant"
    return f"analyst_{base}_{secrets.token_hex(4)}"


def connection_url(owner_conninfo: str, role: str, password: str) -> str:
    """A postgresql:// URL to the owner's database as ``role`` (host, port and dbname of the owner's)."""
    params = conninfo_to_dict(owner_conninfo)
    host = str(params.get("host") or "127.0.0.1")
    port = str(params.get("port") or 5432)
    dbname = str(params.get("dbname") or "postgres")
    netloc_host = f"[{host}]" if ":" in host else host
    url = (
        f"postgresql://{quote(role, safe='')}:{quote(password, safe='')}@{netloc_host}:{port}/{quote(dbname, safe='')}"
    )
    sslmode = params.get("sslmode")
    return f"{url}?sslmode={quote(str(sslmode), safe='')}" if sslmode else url


def create_analyst_login(conn: psycopg.Connection[Any], owner_conninfo: str, tenant: str) -> AnalystLogin:
    """Create a login confined to ``tenant`` (slug or id). ``conn`` is an owner connection; the caller commits.
    The password is random, sent to the server only as a SCRAM verifier, and shown once."""
    tenant_id, slug = resolve_tenant(conn, tenant)
    role = _role_name(slug)
    password = secrets.token_urlsafe(24)
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
    conn.execute(
        sql.SQL(
            "create role {role} login nosuperuser nocreatedb nocreaterole noreplication nobypassrls inherit "
            "connection limit {limit} password {verifier} in role {group}"
        ).format(
            role=sql.Identifier(role),
            limit=sql.Literal(CONNECTION_LIMIT),
            verifier=sql.Literal(verifier),
            group=sql.Identifier(ANALYST_GROUP),
        )
    )
    # Read-only whatever the client asks for, and no runaway query holds the database.
    conn.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(sql.Identifier(role)))
    conn.execute(sql.SQL("alter role {} set statement_timeout = '60s'").format(sql.Identifier(role)))
    conn.execute("insert into tenancy.analyst_logins (role_name, tenant_id) values (%s, %s)", [role, tenant_id])
    return AnalystLogin(tenant_id, slug, role, password, connection_url(owner_conninfo, role, password))


def revoke_analyst_logins(conn: psycopg.Connection[Any], tenant: str, *, role_name: str | None = None) -> RevokedLogins:
    """Revoke the analyst logins of ``tenant`` (slug or id), or only ``role_name``: unregister and drop each role in
    one transaction, then end the sessions still open as it. ``conn`` is an owner connection outside a transaction
    (this commits: the sessions may only be ended once their role is gone, or they could reconnect in between)."""
    with conn.transaction():
        tenant_id, slug = resolve_tenant(conn, tenant)
        rows = conn.execute(
            "select l.role_name, r.oid from tenancy.analyst_logins as l left join pg_roles as r on r.rolname = "
            "l.role_name where l.tenant_id = %s and (%s::text is null or l.role_name = %s) order by l.role_name "
            "for update of l",
            [tenant_id, role_name, role_name],
        ).fetchall()
        if role_name is not None and not rows:
            raise NotFound(f"tenant {slug} has no analyst login {role_name!r}", code="analyst_login_not_found")
        for role, _ in rows:
            conn.execute("delete from tenancy.analyst_logins where role_name = %s", [role])
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))
    role_ids = [oid for _, oid in rows if oid is not None]
    ended = conn.execute(
        "select count(*) filter (where pg_terminate_backend(pid)) from pg_stat_activity "
        "where usesysid = any(%s::oid[])",
        [role_ids],
    ).fetchone()
    conn.commit()
    return RevokedLogins(tenant_id, slug, [str(role) for role, _ in rows], int(ended[0]) if ended else 0)
