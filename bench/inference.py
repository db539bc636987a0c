"""Signal inference: onnxruntime vs LightGBM on one row and on a batch, the BentoML HTTP hop vs a plain FastAPI
endpoint serving the same model, and ``GET /v1/signals/{symbol}`` end to end — each beside its baseline, in one run.

Setup (in a temporary PASAR_HOME, loopback only): ``pasar demo --no-serve`` (embedded PostgreSQL, demo tenants, the
synthetic IDX market), ``pasar train --families lightgbm`` on a few of its symbols (AutoML, MLflow, ONNX export,
promotion to ``champion``), then the champion is loaded in process as served (:class:`serving.predictor.Predictor`)
with its native LightGBM model from the same registry version.

1. One row, ``--calls`` calls per engine in alternating rounds, each call timed with ``time.perf_counter_ns``:
   ``Predictor.predict_one`` (onnxruntime, one intra-op thread) vs ``Booster.predict(row, num_threads=1)``, on the same
   rows (feature rows of the demo market). Bar: onnxruntime >= 2x faster (p50) and its p99 <= 100 µs.
2. A batch of ``--batch`` rows through both (best of 5).
3. HTTP, same load generator (:mod:`bench.loadgen`), same body ``{"rows": [[...]]}``: ``pasar serve-model`` (BentoML,
   ``POST /predict``) vs a plain FastAPI app (this module's ``fastapi_app`` under uvicorn, one worker) serving the
   same champion through the same predictor; at 1 connection (latency) and ``--concurrency`` connections
   (throughput). Bar: BentoML within 2x of FastAPI (p50 at 1 connection, req/s at ``--concurrency``).
4. ``GET /v1/signals/{symbol}`` through ``pasar api`` (auth, tenant transaction, latest bars → features (cached per
   bar) → model → signal log insert) beside ``GET /v1/me`` (the cheapest authenticated read: the platform's own
   floor), at 1 connection and at ``--concurrency``. Bar: p95 <= 10 ms at 1 connection. A cache miss (computing the
   features from 300 bars) is timed in process and printed beside it.

    python -m bench.inference [--calls 20000] [--batch 10000] [--duration 6] [--concurrency 8] [--home DIR]

The last line of stdout is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from bench.api_baseline import (
    HOST,
    BenchError,
    Server,
    _access_token,
    _free_port,
    _home,
    _pasar_command,
    _pasar_env,
    _pasar_json,
    _start_server,
)
from bench.loadgen import LoadResult, Target, run_load

BAR_SPEEDUP = 2.0
BAR_P99_US = 100.0
BAR_HTTP_RATIO = 2.0
BAR_SIGNAL_P95_MS = 10.0

FloatRows = npt.NDArray[np.float32]


# The plain FastAPI baseline: `python -m uvicorn bench.inference:fastapi_app` in its own process. -----------------


class _Rows(BaseModel):
    rows: list[list[float]]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> Any:
    from pasar.config import get_settings
    from serving.predictor import Predictor

    predictor = Predictor.from_settings(get_settings())
    if not predictor.load():
        raise RuntimeError(f"no champion model to serve: {predictor.last_error}")
    app.state.predictor = predictor
    yield


fastapi_app = FastAPI(lifespan=_lifespan)


@fastapi_app.get("/ready")
def _ready() -> dict[str, bool]:
    return {"ok": True}


@fastapi_app.post("/predict")
async def _predict(body: _Rows) -> dict[str, Any]:  # the model call takes microseconds: on the loop, like BentoML's
    predictor = fastapi_app.state.predictor
    status = predictor.status
    matrix = np.asarray(body.rows, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != len(status.feature_names):
        raise HTTPException(400, "rows of the wrong width")
    return {
        "scores": [float(score) for score in predictor.predict(matrix)],
        "model_name": status.name,
        "model_version": status.version,
        "feature_names": list(status.feature_names),
    }


# Options ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    calls: int
    batch: int
    duration: float
    concurrency: int
    trials: int
    symbols: int
    days: int
    home: Path | None
    skip_http: bool


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000, help="single-row calls per engine (>= 10000)")
    parser.add_argument("--batch", type=int, default=10_000, help="rows in the batch measurement")
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds per HTTP target and load")
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections of the throughput runs")
    parser.add_argument("--trials", type=int, default=2, help="AutoML trials of the champion")
    parser.add_argument("--symbols", type=int, default=6, help="demo symbols the champion is trained on")
    parser.add_argument("--days", type=int, default=4, help="synthetic trading days the demo loads")
    parser.add_argument("--home", type=Path, default=None, help="PASAR_HOME to use and keep (default: a temp dir)")
    parser.add_argument("--skip-http", action="store_true", help="only the in-process measurements")
    ns = parser.parse_args(argv)
    if ns.calls < 10_000 or ns.batch < 1 or ns.duration <= 0 or ns.concurrency < 1 or ns.trials < 1:
        parser.error("calls >= 10000; batch, duration, concurrency and trials positive")
    return Options(
        ns.calls, ns.batch, ns.duration, ns.concurrency, ns.trials, ns.symbols, ns.days, ns.home, ns.skip_http
    )


# In process -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    calls: int
    p50_us: float
    p99_us: float
    mean_us: float

    @classmethod
    def of(cls, samples_ns: list[int]) -> Latency:
        ordered = np.sort(np.asarray(samples_ns, dtype=np.float64)) / 1_000.0
        return cls(
            len(ordered), float(np.percentile(ordered, 50)), float(np.percentile(ordered, 99)), float(ordered.mean())
        )


def _time_calls(call: Callable[[FloatRows], object], rows: list[FloatRows], count: int, sink: list[int]) -> None:
    clock = time.perf_counter_ns
    n = len(rows)
    for index in range(count):
        row = rows[index % n]
        started = clock()
        call(row)
        sink.append(clock() - started)


def single_row(
    engines: dict[str, Callable[[FloatRows], object]], rows: list[FloatRows], calls: int, rounds: int = 5
) -> dict[str, Latency]:
    """``calls`` timed calls per engine, in ``rounds`` alternating blocks (after a warm-up), so that drift of the
    machine's load hits every engine alike."""
    samples: dict[str, list[int]] = {name: [] for name in engines}
    for call in engines.values():
        _time_calls(call, rows, 1_000, [])
    per_round = calls // rounds
    for _ in range(rounds):
        for name, call in engines.items():
            _time_calls(call, rows, per_round, samples[name])
    return {name: Latency.of(values) for name, values in samples.items()}


def batch_ms(call: Callable[[FloatRows], object], rows: FloatRows, repeat: int = 5) -> tuple[float, float]:
    """(best, median) wall milliseconds of ``call(rows)``."""
    call(rows)
    times = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        call(rows)
        times.append((time.perf_counter_ns() - started) / 1e6)
    return min(times), statistics.median(times)


def _feature_rows(symbols: list[str], days: int) -> tuple[FloatRows, Any]:
    from models_ml.data import build_dataset
    from pasar.market.frames import Timeframe
    from pasar.market.sources.synthetic import generate

    bars = generate(symbols, days, Timeframe.m1)  # the demo's market (same seed): the rows the model sees
    return np.ascontiguousarray(build_dataset(bars, horizon=15, cost=0.004).X), bars


def _feature_miss_ms(bars: Any, symbol: str) -> float:
    """Median ms to compute one symbol's live features from its last 300 bars (what a signal costs on a new bar)."""
    from models_ml.features import LIVE_HISTORY, latest_features

    own = bars.filter(bars["symbol"] == symbol).tail(LIVE_HISTORY)
    latest_features(own, calendar_code="IDX")
    times = []
    for _ in range(30):
        started = time.perf_counter_ns()
        latest_features(own, calendar_code="IDX")
        times.append((time.perf_counter_ns() - started) / 1e6)
    return statistics.median(times)


# HTTP -------------------------------------------------------------------------------------------------------


def _load(target: Target, concurrency: int, seconds: float) -> LoadResult:
    return run_load(target, concurrency=concurrency, duration=seconds, warmup=1.0)


def _alternate(targets: dict[str, Target], concurrency: int, duration: float, rounds: int = 2) -> dict[str, LoadResult]:
    runs: dict[str, list[LoadResult]] = {name: [] for name in targets}
    for target in targets.values():
        _load(target, concurrency, 1.5)  # warm: pools, JIT-less code paths, caches
    for number in range(1, rounds + 1):
        for name, target in targets.items():
            result = _load(target, concurrency, duration / rounds)
            runs[name].append(result)
            print(
                f"  round {number} c={concurrency:<3} {name:<16} {result.rps:9.1f} req/s  p50 {result.p50_ms:6.3f} ms"
                f"  p95 {result.p95_ms:6.3f} ms  p99 {result.p99_ms:6.3f} ms  errors {result.errors}",
                flush=True,
            )
    return {name: LoadResult.combine(results) for name, results in runs.items()}


@contextlib.contextmanager
def _servers() -> Iterator[list[Server]]:
    servers: list[Server] = []
    try:
        yield servers
    finally:
        for server in reversed(servers):
            server.stop()


# The run ----------------------------------------------------------------------------------------------------


def run(options: Options) -> dict[str, Any]:
    from pasar.market.sources.synthetic import synthetic_symbols

    figures: dict[str, Any] = {"bench": "inference"}
    symbols = synthetic_symbols(options.symbols)
    with _home(options.home) as home:
        env = _pasar_env(
            home, BENTOML_DO_NOT_TRACK="true", MLFLOW_DISABLE_TELEMETRY="true", BENTOML_HOME=str(home / "bentoml")
        )
        try:
            print(f"PASAR_HOME {home}; embedded database, demo market, training the champion ...", flush=True)
            _pasar_json(["demo", "--no-serve", "--synthetic-days", str(options.days), "--json"], env)
            train = ["train", "--symbols", ",".join(symbols), "--families", "lightgbm", "--trials", str(options.trials)]
            trained = _pasar_json([*train, "--json"], env)
            print(
                f"champion {trained['model_name']} v{trained['version']} ({trained['family']}, "
                f"{trained['params'].get('n_estimators')} trees, {trained['params'].get('num_leaves')} leaves), "
                f"holdout ROC AUC {trained['challenger_metric']:.4f}",
                flush=True,
            )
            figures.update(_in_process(options, home, symbols))
            if not options.skip_http:
                figures.update(_http(options, home, env, symbols))
        finally:
            with contextlib.suppress(BenchError):
                _pasar_json(["db", "stop", "--json"], env)
    return figures


def _in_process(options: Options, home: Path, symbols: list[str]) -> dict[str, Any]:
    from pasar.config import Settings
    from serving.predictor import Predictor

    predictor = Predictor.from_settings(Settings(home=home, mlflow_tracking_uri=None))
    if not predictor.load() or predictor.model is None or predictor.model.native is None:
        raise BenchError(f"the champion did not load: {predictor.last_error}")
    booster = predictor.model.native.booster_
    X, bars = _feature_rows(symbols, options.days)
    rows = [np.ascontiguousarray(X[index : index + 1]) for index in range(min(1_000, X.shape[0]))]
    difference = max(abs(predictor.predict_one(row) - float(booster.predict(row, num_threads=1)[0])) for row in rows)
    print(
        f"\nmodel: {booster.num_trees()} trees, {len(predictor.feature_names)} features; "
        f"max |ONNX - LightGBM| over {len(rows)} rows: {difference:.2e}",
        flush=True,
    )

    latencies = single_row(
        {
            "onnxruntime": predictor.predict_one,
            "lightgbm": lambda row: booster.predict(row, num_threads=1),
        },
        rows,
        options.calls,
    )
    ort_one, lgb_one = latencies["onnxruntime"], latencies["lightgbm"]
    speedup = lgb_one.p50_us / ort_one.p50_us
    speedup_p99 = lgb_one.p99_us / ort_one.p99_us
    print(f"\none row ({options.calls} calls each, µs)      p50      p99     mean")
    for name, latency in latencies.items():
        print(f"  {name:<32}{latency.p50_us:>8.2f}{latency.p99_us:>9.2f}{latency.mean_us:>9.2f}")
    print(f"  ratio LightGBM / onnxruntime: p50 {speedup:.2f}x, p99 {speedup_p99:.2f}x")

    batch = np.ascontiguousarray(np.resize(X, (options.batch, X.shape[1])))
    ort_best, ort_median = batch_ms(predictor.predict, batch)
    lgb_best, lgb_median = batch_ms(lambda rows_: booster.predict(rows_, num_threads=1), batch)
    print(f"\nbatch of {options.batch} rows (ms)          best   median")
    print(f"  {'onnxruntime':<32}{ort_best:>6.2f}{ort_median:>9.2f}")
    print(f"  {'lightgbm':<32}{lgb_best:>6.2f}{lgb_median:>9.2f}")
    print(f"  ratio LightGBM / onnxruntime: {lgb_best / ort_best:.2f}x")

    miss_ms = _feature_miss_ms(bars, symbols[0])
    print(f"\nfeatures of one symbol from its last 300 bars (a signal on a new bar): {miss_ms:.2f} ms median")

    speed_ok = speedup >= BAR_SPEEDUP
    p99_ok = ort_one.p99_us <= BAR_P99_US
    print(f"bar onnxruntime >= {BAR_SPEEDUP:g}x LightGBM on one row: {'PASS' if speed_ok else 'FAIL'} ({speedup:.2f}x)")
    print(f"bar onnxruntime one-row p99 <= {BAR_P99_US:g} µs: {'PASS' if p99_ok else 'FAIL'} ({ort_one.p99_us:.1f} µs)")
    return {
        "model_trees": booster.num_trees(),
        "onnx_vs_native_max_abs_diff": difference,
        "single_row_calls": options.calls,
        "ort_p50_us": round(ort_one.p50_us, 3),
        "ort_p99_us": round(ort_one.p99_us, 3),
        "lgb_p50_us": round(lgb_one.p50_us, 3),
        "lgb_p99_us": round(lgb_one.p99_us, 3),
        "single_row_speedup_p50": round(speedup, 3),
        "single_row_speedup_p99": round(speedup_p99, 3),
        "batch_rows": options.batch,
        "ort_batch_ms": round(ort_best, 3),
        "lgb_batch_ms": round(lgb_best, 3),
        "batch_speedup": round(lgb_best / ort_best, 3),
        "feature_miss_ms": round(miss_ms, 3),
        "bar_speedup_pass": speed_ok,
        "bar_p99_pass": p99_ok,
    }


def _http(options: Options, home: Path, env: dict[str, str], symbols: list[str]) -> dict[str, Any]:
    tenant = _pasar_json(["tenant", "create", f"Bench {uuid.uuid4().hex[:8]}", "--plan", "enterprise", "--json"], env)
    X, _ = _feature_rows(symbols[:1], 2)
    body = json.dumps({"rows": [[float(value) for value in X[-1]]]}).encode()
    json_headers = {"Content-Type": "application/json"}
    with _servers() as servers:
        bento_port, fastapi_port, api_port = _free_port(), _free_port(), _free_port()
        pasar = _pasar_command()
        servers.append(
            _start_server(
                "pasar serve-model",
                [pasar, "serve-model", "--host", HOST, "--port", str(bento_port)],
                env,
                bento_port,
                home / "bench-bentoml.log",
                "/readyz",
            )
        )
        uvicorn = [sys.executable, "-m", "uvicorn", "bench.inference:fastapi_app", "--host", HOST]
        uvicorn += ["--port", str(fastapi_port), "--workers", "1", "--log-level", "warning", "--no-access-log"]
        servers.append(_start_server("fastapi", uvicorn, env, fastapi_port, home / "bench-fastapi.log", "/ready"))
        api_env = {**env, "PASAR_LOG_LEVEL": "WARNING", "PASAR_ACCESS_TOKEN_TTL_SECONDS": "86400"}
        api = [pasar, "api", "--host", HOST, "--port", str(api_port), "--workers", "1"]
        servers.append(_start_server("pasar api", api, api_env, api_port, home / "bench-api.log", "/healthz"))
        token = _access_token(api_port, tenant["api_key"])
        signal_target = Target(
            HOST, api_port, f"/v1/signals/{symbols[0]}", headers={"Authorization": f"Bearer {token}"}
        )
        _wait_for_signal(signal_target)

        hop = {
            "bentoml": Target(HOST, bento_port, "/predict", "POST", json_headers, body),
            "fastapi": Target(HOST, fastapi_port, "/predict", "POST", json_headers, body),
        }
        print(f"\nHTTP POST /predict, one row, BentoML vs plain FastAPI (same predictor), {os.cpu_count()} CPUs")
        one = _alternate(hop, 1, options.duration)
        many = _alternate(hop, options.concurrency, options.duration)
        print(
            f"\nGET /v1/signals/{symbols[0]} beside GET /v1/me (the cheapest authenticated read), pasar api, 1 worker"
        )
        reads = {"me": Target(HOST, api_port, "/v1/me", headers=signal_target.headers), "signal": signal_target}
        read_one = _alternate(reads, 1, options.duration)
        read_many = _alternate(reads, options.concurrency, options.duration)
        signal_one, signal_many = read_one["signal"], read_many["signal"]

    latency_ratio = one["bentoml"].p50_ms / one["fastapi"].p50_ms
    throughput_ratio = many["fastapi"].rps / many["bentoml"].rps if many["bentoml"].rps else float("inf")
    print(f"\n{'target':<28}{'req/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for label, result in (
        ("bentoml c=1", one["bentoml"]),
        ("fastapi c=1", one["fastapi"]),
        (f"bentoml c={options.concurrency}", many["bentoml"]),
        (f"fastapi c={options.concurrency}", many["fastapi"]),
        ("GET /v1/me c=1", read_one["me"]),
        ("GET /v1/signals c=1", signal_one),
        (f"GET /v1/me c={options.concurrency}", read_many["me"]),
        (f"GET /v1/signals c={options.concurrency}", signal_many),
    ):
        print(
            f"{label:<28}{result.rps:>10.1f}{result.p50_ms:>9.3f}{result.p95_ms:>9.3f}{result.p99_ms:>9.3f}"
            f"{result.errors:>8}"
        )
    signal_ratio = signal_one.p50_ms / read_one["me"].p50_ms
    print(f"ratio GET /v1/signals / GET /v1/me p50 at 1 connection: {signal_ratio:.2f}x")
    print(f"ratio BentoML / FastAPI p50 at 1 connection: {latency_ratio:.2f}x")
    print(f"ratio FastAPI / BentoML req/s at {options.concurrency} connections: {throughput_ratio:.2f}x")
    hop_ok = latency_ratio <= BAR_HTTP_RATIO and throughput_ratio <= BAR_HTTP_RATIO
    signal_ok = signal_one.p95_ms <= BAR_SIGNAL_P95_MS and signal_one.errors == 0
    print(f"bar BentoML hop within {BAR_HTTP_RATIO:g}x of FastAPI: {'PASS' if hop_ok else 'FAIL'}")
    print(
        f"bar GET /v1/signals p95 <= {BAR_SIGNAL_P95_MS:g} ms: {'PASS' if signal_ok else 'FAIL'} "
        f"({signal_one.p95_ms:.2f} ms at 1 connection; {signal_many.p95_ms:.2f} ms at {options.concurrency})"
    )
    errors = sum(result.errors for result in (*one.values(), *many.values(), *read_one.values(), *read_many.values()))
    return {
        "bentoml_c1_p50_ms": round(one["bentoml"].p50_ms, 3),
        "bentoml_c1_p95_ms": round(one["bentoml"].p95_ms, 3),
        "fastapi_c1_p50_ms": round(one["fastapi"].p50_ms, 3),
        "fastapi_c1_p95_ms": round(one["fastapi"].p95_ms, 3),
        "bentoml_rps": round(many["bentoml"].rps, 1),
        "fastapi_rps": round(many["fastapi"].rps, 1),
        "bentoml_latency_ratio": round(latency_ratio, 3),
        "fastapi_throughput_ratio": round(throughput_ratio, 3),
        "signal_c1_p50_ms": round(signal_one.p50_ms, 3),
        "signal_c1_p95_ms": round(signal_one.p95_ms, 3),
        "signal_c1_rps": round(signal_one.rps, 1),
        "signal_p50_ms": round(signal_many.p50_ms, 3),
        "signal_p95_ms": round(signal_many.p95_ms, 3),
        "signal_rps": round(signal_many.rps, 1),
        "me_c1_p50_ms": round(read_one["me"].p50_ms, 3),
        "me_rps": round(read_many["me"].rps, 1),
        "signal_vs_me_p50_ratio": round(signal_ratio, 3),
        "concurrency": options.concurrency,
        "http_errors": errors,
        "bar_http_hop_pass": hop_ok,
        "bar_signal_p95_pass": signal_ok,
    }


def _wait_for_signal(target: Target, timeout: float = 120.0) -> None:
    """The API loads the champion in the background: wait until the signal answers 200."""
    from bench.api_baseline import _http as http

    deadline = time.monotonic() + timeout
    status, answer = 0, b""
    while time.monotonic() < deadline:
        status, answer = http(target.port, "GET", target.path, headers=dict(target.headers))
        if status == 200:
            return
        time.sleep(0.5)
    raise BenchError(f"GET {target.path} answered {status}: {answer[:500]!r}")


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        figures = run(options)
    except BenchError as exc:
        print(f"inference: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
