"""The FastAPI application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import admin, analytics, api_keys, auth, compliance, health, market, signals, stream, trading, users
from api.errors import install_error_handlers
from api.observability import Metrics, ObservabilityMiddleware, configure_logging
from api.runtime import Runtime
from pasar.config import Settings, get_settings


def create_app(settings: Settings | None = None, *, serving_process: bool = False) -> FastAPI:
    """``serving_process``: the app is the process's one job (``pasar api``), so its startup also tunes the
    garbage collector for serving (see :func:`tune_gc_for_serving`)."""
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The model's libraries (MLflow, ONNX) are imported as it loads, in the background: frozen again after that.
        runtime = await Runtime.start(settings, after_model_load=tune_gc_for_serving if serving_process else None)
        app.state.runtime = runtime
        metrics.pool.pool = runtime.database.pool
        if serving_process:
            tune_gc_for_serving()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Pasar API",
        version="1.0.0",
        description="Multi-tenant AI trading data platform for the Indonesian market.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    install_error_handlers(app)
    for module in (health, auth, users, api_keys, admin, market, trading, stream, signals, analytics, compliance):
        app.include_router(module.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key", "X-Request-ID"],
        )
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    return app


def create_app_from_env() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (one app per worker process)."""
    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings, serving_process=True)


YOUNG_GENERATION_THRESHOLD = 10_000


def tune_gc_for_serving() -> None:
    """A started API process holds ~450k long-lived objects (modules, schemas, routes, pools) and makes short-lived
    ones for every request. With CPython's default threshold (a young collection every 700 allocations), the
    objects of the requests in flight survive young collections, get promoted, and soon trigger full collections
    that walk everything: ~150 ms each, several a minute under bench/orders' load, ~8 % of the process's CPU.
    So: freeze what startup made (full collections skip frozen objects) and collect the young generation every
    10,000 allocations, by which time most of a request's objects are gone."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, 10, 10)
