"""tenant_transaction's opening: statements sent in the round trip of BEGIN and set_config, in that transaction."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from psycopg import AsyncCursor
from psycopg.rows import DictRow

from pasar.db.pool import Conn, Database, tenant_transaction
from pasar.db.urls import DatabaseUrls
from pasar.tenancy.models import Principal


class Probe:
    """An opening that reads the tenant setting and the transaction id, and may refuse after reading them."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.cursor: AsyncCursor[DictRow] | None = None
        self.row: dict[str, Any] | None = None

    async def send(self, conn: Conn) -> None:
        self.cursor = await conn.execute(
            "select current_setting('app.tenant_id', true) as tenant, txid_current() as txid"
        )

    async def check(self) -> None:
        assert self.cursor is not None
        self.row = await self.cursor.fetchone()
        if self.refuse:
            raise PermissionError("refused")


async def _run(app_url: str, tenant_id: UUID, probe: Probe) -> dict[str, Any]:
    database = Database(app_url, min_size=1, max_size=1)
    await database.open()
    try:
        seen: dict[str, Any] = {}
        try:
            async with tenant_transaction(Principal.system(tenant_id), database=database, opening=probe) as conn:
                cur = await conn.execute("select txid_current() as txid")
                seen["body"] = await cur.fetchone()
        except PermissionError:
            seen["refused"] = True
        async with database.pool.connection() as conn:  # the one connection, back in the pool
            cur = await conn.execute("select current_setting('app.tenant_id', true) as tenant")
            seen["after"] = await cur.fetchone()
            seen["status"] = conn.info.transaction_status.name
        return seen
    finally:
        await database.close()


def test_the_opening_runs_in_the_tenant_transaction_after_set_config(urls: DatabaseUrls, tenant_a: Any) -> None:
    probe = Probe()
    seen = asyncio.run(_run(urls.app, UUID(tenant_a.id), probe))
    assert probe.row is not None
    assert probe.row["tenant"] == tenant_a.id
    assert seen["body"]["txid"] == probe.row["txid"]  # the same transaction as the caller's statements
    assert seen["after"]["tenant"] in (None, "")  # set_config was local to the transaction
    assert seen["status"] == "IDLE"


def test_a_refusing_opening_rolls_back_before_the_body_runs(urls: DatabaseUrls, tenant_a: Any) -> None:
    probe = Probe(refuse=True)
    seen = asyncio.run(_run(urls.app, UUID(tenant_a.id), probe))
    assert seen.get("refused") is True
    assert "body" not in seen
    assert seen["after"]["tenant"] in (None, "")
    assert seen["status"] == "IDLE"
