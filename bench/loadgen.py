"""A small, dependency-free HTTP/1.1 keep-alive load generator on asyncio streams.

``concurrency`` connections each send one request, read the whole response, and send the next (closed loop, like
``wrk``). Requests that *start* during the warm-up are sent but not counted; every request that starts in the measured
window is counted, with its latency from ``time.perf_counter`` taken just before the write and just after the last
body byte. A non-2xx status, a dropped connection or a request still unanswered at the deadline is an error.

The request bytes are encoded once, and the event loop is uvloop when it is installed (it comes with
``uvicorn[standard]``): the generator shares the machine's cores with the server it measures, so it must be cheap.
With ``processes >= 1`` the connections are spread over that many spawned processes that start together on a common
wall-clock instant; their latencies are pooled.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import socket
import time
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

_HEADER_END = b"\r\n\r\n"
_GRACE_SECONDS = 10.0  # how long in-flight requests may finish after the measured window


@dataclass(frozen=True)
class Target:
    """One request, sent again and again over every connection."""

    host: str
    port: int
    path: str = "/"
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def encode(self) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass(frozen=True)
class LoadResult:
    """Figures of one run; latencies in milliseconds, ``rps`` over the measured window."""

    requests: int
    errors: int
    duration_s: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    concurrency: int
    statuses: dict[int, int]
    latencies_ms: array[float] = field(repr=False, compare=False)
    warmup_requests: int = 0  # answered during the warm-up, not in the figures (for CPU accounting)
    active_s: float = 0.0  # wall seconds the generator ran, warm-up included
    cpu_s: float = 0.0  # CPU seconds the generator itself spent meanwhile

    @classmethod
    def build(
        cls,
        *,
        latencies_ms: array[float],
        errors: int,
        duration_s: float,
        concurrency: int,
        statuses: Mapping[int, int],
        requests: int | None = None,
        warmup_requests: int = 0,
        active_s: float = 0.0,
        cpu_s: float = 0.0,
    ) -> LoadResult:
        ordered = sorted(latencies_ms)
        count = len(ordered) if requests is None else requests
        return cls(
            requests=count,
            errors=errors,
            duration_s=duration_s,
            rps=count / duration_s if duration_s > 0 else 0.0,
            p50_ms=percentile(ordered, 50),
            p95_ms=percentile(ordered, 95),
            p99_ms=percentile(ordered, 99),
            mean_ms=sum(ordered) / len(ordered) if ordered else math.nan,
            max_ms=ordered[-1] if ordered else math.nan,
            concurrency=concurrency,
            statuses=dict(sorted(statuses.items())),
            latencies_ms=latencies_ms,
            warmup_requests=warmup_requests,
            active_s=active_s,
            cpu_s=cpu_s,
        )

    @classmethod
    def combine(cls, results: Sequence[LoadResult], *, parallel: bool = False) -> LoadResult:
        """Pool several runs: one after another (durations add up) or side by side (``parallel``: rates add up)."""
        if not results:
            raise ValueError("nothing to combine")
        latencies: array[float] = array("d")
        statuses: Counter[int] = Counter()
        for result in results:
            latencies.extend(result.latencies_ms)
            statuses.update(result.statuses)
        requests = sum(result.requests for result in results)
        if parallel:
            rps = sum(result.rps for result in results)
            duration = requests / rps if rps > 0 else max(result.duration_s for result in results)
            concurrency = sum(result.concurrency for result in results)
            active = max(result.active_s for result in results)
        else:
            duration = sum(result.duration_s for result in results)
            concurrency = results[0].concurrency
            active = sum(result.active_s for result in results)
        return cls.build(
            latencies_ms=latencies,
            errors=sum(result.errors for result in results),
            duration_s=duration,
            concurrency=concurrency,
            statuses=statuses,
            requests=requests,
            warmup_requests=sum(result.warmup_requests for result in results),
            active_s=active,
            cpu_s=sum(result.cpu_s for result in results),
        )

    def summary(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
        }


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence (NaN when empty)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# The generator -----------------------------------------------------------------------------------------------


class _Run:
    """State shared by the connections of one process (one event loop: no locks needed)."""

    def __init__(self, *, measure_from: float, end: float, requests: int | None) -> None:
        self.measure_from = measure_from
        self.end = end
        self.remaining = requests  # measured requests still to send (count mode), else None
        self.latencies: array[float] = array("d")
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.failed = 0  # measured requests lost to a dropped connection or a garbled response
        self.last_done = measure_from
        self.warmup_done = 0

    def may_send(self, now: float) -> bool:
        if now >= self.end:
            return False
        if self.remaining is None or now < self.measure_from:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


async def read_message(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Read one whole response: its status, its body (de-chunked) and whether the server will close the
    connection. For scenario clients that need the answer (bench.orders); :func:`generate` discards the body."""
    while True:
        head = await reader.readuntil(_HEADER_END)
        status = int(head[9:12])
        if status >= 200 or status == 101:
            break  # 1xx interim responses (100 Continue) precede the real one
    lowered = head.lower()
    close = b"\r\nconnection: close" in lowered
    body = b""
    start = lowered.find(b"\r\ncontent-length:")
    if start >= 0:
        stop = lowered.index(b"\r\n", start + 2)
        length = int(lowered[start + 17 : stop])
        if length:
            body = await reader.readexactly(length)
    elif b"\r\ntransfer-encoding: chunked" in lowered:
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            chunks.append((await reader.readexactly(size + 2))[:size])  # the chunk without its CRLF
            if size == 0:
                break
        body = b"".join(chunks)
    elif status not in (204, 304):
        body = await reader.read()  # delimited by the end of the connection
        close = True
    return status, body, close


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one whole response; return its status and whether the server will close the connection."""
    status, _, close = await read_message(reader)
    return status, close


async def open_client(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A keep-alive connection with TCP_NODELAY, as the generator's connections are."""
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def _connect(target: Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await open_client(target.host, target.port)


async def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is None:
        return
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _connection(target: Target, payload: bytes, run: _Run) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    perf_counter = time.perf_counter
    try:
        while True:
            if writer is None or reader is None:
                try:
                    reader, writer = await _connect(target)
                except OSError:
                    run.errors += 1
                    await asyncio.sleep(0.05)
                    if perf_counter() >= run.end:
                        return
                    continue
            started = perf_counter()
            if not run.may_send(started):
                return
            try:
                writer.write(payload)
                status, close = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                if started >= run.measure_from:
                    run.errors += 1
                    run.failed += 1
                await _close(writer)
                reader = writer = None
                continue
            done = perf_counter()
            if started >= run.measure_from:
                run.latencies.append((done - started) * 1000.0)
                run.statuses[status] += 1
                if not 200 <= status < 300:
                    run.errors += 1
                run.last_done = max(run.last_done, done)
            else:
                run.warmup_done += 1
            if close:
                await _close(writer)
                reader = writer = None
    finally:
        await _close(writer)


async def generate(
    target: Target,
    *,
    concurrency: int,
    duration: float | None = None,
    requests: int | None = None,
    warmup: float = 1.0,
    timeout: float = 300.0,
    start_at: float | None = None,
) -> LoadResult:
    """Load ``target`` from this event loop; give ``duration`` (seconds) or ``requests`` (count), or both.

    ``start_at`` (a ``time.time()`` instant) lets several processes begin together; ``timeout`` bounds a count run.
    """
    if duration is None and requests is None:
        raise ValueError("give a duration, a request count, or both")
    if start_at is not None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
    payload = target.encode()
    cpu_begin = time.process_time()
    begin = time.perf_counter()
    measure_from = begin + warmup
    end = measure_from + duration if duration is not None else begin + timeout
    run = _Run(measure_from=measure_from, end=end, requests=requests)
    tasks = [asyncio.create_task(_connection(target, payload, run)) for _ in range(concurrency)]
    deadline = (end + _GRACE_SECONDS) if duration is not None else end
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.perf_counter()))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    unanswered = len(pending)  # each stuck connection had one request in flight
    measured_until = max(run.last_done, end) if duration is not None else run.last_done
    return LoadResult.build(
        latencies_ms=run.latencies,
        errors=run.errors + unanswered,
        duration_s=max(measured_until - measure_from, 1e-9),
        concurrency=concurrency,
        statuses=run.statuses,
        requests=len(run.latencies) + run.failed + unanswered,
        warmup_requests=run.warmup_done,
        active_s=time.perf_counter() - begin,
        cpu_s=time.process_time() - cpu_begin,
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # plain asyncio works, a little slower
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _run_here(target: Target, kwargs: dict[str, object]) -> LoadResult:
    loop = _new_loop()
    try:
        return loop.run_until_complete(generate(target, **kwargs))  # type: ignore[arg-type]
    finally:
        loop.close()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def run_load(
    target: Target,
    *,
    concurrency: int,
    duration: float | None = None,
    requests: int | None = None,
    warmup: float = 1.0,
    timeout: float = 300.0,
    processes: int = 0,
) -> LoadResult:
    """Blocking entry point. ``processes=0`` runs on a fresh event loop in this process (which must not be running
    one); ``processes>=1`` spreads the connections (and the request count) over that many spawned processes."""
    if processes <= 0:
        kwargs: dict[str, object] = {
            "concurrency": concurrency,
            "duration": duration,
            "requests": requests,
            "warmup": warmup,
            "timeout": timeout,
        }
        return _run_here(target, kwargs)
    processes = min(processes, concurrency)
    connections = _split(concurrency, processes)
    counts: list[int | None] = [None] * processes if requests is None else [*_split(requests, processes)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        # Spawning takes a moment: start every generator on one instant a little ahead.
        start_at = time.time() + 0.5 + 0.25 * processes
        jobs = [
            pool.apply_async(
                _run_here,
                (
                    target,
                    {
                        "concurrency": share,
                        "duration": duration,
                        "requests": count,
                        "warmup": warmup,
                        "timeout": timeout,
                        "start_at": start_at,
                    },
                ),
            )
            for share, count in zip(connections, counts, strict=True)
        ]
        results = [job.get() for job in jobs]
    return LoadResult.combine(results, parallel=True)
