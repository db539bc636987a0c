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
