"""All SQL of the audit log. Rows are only ever inserted: a trigger refuses UPDATE and DELETE."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from pasar.db.pool import Conn
from pasar.request_context import current_request_id
from pasar.tenancy.models import Principal


async def record(
    conn: Conn,
    principal: Principal,
    *,
    action: str,
    target_type: str,
    target_id: UUID | str,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "insert into audit.events (tenant_id, actor_type, actor_id, action, target_type, target_id, details, "
        "request_id) values (%s, %s, %s, %s, %s, %s, %s, %s)",
        [
            principal.tenant_id,
            principal.actor_type,
            principal.actor_id,
            action,
            target_type,
            str(target_id),
            Jsonb(details or {}),
            current_request_id(),
        ],
    )


async def list_events(conn: Conn, tenant_id: UUID, *, target_type: str, target_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "select occurred_at, actor_type, actor_id, action, details, request_id from audit.events "
        "where tenant_id = %s and target_type = %s and target_id = %s order by occurred_at, id",
        [tenant_id, target_type, target_id],
    )
    return await cur.fetchall()
