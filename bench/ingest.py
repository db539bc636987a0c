"""Market-data ingest: the platform's load path beside a raw binary ``COPY`` of the same rows, in one run.

The platform path is ``pasar.market.service.load_frame`` as the Dagster assets call it, one transaction per batch
(default: one trading day): conform → instruments → partitions → ``repository.write_bars``, which checks whether the
batch's range already holds any of its rows and, when it does not (the first load of a day), streams the rows with a
binary COPY straight into ``market.bars`` inside a savepoint; otherwise (a re-run, a correction, or a unique violation
from a concurrent load) it copies them into a temp staging table and merges with one ``INSERT … ON CONFLICT`` that
leaves identical rows alone. Then ``market.bar_series`` is widened.

The raw path is a plain binary ``COPY … FROM STDIN (FORMAT BINARY)`` of the same rows, in one transaction, into
``bench_raw.bars``: ``CREATE TABLE … (LIKE market.bars INCLUDING ALL) PARTITION BY RANGE (ts)`` (LIKE copies the
columns, types, defaults, checks and primary key but not the partitioning or foreign keys, so both are added: the
same monthly partitions, made by the platform's ``ensure_time_partitions``, and whatever foreign keys market.bars
has, copied from the catalog). Two raw clients are timed and the faster one is the denominator of the ratio:

* ``psycopg``: ``copy.set_types([...])`` and ``write_row`` per row with ``Decimal`` prices (psycopg's C dumpers);
* ``numpy``: the platform's own encoder (``repository.copy_bars``: tuples built by numpy, numerics included, in a
  fixed 7-digit base-10000 layout the server normalises, 8k-row chunks streamed into one COPY), so the client costs
  little and the time is the server's.

Both paths start from the same generated polars frame (generation is timed apart and belongs to neither), load an
empty target after a CHECKPOINT, and are checked to store exactly the same rows (values and scales). Stage timings
of the platform path come from a timing cursor and two timing wrappers around the platform's own functions. Besides
wall time, each load reports the CPU time per row of this process and of its server backend (from /proc), which
varies far less than wall time when other work shares the machine.

Bar (docs ARCHITECTURE.md, "market data ingest"): >= 70% of a raw binary COPY of the same rows; >= 150k rows/s.

    python -m bench.ingest [--rows 1000000] [--symbols 100] [--batch-days 1] [--repeat 1] [--variants] [--home DIR]

``--variants`` also times the loader with 5 days per transaction, with every batch forced through the merge path,
and a second load of the same batches (a re-materialization, which writes nothing).
Everything runs in a dedicated database (``pasar_bench_ingest``) of the embedded cluster of ``--home`` (default: a
fresh temporary home, removed at the end), dropped at the end; the cluster is stopped unless it was already running.
The last line of stdout is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Self, cast
from unittest import mock

import numpy as np
import numpy.typing as npt
import polars as pl
import psycopg
from psycopg import sql
from psycopg.abc import Params, Query, QueryNoTemplate
from psycopg.copy import Copy, Writer
from psycopg.transaction import Transaction

from pasar.config import Settings
from pasar.db.embedded import EmbeddedCluster
from pasar.db.migrate import migrate
from pasar.db.urls import database_urls
from pasar.market import copy_format, exchange, repository, service
from pasar.market.copy_format import BinaryColumn
from pasar.market.frames import Timeframe, conform
from pasar.market.sources.synthetic import DEFAULT_START, SyntheticSource

BAR_RATIO = 0.70
BAR_ROWS_PER_S = 150_000.0
BENCH_DATABASE = "pasar_bench_ingest"
SOURCE = "synthetic"
RAW_TABLE = "bench_raw.bars"
_COPY_TYPES = ["int4", "text", "timestamptz", "numeric", "numeric", "numeric", "numeric", "numeric", "bool", "text"]

IntArray = npt.NDArray[np.int64]

# Stage timings of the platform path ----------------------------------------------------------------------------


@dataclass
class StageClock:
    """Seconds per stage of the platform path."""

    seconds: dict[str, float] = field(default_factory=dict)
    explain: list[str] | None = None  # when a list, the merge runs under EXPLAIN ANALYZE and its plan lands here

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def reset(self) -> None:
        self.seconds = {}


CLOCK = StageClock()

_STATEMENT_STAGES = (
    ("select id, symbol, price_precision", "instruments"),
    ("insert into market.instruments", "instruments"),
    ("select pasar_internal.ensure_time_partitions", "partitions"),
    ("create temp table", "stage_table"),
    ("insert into market.bars ", "merge"),
    ("insert into market.bar_series", "bar_series"),
    ("select exists ( select 1 from market.bar_series", "exists_check"),
)


def _stage_of(text: str) -> str:
    head = " ".join(text.split())[:60].lower()
    return next((stage for prefix, stage in _STATEMENT_STAGES if head.startswith(prefix)), "other_sql")


class TimedCursor(psycopg.Cursor[Any]):
    """Adds each statement's wall time (client send + server + result) to CLOCK under its stage."""

    def execute(
        self, query: Query, params: Params | None = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> Self:
        text = query.as_string(self) if isinstance(query, sql.Composable) else str(query)
        stage = _stage_of(text)
        started = time.perf_counter()
        if stage == "merge" and CLOCK.explain is not None:
            query = "explain (analyze, buffers) " + text
        try:
            super().execute(cast(QueryNoTemplate, query), params, prepare=prepare, binary=binary)
            if stage == "merge" and CLOCK.explain is not None:
                CLOCK.explain.extend(str(row[0]) for row in self.fetchall())
            return self
        finally:
            CLOCK.add(stage, time.perf_counter() - started)

    @contextmanager
    def copy(self, statement: Query, params: Params | None = None, *, writer: Writer | None = None) -> Iterator[Copy]:
        started = time.perf_counter()
        try:
            with super().copy(statement, params, writer=writer) as copy:
                yield copy
        finally:
            CLOCK.add("copy", time.perf_counter() - started)


class TimedConnection(psycopg.Connection[Any]):
    """Adds the COMMIT (or ROLLBACK) at the end of each ``transaction()`` block to CLOCK."""

    @contextmanager
    def transaction(self, savepoint_name: str | None = None, force_rollback: bool = False) -> Iterator[Transaction]:
        tx = Transaction(self, savepoint_name, force_rollback)
        tx.__enter__()
        try:
            yield tx
        except BaseException as exc:
            if not tx.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            started = time.perf_counter()
            tx.__exit__(None, None, None)
            CLOCK.add("commit", time.perf_counter() - started)


@contextmanager
def instrumented() -> Iterator[None]:
    """Time the platform's client stages: ``conform``, and the encoding done while a COPY is open (moved from the
    timing cursor's "copy" to "encode")."""
    encode_tuples = copy_format.encode_tuples

    def timed_conform(frame: pl.DataFrame) -> pl.DataFrame:
        started = time.perf_counter()
        try:
            return conform(frame)
        finally:
            CLOCK.add("conform", time.perf_counter() - started)

    def timed_encode(columns: Sequence[BinaryColumn]) -> bytes:
        started = time.perf_counter()
        try:
            return encode_tuples(columns)
        finally:
            CLOCK.add("encode", time.perf_counter() - started)
            CLOCK.add("copy", started - time.perf_counter())

    with (
        mock.patch.object(service, "conform", timed_conform),
        mock.patch.object(repository, "encode_tuples", timed_encode),
    ):
        yield


# The data set --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    days: list[pl.DataFrame]  # one canonical frame per trading day; the last is cut so that the total is ``rows``
    spare: pl.DataFrame  # the next trading day, loaded by neither path: the batch of the EXPLAIN ANALYZE
    symbols: list[str]
    generate_s: float

    @property
    def rows(self) -> int:
        return sum(day.height for day in self.days)

    def frame(self) -> pl.DataFrame:
        return pl.concat(self.days, rechunk=True)

    def batches(self, batch_days: int) -> list[pl.DataFrame]:
        step = batch_days if batch_days > 0 else len(self.days)
        return [pl.concat(self.days[i : i + step], rechunk=True) for i in range(0, len(self.days), step)]


def generate_dataset(rows: int, symbols: int) -> Dataset:
    source = SyntheticSource(symbols, Timeframe.m1)
    days: list[pl.DataFrame] = []
    total = 0
    spare: pl.DataFrame | None = None
    started = time.perf_counter()
    for _, frame in source.iter_days(DEFAULT_START, math.ceil(rows / (symbols * 200)) + 2):
        if total >= rows:
            spare = frame
            break
        days.append(frame.head(rows - total))
        total += days[-1].height
    elapsed = time.perf_counter() - started
    if spare is None or total < rows:
        raise RuntimeError("the synthetic source ran out of days")
    return Dataset(days, spare, list(source.symbols), elapsed)


# The database --------------------------------------------------------------------------------------------------


@dataclass
class Database:
    owner: psycopg.Connection[Any]
    etl: TimedConnection

    def scalar(self, query: QueryNoTemplate, params: Params | None = None) -> Any:
        row = self.owner.execute(query, params).fetchone()
        return None if row is None else row[0]

    def fresh(self, *tables: str) -> None:
        """Empty ``tables`` and checkpoint, so every timed load starts from the same state."""
        self.owner.execute(sql.SQL("truncate {}").format(sql.SQL(", ").join(map(_ident, tables))))
        self.owner.execute("checkpoint")

    def wal_lsn(self) -> str:
        return str(self.scalar("select pg_current_wal_insert_lsn()::text"))

    def wal_since(self, lsn: str) -> int:
        return int(self.scalar("select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s::pg_lsn)", [lsn]))

    def bytes_of(self, table: str) -> int:
        """Heap + TOAST + indexes of a partitioned table and all its partitions."""
        query = "select coalesce(sum(pg_total_relation_size(relid)), 0) from pg_partition_tree(%s::regclass)"
        return int(self.scalar(query, [table]))

    def fingerprint(self, table: str) -> str:
        """Row count and a sum of row hashes over the loaded columns as text (numeric scales count)."""
        query = sql.SQL("select count(*) || ':' || coalesce(sum(hashtextextended(({}){}, 0)), 0) from {}").format(
            sql.SQL(", ").join(map(sql.Identifier, repository.BAR_COLUMNS)), sql.SQL("::text"), _ident(table)
        )
        return str(self.scalar(query))


def _ident(qualified: str) -> sql.Identifier:
    return sql.Identifier(*qualified.split("."))


def create_raw_tables(db: Database, dataset: Dataset) -> list[str]:
    """bench_raw.bars: market.bars' columns, types, defaults, checks, primary key, monthly partitions and foreign
    keys (returned, as SQL)."""
    first = min(day["ts"].min() for day in (*dataset.days, dataset.spare))  # type: ignore[type-var]
    last = max(day["ts"].max() for day in (*dataset.days, dataset.spare))  # type: ignore[type-var]
    foreign_keys = [
        str(row[0])
        for row in db.owner.execute(
            "select pg_get_constraintdef(oid) from pg_constraint "
            "where conrelid = 'market.bars'::regclass and contype = 'f' order by conname"
        )
    ]
    db.owner.execute("drop schema if exists bench_raw cascade")
    db.owner.execute("create schema bench_raw")
    table = _ident(RAW_TABLE)
    db.owner.execute(sql.SQL("create table {} (like market.bars including all) partition by range (ts)").format(table))
    for definition in foreign_keys:
        db.owner.execute(sql.SQL("alter table {} add {}").format(table, sql.SQL(definition)))
    db.owner.execute(sql.SQL("create table {} partition of {} default").format(_ident(RAW_TABLE + "_default"), table))
    db.owner.execute(
        "insert into pasar_internal.timeseries_tables values (%s::regclass, 'ts', 'month', false)", [RAW_TABLE]
    )
    db.owner.execute("select pasar_internal.ensure_time_partitions(%s::regclass, %s, %s)", [RAW_TABLE, first, last])
    return foreign_keys


def ensure_instruments(conn: psycopg.Connection[Any], symbols: Sequence[str]) -> dict[str, repository.InstrumentRef]:
    """The reference data and the synthetic symbols' instruments, as ``ingest_synthetic`` leaves them (untimed:
    the raw path needs the instrument ids)."""
    service.sync_reference_data(conn)
    with conn.transaction():
        known = repository.instrument_refs(conn, symbols)
        missing = [asdict(exchange.default_instrument(s)) for s in symbols if s not in known]
        repository.insert_missing_instruments(conn, missing)
        return repository.instrument_refs(conn, symbols)


@contextmanager
def database(home: Path) -> Iterator[Database]:
    """The embedded cluster of ``home`` with a freshly migrated bench database; dropped (and the cluster stopped
    unless it was already running) at the end."""
    os.environ.pop("PASAR_DATABASE_URL", None)
    os.environ["PASAR_HOME"] = str(home)
    cluster = EmbeddedCluster(home)
    was_running = cluster.status().running
    try:
        urls = database_urls(Settings(home=home, database_name=BENCH_DATABASE))  # starts the cluster
        cluster.drop_database(BENCH_DATABASE)  # whatever an interrupted run left behind
        cluster.ensure_database(BENCH_DATABASE)
        migrate(urls)
        with (
            psycopg.connect(urls.owner, autocommit=True) as owner,
            TimedConnection.connect(urls.etl, autocommit=True, cursor_factory=TimedCursor) as etl,
        ):
            yield Database(owner, etl)
    finally:
        if cluster.status().running:
            cluster.drop_database(BENCH_DATABASE)
            if not was_running:
                cluster.stop()


# Timed loads ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Wall time, this process's CPU time and the CPU time of a connection's server backend (from /proc; NaN when
    unreadable), in seconds. CPU times tell the alternatives apart when other work shares the machine."""

    wall: float
    client_cpu: float
    server_cpu: float

    @classmethod
    def now(cls, conn: psycopg.Connection[Any]) -> Usage:
        try:
            fields = Path(f"/proc/{conn.info.backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
            server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        except (OSError, IndexError, ValueError):
            server = math.nan
        return cls(time.perf_counter(), time.process_time(), server)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.wall - other.wall, self.client_cpu - other.client_cpu, self.server_cpu - other.server_cpu)


@dataclass
class Measured:
    name: str
    rows: int
    usage: Usage
    wal_bytes: int
    stages: dict[str, float] = field(default_factory=dict)
    note: str = ""
    fingerprint: str = ""  # Database.fingerprint of what it stored

    @property
    def seconds(self) -> float:
        return self.usage.wall

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def cpu_us_per_row(self) -> tuple[float, float]:
        """(client, server) CPU microseconds per row."""
        return self.usage.client_cpu / self.rows * 1e6, self.usage.server_cpu / self.rows * 1e6


def _decimals(column: BinaryColumn) -> list[Decimal]:
    """A numeric column of ``repository.bar_columns`` as the Decimals it stands for, at its display scale."""
    scale = np.broadcast_to(np.asarray(column.scale), column.values.shape)
    dscale = np.broadcast_to(np.asarray(column.dscale), column.values.shape)
    shown = column.values // np.power(10, scale - dscale)  # drops only the zeros that dscale trims
    return [Decimal(v).scaleb(-d) for v, d in zip(shown.tolist(), dscale.tolist(), strict=True)]


def raw_psycopg(
    conn: psycopg.Connection[Any], frame: pl.DataFrame, refs: dict[str, repository.InstrumentRef]
) -> dict[str, float]:
    """``write_row`` per row with Python values (Decimal prices): psycopg's C dumpers do the binary format."""
    started = time.perf_counter()
    encoded = repository.bar_columns(frame, refs, source=SOURCE, volume_decimals=repository.volume_scale(frame))
    columns: list[list[Any]] = [
        frame[column.name].to_list() if column.name == "ts" else
        _decimals(column) if column.kind == "numeric" else
        [value.decode() for value in column.values.tolist()] if column.kind == "text" else
        column.values.astype(bool if column.kind == "bool" else np.int64).tolist()
        for column in encoded
    ]  # fmt: skip
    prepared = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        statement = sql.SQL("copy {} ({}) from stdin (format binary)").format(
            _ident(RAW_TABLE), sql.SQL(", ").join(map(sql.Identifier, repository.BAR_COLUMNS))
        )
        with cur.copy(statement) as copy:
            copy.set_types(_COPY_TYPES)
            for row in zip(*columns, strict=True):
                copy.write_row(row)
        copied = time.perf_counter()
    done = time.perf_counter()
    return {"prepare": prepared - started, "copy": copied - prepared, "commit": done - copied}


def raw_numpy(
    conn: psycopg.Connection[Any], frame: pl.DataFrame, refs: dict[str, repository.InstrumentRef]
) -> dict[str, float]:
    """The platform's encoder (``repository.copy_bars``: numpy-built tuples streamed in chunks) into one COPY."""
    started = time.perf_counter()
    with conn.transaction():
        repository.copy_bars(conn, _ident(RAW_TABLE), frame, refs, source=SOURCE)
        copied = time.perf_counter()
    done = time.perf_counter()
    return {"copy": copied - started, "commit": done - copied}


RawLoad = Callable[[psycopg.Connection[Any], pl.DataFrame, dict[str, repository.InstrumentRef]], dict[str, float]]


@dataclass(frozen=True)
class RawPath:
    note: str
    load: RawLoad


RAW_PATHS = {
    "psycopg": RawPath(
        "psycopg write_row per row, Decimal prices, C dumpers",
        raw_psycopg,
    ),
    "numpy": RawPath("numpy-encoded tuples (numerics included), streamed in 8k-row chunks", raw_numpy),
}


def time_raw(db: Database, name: str, frame: pl.DataFrame, refs: dict[str, repository.InstrumentRef]) -> Measured:
    path = RAW_PATHS[name]
    db.fresh(RAW_TABLE)
    lsn = db.wal_lsn()
    before = Usage.now(db.owner)
    stages = path.load(db.owner, frame, refs)
    usage = Usage.now(db.owner) - before
    measured = Measured(name, frame.height, usage, db.wal_since(lsn), stages, path.note)
    measured.fingerprint = db.fingerprint(RAW_TABLE)
    return measured


def time_loader(
    db: Database,
    name: str,
    note: str,
    batches: Sequence[pl.DataFrame],
    load: Callable[[pl.DataFrame], int],
    *,
    empty_first: bool = True,
) -> Measured:
    """``load`` of every batch, as pasar_etl (on an empty market.bars unless told); stage timings from CLOCK."""
    if empty_first:
        db.fresh("market.bars", "market.bar_series")
    lsn = db.wal_lsn()
    CLOCK.reset()
    with instrumented():
        before = Usage.now(db.etl)
        for batch in batches:
            load(batch)
        usage = Usage.now(db.etl) - before
    stages = dict(CLOCK.seconds)
    stages["python_other"] = usage.wall - sum(stages.values())
    measured = Measured(name, sum(batch.height for batch in batches), usage, db.wal_since(lsn), stages, note)
    measured.fingerprint = db.fingerprint("market.bars")
    return measured


def _load_frame(db: Database) -> Callable[[pl.DataFrame], int]:
    """The platform path: ``service.load_frame`` exactly as the ingest assets call it."""
    return lambda batch: service.load_frame(db.etl, batch, source=SOURCE).rows_written


def explain_merge(db: Database, frame: pl.DataFrame, symbols: Sequence[str]) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the platform's merge of ``frame`` (new rows, after the timed load), rolled
    back."""
    CLOCK.explain = []
    try:
        with db.etl.transaction(force_rollback=True):
            refs = repository.instrument_refs(db.etl, symbols)
            repository.ensure_bar_partitions(db.etl, frame["ts"].min(), frame["ts"].max())  # type: ignore[arg-type]
            repository.stage_and_merge(db.etl, conform(frame), refs, source=SOURCE)
        return CLOCK.explain
    finally:
        CLOCK.explain = None


# Alternatives of the loader's paths ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    note: str
    batch_days: int | None = None  # None: --batch-days; 0: everything in one transaction
    merge_only: bool = False  # every batch through stage_and_merge, as when its range already holds rows
    reload: bool = False  # time a second load of the same batches (a re-materialization), not the first


VARIANTS = (
    Variant("batch_5_days", "platform code, 5 trading days per transaction", batch_days=5),
    Variant(
        "merge_path",
        "every batch staged and merged (INSERT ... ON CONFLICT), the path of a range that already holds rows",
        merge_only=True,
    ),
    Variant("reload", "the same batches loaded again: every row merged, identical, nothing written", reload=True),
)


def time_variant(db: Database, dataset: Dataset, variant: Variant, batch_days: int) -> Measured:
    """One timed load of ``variant`` through ``service.load_frame``, checked against the raw table."""
    batches = dataset.batches(batch_days if variant.batch_days is None else variant.batch_days)
    load = _load_frame(db)
    if variant.reload:
        db.fresh("market.bars", "market.bar_series")
        for batch in batches:
            load(batch)
    with mock.patch.object(repository, "_range_holds_bars", return_value=True) if variant.merge_only else nullcontext():
        return time_loader(db, variant.name, variant.note, batches, load, empty_first=not variant.reload)


# Report --------------------------------------------------------------------------------------------------------


def _stages(measured: Measured) -> str:
    return ", ".join(
        f"{stage} {seconds:.2f}" for stage, seconds in sorted(measured.stages.items(), key=lambda s: -s[1])
    )


def _line(measured: Measured, raw: Measured | None = None) -> str:
    ratio = f" {measured.rows_per_s / raw.rows_per_s:6.1%} of raw" if raw else ""
    client, server = measured.cpu_us_per_row()
    wal = measured.wal_bytes / measured.rows
    return (
        f"  {measured.name:<26} {measured.rows:>9,} rows {measured.seconds:6.2f} s {measured.rows_per_s:>8,.0f} rows/s"
        f"{ratio}  CPU/row client {client:4.1f} us server {server:4.1f} us  WAL/row {wal:3.0f} B"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="1-minute bars to load (default 1,000,000)")
    parser.add_argument("--symbols", type=int, default=100, help="synthetic symbols (default 100)")
    parser.add_argument(
        "--batch-days", type=int, default=1, help="trading days per platform transaction (default 1; 0: all)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds of raw then platform; the best is kept")
    parser.add_argument("--variants", action="store_true", help="also time alternatives of the loader")
    parser.add_argument("--home", type=Path, default=None, help="PASAR_HOME of the embedded cluster (default: temp)")
    args = parser.parse_args(argv)
    if args.rows <= 0 or args.symbols <= 0 or args.batch_days < 0 or args.repeat <= 0:
        parser.error("--rows, --symbols and --repeat must be positive, --batch-days >= 0")
    return args


def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    dataset = generate_dataset(args.rows, args.symbols)
    frame, batches = dataset.frame(), dataset.batches(args.batch_days)
    print(
        f"ingest bench: {dataset.rows:,} 1m bars = {args.symbols} symbols x {len(dataset.days)} trading days "
        f"(synthetic IDX, generated in {dataset.generate_s:.2f} s = {dataset.rows / dataset.generate_s:,.0f} bars/s, "
        f"not part of either load); platform batches: {len(batches)} x {args.batch_days or len(dataset.days)} day(s)",
        flush=True,
    )
    with database(home) as db:
        refs = ensure_instruments(db.etl, dataset.symbols)
        foreign_keys = create_raw_tables(db, dataset)
        server = db.scalar("select current_setting('server_version')")
        print(
            f"PostgreSQL {server} (embedded, {os.cpu_count()} CPUs); raw table {RAW_TABLE}: LIKE market.bars "
            "INCLUDING ALL + PARTITION BY RANGE (ts) with the same monthly partitions; foreign keys copied from "
            f"market.bars: {'; '.join(foreign_keys) or 'none (market.bars has none)'}",
            flush=True,
        )
        raws: dict[str, Measured] = {}
        platform: Measured | None = None
        for round_ in range(args.repeat):
            for name in RAW_PATHS:
                measured = time_raw(db, name, frame, refs)
                raws[name] = max(raws.get(name, measured), measured, key=lambda m: m.rows_per_s)
                print(f"round {round_ + 1} raw      {_line(measured)}", flush=True)
            measured = time_loader(db, "platform", "service.load_frame", batches, _load_frame(db))
            platform = max(platform or measured, measured, key=lambda m: m.rows_per_s)
            print(f"round {round_ + 1} platform {_line(measured)}", flush=True)
        assert platform is not None
        platform_bytes, raw_bytes = db.bytes_of("market.bars"), db.bytes_of(RAW_TABLE)
        plan = explain_merge(db, dataset.spare, dataset.symbols)
        variants: list[Measured] = []
        for variant in VARIANTS if args.variants else ():
            runs = [time_variant(db, dataset, variant, args.batch_days) for _ in range(args.repeat)]
            variants.append(max(runs, key=lambda m: m.rows_per_s))
            print(f"variant  {_line(variants[-1])}", flush=True)
    raw = max(raws.values(), key=lambda m: m.rows_per_s)
    ratio = platform.rows_per_s / raw.rows_per_s
    expected = raw.fingerprint

    def same(measured: Measured) -> str:
        return "same rows" if measured.fingerprint == expected else f"DIFFERENT ROWS ({measured.fingerprint})"

    print()
    print(f"raw COPY into {RAW_TABLE} (one transaction), best of {args.repeat}:")
    for measured in raws.values():
        print(f"{_line(measured, raw)}  {same(measured)}  [{_stages(measured)}]  {measured.note}")
    print(f"platform service.load_frame, {len(batches)} transactions, best of {args.repeat}:")
    print(f"{_line(platform, raw)}  {same(platform)}")
    print(f"  stages (s): {_stages(platform)}")
    print(
        f"bytes per bar on disk (heap + indexes, all partitions): platform {platform_bytes / platform.rows:.1f}, "
        f"raw {raw_bytes / raw.rows:.1f}"
    )
    print(
        "EXPLAIN (ANALYZE, BUFFERS) of the merge path (re-runs, corrections) on one more day "
        f"({dataset.spare.height:,} new rows):"
    )
    for line in plan:
        print(f"    {line}")
    if variants:
        print(
            f"alternatives of the loader (on an empty market.bars unless said; {args.batch_days or 'all'} day(s) per "
            f"transaction unless said), best of {args.repeat}:"
        )
        for measured in variants:
            print(f"{_line(measured, raw)}  {same(measured)}; {measured.note}")
            print(f"      stages (s): {_stages(measured)}")
    verdict = ratio >= BAR_RATIO and platform.rows_per_s >= BAR_ROWS_PER_S
    print(
        f"platform {platform.rows_per_s:,.0f} rows/s vs raw ({raw.name}) {raw.rows_per_s:,.0f} rows/s: "
        f"ratio {ratio:.2f} (bar >= {BAR_RATIO:.2f}), throughput bar >= {BAR_ROWS_PER_S:,.0f} rows/s: "
        f"{'PASS' if verdict else 'FAIL'}"
    )
    return {
        "bench": "ingest",
        "rows": dataset.rows,
        "platform_rows_per_s": round(platform.rows_per_s),
        "raw_rows_per_s": round(raw.rows_per_s),
        "raw_path": raw.name,
        "ratio": round(ratio, 3),
        "platform_bytes_per_bar": round(platform_bytes / platform.rows, 1),
        "raw_bytes_per_bar": round(raw_bytes / raw.rows, 1),
        "raw_paths_rows_per_s": {name: round(m.rows_per_s) for name, m in raws.items()},
        "raw_table": "like market.bars including all, partitioned by range (ts) monthly, same foreign keys",
        "batch_days": args.batch_days,
        "transactions": len(batches),
        "platform_stages_s": {k: round(v, 3) for k, v in platform.stages.items()},
        "generate_s": round(dataset.generate_s, 3),
        "same_rows": all(m.fingerprint == expected for m in (platform, *raws.values(), *variants)),
        "variants_rows_per_s": {m.name: round(m.rows_per_s) for m in variants},
        "pass": verdict,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    home = args.home.resolve() if args.home else Path(tempfile.mkdtemp(prefix="pasar-bench-ingest-"))
    if args.home is None:
        home.chmod(0o755)  # the embedded server runs as the postgres OS user when we are root
    try:
        figures = run(args, home)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
