"""Market-data ingest: the platform's load path beside a raw binary ``COPY`` of the same rows, in one run.

The platform path is ``pasar.market.service.load_frame`` as the Dagster assets call it, one transaction per batch
(default: one trading day): conform → instruments → partitions → vectorised binary COPY of scaled integers into a
temp staging table → one ``INSERT … ON CONFLICT`` merge into ``market.bars`` (+ ``market.bar_series``).

The raw path is a plain binary ``COPY … FROM STDIN (FORMAT BINARY)`` of the same rows, in one transaction, into
``bench_raw.bars``: ``CREATE TABLE … (LIKE market.bars INCLUDING ALL) PARTITION BY RANGE (ts)`` (LIKE copies the
columns, types, defaults, checks and primary key but not the partitioning or foreign keys, so both are added: the
same monthly partitions, made by the platform's ``ensure_time_partitions``, and whatever foreign keys market.bars
has, copied from the catalog). Two raw clients are timed and the faster one is the denominator of the ratio:

* ``psycopg``: ``copy.set_types([...])`` and ``write_row`` per row with ``Decimal`` prices (psycopg's C dumpers);
* ``numpy``: the tuples built by numpy (numerics included, in a fixed 7-digit base-10000 layout the server
  normalises) in 32k-row chunks streamed into one COPY, so the client costs little and the time is the server's.

Both paths start from the same generated polars frame (generation is timed apart and belongs to neither), load an
empty target after a CHECKPOINT, and are checked to store exactly the same rows (values and scales). Stage timings
of the platform path come from a timing cursor and two timing wrappers around the platform's own functions. Besides
wall time, each load reports the CPU time per row of this process and of its server backend (from /proc), which
varies far less than wall time when other work shares the machine.

Bar (docs ARCHITECTURE.md, "market data ingest"): >= 70% of a raw binary COPY of the same rows; >= 150k rows/s.

    python -m bench.ingest [--rows 1000000] [--symbols 100] [--batch-days 1] [--repeat 1] [--variants] [--home DIR]

``--variants`` also times alternatives of the loader (prototyped here, not in pasar/) on the same rows.
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
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Self, cast
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
from pasar.market import exchange, repository, service
from pasar.market.copy_format import HEADER, PG_EPOCH_OFFSET_US, TRAILER
from pasar.market.frames import Timeframe, conform
from pasar.market.sources.synthetic import DEFAULT_START, SyntheticSource

BAR_RATIO = 0.70
BAR_ROWS_PER_S = 150_000.0
BENCH_DATABASE = "pasar_bench_ingest"
SOURCE = "synthetic"
RAW_TABLE = "bench_raw.bars"
RAW_CHUNK_ROWS = 32_768
COPY_IF_NEW_CHUNK_ROWS = 8_192  # a trading day (32k rows) in 4 pieces, so encoding overlaps the server's work
COLUMNS = ("instrument_id", "timeframe", "ts", "open", "high", "low", "close", "volume", "is_adjusted", "source")
PRICES = ("open", "high", "low", "close")

IntArray = npt.NDArray[np.int64]

# Stage timings of the platform path ----------------------------------------------------------------------------


@dataclass
class StageClock:
    """Seconds per stage of the platform path; ``mark`` is when ``stage_and_merge`` was entered."""

    seconds: dict[str, float] = field(default_factory=dict)
    mark: float | None = None
    explain: list[str] | None = None  # when a list, the merge runs under EXPLAIN ANALYZE and its plan lands here

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def reset(self) -> None:
        self.seconds, self.mark = {}, None


CLOCK = StageClock()

_STATEMENT_STAGES = (
    ("select id, symbol, price_precision", "instruments"),
    ("insert into market.instruments", "instruments"),
    ("select pasar_internal.ensure_time_partitions", "partitions"),
    ("create temp table", "stage_table"),
    ("insert into market.bars ", "merge"),
    ("insert into market.bar_series", "bar_series"),
    ("select exists (select 1 from market.bars", "exists_check"),
    ("set ", "settings"),
)


def _stage_of(query: Query) -> str:
    text = query if isinstance(query, str) else query.decode() if isinstance(query, bytes) else ""
    head = " ".join(text.split())[:60].lower()
    return next((stage for prefix, stage in _STATEMENT_STAGES if head.startswith(prefix)), "other_sql")


class TimedCursor(psycopg.Cursor[Any]):
    """Adds each statement's wall time (client send + server + result) to CLOCK under its stage."""

    def execute(
        self, query: Query, params: Params | None = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> Self:
        stage = _stage_of(query)
        started = time.perf_counter()
        if stage == "stage_table" and CLOCK.mark is not None:
            CLOCK.add("encode", started - CLOCK.mark)  # stage_and_merge's numpy/polars work before its first SQL
            CLOCK.mark = None
        explain = stage == "merge" and CLOCK.explain is not None and isinstance(query, str)
        if explain and isinstance(query, str):
            query = "explain (analyze, buffers) " + query
        try:
            super().execute(cast(QueryNoTemplate, query), params, prepare=prepare, binary=binary)
            if explain and CLOCK.explain is not None:
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
    """Time the platform's client stages: ``conform`` and the encoding at the start of ``stage_and_merge``."""
    stage_and_merge = repository.stage_and_merge

    def timed_conform(frame: pl.DataFrame) -> pl.DataFrame:
        started = time.perf_counter()
        try:
            return conform(frame)
        finally:
            CLOCK.add("conform", time.perf_counter() - started)

    def timed_stage_and_merge(
        conn: psycopg.Connection[Any], frame: pl.DataFrame, refs: dict[str, repository.InstrumentRef], *, source: str
    ) -> repository.MergeResult:
        CLOCK.mark = time.perf_counter()
        return stage_and_merge(conn, frame, refs, source=source)

    with (
        mock.patch.object(service, "conform", timed_conform),
        mock.patch.object(repository, "stage_and_merge", timed_stage_and_merge),
    ):
        yield


# Binary COPY encoding with numerics (vectorised) ---------------------------------------------------------------

# A numeric in PostgreSQL's binary format is (ndigits, weight, sign, dscale, base-10000 digits). Every value here is
# written with the same 7 digits, 5 for the integer part (an int64 has at most 19 decimal digits) and 2 for up to
# 8 decimals, weight 4: fixed width, so a whole column is one numpy field; numeric_recv strips the zero digits.
_NUMERIC_DIGITS = 7
_NUMERIC_WEIGHT = 4
_NUMERIC_FRACTION = 8
_NUMERIC_NEG = 0x4000
_POW10 = np.array([10**k for k in range(19)], dtype=np.uint64)
_FIXED = {"int2": ">i2", "int4": ">i4", "int8": ">i8", "timestamptz": ">i8", "bool": ">i1"}


@dataclass(frozen=True)
class BinaryColumn:
    """One COPY column. numeric: ``values`` are integers × 10^-``scale`` shown with ``dscale`` decimals;
    text: ``values`` is a numpy bytes array whose items all have the same length; timestamptz: Unix µs."""

    name: str
    kind: Literal["int2", "int4", "int8", "timestamptz", "bool", "numeric", "text"]
    values: npt.NDArray[Any]
    scale: IntArray | int = 0
    dscale: IntArray | int = 0


def _fields(column: BinaryColumn) -> list[tuple[Any, ...]]:
    name = column.name
    if column.kind == "numeric":
        return [
            (f"{name}__len", ">i4"),
            (f"{name}__ndigits", ">i2"),
            (f"{name}__weight", ">i2"),
            (f"{name}__sign", ">u2"),
            (f"{name}__dscale", ">u2"),
            (name, ">i2", (_NUMERIC_DIGITS,)),
        ]
    code = column.values.dtype.str[1:] if column.kind == "text" else _FIXED[column.kind]
    return [(f"{name}__len", ">i4"), (name, code)]


def _fill_numeric(record: npt.NDArray[np.void], column: BinaryColumn) -> None:
    scaled = column.values.astype(np.int64)
    magnitude = np.abs(scaled).astype(np.uint64)
    scale = np.broadcast_to(np.asarray(column.scale, dtype=np.int64), scaled.shape)
    if scale.min(initial=0) < 0 or scale.max(initial=0) > _NUMERIC_FRACTION:
        raise ValueError(f"{column.name}: scales must be in 0..{_NUMERIC_FRACTION}")
    unit = _POW10[scale]
    whole, fraction = magnitude // unit, (magnitude % unit) * _POW10[_NUMERIC_FRACTION - scale]
    digits = record[column.name]
    digits[:, 5], digits[:, 6] = fraction // 10_000, fraction % 10_000
    for position in range(4, -1, -1):
        digits[:, position] = whole % 10_000
        whole //= 10_000
    record[f"{column.name}__len"] = 8 + 2 * _NUMERIC_DIGITS
    record[f"{column.name}__ndigits"] = _NUMERIC_DIGITS
    record[f"{column.name}__weight"] = _NUMERIC_WEIGHT
    record[f"{column.name}__sign"] = np.where(scaled < 0, _NUMERIC_NEG, 0)
    record[f"{column.name}__dscale"] = column.dscale


def encode_binary(columns: Sequence[BinaryColumn]) -> bytes:
    """The COPY BINARY payload of ``columns`` (in table order)."""
    return HEADER + encode_tuples(columns) + TRAILER


def encode_tuples(columns: Sequence[BinaryColumn]) -> bytes:
    """The tuples of a COPY BINARY payload (no header or trailer), as one numpy structured array."""
    rows = len(columns[0].values)
    record = np.empty(rows, dtype=np.dtype([("count", ">i2"), *(f for c in columns for f in _fields(c))]))
    record["count"] = len(columns)
    for column in columns:
        if len(column.values) != rows:
            raise ValueError(f"column {column.name} has {len(column.values)} values, expected {rows}")
        if column.kind == "numeric":
            _fill_numeric(record, column)
            continue
        width = column.values.dtype.itemsize if column.kind == "text" else int(_FIXED[column.kind][-1])
        record[f"{column.name}__len"] = width
        values = column.values
        record[column.name] = values - PG_EPOCH_OFFSET_US if column.kind == "timestamptz" else values
    return record.tobytes()


def _text(values: pl.Series) -> npt.NDArray[np.bytes_]:
    """A text column as fixed-width bytes (the encoder's limit: every value of the batch has the same length)."""
    uniques = values.unique(maintain_order=True).to_list()
    encoded = np.array([str(value).encode() for value in uniques])
    if len({len(value) for value in encoded.tolist()}) > 1:
        raise ValueError(f"{values.name}: the fixed-width encoder needs values of one length")
    codes = values.replace_strict(uniques, list(range(len(uniques))), return_dtype=pl.UInt32).to_numpy()
    result: npt.NDArray[np.bytes_] = encoded[codes]
    return result


def trimmed_dscale(scaled: IntArray, scale: int) -> IntArray:
    """Per value, the fewest decimals that show it exactly (what ``trim_scale`` keeps)."""
    dscale = np.full(len(scaled), scale, dtype=np.int64)
    for zeros in range(1, scale + 1):
        dscale[scaled % 10**zeros == 0] = scale - zeros
    return dscale


@dataclass(frozen=True)
class Scaled:
    """A frame's prices and volume as exact integers, rounded as the platform's loader rounds them."""

    prices: dict[str, IntArray]
    price_scale: IntArray
    volume: IntArray
    volume_scale: int

    @classmethod
    def of(cls, frame: pl.DataFrame, precision: pl.Series) -> Scaled:
        volume_max = float(frame["volume"].max() or 0.0)  # type: ignore[arg-type]
        volume_scale = max(0, min(8, math.floor(math.log10(repository._MAX_SCALED / max(volume_max, 1.0)))))
        return cls(
            {name: repository._scaled(frame[name], precision) for name in PRICES},
            precision.to_numpy().astype(np.int64),
            repository._scaled(frame["volume"], volume_scale),
            volume_scale,
        )


def _keys(frame: pl.DataFrame, refs: dict[str, repository.InstrumentRef]) -> tuple[pl.Series, pl.Series]:
    symbol = frame["symbol"]
    ids = symbol.replace_strict({s: r.id for s, r in refs.items()}, return_dtype=pl.Int32)
    precision = symbol.replace_strict({s: r.price_precision for s, r in refs.items()}, return_dtype=pl.Int16)
    return ids, precision


def bar_columns(frame: pl.DataFrame, refs: dict[str, repository.InstrumentRef]) -> list[BinaryColumn]:
    """A canonical frame as the COPY columns of market.bars (COLUMNS), numerics exact and trimmed like the
    platform's merge stores them."""
    ids, precision = _keys(frame, refs)
    scaled = Scaled.of(frame, precision)
    return [
        BinaryColumn("instrument_id", "int4", ids.to_numpy()),
        BinaryColumn("timeframe", "text", _text(frame["timeframe"])),
        BinaryColumn("ts", "timestamptz", frame["ts"].dt.epoch("us").to_numpy()),
        *(BinaryColumn(n, "numeric", scaled.prices[n], scaled.price_scale, scaled.price_scale) for n in PRICES),
        BinaryColumn(
            "volume",
            "numeric",
            scaled.volume,
            scaled.volume_scale,
            trimmed_dscale(scaled.volume, scaled.volume_scale),
        ),
        BinaryColumn("is_adjusted", "bool", frame["adjusted"].cast(pl.Int8).to_numpy()),
        BinaryColumn("source", "text", np.full(frame.height, SOURCE.encode())),
    ]


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
            sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), sql.SQL("::text"), _ident(table)
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


def _decimals(scaled: IntArray, scale: IntArray) -> list[Decimal]:
    values = scaled.tolist()
    if len(scale) and bool((scale == scale[0]).all()):
        exponent = -int(scale[0])
        return list(map(Decimal, values)) if exponent == 0 else [Decimal(v).scaleb(exponent) for v in values]
    return [Decimal(v).scaleb(-s) for v, s in zip(values, scale.tolist(), strict=True)]


_COPY_TYPES = ["int4", "text", "timestamptz", "numeric", "numeric", "numeric", "numeric", "numeric", "bool", "text"]


def _copy_statement(table: str) -> sql.Composed:
    return sql.SQL("copy {} ({}) from stdin (format binary)").format(
        _ident(table), sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    )


def raw_psycopg(
    conn: psycopg.Connection[Any], frame: pl.DataFrame, refs: dict[str, repository.InstrumentRef]
) -> dict[str, float]:
    """``write_row`` per row with Python values (Decimal prices): psycopg's C dumpers do the binary format."""
    started = time.perf_counter()
    ids, precision = _keys(frame, refs)
    scaled = Scaled.of(frame, precision)
    volume_dscale = trimmed_dscale(scaled.volume, scaled.volume_scale)
    volume = scaled.volume // _POW10[scaled.volume_scale - volume_dscale].astype(np.int64)
    columns: list[list[Any]] = [
        ids.to_list(),
        frame["timeframe"].to_list(),
        frame["ts"].to_list(),
        *(_decimals(scaled.prices[name], scaled.price_scale) for name in PRICES),
        _decimals(volume, volume_dscale),
        frame["adjusted"].to_list(),
        [SOURCE] * frame.height,
    ]
    prepared = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(_copy_statement(RAW_TABLE)) as copy:
            copy.set_types(_COPY_TYPES)
            for row in zip(*columns, strict=True):
                copy.write_row(row)
        copied = time.perf_counter()
    done = time.perf_counter()
    return {"prepare": prepared - started, "copy": copied - prepared, "commit": done - copied}


def copy_frame(
    conn: psycopg.Connection[Any],
    table: str,
    frame: pl.DataFrame,
    refs: dict[str, repository.InstrumentRef],
    *,
    chunk_rows: int = RAW_CHUNK_ROWS,
) -> float:
    """One binary COPY of ``frame`` into ``table``; the tuples are encoded by numpy ``chunk_rows`` at a time while
    the server parses the previous chunk (one 1M-row array also costs 3x more to build than 32 small ones).
    Returns the seconds spent encoding."""
    encode = 0.0
    with conn.cursor() as cur, cur.copy(_copy_statement(table)) as copy:
        copy.write(HEADER)
        for offset in range(0, frame.height, chunk_rows):
            started = time.perf_counter()
            tuples = encode_tuples(bar_columns(frame.slice(offset, chunk_rows), refs))
            encode += time.perf_counter() - started
            copy.write(tuples)
        copy.write(TRAILER)
    return encode


def raw_numpy(
    conn: psycopg.Connection[Any], frame: pl.DataFrame, refs: dict[str, repository.InstrumentRef]
) -> dict[str, float]:
    """numpy-encoded tuples streamed into one COPY (see ``copy_frame``)."""
    started = time.perf_counter()
    with conn.transaction():
        encode = copy_frame(conn, RAW_TABLE, frame, refs)
        copied = time.perf_counter()
    done = time.perf_counter()
    return {"encode": encode, "copy": copied - started - encode, "commit": done - copied}


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
    "numpy": RawPath("numpy-encoded tuples (numerics included), streamed in 32k-row chunks", raw_numpy),
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
    db: Database, name: str, note: str, batches: Sequence[pl.DataFrame], load: Callable[[pl.DataFrame], int]
) -> Measured:
    """``load`` of every batch, as pasar_etl, on an empty market.bars; stage timings from CLOCK."""
    db.fresh("market.bars", "market.bar_series")
    lsn = db.wal_lsn()
    CLOCK.reset()
    with instrumented():
        before = Usage.now(db.etl)
        rows = sum(load(batch) for batch in batches)
        usage = Usage.now(db.etl) - before
    stages = dict(CLOCK.seconds)
    stages["python_other"] = usage.wall - sum(stages.values())
    measured = Measured(name, rows, usage, db.wal_since(lsn), stages, note)
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


# Alternatives of the loader (prototypes; the platform's code is unchanged) --------------------------------------

_TIMEFRAMES = [timeframe.value for timeframe in Timeframe]
_CONFLICT = """
    on conflict (instrument_id, timeframe, ts) do update
        set open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
            volume = excluded.volume, is_adjusted = excluded.is_adjusted, source = excluded.source,
            ingested_at = now()
        where (b.open, b.high, b.low, b.close, b.volume, b.is_adjusted, b.source)
              is distinct from (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume,
                                excluded.is_adjusted, excluded.source)
"""
_MERGE_NUMERIC = """
    insert into market.bars as b (instrument_id, timeframe, ts, open, high, low, close, volume, is_adjusted, source)
    select s.instrument_id, s.timeframe, s.ts, s.open, s.high, s.low, s.close, s.volume, s.is_adjusted, %(source)s
    from bars_stage s
"""
_SERIES = """
    insert into market.bar_series (instrument_id, timeframe, first_ts, last_ts)
    {rows}
    on conflict (instrument_id, timeframe) do update
        set first_ts = least(market.bar_series.first_ts, excluded.first_ts),
            last_ts = greatest(market.bar_series.last_ts, excluded.last_ts), updated_at = now()
"""
_SERIES_OF_STAGE = "select instrument_id, {timeframe}, min(ts), max(ts) from bars_stage group by 1, 2"
_SERIES_OF_ARRAYS = "select * from unnest(%s::int4[], %s::text[], %s::timestamptz[], %s::timestamptz[])"
_ANY_STORED = """
    select exists (select 1 from market.bars where instrument_id = any(%s) and timeframe = any(%s)
                   and ts >= %s and ts <= %s)
"""


@dataclass(frozen=True)
class Variant:
    name: str
    note: str
    staging: Literal["platform", "numeric", "copy_if_new"] = "platform"
    batch_days: int | None = None  # None: --batch-days; 0: everything in one transaction
    synchronous_commit: bool = True
    on_conflict: bool = True


VARIANTS = (
    Variant("sync_commit_off", "platform code, session synchronous_commit = off", synchronous_commit=False),
    Variant("batch_5_days", "platform code, 5 trading days per transaction", batch_days=5),
    Variant("stage_numeric", "numeric staging (vectorised binary numerics); the merge computes nothing", "numeric"),
    Variant(
        "stage_numeric_no_conflict",
        "numeric staging, plain INSERT (no ON CONFLICT: not idempotent, only shows what the clause costs)",
        "numeric",
        on_conflict=False,
    ),
    Variant(
        "copy_if_new",
        "COPY (vectorised binary numerics) straight into market.bars when the batch's range holds none of its "
        "(instrument, timeframe) rows, in a savepoint; else (or on a unique violation) numeric staging + merge",
        "copy_if_new",
    ),
    Variant(
        "copy_if_new_5_days",
        "copy_if_new with 5 trading days per transaction",
        "copy_if_new",
        batch_days=5,
    ),
)


def _merge_numeric(
    conn: psycopg.Connection[Any], frame: pl.DataFrame, refs: dict[str, repository.InstrumentRef], conflict: str
) -> int:
    payload = encode_binary([c for c in bar_columns(frame, refs) if c.name != "source"])
    conn.execute(
        "create temp table bars_stage (instrument_id int4, timeframe text, ts timestamptz, open numeric, "
        "high numeric, low numeric, close numeric, volume numeric, is_adjusted bool) on commit drop"
    )
    with conn.cursor() as cur, cur.copy("copy bars_stage from stdin (format binary)") as copy:
        copy.write(payload)
    written = conn.execute(_MERGE_NUMERIC + conflict, {"source": SOURCE}).rowcount
    conn.execute(_SERIES.format(rows=_SERIES_OF_STAGE.format(timeframe="timeframe")))
    return written


def _copy_if_new(conn: psycopg.Connection[Any], frame: pl.DataFrame, refs: dict[str, repository.InstrumentRef]) -> int:
    ids = sorted({refs[symbol].id for symbol in frame["symbol"].unique().to_list()})
    timeframes = frame["timeframe"].unique().to_list()
    stored = conn.execute(_ANY_STORED, [ids, timeframes, frame["ts"].min(), frame["ts"].max()]).fetchone()
    if stored is None or stored[0]:
        CLOCK.mark = time.perf_counter()
        return _merge_numeric(conn, frame, refs, _CONFLICT)
    try:
        with conn.transaction():
            encode = copy_frame(conn, "market.bars", frame, refs, chunk_rows=COPY_IF_NEW_CHUNK_ROWS)
        CLOCK.add("encode", encode)
        CLOCK.add("copy", -encode)  # the timing cursor's "copy" includes the encoding done while it was open
    except psycopg.errors.UniqueViolation:  # a concurrent load got there first: merge instead
        CLOCK.mark = time.perf_counter()
        return _merge_numeric(conn, frame, refs, _CONFLICT)
    series = frame.group_by("symbol", "timeframe").agg(
        pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last")
    )
    conn.execute(
        _SERIES.format(rows=_SERIES_OF_ARRAYS),
        [
            series["symbol"].replace_strict({s: r.id for s, r in refs.items()}, return_dtype=pl.Int32).to_list(),
            series["timeframe"].to_list(),
            series["first"].to_list(),
            series["last"].to_list(),
        ],
    )
    return frame.height


def load_variant_frame(conn: psycopg.Connection[Any], batch: pl.DataFrame, variant: Variant) -> int:
    """``service.load_frame`` with the staging and merge of ``variant`` (the same three transactions)."""
    frame = conform(batch)
    symbols = sorted(frame["symbol"].unique().to_list())
    with conn.transaction():
        refs = repository.instrument_refs(conn, symbols)
    with conn.transaction():
        repository.ensure_bar_partitions(conn, frame["ts"].min(), frame["ts"].max())  # type: ignore[arg-type]
    with conn.transaction():
        CLOCK.mark = time.perf_counter() if variant.staging != "copy_if_new" else None
        if variant.staging == "numeric":
            return _merge_numeric(conn, frame, refs, _CONFLICT if variant.on_conflict else "")
        return _copy_if_new(conn, frame, refs)


def time_variant(db: Database, dataset: Dataset, variant: Variant, batch_days: int) -> Measured:
    """One timed load of ``variant`` on an empty market.bars, checked against the raw table; settings restored."""
    batches = dataset.batches(batch_days if variant.batch_days is None else variant.batch_days)
    if not variant.synchronous_commit:
        db.etl.execute("set synchronous_commit = off")
    try:
        if variant.staging == "platform":
            return time_loader(db, variant.name, variant.note, batches, _load_frame(db))
        return time_loader(db, variant.name, variant.note, batches, lambda b: load_variant_frame(db.etl, b, variant))
    finally:
        db.etl.execute("reset synchronous_commit")


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
    print(f"EXPLAIN (ANALYZE, BUFFERS) of the platform merge of one more day ({dataset.spare.height:,} new rows):")
    for line in plan:
        print(f"    {line}")
    if variants:
        print(
            f"alternatives of the loader (each on an empty market.bars; {args.batch_days or 'all'} day(s) per "
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
