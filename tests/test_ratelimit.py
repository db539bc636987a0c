"""Rate limits: the GCRA limiters themselves (in-process and Redis), and the API's per-tenant and per-key budgets.

The API tests lower a fresh tenant's limits in its config before its first request: the runtime caches a
tenant's limits for 30 s from that first request on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from uuid import UUID, uuid4

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from pydantic import SecretStr
from redis.asyncio import Redis

from api.app import create_app
from pasar.config import Settings
from pasar.db.pool import Database, tenant_transaction
from pasar.db.urls import DatabaseUrls, database_urls
from pasar.ratelimit import Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter
from pasar.tenancy import service as tenancy
from pasar.tenancy.models import Plan, Principal
from tests.conftest import free_port

Scenario = Callable[[RateLimiter], Awaitable[None]]


# The limiters --------------------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def run_with_limiter(request: pytest.FixtureRequest) -> Callable[[Scenario], None]:
    """Runs an async scenario against a fresh limiter of either kind (Redis: flushed first)."""

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            if request.param == "memory":
                await scenario(MemoryRateLimiter())
                return
            redis = Redis.from_url(request.getfixturevalue("redis_server").url)
            try:
                await redis.flushdb()
                await scenario(RedisRateLimiter(redis))
            finally:
                await redis.aclose()

        asyncio.run(main())

    return run


def test_burst_up_to_the_limit_then_a_bounded_wait(run_with_limiter: Callable[[Scenario], None]) -> None:
    limit = Limit("k", 5, 1.0)

    async def scenario(limiter: RateLimiter) -> None:
        for attempt in range(5):
            assert await limiter.acquire([limit]) == 0.0, f"acquisition {attempt + 1} of 5 was refused"
        wait = await limiter.acquire([limit])
        assert 0.0 < wait <= 1.0

    run_with_limiter(scenario)


def test_passes_again_after_the_returned_wait(run_with_limiter: Callable[[Scenario], None]) -> None:
    limit = Limit("k", 5, 1.0)

    async def scenario(limiter: RateLimiter) -> None:
        for _ in range(5):
            assert await limiter.acquire([limit]) == 0.0
        wait = await limiter.acquire([limit])
        assert wait > 0
        await asyncio.sleep(wait + 0.02)  # Redis counts whole milliseconds
        assert await limiter.acquire([limit]) == 0.0
        assert await limiter.acquire([limit]) > 0, "waiting one interval frees exactly one request"

    run_with_limiter(scenario)


def test_dry_run_does_not_charge(run_with_limiter: Callable[[Scenario], None]) -> None:
    limit = Limit("k", 5, 1.0)

    async def scenario(limiter: RateLimiter) -> None:
        for _ in range(4):
            assert await limiter.acquire([limit]) == 0.0
        for _ in range(10):
            assert await limiter.acquire([limit], dry_run=True) == 0.0
        assert await limiter.acquire([limit]) == 0.0, "the fifth real acquisition must still pass"
        assert await limiter.acquire([limit], dry_run=True) > 0, "a dry run reports exhaustion"
        assert await limiter.acquire([limit]) > 0

    run_with_limiter(scenario)


def test_multi_key_call_with_one_exhausted_key_charges_none(run_with_limiter: Callable[[Scenario], None]) -> None:
    # Long windows, so the milliseconds the test takes never refill a slot.
    fresh, exhausted = Limit("fresh", 5, 60.0), Limit("exhausted", 5, 60.0)

    async def scenario(limiter: RateLimiter) -> None:
        for _ in range(5):
            assert await limiter.acquire([exhausted]) == 0.0
        for _ in range(3):
            assert await limiter.acquire([fresh, exhausted]) > 0
        for attempt in range(5):
            assert await limiter.acquire([fresh]) == 0.0, f"the refused calls charged 'fresh' ({attempt} left)"
        assert await limiter.acquire([fresh]) > 0

    run_with_limiter(scenario)


def test_two_redis_limiters_share_one_budget(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Two API processes, each with its own connection and limiter, draw from the same budget."""
    limit = Limit("shared", 5, 60.0)

    async def main() -> None:
        first, second = Redis.from_url(redis_server.url), Redis.from_url(redis_server.url)
        try:
            await first.flushdb()
            one, two = RedisRateLimiter(first), RedisRateLimiter(second)
            for limiter in (one, two, one, two, one):
                assert await limiter.acquire([limit]) == 0.0
            assert await two.acquire([limit]) > 0
            assert await one.acquire([limit]) > 0
        finally:
            await first.aclose()
            await second.aclose()

    asyncio.run(main())


# The API -------------------------------------------------------------------------------------------------------

SMALL_LIMITS = {"api_requests": "5/minute", "api_key_requests": "5/minute", "ai_requests": "5/minute"}


@pytest.fixture(scope="module")
def redis_api(settings: Settings, redis_server) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The API with its limits in the real Redis.

    Like conftest's ``redis_client``, but with the URL as a ``SecretStr``: ``model_copy(update=...)`` does not
    validate, and the runtime calls ``get_secret_value()`` on it.
    """
    redis_settings = settings.model_copy(update={"redis_url": SecretStr(redis_server.url)})
    with TestClient(create_app(redis_settings)) as test_client:
        yield test_client


@pytest.fixture(params=["redis", "in-process"])
def api(request: pytest.FixtureRequest) -> TestClient:
    client: TestClient = request.getfixturevalue("redis_api" if request.param == "redis" else "client")
    return client


def set_rate_limits(urls: DatabaseUrls, tenant_id: str, rate_limits: dict[str, str]) -> None:
    with psycopg.connect(urls.owner) as conn:
        updated = conn.execute(
            "update tenancy.tenants set config = jsonb_set(config, '{rate_limits}', %s::jsonb) where id = %s",
            (json.dumps(rate_limits), tenant_id),
        )
        assert updated.rowcount == 1


def second_key(settings: Settings, tenant_id: str, user_id: str) -> str:
    """Another API key of the tenant's admin, made without an API request (which would spend budget)."""

    async def make() -> str:
        database = Database(database_urls(settings).app, min_size=1, max_size=1)
        await database.open()
        try:
            principal = Principal.system(UUID(tenant_id))
            async with tenant_transaction(principal, database=database) as conn:
                issued = await tenancy.create_api_key(
                    conn,
                    principal,
                    name=f"second {uuid4().hex[:6]}",
                    user_id=UUID(user_id),
                    scopes=None,
                    expires_at=None,
                )
            return issued.secret
        finally:
            await database.close()

    return asyncio.run(make())


def assert_rate_limited(response: Response) -> int:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    retry_after = response.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit(), f"Retry-After {retry_after!r} is not whole seconds"
    assert int(retry_after) >= 1
    return int(retry_after)


def test_a_tenants_flood_is_throttled_and_never_throttles_another(
    api: TestClient, make_tenant, urls: DatabaseUrls, settings: Settings
) -> None:
    flooding, other = make_tenant(plan=Plan.basic), make_tenant(plan=Plan.basic)
    set_rate_limits(urls, flooding.id, SMALL_LIMITS)

    for attempt in range(5):
        response = api.get("/v1/me", headers=flooding.headers)
        assert response.status_code == 200, f"request {attempt + 1} of 5: {response.text}"
        assert api.get("/v1/me", headers=other.headers).status_code == 200

    retry_after = assert_rate_limited(api.get("/v1/me", headers=flooding.headers))
    assert retry_after <= 60, "a 5/minute budget frees a slot within the minute"

    # The tenant's budget spans all its credentials: a fresh key of the same tenant is throttled too.
    fresh_key = second_key(settings, flooding.id, flooding.admin_id)
    assert_rate_limited(api.get("/v1/me", headers={"X-API-Key": fresh_key}))

    for _ in range(10):
        assert api.get("/v1/me", headers=other.headers).status_code == 200


def test_one_keys_budget_does_not_throttle_another_key(
    api: TestClient, make_tenant, urls: DatabaseUrls, settings: Settings
) -> None:
    tenant = make_tenant(plan=Plan.basic)
    set_rate_limits(urls, tenant.id, {**SMALL_LIMITS, "api_requests": "1000/minute", "api_key_requests": "3/minute"})
    other_key = second_key(settings, tenant.id, tenant.admin_id)

    for attempt in range(3):
        response = api.get("/v1/me", headers=tenant.headers)
        assert response.status_code == 200, f"request {attempt + 1} of 3: {response.text}"
    assert_rate_limited(api.get("/v1/me", headers=tenant.headers))

    for _ in range(3):
        assert api.get("/v1/me", headers={"X-API-Key": other_key}).status_code == 200
    assert_rate_limited(api.get("/v1/me", headers={"X-API-Key": other_key}))


# Redis outage --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_down_api(settings: Settings) -> Iterator[TestClient]:
    """The API configured for a Redis that is not there (nothing listens on the port)."""
    dead = SecretStr(f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings.model_copy(update={"redis_url": dead}))) as test_client:
        yield test_client


def test_redis_outage_on_a_read_is_not_a_500(redis_down_api: TestClient, make_tenant) -> None:  # type: ignore[no-untyped-def]
    """Policy: with the limiter's Redis unreachable a read either passes (fail open) or gets a 503 envelope."""
    tenant = make_tenant()
    response = redis_down_api.get("/v1/me", headers=tenant.headers)
    assert response.status_code in (200, 503), response.text
    assert "Traceback" not in response.text
    if response.status_code == 200:
        assert response.json()["tenant"]["id"] == tenant.id
    else:
        assert set(response.json()["error"]) == {"code", "message", "details"}


def test_redis_outage_on_a_write_is_not_a_500(redis_down_api: TestClient, make_tenant) -> None:  # type: ignore[no-untyped-def]
    """Policy: a write either passes or gets a 503 envelope (never an unhandled error)."""
    tenant = make_tenant()
    response = redis_down_api.post("/v1/api-keys", headers=tenant.headers, json={"name": "during outage"})
    assert response.status_code in (201, 503), response.text
    assert "Traceback" not in response.text
    if response.status_code == 503:
        assert set(response.json()["error"]) == {"code", "message", "details"}
