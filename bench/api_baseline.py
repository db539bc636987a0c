"""API read path baseline: ``GET /v1/me`` under concurrent load, beside a bare Starlette endpoint in the same run.

``GET /v1/me`` with a Bearer token is the platform's cheapest authenticated read: JWT check → rate limit → tenant
transaction (BEGIN, ``set_config('app.tenant_id')``) → principal verification → the user and tenant rows → COMMIT.
The bare endpoint is a Starlette app answering ``{"ok": true}`` under the same uvicorn settings and worker count, so
the ratio ``me_rps / bare_rps`` is what the platform's request path costs on this machine. Both servers, the embedded
PostgreSQL and the load generator share the machine (loopback only).

Bar (docs ARCHITECTURE.md, "API, read endpoints"): >= 1,000 req/s and p95 <= 50 ms.

    python -m bench.api_baseline [--duration 10] [--concurrency 16] [--workers 2] [--rounds 2] [--home DIR]

The last line of stdout is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.loadgen import LoadResult, Target, run_load

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
BAR_RPS = 1_000.0
BAR_P95_MS = 50.0

# Defaults chosen by sweeping workers 1/2 x connections 16/24/32/64 on the 2-core reference machine: /v1/me is
# CPU-bound (about 1.3 ms of API CPU + 0.3 ms of PostgreSQL CPU per request), so one worker leaves a core idle and
# more connections than 16 add only queueing delay (p95 grows, req/s does not).
DEFAULT_DURATION = 10.0
DEFAULT_CONCURRENCY = 16
DEFAULT_WORKERS = 2


# The baseline app: served by `python -m uvicorn bench.api_baseline:bare_app` in its own process. ----------------


async def _ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


bare_app = Starlette(routes=[Route("/", _ok)])


# Processes --------------------------------------------------------------------------------------------------


class BenchError(RuntimeError):
    """The benchmark could not be set up."""


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM (uvicorn stops its workers), then SIGKILL the server's own process group if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only uvicorn and its workers
                self.process.wait(timeout=5)


def _pasar_command() -> str:
    beside = Path(sys.executable).parent / "pasar"
    found = str(beside) if beside.exists() else shutil.which("pasar")
    if found is None:
        raise BenchError("the `pasar` command was not found (install the project: uv sync)")
    return found


def _pasar_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PASAR_DATABASE_URL", "PASAR_APP_DATABASE_URL", "PASAR_ETL_DATABASE_URL")
    }
    env["PASAR_HOME"] = str(home)
    env.update(extra)
    return env


def _pasar_json(args: list[str], env: Mapping[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [_pasar_command(), *args], env=dict(env), cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"`pasar {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            document: dict[str, Any] = json.loads(line)
            return document
    raise BenchError(f"`pasar {' '.join(args)}` printed no JSON: {done.stdout[-2000:]}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _http(
    port: int, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json"} if payload is not None else {}
        all_headers.update(headers or {})
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _start_server(name: str, command: list[str], env: Mapping[str, str], port: int, log: Path, ready: str) -> Server:
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, env=dict(env), cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, port, process, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} exited with {process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(OSError):
            status, _ = _http(port, "GET", ready)
            if status == 200:
                return server
        time.sleep(0.2)
    server.stop()
    raise BenchError(f"{name} did not answer GET {ready} within 120 s:\n{server.log_tail()}")


# The run ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    duration: float
    concurrency: int
    workers: int
    rounds: int
    warmup: float
    processes: int
    home: Path | None


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--duration", type=float, default=DEFAULT_DURATION, help="measured seconds per endpoint (all rounds)"
    )
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="keep-alive connections")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="API (and baseline) worker processes")
    parser.add_argument("--rounds", type=int, default=2, help="alternate bare, me, bare, me, ... this many times")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each measurement")
    parser.add_argument(
        "--processes", type=int, default=0, help="load generator processes (0: this process, which is idle otherwise)"
    )
    parser.add_argument("--home", type=Path, default=None, help="PASAR_HOME to use and keep (default: a temp dir)")
    ns = parser.parse_args(argv)
    if ns.duration <= 0 or ns.concurrency < 1 or ns.workers < 1 or ns.rounds < 1 or ns.warmup < 0:
        parser.error("duration, concurrency, workers and rounds must be positive, warmup not negative")
    return Options(ns.duration, ns.concurrency, ns.workers, ns.rounds, ns.warmup, ns.processes, ns.home)


@contextlib.contextmanager
def _home(requested: Path | None) -> Iterator[Path]:
    if requested is not None:
        requested.mkdir(parents=True, exist_ok=True)
        yield requested.resolve()
        return
    # Under /tmp and world-traversable: as root the embedded PostgreSQL runs as `postgres`, which must get in.
    home = Path(tempfile.mkdtemp(prefix="pasar-bench-", dir="/tmp"))
    home.chmod(0o755)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _access_token(api_port: int, api_key: str) -> str:
    status, body = _http(api_port, "POST", "/v1/auth/token", {"api_key": api_key})
    if status != 200:
        raise BenchError(f"POST /v1/auth/token answered {status}: {body[:500]!r}")
    token: str = json.loads(body)["access_token"]
    status, body = _http(api_port, "GET", "/v1/me", headers={"Authorization": f"Bearer {token}"})
    if status != 200:
        raise BenchError(f"GET /v1/me answered {status}: {body[:500]!r}")
    return token


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds spent, read from /proc: the server's process tree, PostgreSQL's, and the load generator."""

    server: float
    postgres: float
    loadgen: float

    def __add__(self, other: CpuUse) -> CpuUse:
        return CpuUse(self.server + other.server, self.postgres + other.postgres, self.loadgen + other.loadgen)

    def __sub__(self, other: CpuUse) -> CpuUse:
        return CpuUse(self.server - other.server, self.postgres - other.postgres, self.loadgen - other.loadgen)


@dataclass(frozen=True)
class Measurement:
    """A target's pooled figures and the CPU that its requests cost, per request answered (warm-up included)."""

    result: LoadResult
    cpu: CpuUse | None
    answered: int
    wall_s: float  # how long the generator ran, warm-ups included: the span the CPU figures cover

    def cpu_ms(self, part: Literal["server", "postgres", "loadgen"]) -> float | None:
        if self.cpu is None or not self.answered:
            return None
        seconds: float = getattr(self.cpu, part)
        return 1000.0 * seconds / self.answered

    def cpu_ceiling_rps(self) -> float | None:
        """Requests/s if the whole path (server + PostgreSQL + load generator) had every core to itself."""
        if self.cpu is None or not self.answered:
            return None
        per_request = (self.cpu.server + self.cpu.postgres + self.cpu.loadgen) / self.answered
        return (os.cpu_count() or 1) / per_request if per_request > 0 else None

    def cpu_share(self) -> float | None:
        """The share of the machine's CPU that the measured path used: well below 1 means other load took some."""
        if self.cpu is None or self.wall_s <= 0:
            return None
        used = self.cpu.server + self.cpu.postgres + self.cpu.loadgen
        return used / (self.wall_s * (os.cpu_count() or 1))


class CpuMeter:
    """Reads the CPU time of the servers' and PostgreSQL's process trees from /proc (Linux); else nothing.

    The load generator measures its own CPU (``LoadResult.cpu_s``), also when it runs in other processes."""

    TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, server_pids: Sequence[int], postmaster_pid: int | None) -> None:
        self.server_pids = tuple(server_pids)
        self.postmaster_pid = postmaster_pid
        self.available = Path("/proc/self/stat").exists()

    def read(self) -> CpuUse | None:
        if not self.available:
            return None
        stats = self._stats()
        return CpuUse(
            server=sum(self._tree(stats, pid) for pid in self.server_pids),
            postgres=0.0 if self.postmaster_pid is None else self._tree(stats, self.postmaster_pid),
            loadgen=0.0,
        )

    def _stats(self) -> dict[int, tuple[int, float]]:
        """pid -> (parent pid, CPU seconds) of every process."""
        stats: dict[int, tuple[int, float]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue  # gone meanwhile
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / self.TICKS)
        return stats

    @staticmethod
    def _tree(stats: Mapping[int, tuple[int, float]], root: int) -> float:
        children: dict[int, list[int]] = {}
        for pid, (parent, _) in stats.items():
            children.setdefault(parent, []).append(pid)
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            total += stats.get(pid, (0, 0.0))[1]
            todo += children.get(pid, [])
        return total


def _postmaster_pid(home: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((home / "pg" / "data" / "postmaster.pid").read_text().splitlines()[0])
    return None


def _measure(
    options: Options, bare: Server, api: Server, token: str, postmaster_pid: int | None
) -> tuple[Measurement, Measurement]:
    bare_target = Target(HOST, bare.port, "/")
    me_target = Target(HOST, api.port, "/v1/me", headers={"Authorization": f"Bearer {token}"})
    per_round = options.duration / options.rounds
    meters = {"bare": CpuMeter([bare.process.pid], None), "me": CpuMeter([api.process.pid], postmaster_pid)}

    def load(target: Target, seconds: float, warmup: float) -> LoadResult:
        return run_load(
            target, concurrency=options.concurrency, duration=seconds, warmup=warmup, processes=options.processes
        )

    # Warm both servers (pools filled, every worker's code paths touched); not measured.
    load(bare_target, 2.0, 0.0)
    load(me_target, 2.0, 0.0)
    runs: dict[str, list[LoadResult]] = {"bare": [], "me": []}
    cpu: dict[str, CpuUse | None] = {"bare": CpuUse(0.0, 0.0, 0.0), "me": CpuUse(0.0, 0.0, 0.0)}
    for number in range(1, options.rounds + 1):
        for label, target in (("bare", bare_target), ("me", me_target)):
            before = meters[label].read()
            result = load(target, per_round, options.warmup)
            after = meters[label].read()
            spent = cpu[label]
            if spent is None or before is None or after is None:
                cpu[label] = None
            else:
                cpu[label] = spent + (after - before) + CpuUse(0.0, 0.0, result.cpu_s)
            runs[label].append(result)
            print(
                f"  round {number} {label:<4} {result.rps:9.1f} req/s  p50 {result.p50_ms:6.2f} ms  "
                f"p95 {result.p95_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  errors {result.errors}",
                flush=True,
            )

    def pooled(label: str) -> Measurement:
        answered = sum(result.requests + result.warmup_requests for result in runs[label])
        wall = sum(result.active_s for result in runs[label])
        return Measurement(LoadResult.combine(runs[label]), cpu[label], answered, wall)

    return pooled("bare"), pooled("me")


def run(options: Options) -> dict[str, Any]:
    servers: list[Server] = []
    load_before = os.getloadavg()[0]  # before our own setup adds to it
    with _home(options.home) as home:
        env = _pasar_env(home)
        try:
            print(f"PASAR_HOME {home}; setting up the embedded database ...", flush=True)
            _pasar_json(["demo", "--no-serve", "--json"], env)
            tenant = _pasar_json(
                ["tenant", "create", f"Bench {uuid.uuid4().hex[:8]}", "--plan", "enterprise", "--json"], env
            )

            api_port = _free_port()
            api_env = _pasar_env(
                home,
                PASAR_LOG_LEVEL="WARNING",
                PASAR_DB_POOL_MAX_SIZE="10",
                PASAR_ACCESS_TOKEN_TTL_SECONDS="86400",  # noqa: S106 - a TTL; a long run must not outlive its token
            )
            api_command = [_pasar_command(), "api", "--host", HOST, "--port", str(api_port)]
            api_command += ["--workers", str(options.workers)]
            servers.append(
                _start_server("pasar api", api_command, api_env, api_port, home / "bench-api.log", "/healthz")
            )
            token = _access_token(api_port, tenant["api_key"])

            bare_port = _free_port()
            bare_command = [sys.executable, "-m", "uvicorn", "bench.api_baseline:bare_app"]
            bare_command += ["--host", HOST, "--port", str(bare_port), "--workers", str(options.workers)]
            bare_command += ["--log-level", "warning", "--no-access-log", "--no-proxy-headers"]
            servers.append(_start_server("bare starlette", bare_command, env, bare_port, home / "bench-bare.log", "/"))

            print(
                f"measuring: {options.workers} worker(s) each, {options.concurrency} connections, "
                f"{options.rounds} x {options.duration / options.rounds:g} s per endpoint, {os.cpu_count()} CPUs "
                f"(load average before the run {load_before:.2f}), "
                f"rate limiter {'redis' if os.environ.get('PASAR_REDIS_URL') else 'in-process'}",
                flush=True,
            )
            bare, me = _measure(options, servers[1], servers[0], token, _postmaster_pid(home))
        finally:
            for server in reversed(servers):
                server.stop()
            with contextlib.suppress(BenchError):
                _pasar_json(["db", "stop", "--json"], env)
    return _report(options, bare, me, load_before)


def _fmt(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.3f}"


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _report(options: Options, bare: Measurement, me: Measurement, load_before: float) -> dict[str, Any]:
    b, m = bare.result, me.result
    ratio = m.rps / b.rps if b.rps else 0.0
    print()
    print("CPU ms/req: CPU time per request answered, from /proc (server process tree, PostgreSQL, load generator)")
    print(
        f"{'endpoint':<16}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'server':>9}{'pg':>8}{'loadgen':>9}"
    )
    for label, measured in (("bare Starlette", bare), ("GET /v1/me", me)):
        r = measured.result
        print(
            f"{label:<16}{r.requests:>10}{r.errors:>8}{r.rps:>10.1f}{r.p50_ms:>9.2f}{r.p95_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{_fmt(measured.cpu_ms('server'), 9)}{_fmt(measured.cpu_ms('postgres'), 8)}"
            f"{_fmt(measured.cpu_ms('loadgen'), 9)}"
        )
    print(f"ratio GET /v1/me / bare: {ratio:.3f}")
    ceiling = me.cpu_ceiling_rps()
    if ceiling is not None:
        print(f"GET /v1/me CPU-bound ceiling if it had all {os.cpu_count()} cores to itself: {ceiling:,.0f} req/s")
    share = me.cpu_share()
    if share is not None:
        print(f"GET /v1/me rounds used {share:.0%} of the machine's CPU (server + PostgreSQL + load generator)")
        if share < 0.85:
            print(
                "note: well below 100%: other processes took CPU, or one process (a single API worker) was the "
                "bottleneck; with other load, req/s is understated and the CPU-bound ceiling is the better estimate"
            )
    rps_ok = m.rps >= BAR_RPS
    p95_ok = m.p95_ms <= BAR_P95_MS
    print(f"bar GET /v1/me >= {BAR_RPS:,.0f} req/s: {'PASS' if rps_ok else 'FAIL'} ({m.rps:,.1f})")
    print(f"bar GET /v1/me p95 <= {BAR_P95_MS:g} ms: {'PASS' if p95_ok else 'FAIL'} ({m.p95_ms:.2f} ms)")
    if m.errors or b.errors:
        print(f"errors: me {m.errors} {m.statuses}, bare {b.errors} {b.statuses}")
    return {
        "bench": "api_baseline",
        "me_rps": round(m.rps, 1),
        "me_p50_ms": round(m.p50_ms, 3),
        "me_p95_ms": round(m.p95_ms, 3),
        "me_p99_ms": round(m.p99_ms, 3),
        "bare_rps": round(b.rps, 1),
        "bare_p50_ms": round(b.p50_ms, 3),
        "bare_p95_ms": round(b.p95_ms, 3),
        "bare_p99_ms": round(b.p99_ms, 3),
        "ratio": round(ratio, 4),
        "errors": m.errors + b.errors,
        "workers": options.workers,
        "concurrency": options.concurrency,
        "duration_s": options.duration,
        "me_server_cpu_ms": _rounded(me.cpu_ms("server"), 3),
        "me_pg_cpu_ms": _rounded(me.cpu_ms("postgres"), 3),
        "me_loadgen_cpu_ms": _rounded(me.cpu_ms("loadgen"), 3),
        "bare_server_cpu_ms": _rounded(bare.cpu_ms("server"), 3),
        "me_cpu_ceiling_rps": _rounded(ceiling, 0),
        "me_cpu_share": _rounded(share, 3),
        "loadavg_before": round(load_before, 2),
        "bar_rps_pass": rps_ok,
        "bar_p95_pass": p95_ok,
    }


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        figures = run(options)
    except BenchError as exc:
        print(f"api_baseline: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
