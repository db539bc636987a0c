"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import admin, analytics, api_keys, auth, compliance, health, market, signals, stream, trading, users
from api.errors import install_error_handlers
from api.observability import Metrics, ObservabilityMiddleware, configure_logging
from api.runtime import Runtime
from pasar.config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings)
        app.state.runtime = runtime
        metrics.pool.pool = runtime.database.pool
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
    return create_app(settings)
