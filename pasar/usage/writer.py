"""The buffered usage writer of an API process: ``record`` is O(1) and never touches the database on the
request path; a background task flushes batches, one transaction per tenant (row-level security applies to
the writes too). Events still buffered when the process dies are lost; duplicates are dropped by key."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from uuid import UUID

import psycopg
from psycopg_pool import PoolTimeout

from pasar.db.pool import Database, tenant_transaction
from pasar.tenancy.models import Principal
from pasar.usage import repository
from pasar.usage.models import UsageEvent

log = logging.getLogger("pasar.usage")


class UsageWriter:
    def __init__(
        self, database: Database, *, flush_interval: float = 1.0, max_batch: int = 2_000, max_buffer: int = 200_000
    ) -> None:
        self._database = database
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._buffer: deque[UsageEvent] = deque()
        self._max_buffer = max_buffer
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.dropped = 0  # events refused because the buffer was full (database down for long)
        self.written = 0

    def record(self, event: UsageEvent) -> None:
        if len(self._buffer) >= self._max_buffer:
            self.dropped += 1
            return
        self._buffer.append(event)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                await self.flush()
            except (psycopg.Error, PoolTimeout) as exc:
                log.warning("usage flush failed, will retry: %s", type(exc).__name__)

    async def flush(self) -> int:
        """Writes everything buffered now; on failure the unwritten events go back to the buffer."""
        async with self._flush_lock:
            taken: list[UsageEvent] = []
            while self._buffer:
                taken.append(self._buffer.popleft())
            by_tenant: dict[UUID, list[UsageEvent]] = defaultdict(list)
            for event in taken:
                by_tenant[event.tenant_id].append(event)
            written = 0
            try:
                for tenant_id, events in by_tenant.items():
                    while events:
                        batch = events[: self._max_batch]
                        async with tenant_transaction(Principal.system(tenant_id), database=self._database) as conn:
                            await repository.insert_events(conn, batch)
                        written += len(batch)
                        del events[: len(batch)]  # written: never re-queued
            except BaseException:
                leftovers = [event for events in by_tenant.values() for event in events]
                self._buffer.extendleft(reversed(leftovers))
                raise
            self.written += written
            return written
