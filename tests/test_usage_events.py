"""The usage writer's batch insert, as pasar_app under row-level security: one statement per batch, a key counted
once, and a batch for one tenant cannot carry another tenant's events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID

import psycopg
import pytest

from pasar.db.pool import Database, tenant_transaction
from pasar.db.urls import DatabaseUrls
from pasar.tenancy.models import Principal
from pasar.usage.models import UsageEvent, UsageKind
from pasar.usage.repository import insert_events


def _event(tenant_id: UUID, key: str, ts: datetime, quantity: int = 1) -> UsageEvent:
    return UsageEvent(tenant_id, UsageKind.report, quantity, ts, key, cost=250, details={"key": key})


def _insert(urls: DatabaseUrls, tenant_id: UUID, events: list[UsageEvent]) -> None:
    async def run() -> None:
        database = Database(urls.app, min_size=1, max_size=1)
        await database.open()
        try:
            async with tenant_transaction(Principal.system(tenant_id), database=database) as conn:
                await insert_events(conn, events)
        finally:
            await database.close()

    asyncio.run(run())


def _stored(urls: DatabaseUrls, tenant_id: UUID) -> list[tuple[object, ...]]:
    with psycopg.connect(urls.owner) as conn:
        return conn.execute(
            "select idempotency_key, kind, quantity, cost, details from usage.events "
            "where tenant_id = %s and kind = 'report' order by idempotency_key",
            [tenant_id],
        ).fetchall()


def test_a_batch_is_stored_once_per_key(urls: DatabaseUrls, tenant_a) -> None:
    tenant = UUID(str(tenant_a.id))
    ts = datetime(2026, 11, 21, 3, tzinfo=UTC)
    batch = [_event(tenant, "r-1", ts), _event(tenant, "r-2", ts, 3), _event(tenant, "r-1", ts)]
    _insert(urls, tenant, batch)
    _insert(urls, tenant, batch[:1])  # a retried flush
    _insert(urls, tenant, [])
    assert _stored(urls, tenant) == [
        ("r-1", "report", 1, 250, {"key": "r-1"}),
        ("r-2", "report", 3, 250, {"key": "r-2"}),
    ]


def test_a_batch_cannot_write_another_tenants_events(urls: DatabaseUrls, tenant_a, tenant_b) -> None:
    ts = datetime(2026, 11, 21, 4, tzinfo=UTC)
    intruder = UUID(str(tenant_b.id))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the row-level security policy's WITH CHECK
        _insert(urls, UUID(str(tenant_a.id)), [_event(intruder, "planted", ts)])
    assert [row for row in _stored(urls, intruder) if row[0] == "planted"] == []
