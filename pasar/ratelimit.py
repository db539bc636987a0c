"""Rate limits as GCRA (generic cell rate algorithm): one timestamp per key, exact, burst up to the limit.

With Redis the check is one atomic Lua script over every key of a request (all pass or none is charged), so
several API processes share one budget; without Redis an in-process equivalent serves a single process.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis


@dataclass(frozen=True)
class Limit:
    key: str
    count: int
    window_seconds: float

    @property
    def interval(self) -> float:
        return self.window_seconds / self.count


class RateLimiter(Protocol):
    async def acquire(self, limits: Sequence[Limit], *, dry_run: bool = False) -> float:
        """0.0 when allowed (and charged unless dry_run), else the seconds to wait before retrying."""
        ...


def _gcra(tats: Sequence[float], limits: Sequence[Limit], now: float) -> tuple[float, list[float]]:
    retry_after = 0.0
    new_tats = []
    for tat, limit in zip(tats, limits, strict=True):
        new_tat = max(tat, now) + limit.interval
        wait = new_tat - now - limit.window_seconds
        retry_after = max(retry_after, wait)
        new_tats.append(new_tat)
    return retry_after, new_tats


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def acquire(self, limits: Sequence[Limit], *, dry_run: bool = False) -> float:
        async with self._lock:
            now = time.monotonic()
            tats = [self._tats.get(limit.key, now) for limit in limits]
            retry_after, new_tats = _gcra(tats, limits, now)
            if retry_after > 0:
                return retry_after
            if not dry_run:
                self._tats.update({limit.key: tat for limit, tat in zip(limits, new_tats, strict=True)})
                if len(self._tats) > 100_000:
                    self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
            return 0.0


# KEYS: the buckets. ARGV: dry_run flag, then interval and window (milliseconds) per key.
# Uses the Redis server's clock so that every API process agrees on "now".
_GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dry_run = ARGV[1] == '1'
local retry_after = 0
local new_tats = {}
for i, key in ipairs(KEYS) do
    local interval = tonumber(ARGV[2 * i])
    local window = tonumber(ARGV[2 * i + 1])
    local tat = tonumber(redis.call('GET', key) or now)
    if tat < now then tat = now end
    local new_tat = tat + interval
    local wait = new_tat - now - window
    if wait > retry_after then retry_after = wait end
    new_tats[i] = new_tat
end
if retry_after > 0 then return retry_after end
if not dry_run then
    for i, key in ipairs(KEYS) do
        redis.call('SET', key, new_tats[i], 'PX', math.ceil(new_tats[i] - now) + 1)
    end
end
return 0
"""


class RedisRateLimiter:
    def __init__(self, redis: Redis, *, namespace: str = "pasar:rl") -> None:
        self._redis = redis
        self._namespace = namespace
        self._script = redis.register_script(_GCRA_SCRIPT)

    async def acquire(self, limits: Sequence[Limit], *, dry_run: bool = False) -> float:
        keys = [f"{self._namespace}:{limit.key}" for limit in limits]
        args: list[str | int] = ["1" if dry_run else "0"]
        for limit in limits:
            args += [math.ceil(limit.interval * 1000), math.ceil(limit.window_seconds * 1000)]
        wait_ms = await self._script(keys=keys, args=args)
        return float(wait_ms) / 1000.0
