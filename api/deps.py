"""Request dependencies: credentials → Principal and rate limit (once per request) → tenant transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from redis.exceptions import RedisError

from api.runtime import Runtime
from pasar.db.pool import Conn, tenant_transaction
from pasar.errors import Forbidden, RateLimited, ServiceUnavailable, Unauthorized
from pasar.tenancy import service as tenancy
from pasar.tenancy.models import Principal, Role, Scope
from pasar.trading.service import Outbox

_bearer = HTTPBearer(auto_error=False, description="An access token from POST /v1/auth/token")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="A tenant or operator API key")


async def get_runtime(request: Request) -> Runtime:  # async: a plain def would hop to a worker thread
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def current_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The caller, from a Bearer token or an API key, within its request budget. One dependency rather than a
    chain: FastAPI's per-request cost grows with every node of a route's dependency tree."""
    runtime: Runtime = request.app.state.runtime
    if bearer is not None:
        principal = runtime.issuer.principal_from_access_token(bearer.credentials)
    elif api_key:
        principal = await runtime.authenticator.principal_from_key(api_key)
    else:
        raise Unauthorized("authentication required: a Bearer token or an X-API-Key header")
    request.state.principal = principal
    if principal.kind != "user":
        return principal
    try:
        wait = await runtime.limiter.acquire(await runtime.request_limits(principal))
    except RedisError as exc:
        # Redis down: reads fail open (counted), writes fail closed, so no write escapes its budget.
        if request.method not in SAFE_METHODS:
            raise ServiceUnavailable(
                "rate limiter unavailable; retry shortly", code="rate_limiter_unavailable"
            ) from exc
        request.app.state.metrics.rate_limit_fail_open.inc()
        return principal
    if wait > 0:
        raise RateLimited("rate limit exceeded", retry_after=wait)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def tenant_connection(request: Request, principal: CurrentPrincipal) -> AsyncIterator[Conn]:
    """The request's transaction: commits when the endpoint returns, before the response is sent; then the
    request's stream events (if any) are published, so nothing uncommitted is ever announced."""
    if principal.kind != "user":
        raise Forbidden("this endpoint is for tenant users", code="tenant_principal_required")
    runtime: Runtime = request.app.state.runtime
    opening = tenancy.PrincipalCheck(principal)
    async with tenant_transaction(principal, database=runtime.database, opening=opening) as conn:
        yield conn
    box: Outbox | None = getattr(request.state, "outbox", None)
    if box is not None and box.events:
        assert principal.tenant_id is not None
        await runtime.stream.publish(principal.tenant_id, box.events)


TenantConn = Annotated[Conn, Depends(tenant_connection, scope="function")]


async def operator_connection(request: Request, principal: CurrentPrincipal) -> AsyncIterator[Conn]:
    if principal.kind != "operator":
        raise Forbidden("this endpoint is for platform operators", code="operator_required")
    runtime: Runtime = request.app.state.runtime
    async with runtime.database.untenanted_transaction() as conn:
        yield conn


OperatorConn = Annotated[Conn, Depends(operator_connection, scope="function")]


def require(*roles: Role, scope: Scope = Scope.read) -> Callable[[Principal], Awaitable[None]]:
    """A route's authorization: the caller's role is one of ``roles`` and its credential carries ``scope``."""

    async def check(principal: CurrentPrincipal) -> None:
        if principal.kind != "user" or principal.role not in roles:
            raise Forbidden(f"requires the role {' or '.join(role.value for role in roles)}")
        if scope not in principal.scopes:
            raise Forbidden(f"this credential lacks the {scope.value!r} scope", code="insufficient_scope")

    return check


ANY_ROLE = tuple(Role)
