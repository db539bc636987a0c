"""The live stream: ``WS /v1/stream``. A tenant's order updates, fills and position changes, and new bars of the
symbols it subscribes to. Events are published after their transaction commits; with Redis every API process
receives every tenant's events through pub/sub, so a tenant's clients agree whichever process they reach."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from typing import Any
from uuid import UUID

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from redis.asyncio import Redis

from pasar.db.pool import tenant_transaction
from pasar.errors import DomainError, Forbidden, Unauthorized
from pasar.market import repository as market
from pasar.tenancy import service as tenancy
from pasar.tenancy.models import Principal
from pasar.trading import repository as trading

log = logging.getLogger("pasar.stream")
router = APIRouter(tags=["stream"])
CHANNEL_PREFIX = "pasar:stream:"
QUEUE_SIZE = 1_000


class StreamHub:
    """Fan-out of tenant events to the WebSocket clients of this process (and, with Redis, of every process)."""

    def __init__(self, redis: Redis | None) -> None:
        self._redis = redis
        self._queues: dict[UUID, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._redis is not None:
            self._listener = asyncio.create_task(self._listen(), name="stream-listener")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def publish(self, tenant_id: UUID, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        if self._redis is None:
            self._deliver(tenant_id, events)
            return
        await self._redis.publish(CHANNEL_PREFIX + str(tenant_id), json.dumps(events, default=str))

    def _deliver(self, tenant_id: UUID, events: list[dict[str, Any]]) -> None:
        for queue in list(self._queues.get(tenant_id, ())):
            for event in events:
                if queue.full():  # a client too slow to keep up loses the oldest event, not the process
                    queue.get_nowait()
                queue.put_nowait(event)

    async def _listen(self) -> None:
        assert self._redis is not None
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.psubscribe(CHANNEL_PREFIX + "*")
                    async for message in pubsub.listen():
                        if message.get("type") != "pmessage":
                            continue
                        channel = (
                            message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
                        )
                        self._deliver(UUID(channel.removeprefix(CHANNEL_PREFIX)), json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("stream listener lost Redis; retrying", exc_info=True)
                await asyncio.sleep(1)

    def subscribe(self, tenant_id: UUID) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._queues[tenant_id].add(queue)
        return queue

    def unsubscribe(self, tenant_id: UUID, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._queues[tenant_id].discard(queue)


async def _authenticate(websocket: WebSocket) -> Principal:
    runtime = websocket.app.state.runtime
    token = websocket.query_params.get("access_token")
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:]
    api_key = websocket.headers.get("x-api-key")
    if token:
        principal: Principal = runtime.issuer.principal_from_access_token(token)
    elif api_key:
        principal = await runtime.authenticator.principal_from_key(api_key)
    else:
        raise Unauthorized("authentication required")
    if principal.kind != "user":
        raise Forbidden("the stream is for tenant users")
    async with tenant_transaction(principal, database=runtime.database, opening=tenancy.PrincipalCheck(principal)):
        pass
    return principal


async def _bars_loop(websocket: WebSocket, symbols: set[str], out: asyncio.Queue[dict[str, Any]]) -> None:
    """New bars of the subscribed symbols, polled once a second (market data is shared, so any principal may)."""
    runtime = websocket.app.state.runtime
    principal: Principal = websocket.state.principal
    last_seen: dict[str, Any] = {}
    while True:
        if symbols:
            async with tenant_transaction(principal, database=runtime.database) as conn:
                for symbol in list(symbols):
                    instrument = await market.get_instrument(conn, symbol)
                    if instrument is None:
                        continue
                    bar = await trading.latest_bar(conn, instrument.id)
                    if bar is not None and last_seen.get(symbol) != bar["ts"]:
                        last_seen[symbol] = bar["ts"]
                        await out.put(
                            {"type": "bar", "data": json.loads(json.dumps({"symbol": symbol, **bar}, default=str))}
                        )
        await asyncio.sleep(1)


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    """Authenticate with ``?access_token=`` or an ``Authorization``/``X-API-Key`` header. Send
    ``{"action": "subscribe", "symbols": ["BBCA"]}`` for bars; order, fill and position events come unasked."""
    try:
        principal = await _authenticate(websocket)
    except DomainError as exc:
        await websocket.close(code=4401 if exc.status_code == 401 else 4403, reason=exc.message)
        return
    assert principal.tenant_id is not None
    websocket.state.principal = principal
    await websocket.accept()
    hub: StreamHub = websocket.app.state.runtime.stream
    queue = hub.subscribe(principal.tenant_id)
    symbols: set[str] = set()
    bars = asyncio.create_task(_bars_loop(websocket, symbols, queue))

    async def receive() -> None:
        while True:
            message = await websocket.receive_json()
            if isinstance(message, dict) and message.get("action") in ("subscribe", "unsubscribe"):
                wanted = {str(s).upper()[:32] for s in message.get("symbols", []) if isinstance(s, str)}
                if message["action"] == "subscribe":
                    symbols.update(list(wanted)[:100])
                else:
                    symbols.difference_update(wanted)
                await queue.put({"type": "subscribed", "data": {"symbols": sorted(symbols)}})
            else:
                await queue.put(
                    {"type": "error", "data": {"message": "send {'action': 'subscribe', 'symbols': [...]}"}}
                )

    receiver = asyncio.create_task(receive())
    try:
        await websocket.send_json({"type": "hello", "data": {"tenant_id": str(principal.tenant_id)}})
        while True:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                getter.cancel()
                break
            await websocket.send_json(getter.result())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.unsubscribe(principal.tenant_id, queue)
        for task in (bars, receiver):
            task.cancel()
        with contextlib.suppress(Exception):
            await websocket.close()
