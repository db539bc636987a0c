"""The live stream ``WS /v1/stream``: per-tenant order, fill and position events, bars of subscribed symbols, and the
fan-out through Redis pub/sub that lets several API processes serve one tenant.

Events are published after their transaction commits and before the HTTP answer is sent, so once a POST has
returned, its events are on their way: a tenant's stream that then sees its *own* next event first has provably not
been sent the other tenant's earlier ones (Redis delivers one publisher's messages in order).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from tests.api.test_trading import MINUTE, T0, buy, deposit, listed, load_bars
from tests.conftest import RedisServer

Event = dict[str, Any]


def access_token(client: TestClient, tenant: Any) -> str:
    response = client.post("/v1/auth/token", json={"api_key": tenant.key})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@contextmanager
def stream(client: TestClient, tenant: Any) -> Iterator[WebSocketTestSession]:
    with client.websocket_connect(f"/v1/stream?access_token={access_token(client, tenant)}") as ws:
        hello = receive(ws)
        assert hello == {"type": "hello", "data": {"tenant_id": tenant.id}}
        yield ws


def receive(ws: WebSocketTestSession, timeout: float = 5.0) -> Event:
    """The next message, or TimeoutError (the test client's own receive() would wait for ever)."""

    async def next_message() -> Any:
        with anyio.fail_after(timeout):
            return await ws._send_rx.receive()

    message = ws.portal.call(next_message)
    ws._raise_on_close(message)
    event: Event = json.loads(message["text"])
    return event


def receive_until(ws: WebSocketTestSession, done: Callable[[Event], bool], timeout: float = 5.0) -> list[Event]:
    """Messages up to and including the first that ``done`` accepts."""
    deadline = time.monotonic() + timeout
    seen: list[Event] = []
    while True:
        seen.append(receive(ws, max(0.01, deadline - time.monotonic())))
        if done(seen[-1]):
            return seen


def is_order(order_id: str, status: str | None = None) -> Callable[[Event], bool]:
    def check(event: Event) -> bool:
        return bool(
            event["type"] == "order" and event["data"]["id"] == order_id and status in (None, event["data"]["status"])
        )

    return check


def whose(events: list[Event]) -> set[str]:
    """The order ids and symbols the events are about."""
    return {event["data"].get("id") or event["data"].get("order_id") or event["data"]["symbol"] for event in events} | {
        event["data"]["symbol"] for event in events
    }


def test_own_orders_fills_and_positions_arrive_in_order(client: TestClient, urls: DatabaseUrls, tenant_a: Any) -> None:
    symbol = listed(urls, close=1000)
    deposit(client, tenant_a, 5_000_000)
    with stream(client, tenant_a) as ws:
        order = buy(client, tenant_a, symbol, 1000)
        events = receive_until(ws, is_order(order["id"]))
        assert [event["type"] for event in events] == ["fill", "position", "order"]
        fill, position, update = (event["data"] for event in events)
        assert fill["order_id"] == order["id"] and fill["symbol"] == symbol
        assert (fill["quantity"], fill["price"], fill["commission"], fill["tax"]) == ("1000", "1005", 1508, 0)
        assert position == {"symbol": symbol, "quantity": "1000", "avg_cost": "1005", "realized_pnl": 0}
        assert update == order  # the same document the POST answered

        resting = buy(client, tenant_a, symbol, 100, type="limit", limit_price="950", time_in_force="gtc")
        assert receive(ws) == {"type": "order", "data": resting}
        cancelled = client.delete(f"/v1/orders/{resting['id']}", headers=tenant_a.headers).json()
        assert receive(ws) == {"type": "order", "data": cancelled}


def test_another_tenants_stream_receives_nothing_of_it(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, tenant_b: Any
) -> None:
    a_symbol, b_symbol = listed(urls), listed(urls)
    for tenant in (tenant_a, tenant_b):
        deposit(client, tenant, 5_000_000)
    with stream(client, tenant_a) as ws_a, stream(client, tenant_b) as ws_b:
        a_order = buy(client, tenant_a, a_symbol, 100)
        b_order = buy(client, tenant_b, b_symbol, 200)
        b_events = receive_until(ws_b, is_order(b_order["id"]))
        assert whose(b_events) == {b_order["id"], b_symbol}  # B's own events first: none of A's came before them
        a_events = receive_until(ws_a, is_order(a_order["id"]))
        assert whose(a_events) == {a_order["id"], a_symbol}
        kill = client.post("/v1/risk/kill-switch", json={"enabled": True, "reason": "b"}, headers=tenant_b.headers)
        assert kill.status_code == 200
        assert receive(ws_b)["type"] == "risk"
        with pytest.raises(TimeoutError):
            receive(ws_a, timeout=0.5)


def test_subscribed_symbols_get_their_bars(client: TestClient, urls: DatabaseUrls, tenant_a: Any) -> None:
    symbol = listed(urls, close=1000)
    with stream(client, tenant_a) as ws:
        ws.send_json({"action": "subscribe", "symbols": [symbol.lower(), "NOSUCH9"]})
        assert receive(ws) == {"type": "subscribed", "data": {"symbols": sorted([symbol, "NOSUCH9"])}}
        bar = receive(ws, timeout=5)
        assert bar["type"] == "bar"
        assert (bar["data"]["symbol"], bar["data"]["ts"], bar["data"]["close"]) == (
            symbol,
            "2032-03-01 02:00:00+00:00",
            "1000",
        )
        load_bars(urls, symbol, [(T0 + MINUTE, 1000, 1010, 995, 1005, 10_000)])
        newer = receive(ws, timeout=5)
        assert newer["type"] == "bar" and newer["data"]["close"] == "1005" and newer["data"]["ts"] > bar["data"]["ts"]
        ws.send_json({"action": "unsubscribe", "symbols": [symbol]})
        assert receive(ws) == {"type": "subscribed", "data": {"symbols": ["NOSUCH9"]}}
        ws.send_json({"hello": "?"})
        assert receive(ws)["type"] == "error"


@pytest.mark.parametrize("query", ["?access_token=not-a-token", "", "?access_token="])
def test_a_bad_or_missing_token_is_closed_with_4401(client: TestClient, query: str) -> None:
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(f"/v1/stream{query}"):
        pass
    assert closed.value.code == 4401


def test_a_revoked_key_cannot_open_the_stream(client: TestClient, tenant_a: Any) -> None:
    key_id = client.get("/v1/api-keys", headers=tenant_a.headers).json()["items"][0]["id"]
    other = client.post("/v1/api-keys", json={"name": "spare"}, headers=tenant_a.headers).json()["secret"]
    assert client.delete(f"/v1/api-keys/{key_id}", headers={"X-API-Key": other}).status_code == 204
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/v1/stream", headers={"X-API-Key": tenant_a.key}),
    ):
        pass
    assert closed.value.code == 4401


def _listeners(server: RedisServer) -> int:
    """Redis connections subscribed to a pattern: one per running app's stream listener."""
    with redis.Redis.from_url(server.url) as connection:
        return sum(1 for client in connection.client_list() if int(client.get("psub", 0)) > 0)


def test_events_fan_out_through_redis_to_another_api_process(
    redis_client: TestClient,
    redis_server: RedisServer,
    settings: Settings,
    urls: DatabaseUrls,
    tenant_a: Any,
    tenant_b: Any,
) -> None:
    """Two app instances on one Redis stand for two API processes: an order placed through the first reaches a
    stream served by the second; the other tenant's stream on the second gets none of it."""
    symbol, b_symbol = listed(urls), listed(urls)
    for tenant in (tenant_a, tenant_b):
        deposit(redis_client, tenant, 5_000_000)
    before = _listeners(redis_server)
    second_settings = settings.model_copy(update={"redis_url": SecretStr(redis_server.url)})
    with TestClient(create_app(second_settings)) as second:
        deadline = time.monotonic() + 5
        while _listeners(redis_server) <= before:  # the second process's listener has subscribed
            assert time.monotonic() < deadline, "the second app never subscribed to the stream channels"
            time.sleep(0.02)
        with stream(second, tenant_a) as ws_a, stream(second, tenant_b) as ws_b, stream(redis_client, tenant_a) as same:
            order = buy(redis_client, tenant_a, symbol, 300)  # through the FIRST process
            events = receive_until(ws_a, is_order(order["id"]))
            assert [event["type"] for event in events] == ["fill", "position", "order"]
            assert events[-1]["data"] == order
            assert receive_until(same, is_order(order["id"]))[-1]["data"] == order  # and on the first one too
            mine = buy(redis_client, tenant_b, b_symbol, 100)
            assert whose(receive_until(ws_b, is_order(mine["id"]))) == {mine["id"], b_symbol}
