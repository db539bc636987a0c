"""dbt: the wall time of a full ``dbt build --full-refresh`` beside the incremental daily build, in one run.

For each size in ``--bars`` a fresh database (``pasar_bench_dbt`` on the embedded cluster of ``--home``) gets:

* that many synthetic IDX 1-minute bars (``--symbols`` symbols, as many trading days as it takes), loaded day by day
  through the platform's loader ``pasar.market.service.load_frame``;
* ``--tenants`` enterprise tenants (``pasar tenant create``) sharing ``--orders`` orders spread over those days, with
  what the trading engine would have written for them: the orders (filled, cancelled, expired, rejected), one fill
  per filled order at the close of the bar it traded on (commission and tax of the default fee model), the audit
  events of each order and the positions the fills leave (average cost, ``pasar.trading.positions``) — inserted with
  ``COPY`` as the database owner.

Then, timed:

1. **start**: ``dbt --version`` (the interpreter and dbt's imports: the least any dbt process costs);
2. **full**: ``dbt build --full-refresh`` (every model, data test and unit test) — the baseline;
3. for each of the two days after the history, one more trading day of bars and of orders (the daily rate) is
   loaded, untimed, then **incremental**: the build Dagster's ``analytics_daily_job`` runs for that day's partition,
   one dbt process with what it passes (``pasar.analytics.dbt``: ``DAILY_BUILD_ARGS``, ``dbt build
   --exclude-resource-type unit_test``, and the day's window in ``window_env``; the incremental models' tests read
   the rows the build wrote). The figure is the mean of the two days; the ratio is that over the full build.

The project is parsed once before (untimed), so every build starts from dbt's partial parse. Each build is split
(``target/run_results.json``) into the process start before its first node (imports, partial parse, connecting,
listing relations), the nodes (wall time from the first node's start to the last one's end; models and tests summed
over the threads) and the process end after its last node, and followed by the nodes that took longest. What is
measured is the dbt process the Dagster op starts, not the Dagster run around it. ``--verify`` then rebuilds
everything with ``--full-refresh`` and checks that every mart holds the same rows as after the incremental builds.

Bar (issue 6): the incremental daily build takes <= 10% of the full build.

    python -m bench.dbt [--bars 1000000,10000000] [--orders 100000] [--tenants 2] [--symbols 100] [--verify]
                        [--home DIR]

The last line of stdout is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import polars as pl
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from bench.api_baseline import BenchError, _home, _pasar_env, _pasar_json
from pasar.analytics import dbt
from pasar.config import Settings
from pasar.db.embedded import EmbeddedCluster
from pasar.db.migrate import migrate
from pasar.db.urls import DatabaseUrls, database_urls
from pasar.market import service as market_service
from pasar.market.frames import Timeframe
from pasar.market.sources.synthetic import DEFAULT_START, SyntheticSource
from pasar.trading.fees import FeeModel
from pasar.trading.models import Side
from pasar.trading.positions import Position, fill_effect

BAR_RATIO = 0.10
BENCH_DATABASE = "pasar_bench_dbt"
SOURCE = "synthetic"
WIB = ZoneInfo("Asia/Jakarta")
DBT_TIMEOUT_S = 3600
FEES = FeeModel()
REJECT_REASONS = ("max_order_value", "insufficient_cash", "max_position_value", "order_rate")
# Marts compared by --verify: every row, built_at (the build's own clock) left out.
VERIFIED_MARTS = (
    "fct_bars_daily", "fct_orders", "fct_fills", "fct_positions_daily", "fct_pnl_daily", "rpt_activity_summary",
    "rpt_best_execution", "rpt_order_audit_trail", "rpt_risk_denials", "rpt_surveillance_alerts",
)  # fmt: skip


@dataclass(frozen=True)
class Options:
    bars: list[int]
    orders: int
    tenants: int
    symbols: int
    top: int
    verify: bool
    home: Path | None


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bars", default="1000000,10000000", help="comma-separated bar counts, one run each")
    parser.add_argument("--orders", type=int, default=100_000, help="orders before the incremental day")
    parser.add_argument("--tenants", type=int, default=2, help="tenants sharing the orders")
    parser.add_argument("--symbols", type=int, default=100, help="synthetic IDX symbols")
    parser.add_argument("--top", type=int, default=8, help="slowest models and tests shown per build")
    parser.add_argument("--verify", action="store_true", help="compare the incremental marts with a full refresh")
    parser.add_argument("--home", type=Path, default=None, help="PASAR_HOME of the embedded cluster (default: temp)")
    ns = parser.parse_args(argv)
    try:
        bars = [int(part.replace("_", "")) for part in ns.bars.split(",") if part.strip()]
    except ValueError:
        parser.error("--bars takes comma-separated integers")
    if not bars or min(bars) <= 0 or ns.orders <= 0 or ns.tenants <= 0 or ns.symbols <= 0 or ns.top < 0:
        parser.error("--bars, --orders, --tenants and --symbols must be positive")
    return Options(bars, ns.orders, ns.tenants, ns.symbols, ns.top, ns.verify, ns.home)


# The database --------------------------------------------------------------------------------------------------


@contextmanager
def bench_database(home: Path) -> Iterator[Settings]:
    """A freshly migrated ``pasar_bench_dbt`` on the embedded cluster of ``home``; dropped at the end (and the cluster
    stopped unless it was already running)."""
    os.environ.pop("PASAR_DATABASE_URL", None)
    os.environ["PASAR_HOME"] = str(home)
    cluster = EmbeddedCluster(home)
    was_running = cluster.status().running
    settings = Settings(home=home, database_name=BENCH_DATABASE)
    try:
        urls = database_urls(settings)  # starts the cluster
        cluster.drop_database(BENCH_DATABASE)  # whatever an interrupted run left behind
        cluster.ensure_database(BENCH_DATABASE)
        migrate(urls)
        yield settings
    finally:
        if cluster.status().running:
            cluster.drop_database(BENCH_DATABASE)
            if not was_running:
                cluster.stop()


def provision_tenants(home: Path, count: int, urls: DatabaseUrls) -> list[tuple[UUID, UUID]]:
    """``count`` enterprise tenants made by ``pasar tenant create``: (tenant id, admin user id) of each."""
    env = _pasar_env(home, PASAR_DATABASE_NAME=BENCH_DATABASE)
    tenants = []
    for k in range(count):
        made = _pasar_json(
            ["tenant", "create", f"Bench dbt {k} {uuid4().hex[:6]}", "--plan", "enterprise", "--json"], env
        )
        tenants.append(UUID(made["tenant_id"]))
    with psycopg.connect(urls.owner) as conn:
        rows = conn.execute(
            "select tenant_id, id from tenancy.users where tenant_id = any(%s) and role = 'admin'", [tenants]
        ).fetchall()
    admins = {UUID(str(tenant)): UUID(str(user)) for tenant, user in rows}
    return [(tenant, admins[tenant]) for tenant in tenants]


# Synthetic trading ---------------------------------------------------------------------------------------------

ORDER_COLUMNS = (
    "tenant_id", "id", "client_order_id", "user_id", "instrument_id", "symbol", "side", "type", "time_in_force",
    "quantity", "limit_price", "status", "filled_quantity", "average_price", "reject_reason", "created_at",
    "updated_at",
)  # fmt: skip
FILL_COLUMNS = (
    "tenant_id", "order_id", "execution_id", "instrument_id", "side", "quantity", "price", "value", "commission",
    "tax", "realized_pnl", "executed_at", "created_at",
)  # fmt: skip
EVENT_COLUMNS = (
    "tenant_id", "occurred_at", "actor_type", "actor_id", "action", "target_type", "target_id", "details",
    "request_id",
)  # fmt: skip


@dataclass
class Trading:
    """The orders, fills and audit events of one batch, and every position so far (by tenant and instrument)."""

    tenants: list[tuple[UUID, UUID]]
    instruments: dict[str, int]
    rng: random.Random
    positions: dict[tuple[UUID, int], Position] = field(default_factory=dict)
    orders: list[tuple[Any, ...]] = field(default_factory=list)
    fills: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    touched: set[tuple[UUID, int]] = field(default_factory=set)

    def day(self, frame: pl.DataFrame, count: int) -> None:
        """``count`` orders on random bars of one day's ``frame``, in time order."""
        if count <= 0 or frame.is_empty():
            return
        picks = frame.sample(n=count, with_replacement=True, seed=self.rng.randrange(2**31)).sort("ts")
        for bar in picks.iter_rows(named=True):
            self.order(bar)

    def order(self, bar: dict[str, Any]) -> None:
        tenant, user = self.tenants[self.rng.randrange(len(self.tenants))]
        instrument = self.instruments[bar["symbol"]]
        close = float(bar["close"])
        price = Decimal(int(close)) if close.is_integer() else Decimal(str(close))
        bar_start: datetime = bar["ts"]
        created = bar_start + timedelta(seconds=self.rng.uniform(0, 59))
        held = self.positions.get((tenant, instrument), Position())
        quantity = Decimal(100 * self.rng.randint(1, 20))
        side = Side.sell if held.quantity >= quantity and self.rng.random() < 0.45 else Side.buy
        order_id = uuid4()
        draw = self.rng.random()
        status, order_type, limit, closed, reject = "filled", "market", None, bar_start + timedelta(minutes=1), None
        if draw < 0.04:
            status, order_type, limit, closed = "rejected", "limit", price, created
            reject = REJECT_REASONS[self.rng.randrange(len(REJECT_REASONS))]
        elif draw < 0.16:  # resting 3% away, cancelled within 10 minutes
            status, order_type, closed = "cancelled", "limit", created + timedelta(seconds=self.rng.uniform(5, 600))
            limit = (price * (Decimal("0.97") if side is Side.buy else Decimal("1.03"))).quantize(Decimal(1))
        elif draw < 0.20:
            status, order_type, closed = "expired", "limit", created + timedelta(hours=6)
            limit = (price * (Decimal("0.95") if side is Side.buy else Decimal("1.05"))).quantize(Decimal(1))
        elif draw < 0.50:
            order_type, limit = "limit", price
        filled = status == "filled"
        self.orders.append(
            (
                tenant, order_id, uuid4().hex, user, instrument, bar["symbol"], side.value, order_type, "day",
                quantity, limit, status, quantity if filled else 0, price if filled else None, reject, created, closed,
            )
        )  # fmt: skip
        request = f"req-{order_id}"
        details = {"symbol": bar["symbol"], "side": side.value}
        if status == "rejected":
            self.events.append(self._event(tenant, user, created, "order.rejected", order_id, request, reason=reject))
            return
        self.events.append(self._event(tenant, user, created, "order.accepted", order_id, request, **details))
        self.events.append(self._event(tenant, user, closed, f"order.{status}", order_id, request))
        if filled:
            self._fill(tenant, instrument, order_id, side, quantity, price, closed, held)

    def _fill(
        self,
        tenant: UUID,
        instrument: int,
        order_id: UUID,
        side: Side,
        quantity: Decimal,
        price: Decimal,
        at: datetime,
        held: Position,
    ) -> None:
        effect = fill_effect(held, side, quantity, price)
        costs = FEES.costs(side, effect.value)
        self.positions[(tenant, instrument)] = effect.position
        self.touched.add((tenant, instrument))
        self.fills.append(
            (
                tenant, order_id, f"bench:{order_id}", instrument, side.value, quantity, price, effect.value,
                costs.commission, costs.tax, effect.realized, at, at,
            )
        )  # fmt: skip

    @staticmethod
    def _event(
        tenant: UUID, user: UUID, at: datetime, action: str, order_id: UUID, request: str, **details: Any
    ) -> tuple[Any, ...]:
        return (tenant, at, "user", str(user), action, "order", str(order_id), Jsonb(details), request)

    def write(self, conn: psycopg.Connection[Any]) -> int:
        """COPY the batch (orders, fills, events) and upsert the positions it moved, in one transaction."""
        written = len(self.orders)
        if not written:
            return 0
        with conn.transaction():
            times = [row[1] for row in self.events]
            conn.execute(
                "select pasar_internal.ensure_time_partitions('audit.events'::regclass, %s, %s)",
                [min(times), max(times)],
            )
            for table, columns, rows in (
                ("trading.orders", ORDER_COLUMNS, self.orders),
                ("trading.fills", FILL_COLUMNS, self.fills),
                ("audit.events", EVENT_COLUMNS, self.events),
            ):
                statement = sql.SQL("copy {} ({}) from stdin").format(
                    sql.Identifier(*table.split(".")), sql.SQL(", ").join(map(sql.Identifier, columns))
                )
                with conn.cursor().copy(statement) as copy:
                    for row in rows:
                        copy.write_row(row)
            conn.cursor().executemany(
                "insert into trading.positions (tenant_id, instrument_id, quantity, avg_cost, realized_pnl) "
                "values (%s, %s, %s, %s, %s) on conflict (tenant_id, instrument_id) do update set "
                "quantity = excluded.quantity, avg_cost = excluded.avg_cost, realized_pnl = excluded.realized_pnl, "
                "updated_at = now()",
                [
                    (tenant, instrument, p.quantity, p.avg_cost, p.realized_pnl)
                    for (tenant, instrument) in sorted(self.touched)
                    for p in [self.positions[(tenant, instrument)]]
                ],
            )
        self.orders, self.fills, self.events, self.touched = [], [], [], set()
        return written


# Loading -------------------------------------------------------------------------------------------------------


@dataclass
class Loaded:
    bars: int
    days: int
    orders: int
    load_s: float
    spare: list[tuple[date, pl.DataFrame]]  # the days after them, kept back for the incremental builds
    orders_per_day: int


def load_history(urls: DatabaseUrls, trading: Trading, bars: int, orders: int, symbols: int) -> Loaded:
    """``bars`` bars day by day through the platform's loader (the two days after them kept back) and ``orders``
    orders spread evenly over those days."""
    source = SyntheticSource(symbols, Timeframe.m1)
    per_day = symbols * 320  # an IDX day: 09:00-12:00 and 13:30-15:50 WIB in 1-minute bars
    days_needed = -(-bars // per_day)
    orders_per_day = -(-orders // days_needed)
    loaded = placed = days = 0
    spare: list[tuple[date, pl.DataFrame]] = []
    started = time.perf_counter()
    with psycopg.connect(urls.etl, autocommit=True) as etl, psycopg.connect(urls.owner, autocommit=True) as owner:
        for day, frame in source.iter_days(DEFAULT_START, 2 * days_needed + 10):  # some IDX days are short
            if loaded >= bars:
                spare.append((day, frame))
                if len(spare) == 2:
                    return Loaded(loaded, days, placed, time.perf_counter() - started, spare, orders_per_day)
                continue
            frame = frame.head(bars - loaded)
            market_service.load_frame(etl, frame, source=SOURCE)
            loaded += frame.height
            days += 1
            if not trading.instruments:
                trading.instruments.update(instrument_ids(owner))
            trading.day(frame, min(orders_per_day, orders - placed))
            placed += trading.write(owner)
            if days % 20 == 0:
                print(f"  loaded {loaded:,} bars, {placed:,} orders ({days} days)", flush=True)
    raise BenchError("the synthetic source ran out of days")


def add_day(urls: DatabaseUrls, trading: Trading, day: date, frame: pl.DataFrame, orders: int) -> int:
    """One more day of bars (the platform's loader) and of orders; returns how many orders."""
    with psycopg.connect(urls.etl, autocommit=True) as etl, psycopg.connect(urls.owner, autocommit=True) as owner:
        market_service.load_frame(etl, frame, source=SOURCE)
        trading.day(frame, orders)
        written = trading.write(owner)
        owner.execute("analyze")
    print(f"one more day ({day}): {frame.height:,} bars and {written:,} orders loaded", flush=True)
    return written


def instrument_ids(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {str(symbol): int(ident) for ident, symbol in conn.execute("select id, symbol from market.instruments")}


# dbt -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    label: str
    seconds: float
    start_s: float  # process start to the first node's start: imports, partial parse, connection, relation cache
    nodes_s: float  # the first node's start to the last node's end
    results: list[dict[str, Any]]

    @property
    def end_s(self) -> float:
        return self.seconds - self.start_s - self.nodes_s

    def summed(self, kind: str) -> float:
        return sum(float(r.get("execution_time") or 0) for r in self.results if str(r["unique_id"]).startswith(kind))

    def top(self, count: int) -> list[tuple[str, float]]:
        ranked = sorted(self.results, key=lambda r: float(r.get("execution_time") or 0), reverse=True)
        return [(str(r["unique_id"]).split(".", 1)[0] + " " + str(r["unique_id"]).rsplit(".", 1)[-1],
                 float(r["execution_time"] or 0)) for r in ranked[:count]]  # fmt: skip


def _node_span(results: list[dict[str, Any]]) -> tuple[datetime, datetime]:
    """When the first node started and the last one ended (run_results timings, UTC)."""
    stamps = [
        datetime.fromisoformat(str(phase[key]).replace("Z", "+00:00"))
        for r in results
        for phase in r.get("timing") or []
        for key in ("started_at", "completed_at")
    ]
    return min(stamps), max(stamps)


def build(
    settings: Settings, target: Path, label: str, args: Sequence[str], env: dict[str, str] | None = None
) -> Build:
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    dbt.run_dbt(args, settings, target_path=target, env=env, check=True, timeout=DBT_TIMEOUT_S)
    seconds = time.perf_counter() - started
    results = json.loads((target / "run_results.json").read_text())["results"]
    failed = [r["unique_id"] for r in results if r["status"] not in ("success", "pass")]
    if failed:
        raise BenchError(f"{label}: {', '.join(failed)} did not pass")
    first, last = _node_span(results)
    start_s = (first - started_at).total_seconds()
    return Build(label, seconds, start_s, (last - first).total_seconds(), results)


def dbt_start_seconds(settings: Settings, target: Path) -> float:
    """``dbt --version``: the fixed cost of any dbt process (interpreter and imports)."""
    started = time.perf_counter()
    dbt.run_dbt(["--version"], settings, target_path=target, check=True, timeout=DBT_TIMEOUT_S)
    return time.perf_counter() - started


def daily_window_env(day: date) -> dict[str, str]:
    """The window the daily job passes for the Dagster partition of ``day`` (synthetic_daily: IDX days ending at
    midnight WIB)."""
    start = datetime.combine(day, clock_time.min, tzinfo=WIB)
    return dbt.window_env(start, start + timedelta(days=1))


def fingerprints(urls: DatabaseUrls) -> dict[str, str]:
    """Row count and an order-independent hash of every row (built_at left out) of each verified mart."""
    prints = {}
    with psycopg.connect(urls.etl, autocommit=True) as conn:
        for mart in VERIFIED_MARTS:
            table = sql.Identifier("analytics", mart)
            (row,) = conn.execute(
                sql.SQL(
                    "select count(*) || ':' || coalesce(sum(hashtextextended(m::text, 0)), 0) "
                    "from (select to_jsonb(t) - 'built_at' as m from {} as t) as s"
                ).format(table)
            ).fetchall()
            prints[mart] = str(row[0])
    return prints


# The run -------------------------------------------------------------------------------------------------------


@dataclass
class Measured:
    bars: int
    days: int
    orders: int
    day_orders: list[int]
    load_s: float
    dbt_start_s: float
    full: Build
    daily: list[Build]
    same_rows: bool | None = None

    @property
    def incremental_s(self) -> float:
        return statistics.fmean(b.seconds for b in self.daily)

    @property
    def ratio(self) -> float:
        return self.incremental_s / self.full.seconds


def measure(options: Options, home: Path, bars: int) -> Measured:
    with bench_database(home) as settings:
        urls = database_urls(settings)
        tenants = provision_tenants(home, options.tenants, urls)
        trading = Trading(tenants, {}, random.Random(bars))
        loaded = load_history(urls, trading, bars, options.orders, options.symbols)
        print(
            f"{loaded.bars:,} bars ({options.symbols} symbols x {loaded.days} IDX days) and {loaded.orders:,} orders "
            f"of {options.tenants} tenants loaded in {loaded.load_s:.1f} s",
            flush=True,
        )
        with psycopg.connect(urls.owner, autocommit=True) as owner:
            owner.execute("vacuum analyze")
        target = home / f"dbt-target-{bars}"
        dbt.ensure_manifest(target, refresh=True)  # parse once, untimed: every build starts from a partial parse
        start_s = dbt_start_seconds(settings, target)
        print(f"  dbt --version: {start_s:.1f} s (the fixed cost of a dbt process)")
        full = build(settings, target, "full", ["build", "--full-refresh"])
        report(full, options.top)

        daily, day_orders = [], []
        for day, frame in loaded.spare:
            day_orders.append(add_day(urls, trading, day, frame, loaded.orders_per_day))
            daily.append(build(settings, target, f"daily {day}", dbt.DAILY_BUILD_ARGS, daily_window_env(day)))
            report(daily[-1], options.top)
        measured = Measured(bars, loaded.days, loaded.orders, day_orders, loaded.load_s, start_s, full, daily)
        if options.verify:
            incremental = fingerprints(urls)
            build(settings, target, "verify", ["build", "--full-refresh", "--exclude-resource-type", "unit_test"])
            refreshed = fingerprints(urls)
            measured.same_rows = incremental == refreshed
            for mart in VERIFIED_MARTS:
                if incremental[mart] != refreshed[mart]:
                    print(f"  {mart}: incremental {incremental[mart]} vs full refresh {refreshed[mart]}")
            print(f"incremental marts equal to a full refresh: {measured.same_rows}", flush=True)
        return measured


def report(run: Build, top: int) -> None:
    kinds: dict[str, int] = {}
    for result in run.results:
        kind = str(result["unique_id"]).split(".", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    counted = ", ".join(f"{n} {kind}s" for kind, n in sorted(kinds.items()))
    print(
        f"  dbt build {run.label}: {run.seconds:.1f} s wall ({counted}) = process start {run.start_s:.1f} s + nodes "
        f"{run.nodes_s:.1f} s (models {run.summed('model.'):.1f} s, data tests {run.summed('test.'):.1f} s, unit "
        f"tests {run.summed('unit_test.'):.1f} s summed over threads) + process end {run.end_s:.1f} s"
    )
    for name, seconds in run.top(top):
        print(f"      {seconds:7.2f} s  {name}")


def _split(run: Build) -> dict[str, float]:
    return {
        "wall_s": round(run.seconds, 1),
        "process_start_s": round(run.start_s, 1),
        "nodes_s": round(run.nodes_s, 1),
        "process_end_s": round(run.end_s, 1),
        "models_summed_s": round(run.summed("model."), 1),
        "tests_summed_s": round(run.summed("test."), 1),
        "unit_tests_summed_s": round(run.summed("unit_test."), 1),
    }


def run(options: Options, home: Path) -> dict[str, Any]:
    print(
        f"dbt bench: bars {', '.join(f'{b:,}' for b in options.bars)}; {options.orders:,} orders of "
        f"{options.tenants} tenants; PostgreSQL embedded, {os.cpu_count()} CPUs; threads "
        f"{os.environ.get('PASAR_DBT_THREADS', '4')}",
        flush=True,
    )
    results = [measure(options, home, bars) for bars in options.bars]
    print()
    print("      bars   orders  full build  incremental day (mean of 2: each = start + nodes + end)       ratio")
    for m in results:
        days = "; ".join(f"{b.seconds:.1f} = {b.start_s:.1f} + {b.nodes_s:.1f} + {b.end_s:.1f}" for b in m.daily)
        print(
            f"{m.bars:>10,} {m.orders:>8,} {m.full.seconds:9.1f} s  {m.incremental_s:5.1f} s ({days}; "
            f"{'/'.join(f'{n:,}' for n in m.day_orders)} orders)  {m.ratio:6.3f}"
        )
        print(
            f"{'':20}dbt --version alone {m.dbt_start_s:.1f} s = {m.dbt_start_s / m.full.seconds:.1%} of the full build"
        )
    verdict = all(m.ratio <= BAR_RATIO for m in results)
    print(f"bar: incremental <= {BAR_RATIO:.0%} of full: {'PASS' if verdict else 'FAIL'}")
    return {
        "bench": "dbt",
        "orders": options.orders,
        "tenants": options.tenants,
        "runs": [
            {
                "bars": m.bars,
                "days": m.days,
                "day_orders": m.day_orders,
                "load_s": round(m.load_s, 1),
                "dbt_version_s": round(m.dbt_start_s, 1),
                "full_s": round(m.full.seconds, 1),
                "incremental_s": round(m.incremental_s, 1),
                "ratio": round(m.ratio, 3),
                "full": _split(m.full),
                "incremental_days": [_split(b) for b in m.daily],
                "full_top": {name: round(s, 2) for name, s in m.full.top(options.top)},
                "incremental_top": {name: round(s, 2) for name, s in m.daily[-1].top(options.top)},
                "same_rows": m.same_rows,
            }
            for m in results
        ],
        "pass": verdict,
    }


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    with _home(options.home) as home:
        figures = run(options, home)
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
