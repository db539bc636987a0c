"""All SQL of usage: events are inserted by the API (as pasar_app, per tenant) and rolled up by ingestion
(as pasar_etl, across tenants)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pasar.db.pool import Conn
from pasar.usage.models import UsageEvent


async def insert_events(conn: Conn, events: Sequence[UsageEvent]) -> None:
    """One statement for the whole batch (arrays unnested server-side, not a row per execution); duplicates (same
    tenant, key and time) are dropped by the primary key."""
    if not events:
        return
    await conn.execute(
        "insert into usage.events (tenant_id, ts, idempotency_key, kind, quantity, cost, details) "
        "select * from unnest(%s::uuid[], %s::timestamptz[], %s::text[], %s::text[], %s::int8[], %s::int8[], "
        "%s::jsonb[]) on conflict do nothing",
        [
            [e.tenant_id for e in events],
            [e.ts for e in events],
            [e.idempotency_key for e in events],
            [e.kind.value for e in events],
            [e.quantity for e in events],
            [e.cost for e in events],
            [Jsonb(e.details) for e in events],
        ],
    )


def rollup_day(conn: psycopg.Connection[Any], day: date) -> int:
    """Recompute one day of usage.daily from usage.events (idempotent). A key counts once per tenant and kind."""
    conn.execute("delete from usage.daily where day = %s", [day])
    cur = conn.execute(
        """
        insert into usage.daily (tenant_id, day, kind, events, quantity, cost)
        select tenant_id, %(day)s, kind, count(*), sum(quantity), sum(cost)
        from (
            select distinct on (tenant_id, kind, idempotency_key) tenant_id, kind, quantity, cost
            from usage.events
            where ts >= %(day)s::date::timestamptz at time zone 'UTC'
              and ts < (%(day)s::date + 1)::timestamptz at time zone 'UTC'
            order by tenant_id, kind, idempotency_key, ts
        ) unique_events
        group by tenant_id, kind
        """,
        {"day": day},
    )
    return max(cur.rowcount, 0)


def daily_totals(conn: psycopg.Connection[Any], day: date) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    cur.execute("select tenant_id, kind, events, quantity, cost from usage.daily where day = %s order by 1, 2", [day])
    return cur.fetchall()
