"""All SQL of the analytics API: one allow-listed mart, paged, in the request's tenant transaction as pasar_app
(row-level security confines tenant marts to the tenant; the explicit tenant filter is defence in depth)."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from psycopg import sql

from pasar.analytics.models import FILTER_TYPES, MartSpec
from pasar.db.pool import Conn

SCHEMA = "analytics"


async def select_mart(
    conn: Conn,
    spec: MartSpec,
    tenant_id: UUID,
    *,
    filters: dict[str, Any],
    since: date | None,
    until: date | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    clauses: list[sql.Composable] = []
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if not spec.shared:
        clauses.append(sql.SQL("tenant_id = %(tenant_id)s"))
        params["tenant_id"] = tenant_id
    for name, value in sorted(filters.items()):
        clauses.append(
            sql.SQL("{column} = cast({value} as {type})").format(
                column=sql.Identifier(name), value=sql.Placeholder(name), type=sql.SQL(FILTER_TYPES[name])
            )
        )
        params[name] = value
    if spec.date_column is not None and since is not None:
        clauses.append(sql.SQL("{} >= %(since)s").format(sql.Identifier(spec.date_column)))
        params["since"] = since
    if spec.date_column is not None and until is not None:
        clauses.append(sql.SQL("{} < %(until)s").format(sql.Identifier(spec.date_column)))
        params["until"] = until
    where = sql.SQL(" where ") + sql.SQL(" and ").join(clauses) if clauses else sql.SQL("")
    query = sql.SQL("select * from {mart}{where} order by {order} limit %(limit)s offset %(offset)s").format(
        mart=sql.Identifier(SCHEMA, spec.name),
        where=where,
        order=sql.SQL(", ").join(map(sql.Identifier, spec.order_by)),
    )
    cur = await conn.execute(query, params)
    return await cur.fetchall()
