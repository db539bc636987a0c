"""Durability of an order: the database connection dies in the middle of POST /v1/orders.

A repository function is wrapped so that the request stops *inside* its transaction (the order row, and at later
stops the fill and position, are written but not committed); the test then kills that backend with
``pg_terminate_backend``, as a database restart or failover would, and lets the request go on. The request must answer
503 with the ``database_unavailable`` envelope, leave nothing half-written, and the retry with the same
Idempotency-Key must execute exactly once, on the same (recovered) app.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.rows import dict_row

from api.app import create_app
from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from pasar.trading import repository
from tests.api.test_trading import buy_cash, deposit, headers_with, listed


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    """An app of its own: the connection this test kills belongs to its pool only."""
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def owner(urls: DatabaseUrls) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(urls.owner, autocommit=True, row_factory=dict_row) as conn:
        yield conn


class Stop:
    """Wraps an async repository function: its first call reports its backend and waits to be released, before
    running (``after`` False) or once it has run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, *, after: bool) -> None:
        self.original = getattr(repository, name)
        self.after = after
        self.entered = threading.Event()
        self.release = threading.Event()
        self.backend_pid: int | None = None
        monkeypatch.setattr(repository, name, self)

    async def __call__(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.after:
            result = await self.original(conn, *args, **kwargs)
            await self._wait(conn)
            return result
        await self._wait(conn)
        return await self.original(conn, *args, **kwargs)

    async def _wait(self, conn: Any) -> None:
        if not self.entered.is_set():
            self.backend_pid = conn.info.backend_pid
            self.entered.set()
            await asyncio.to_thread(self.release.wait, 10)


TABLES = ("orders", "fills", "positions", "ledger_entries", "ledger_lines", "idempotency_keys")


def _state(owner: psycopg.Connection[dict[str, Any]], tenant_id: str) -> dict[str, Any]:
    """Row counts of the tenant's trading tables and order audit events, and its cash."""
    state: dict[str, Any] = {}
    for table in TABLES:
        query = sql.SQL("select count(*) as n from {} where tenant_id = %s").format(sql.Identifier("trading", table))
        row = owner.execute(query, [tenant_id]).fetchone()
        assert row is not None
        state[table] = row["n"]
    row = owner.execute(
        "select count(*) as n from audit.events where tenant_id = %s and target_type = 'order'", [tenant_id]
    ).fetchone()
    assert row is not None
    state["order_audit_events"] = row["n"]
    account = owner.execute("select cash from trading.accounts where tenant_id = %s", [tenant_id]).fetchone()
    state["cash"] = None if account is None else account["cash"]
    return state


@pytest.mark.parametrize(
    ("stop_at", "stop_after"),
    [
        ("record_order", False),  # the key claimed and the account locked, the order not written yet
        ("record_order", True),  # the order, fill, position, ledger entry, cash and stored answer written
    ],
)
def test_a_connection_killed_mid_order_answers_503_leaves_nothing_and_the_retry_executes_once(
    api: TestClient,
    urls: DatabaseUrls,
    tenant_a: Any,
    owner: psycopg.Connection[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    stop_at: str,
    stop_after: bool,
) -> None:
    symbol = listed(urls, close=1000)
    deposit(api, tenant_a, 5_000_000)
    before = _state(owner, tenant_a.id)
    body = {"symbol": symbol, "side": "buy", "quantity": 1000, "client_order_id": f"durable-{stop_at}-{stop_after}"}
    headers = headers_with(tenant_a, f"K-durable-{stop_at}-{stop_after}")
    stop = Stop(monkeypatch, stop_at, after=stop_after)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(api.post, "/v1/orders", json=body, headers=headers)
        assert stop.entered.wait(10), "the request never reached the stop"
        killed = owner.execute("select pg_terminate_backend(%s) as ok", [stop.backend_pid]).fetchone()
        assert killed is not None and killed["ok"]
        stop.release.set()
        response = pending.result(timeout=30)

    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "database_unavailable"
    assert response.headers["Retry-After"] == "1"
    assert _state(owner, tenant_a.id) == before  # no half-written order, fill, position, ledger entry or key

    monkeypatch.undo()
    retry = api.post("/v1/orders", json=body, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json()["status"] == "filled" and retry.json()["client_order_id"] == body["client_order_id"]
    again = api.post("/v1/orders", json=body, headers=headers)
    assert again.content == retry.content
    after = _state(owner, tenant_a.id)
    assert (after["orders"], after["fills"], after["idempotency_keys"]) == (1, 1, 1)
    assert after["ledger_entries"] == before["ledger_entries"] + 1
    assert after["cash"] == 5_000_000 - buy_cash(1000, 1005)
    (balance,) = owner.execute(
        "select coalesce(sum(amount), 0) as total from trading.ledger_lines where tenant_id = %s", [tenant_a.id]
    ).fetchall()
    assert balance["total"] == 0
