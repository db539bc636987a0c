"""All SQL of the signal log ``ai.signals`` (tenant-scoped by RLS: every read and write runs in the caller's tenant
transaction). The signal's inputs (instruments, stored series, latest bars) are read by :mod:`pasar.market.repository`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from pasar.db.pool import Conn

__all__ = ["SIGNAL_COLUMNS", "get_signal", "insert_signals"]

SIGNAL_COLUMNS = (
    "id", "symbol", "instrument_id", "timeframe", "score", "direction", "model_name", "model_version", "feature_ts",
    "features", "contributions", "actor_type", "actor_id", "request_id", "created_at",
)  # fmt: skip
_INSERTED = SIGNAL_COLUMNS[:-1]  # created_at is the database's now()
_JSON = frozenset({"features", "contributions"})
_TYPES = {
    "id": "uuid", "symbol": "text", "instrument_id": "int4", "timeframe": "text", "score": "float8",
    "direction": "text", "model_name": "text", "model_version": "int4", "feature_ts": "timestamptz",
    "features": "jsonb", "contributions": "jsonb", "actor_type": "text", "actor_id": "text", "request_id": "text",
}  # fmt: skip

_INSERT = sql.SQL(
    "insert into ai.signals (tenant_id, {}) select %(tenant_id)s, * from unnest({}) returning id, created_at"
).format(
    sql.SQL(", ").join(map(sql.Identifier, _INSERTED)),
    sql.SQL(", ").join(
        sql.SQL("{}::{}[]").format(sql.Placeholder(column), sql.SQL(_TYPES[column])) for column in _INSERTED
    ),
)
_INSERT_ONE = sql.SQL(
    "insert into ai.signals (tenant_id, {}) values (%(tenant_id)s, {}) returning id, created_at"
).format(
    sql.SQL(", ").join(map(sql.Identifier, _INSERTED)),
    sql.SQL(", ").join(sql.Placeholder(column) for column in _INSERTED),
)
_SELECT = sql.SQL("select {} from ai.signals where id = %s").format(
    sql.SQL(", ").join(map(sql.Identifier, SIGNAL_COLUMNS))
)


async def insert_signals(conn: Conn, tenant_id: UUID, rows: Sequence[dict[str, Any]]) -> dict[UUID, Any]:
    """Append ``rows`` (each with every column of :data:`SIGNAL_COLUMNS` but ``created_at``; ``id`` chosen by the
    caller) to the tenant's signal log in one statement; ``{id: created_at}``."""
    if not rows:
        return {}
    if len(rows) == 1:  # the usual case (GET /v1/signals/{symbol}): no arrays to build
        (row,) = rows
        one = {
            column: Jsonb(row[column]) if column in _JSON and row[column] is not None else row[column]
            for column in _INSERTED
        }
        cur = await conn.execute(_INSERT_ONE, {"tenant_id": tenant_id, **one})
        return {inserted["id"]: inserted["created_at"] for inserted in await cur.fetchall()}
    params: dict[str, Any] = {"tenant_id": tenant_id}
    for column in _INSERTED:
        params[column] = [
            Jsonb(row[column]) if column in _JSON and row[column] is not None else row[column] for row in rows
        ]
    cur = await conn.execute(_INSERT, params)
    return {row["id"]: row["created_at"] for row in await cur.fetchall()}


async def get_signal(conn: Conn, signal_id: UUID) -> dict[str, Any] | None:
    """One logged signal of the current tenant (RLS hides every other tenant's), or None."""
    cur = await conn.execute(_SELECT, [signal_id])
    return await cur.fetchone()
