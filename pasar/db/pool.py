"""The pasar_app connection pool and the one code path that sets the tenant: ``tenant_transaction``.

Connections are autocommit so that a transaction issues a real BEGIN/COMMIT; the tenant is set with
``set_config('app.tenant_id', …, true)``, which is local to that transaction, so a connection goes back to the
pool with no tenant on it whatever happened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Protocol
from uuid import UUID

from psycopg import AsyncConnection, AsyncTransaction
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

Conn = AsyncConnection[DictRow]


class TenantScoped(Protocol):
    @property
    def tenant_id(self) -> UUID | None: ...


class Opening(Protocol):
    """Statements that ride in the round trip opening a tenant transaction (such as the principal's re-check):
    ``send`` queues them without reading anything, ``check`` reads their results once that round trip is done."""

    async def send(self, conn: Conn) -> None: ...

    async def check(self) -> None: ...


class NoTenantError(RuntimeError):
    """A tenant transaction was asked for a principal that belongs to no tenant."""


async def _configure(conn: AsyncConnection[Any]) -> None:
    # Fail fast instead of holding a pool slot forever on a stuck query.
    await conn.execute("set statement_timeout = '30s'")


class Database:
    def __init__(self, app_conninfo: str, *, min_size: int = 2, max_size: int = 10, timeout: float = 5.0) -> None:
        self.pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            app_conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row},
            configure=_configure,
            name="pasar_app",
        )

    async def open(self) -> None:
        await self.pool.open(wait=True)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def untenanted_transaction(self) -> AsyncIterator[Conn]:
        """A transaction with no tenant: RLS shows no tenant rows. For auth lookups and health checks."""
        async with self.pool.connection() as conn, conn.transaction():
            yield conn


@asynccontextmanager
async def tenant_transaction(
    principal: TenantScoped, *, database: Database, opening: Opening | None = None
) -> AsyncIterator[Conn]:
    """A real transaction on a pasar_app connection, scoped by row-level security to the principal's tenant.

    BEGIN, set_config and the ``opening`` statements go out in one pipeline: one round trip, not one each. The
    transaction is entered inside that pipeline and left outside it, so the caller's statements run as usual."""
    if principal.tenant_id is None:
        raise NoTenantError("this principal belongs to no tenant")
    async with database.pool.connection() as conn, AsyncExitStack() as transaction:
        async with conn.pipeline():
            await transaction.enter_async_context(AsyncTransaction(conn))
            await conn.execute("select set_config('app.tenant_id', %s, true)", [str(principal.tenant_id)])
            if opening is not None:
                await opening.send(conn)
        if opening is not None:
            await opening.check()
        yield conn
