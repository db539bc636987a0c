"""Rules of market-data ingestion, shared by the Dagster assets and the ``pasar ingest`` commands.

Every load is one transaction per partition (a file, a day, a symbol): a failure leaves the previous rows as
they were, and a re-run merges to the same rows. Connections are pasar_etl's, autocommit, so each
``conn.transaction()`` is a real transaction.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import psycopg

from pasar.db.pool import Conn
from pasar.errors import InvalidInput, NotFound
from pasar.market import exchange, repository
from pasar.market.frames import BarFrameError, Timeframe, conform
from pasar.market.sources.landing import LandingFileError, parse_file

LANDING_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class LoadReport:
    source: str
    rows_in: int
    rows_written: int
    symbols: list[str]
    start: datetime | None
    end: datetime | None
    new_instruments: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LandingReport:
    loaded: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)

    @property
    def rows_loaded(self) -> int:
        return sum(int(entry["rows_in"]) for entry in self.loaded)

    def as_dict(self) -> dict[str, Any]:
        return {"rows_loaded": self.rows_loaded, "loaded": self.loaded, "rejected": self.rejected}


def _instrument_row(spec: exchange.InstrumentSpec) -> dict[str, Any]:
    return {
        "symbol": spec.symbol,
        "name": spec.name,
        "exchange": spec.exchange,
        "asset_class": spec.asset_class,
        "currency": spec.currency,
        "lot_size": spec.lot_size,
        "price_precision": spec.price_precision,
        "tick_rule": spec.tick_rule,
        "calendar": spec.calendar,
        "allows_short": spec.allows_short,
    }


def sync_reference_data(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """The shipped instrument list and exchange holidays, upserted (idempotent)."""
    instruments = exchange.reference_instruments()
    holidays = exchange.reference_holidays()
    with conn.transaction():
        repository.upsert_instruments(conn, [_instrument_row(spec) for spec in instruments], origin="reference")
        repository.upsert_holidays(conn, holidays)
    return {"instruments": len(instruments), "holidays": len(holidays)}


def load_frame(conn: psycopg.Connection[Any], frame: pl.DataFrame, *, source: str) -> LoadReport:
    """Load a canonical frame: unknown symbols become instruments with defaults, then one transaction writes
    every row into market.bars (copied when its range is new, merged otherwise)."""
    frame = conform(frame)
    if frame.is_empty():
        return LoadReport(source, 0, 0, [], None, None)
    symbols = sorted(frame["symbol"].unique().to_list())
    start: datetime = frame["ts"].min()  # type: ignore[assignment]
    end: datetime = frame["ts"].max()  # type: ignore[assignment]
    with conn.transaction():
        known = repository.instrument_refs(conn, symbols)
        unknown = [symbol for symbol in symbols if symbol not in known]
        if unknown:
            repository.insert_missing_instruments(
                conn, [_instrument_row(exchange.default_instrument(symbol)) for symbol in unknown]
            )
            known = repository.instrument_refs(conn, symbols)
    with conn.transaction():
        repository.ensure_bar_partitions(conn, start, end)
    with conn.transaction():
        merged = repository.write_bars(conn, frame, known, source=source)
    return LoadReport(source, merged.rows_in, merged.rows_written, symbols, start, end, unknown)


def ingest_bundled(conn: psycopg.Connection[Any], symbols: list[str] | None = None) -> list[LoadReport]:
    """The real historical data a PyPI package ships (GOOG, EURUSD, BTCUSD), loaded as is, one symbol at a time."""
    from pasar.market.sources.bundled import BUNDLED_SYMBOLS, bundled_frame

    sync_reference_data(conn)
    return [load_frame(conn, bundled_frame([symbol]), source="bundled") for symbol in symbols or BUNDLED_SYMBOLS]


def ingest_synthetic(
    conn: psycopg.Connection[Any],
    *,
    symbols: int,
    days: int,
    timeframe: str,
    seed: int = 7,
    start: date | None = None,
) -> list[LoadReport]:
    """The seeded synthetic IDX market, generated and loaded one trading day (one transaction) at a time."""
    from pasar.market.sources.synthetic import DEFAULT_START, SyntheticSource

    sync_reference_data(conn)
    source = SyntheticSource(symbols, Timeframe(timeframe), seed=seed)
    return [load_frame(conn, frame, source="synthetic") for _, frame in source.iter_days(start or DEFAULT_START, days)]


def landing_dirs(home: Path) -> tuple[Path, Path, Path]:
    landing = home / "landing"
    processed, rejected = landing / "processed", landing / "rejected"
    for directory in (landing, processed, rejected):
        directory.mkdir(parents=True, exist_ok=True)
    return landing, processed, rejected


def pending_landing_files(home: Path) -> list[Path]:
    landing, _, _ = landing_dirs(home)
    return sorted(p for p in landing.iterdir() if p.is_file() and p.suffix.lower() in LANDING_SUFFIXES)


def _move(path: Path, folder: Path) -> Path:
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{datetime.now(UTC):%Y%m%dT%H%M%S%f}{path.suffix}"
    shutil.move(str(path), target)
    return target


def ingest_landing(conn: psycopg.Connection[Any], home: Path) -> LandingReport:
    """Each file in PASAR_HOME/landing is parsed whole and loaded in one transaction, then moved to
    processed/; a bad file moves to rejected/ beside a ``.reason.txt`` and loads nothing."""
    _, processed, rejected = landing_dirs(home)
    report = LandingReport()
    for path in pending_landing_files(home):
        try:
            parsed = parse_file(path)
            loaded = load_frame(conn, parsed.frame, source=f"landing:{path.name}")
        except (LandingFileError, BarFrameError, psycopg.DataError, psycopg.IntegrityError) as exc:
            # Refused by the parser or by the database's own checks: either way the file loaded nothing.
            reason = str(exc) if not isinstance(exc, psycopg.Error) else f"the database refused it: {exc}"
            moved = _move(path, rejected)
            moved.with_name(moved.name + ".reason.txt").write_text(reason + "\n")
            report.rejected.append({"file": path.name, "reason": reason})
            continue
        _move(path, processed)
        report.loaded.append({"file": path.name, "duplicates_dropped": parsed.duplicates_dropped, **loaded.as_dict()})
    return report


# Reads of the API -------------------------------------------------------------------------------------------
# Market data is shared by every tenant: these need an authenticated caller but no tenant filter.

MAX_BARS_PAGE = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNBOUNDED_END = datetime(3000, 1, 1, tzinfo=UTC)
_INTRADAY_ORIGIN = datetime(2000, 1, 3)  # a Monday: intraday and daily buckets align to local clock multiples


@dataclass(frozen=True)
class BarsPage:
    symbol: str
    timeframe: Timeframe
    base_timeframe: Timeframe | None
    bars: list[dict[str, Any]]
    next_start: datetime | None


def _base_for(requested: Timeframe, stored: list[Timeframe]) -> Timeframe | None:
    """The coarsest stored timeframe that builds the requested one exactly."""
    if requested in stored:
        return requested

    def builds(base: Timeframe) -> bool:
        if base.seconds >= requested.seconds:
            return False
        if requested in (Timeframe.w1, Timeframe.mo1):
            return base.seconds <= Timeframe.d1.seconds
        return requested.seconds % base.seconds == 0

    candidates = [base for base in stored if builds(base)]
    return max(candidates, key=lambda base: base.seconds) if candidates else None


def bucket_floor(ts: datetime, timeframe: Timeframe, tz: ZoneInfo) -> datetime:
    """The start of the bucket holding ``ts``, aligned in the exchange's time zone (as the SQL does)."""
    local = ts.astimezone(tz).replace(tzinfo=None)
    if timeframe is Timeframe.mo1:
        floored = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elif timeframe is Timeframe.w1:
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        floored = day - timedelta(days=day.weekday())
    else:
        step = timeframe.seconds
        offset = int((local - _INTRADAY_ORIGIN).total_seconds()) // step * step
        floored = _INTRADAY_ORIGIN + timedelta(seconds=offset)
    return floored.replace(tzinfo=tz).astimezone(UTC)


def bucket_after(start: datetime, timeframe: Timeframe, tz: ZoneInfo) -> datetime:
    """The start of the bucket following the one that starts at ``start``."""
    local = start.astimezone(tz).replace(tzinfo=None)
    if timeframe is Timeframe.mo1:
        following = (local.replace(day=28) + timedelta(days=4)).replace(day=1)
    elif timeframe is Timeframe.w1:
        following = local + timedelta(days=7)
    else:
        following = local + timedelta(seconds=timeframe.seconds)
    return following.replace(tzinfo=tz).astimezone(UTC)


async def list_instruments(
    conn: Conn, *, asset_class: str | None = None, exchange_code: str | None = None
) -> list[repository.InstrumentRow]:
    return await repository.list_instruments(conn, asset_class=asset_class, exchange=exchange_code)


async def bars(
    conn: Conn,
    *,
    symbol: str,
    timeframe: Timeframe,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> BarsPage:
    """A page of bars in [start, end), oldest first; any timeframe is built from the stored base bars."""
    if not 1 <= limit <= MAX_BARS_PAGE:
        raise InvalidInput(f"limit is between 1 and {MAX_BARS_PAGE}")
    start = start or _EPOCH
    end = end or _UNBOUNDED_END
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("start and end need a time zone (e.g. 2026-01-05T00:00:00Z)")
    if start >= end:
        raise InvalidInput("start must be before end")
    instrument = await repository.get_instrument(conn, symbol.upper())
    if instrument is None:
        raise NotFound(f"unknown symbol {symbol!r}")
    stored = [Timeframe(code) for code in await repository.stored_timeframes(conn, instrument.id)]
    base = _base_for(timeframe, stored)
    if base is None:
        if stored and all(t.seconds > timeframe.seconds for t in stored):
            finest = min(stored, key=lambda t: t.seconds).value
            raise InvalidInput(f"{symbol} has no bars finer than {finest}: {timeframe.value} cannot be built")
        return BarsPage(instrument.symbol, timeframe, None, [], None)
    if base is timeframe:
        rows = await repository.fetch_bars(
            conn, instrument_id=instrument.id, base_timeframe=base.value, start=start, end=end, limit=limit
        )
        next_start = rows[-1]["ts"] + timedelta(microseconds=1) if len(rows) == limit else None
    else:
        tz = exchange.calendar(instrument.calendar).timezone
        start = bucket_floor(start, timeframe, tz)
        rows = await repository.fetch_bucketed_bars(
            conn,
            instrument_id=instrument.id,
            base_timeframe=base.value,
            bucket=timeframe.value,
            timezone=tz.key,
            start=start,
            end=end,
            limit=limit,
        )
        next_start = bucket_after(rows[-1]["ts"], timeframe, tz) if len(rows) == limit else None
    return BarsPage(instrument.symbol, timeframe, base, rows, next_start)
