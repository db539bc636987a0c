"""Request ids, JSON logs, Prometheus metrics and the request body limit, as one pure-ASGI middleware
(cheaper than stacking BaseHTTPMiddleware layers on the hot path)."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from pasar.request_context import set_request_id
from pasar.usage.models import UsageEvent, UsageKind

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
access_log = logging.getLogger("pasar.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our access log replaces it


class PoolCollector(Collector):
    def __init__(self) -> None:
        self.pool: AsyncConnectionPool[Any] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.pool is None:
            return
        stats = self.pool.get_stats()
        for key, help_text in (
            ("pool_size", "Connections in the pool"),
            ("pool_available", "Idle connections"),
            ("requests_waiting", "Requests waiting for a connection"),
        ):
            yield GaugeMetricFamily(f"pasar_db_{key}", help_text, value=stats.get(key, 0))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pasar_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.errors = Counter("pasar_http_errors", "HTTP 5xx responses", ["route"], registry=self.registry)
        self.latency = Histogram(
            "pasar_http_request_duration_seconds",
            "Request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.rate_limit_fail_open = Counter(
            "pasar_rate_limit_fail_open",
            "Reads let through while the rate limiter was unreachable",
            registry=self.registry,
        )
        self.pool = PoolCollector()
        self.registry.register(self.pool)


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        set_request_id(request_id)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            too_large, receive = await self._limit_body(scope, receive)
            if too_large:
                response = error_response(
                    413, "payload_too_large", f"request bodies are limited to {self.max_body_bytes} bytes"
                )
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            if status >= 500:
                self.metrics.errors.labels(route).inc()
            principal = scope.get("state", {}).get("principal")
            if principal is not None and principal.tenant_id is not None:
                scope["app"].state.runtime.usage.record(
                    UsageEvent(
                        tenant_id=principal.tenant_id,
                        kind=UsageKind.api_request,
                        quantity=1,
                        ts=datetime.now(UTC),
                        idempotency_key=request_id,
                        details={"route": route, "status": status},
                    )
                )
            access_log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": method,
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "tenant_id": None if principal is None else str(principal.tenant_id),
                    }
                },
            )

    async def _limit_body(self, scope: Scope, receive: Receive) -> tuple[bool, Receive]:
        declared = _header(scope, b"content-length")
        if declared is not None:
            return (not declared.isdigit() or int(declared) > self.max_body_bytes), receive
        if _header(scope, b"transfer-encoding") is None:
            return False, receive
        # Chunked body of unknown size: read it here, up to the limit, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return False, receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return True, receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        return False, replay


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
