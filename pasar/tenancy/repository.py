"""All SQL of tenancy. Row-level security scopes every tenant query; the explicit tenant filters are defence
in depth. The ``auth_*`` and ``operator_*`` calls go through security-definer functions (see the migration)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncCursor, sql
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from pasar.db.pool import Conn
from pasar.tenancy.models import ApiKey, Tenant, TenantConfig, TenantWithConfig, User, config_document


def _columns(*names: str) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(name) for name in names)


_USER_COLUMNS = _columns(
    "id",
    "tenant_id",
    "username",
    "display_name",
    "role",
    "is_active",
    "created_at",
    "updated_at",
    "last_login_at",
)
_KEY_COLUMNS = _columns(
    "id", "tenant_id", "user_id", "name", "prefix", "scopes", "created_at", "expires_at", "revoked_at"
)
_TENANT_COLUMNS = _columns("id", "slug", "name", "plan", "status", "created_at", "config")


async def insert_tenant(
    conn: Conn, *, tenant_id: UUID, slug: str, name: str, plan: str, config: TenantConfig
) -> TenantWithConfig:
    cur = await conn.execute(
        sql.SQL(
            "insert into tenancy.tenants (id, slug, name, plan, config) values (%s, %s, %s, %s, %s) returning {}"
        ).format(_TENANT_COLUMNS),
        [tenant_id, slug, name, plan, Jsonb(config_document(config))],
    )
    return TenantWithConfig.model_validate(await cur.fetchone())


async def tenant_id_by_slug(conn: Conn, slug: str) -> UUID | None:
    cur = await conn.execute("select id from tenancy.tenants where slug = %s", [slug])
    row = await cur.fetchone()
    return None if row is None else UUID(str(row["id"]))


# Composed once, to bytes: these run on every request.
_GET_TENANT = sql.SQL("select {} from tenancy.tenants where id = %s").format(_TENANT_COLUMNS).as_bytes(None)
_GET_USER = (
    sql.SQL("select {} from tenancy.users where tenant_id = %s and id = %s").format(_USER_COLUMNS).as_bytes(None)
)


async def get_tenant(conn: Conn, tenant_id: UUID) -> TenantWithConfig | None:
    cur = await conn.execute(_GET_TENANT, [tenant_id])
    row = await cur.fetchone()
    return None if row is None else TenantWithConfig.model_validate(row)


async def get_user_and_tenant(conn: Conn, tenant_id: UUID, user_id: UUID) -> tuple[User, TenantWithConfig] | None:
    """The caller's user and tenant rows in one read."""
    cur = await conn.execute(_GET_USER_AND_TENANT, {"tenant_id": tenant_id, "user_id": user_id})
    row = await cur.fetchone()
    if row is None:
        return None
    return User.model_validate(row["user"]), TenantWithConfig.model_validate(row["tenant"])


_GET_USER_AND_TENANT = (
    b"select to_jsonb(u) - 'password_hash' as user, to_jsonb(t) as tenant "
    b"from tenancy.users u join tenancy.tenants t on t.id = u.tenant_id "
    b"where u.tenant_id = %(tenant_id)s and u.id = %(user_id)s"
)


_PRINCIPAL_STATE_SQL = """
    select t.status as tenant_status, u.is_active as user_active, u.role,
           (k.id is not null and k.revoked_at is null and (k.expires_at is null or k.expires_at > now()))
               as key_valid
    from tenancy.tenants t
    left join tenancy.users u on u.tenant_id = t.id and u.id = %(user_id)s
    left join tenancy.api_keys k on k.tenant_id = t.id and k.id = %(api_key_id)s
    where t.id = %(tenant_id)s
"""


async def send_principal_state(
    conn: Conn, *, tenant_id: UUID, user_id: UUID, api_key_id: UUID | None
) -> AsyncCursor[DictRow]:
    """What decides whether a principal may still act: tenant status, user status and role, key validity. Reads
    nothing, so that it can ride in a pipeline: its row is the returned cursor's ``fetchone()``."""
    return await conn.execute(
        _PRINCIPAL_STATE_SQL, {"tenant_id": tenant_id, "user_id": user_id, "api_key_id": api_key_id}
    )


async def principal_state(
    conn: Conn, *, tenant_id: UUID, user_id: UUID, api_key_id: UUID | None
) -> dict[str, Any] | None:
    cur = await send_principal_state(conn, tenant_id=tenant_id, user_id=user_id, api_key_id=api_key_id)
    return await cur.fetchone()


async def insert_user(
    conn: Conn, *, tenant_id: UUID, username: str, display_name: str, role: str, password_hash: str | None
) -> User:
    cur = await conn.execute(
        sql.SQL(
            "insert into tenancy.users (tenant_id, username, display_name, role, password_hash) "
            "values (%s, %s, %s, %s, %s) returning {}"
        ).format(_USER_COLUMNS),
        [tenant_id, username, display_name, role, password_hash],
    )
    return User.model_validate(await cur.fetchone())


async def get_user(conn: Conn, tenant_id: UUID, user_id: UUID) -> User | None:
    cur = await conn.execute(_GET_USER, [tenant_id, user_id])
    row = await cur.fetchone()
    return None if row is None else User.model_validate(row)


async def get_user_by_username(conn: Conn, tenant_id: UUID, username: str) -> User | None:
    cur = await conn.execute(
        sql.SQL("select {} from tenancy.users where tenant_id = %s and username = %s").format(_USER_COLUMNS),
        [tenant_id, username],
    )
    row = await cur.fetchone()
    return None if row is None else User.model_validate(row)


async def list_users(conn: Conn, tenant_id: UUID, *, limit: int, after: UUID | None) -> list[User]:
    cur = await conn.execute(
        sql.SQL(
            "select {} from tenancy.users where tenant_id = %s and (%s::uuid is null or id > %s) order by id limit %s"
        ).format(_USER_COLUMNS),
        [tenant_id, after, after, limit],
    )
    return [User.model_validate(row) for row in await cur.fetchall()]


async def update_user(conn: Conn, tenant_id: UUID, user_id: UUID, changes: dict[str, Any]) -> User | None:
    allowed = {"display_name", "role", "is_active", "password_hash"}
    if not changes.keys() <= allowed:
        raise ValueError(f"not updatable: {sorted(changes.keys() - allowed)}")
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column)) for column in sorted(changes)
    )
    cur = await conn.execute(
        sql.SQL(
            "update tenancy.users set {}, updated_at = now() "
            "where tenant_id = %(tenant_id)s and id = %(user_id)s returning {}"
        ).format(assignments, _USER_COLUMNS),
        {**changes, "tenant_id": tenant_id, "user_id": user_id},
    )
    row = await cur.fetchone()
    return None if row is None else User.model_validate(row)


async def touch_last_login(conn: Conn, tenant_id: UUID, user_id: UUID) -> None:
    await conn.execute(
        "update tenancy.users set last_login_at = now() where tenant_id = %s and id = %s",
        [tenant_id, user_id],
    )


async def insert_api_key(
    conn: Conn,
    *,
    tenant_id: UUID,
    user_id: UUID,
    name: str,
    prefix: str,
    key_hash: str,
    scopes: Sequence[str],
    expires_at: datetime | None,
) -> ApiKey:
    cur = await conn.execute(
        sql.SQL(
            "insert into tenancy.api_keys (tenant_id, user_id, name, prefix, key_hash, scopes, expires_at) "
            "values (%s, %s, %s, %s, %s, %s, %s) returning {}"
        ).format(_KEY_COLUMNS),
        [tenant_id, user_id, name, prefix, key_hash, list(scopes), expires_at],
    )
    return ApiKey.model_validate(await cur.fetchone())


async def list_api_keys(conn: Conn, tenant_id: UUID, *, user_id: UUID | None) -> list[ApiKey]:
    cur = await conn.execute(
        sql.SQL(
            "select {} from tenancy.api_keys where tenant_id = %s and (%s::uuid is null or user_id = %s) "
            "order by created_at, id"
        ).format(_KEY_COLUMNS),
        [tenant_id, user_id, user_id],
    )
    return [ApiKey.model_validate(row) for row in await cur.fetchall()]


async def get_api_key(conn: Conn, tenant_id: UUID, key_id: UUID) -> ApiKey | None:
    cur = await conn.execute(
        sql.SQL("select {} from tenancy.api_keys where tenant_id = %s and id = %s").format(_KEY_COLUMNS),
        [tenant_id, key_id],
    )
    row = await cur.fetchone()
    return None if row is None else ApiKey.model_validate(row)


async def revoke_api_keys(conn: Conn, tenant_id: UUID, *, key_id: UUID | None, user_id: UUID | None) -> int:
    cur = await conn.execute(
        "update tenancy.api_keys set revoked_at = now() where tenant_id = %s and revoked_at is null "
        "and (%s::uuid is null or id = %s) and (%s::uuid is null or user_id = %s)",
        [tenant_id, key_id, key_id, user_id, user_id],
    )
    return cur.rowcount


async def insert_refresh_token(
    conn: Conn,
    *,
    tenant_id: UUID,
    token_id: UUID,
    family_id: UUID,
    user_id: UUID,
    api_key_id: UUID | None,
    expires_at: datetime,
) -> None:
    await conn.execute(
        "insert into tenancy.refresh_tokens (tenant_id, id, family_id, user_id, api_key_id, expires_at) "
        "values (%s, %s, %s, %s, %s, %s)",
        [tenant_id, token_id, family_id, user_id, api_key_id, expires_at],
    )


async def use_refresh_token(conn: Conn, tenant_id: UUID, token_id: UUID) -> dict[str, Any] | None:
    """Marks the token used (rotation) and returns it as it was; locks it so two refreshes cannot both win."""
    cur = await conn.execute(
        """
        with current_token as (
            select * from tenancy.refresh_tokens where tenant_id = %s and id = %s for update
        ), marked as (
            update tenancy.refresh_tokens r set used_at = now()
            from current_token c where r.tenant_id = c.tenant_id and r.id = c.id and r.used_at is null
            returning r.id
        )
        select c.*, (select count(*) from marked) = 1 as first_use, now() as now from current_token c
        """,
        [tenant_id, token_id],
    )
    return await cur.fetchone()


async def revoke_refresh_tokens(
    conn: Conn,
    tenant_id: UUID,
    *,
    family_id: UUID | None = None,
    user_id: UUID | None = None,
    api_key_id: UUID | None = None,
) -> None:
    await conn.execute(
        "update tenancy.refresh_tokens set revoked_at = now() where tenant_id = %s and revoked_at is null "
        "and (%s::uuid is null or family_id = %s) and (%s::uuid is null or user_id = %s) "
        "and (%s::uuid is null or api_key_id = %s)",
        [tenant_id, family_id, family_id, user_id, user_id, api_key_id, api_key_id],
    )


# Cross-tenant lookups, through the security-definer functions of the migration.


async def auth_api_key(conn: Conn, prefix: str, key_hash: str) -> dict[str, Any] | None:
    cur = await conn.execute("select * from tenancy.auth_api_key(%s, %s)", [prefix, key_hash])
    return await cur.fetchone()


async def auth_login_candidates(conn: Conn, username: str, tenant_slug: str | None) -> list[dict[str, Any]]:
    cur = await conn.execute("select * from tenancy.auth_login_candidates(%s, %s)", [username, tenant_slug])
    return await cur.fetchall()


async def auth_operator_key(conn: Conn, prefix: str, key_hash: str) -> dict[str, Any] | None:
    cur = await conn.execute("select * from tenancy.auth_operator_key(%s, %s)", [prefix, key_hash])
    return await cur.fetchone()


async def insert_operator(conn: Conn, *, name: str, prefix: str, key_hash: str) -> UUID:
    cur = await conn.execute(
        "insert into tenancy.operators (name, prefix, key_hash) values (%s, %s, %s) returning id",
        [name, prefix, key_hash],
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row["id"]))


async def operator_list_tenants(conn: Conn, operator_id: UUID) -> list[Tenant]:
    cur = await conn.execute("select * from tenancy.operator_list_tenants(%s)", [operator_id])
    return [Tenant.model_validate(row) for row in await cur.fetchall()]


async def operator_set_tenant_status(
    conn: Conn, operator_id: UUID, tenant_id: UUID, status: str, reason: str, request_id: str | None
) -> Tenant | None:
    cur = await conn.execute(
        "select * from tenancy.operator_set_tenant_status(%s, %s, %s, %s, %s)",
        [operator_id, tenant_id, status, reason, request_id],
    )
    row = await cur.fetchone()
    return None if row is None else Tenant.model_validate(row)
