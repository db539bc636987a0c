"""What one API process holds for its lifetime: the pool, Redis, the limiter, the authenticator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from redis.asyncio import Redis

from api.stream import StreamHub
from pasar.config import Settings
from pasar.db.pool import Database, tenant_transaction
from pasar.db.urls import database_urls
from pasar.ratelimit import Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter
from pasar.secrets import jwt_secret
from pasar.signals.service import SignalCache
from pasar.tenancy import service as tenancy
from pasar.tenancy.credentials import TokenIssuer
from pasar.tenancy.models import Principal, parse_rate
from pasar.usage.writer import UsageWriter
from serving.predictor import Predictor

LIMITS_TTL_SECONDS = 30.0


@dataclass
class Runtime:
    settings: Settings
    database: Database
    redis: Redis | None
    limiter: RateLimiter
    issuer: TokenIssuer
    authenticator: tenancy.Authenticator
    usage: UsageWriter
    stream: StreamHub
    _limits: dict[UUID, tuple[float, tuple[int, int], tuple[int, int]]] = field(default_factory=dict)
    # The signal model, loaded in the background (the API answers 503 model_unavailable until it is).
    predictor: Predictor = field(default_factory=lambda: Predictor(None))
    signal_cache: SignalCache = field(default_factory=SignalCache)

    @classmethod
    async def start(cls, settings: Settings, *, after_model_load: Callable[[], None] | None = None) -> Runtime:
        """Everything a request needs, started; the champion model loads in the background, then
        ``after_model_load`` runs in that thread."""
        urls = await asyncio.to_thread(database_urls, settings)  # may start the embedded cluster
        database = Database(
            urls.app,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            timeout=settings.db_pool_timeout_seconds,
        )
        await database.open()
        redis = None
        if settings.redis_url is not None:
            # Short timeouts: a dead Redis must turn into a quick 503 or fail-open read, not a hung request.
            redis = Redis.from_url(
                settings.redis_url.get_secret_value(), socket_connect_timeout=0.5, socket_timeout=0.5
            )
        limiter: RateLimiter = MemoryRateLimiter() if redis is None else RedisRateLimiter(redis)
        issuer = TokenIssuer(
            secret=jwt_secret(settings),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl=settings.access_token_ttl_seconds,
            refresh_ttl=settings.refresh_token_ttl_seconds,
        )
        authenticator = tenancy.Authenticator(
            database=database,
            issuer=issuer,
            limiter=limiter,
            login_policy=tenancy.LoginPolicy(
                max_failures_per_user=settings.login_max_failures_per_user,
                max_failures_per_address=settings.login_max_failures_per_address,
                window_seconds=settings.login_failure_window_seconds,
            ),
        )
        usage = UsageWriter(database)
        await usage.start()
        stream = StreamHub(redis)
        await stream.start()
        predictor = Predictor.from_settings(settings)
        predictor.start(then=after_model_load)
        return cls(settings, database, redis, limiter, issuer, authenticator, usage, stream, predictor=predictor)

    async def stop(self) -> None:
        await self.stream.stop()
        await self.usage.stop()
        await self.database.close()
        if self.redis is not None:
            await self.redis.aclose()

    async def request_limits(self, principal: Principal) -> list[Limit]:
        """The tenant's and the credential's request budgets, from the tenant's config (cached briefly)."""
        assert principal.tenant_id is not None
        cached = self._limits.get(principal.tenant_id)
        if cached is None or cached[0] < time.monotonic():
            async with tenant_transaction(principal, database=self.database) as conn:
                config = await tenancy.tenant_config(conn, principal)
            cached = (
                time.monotonic() + LIMITS_TTL_SECONDS,
                parse_rate(config.rate_limits.api_requests),
                parse_rate(config.rate_limits.api_key_requests),
            )
            self._limits[principal.tenant_id] = cached
        _, (tenant_count, tenant_window), (key_count, key_window) = cached
        credential = principal.api_key_id or principal.subject_id
        return [
            Limit(f"api:tenant:{principal.tenant_id}", tenant_count, tenant_window),
            Limit(f"api:credential:{credential}", key_count, key_window),
        ]
