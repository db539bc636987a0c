"""All SQL of market data: reference data and the bulk loader (sync, run as pasar_etl by ingestion) and the
reads of the API (async, as pasar_app; market data is shared by every tenant)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import polars as pl
import psycopg
from psycopg import sql

from pasar.db.pool import Conn
from pasar.market.copy_format import (
    HEADER,
    MAX_NUMERIC_SCALE,
    TRAILER,
    BinaryColumn,
    IntArray,
    encode_tuples,
    fixed_width_text,
    trimmed_dscale,
)
from pasar.market.frames import Timeframe

TIMEFRAME_CODES = [timeframe.value for timeframe in Timeframe]


@dataclass(frozen=True)
class InstrumentRef:
    id: int
    symbol: str
    price_precision: int


@dataclass(frozen=True)
class InstrumentRow:
    """An instrument as stored; ``id`` is internal, ``symbol`` is what callers use."""

    id: int
    symbol: str
    name: str
    exchange: str
    asset_class: str
    currency: str
    lot_size: int
    price_precision: int
    tick_rule: str
    calendar: str
    is_tradable: bool
    allows_short: bool


_INSTRUMENT_COLUMNS = (
    "id", "symbol", "name", "exchange", "asset_class", "currency", "lot_size", "price_precision", "tick_rule",
    "calendar", "is_tradable", "allows_short",
)  # fmt: skip
_SELECT_INSTRUMENTS = sql.SQL("select {} from market.instruments").format(
    sql.SQL(", ").join(map(sql.Identifier, _INSTRUMENT_COLUMNS))
)

# Reference data (sync, pasar_etl) ---------------------------------------------------------------------------


def upsert_instruments(conn: psycopg.Connection[Any], rows: Sequence[dict[str, Any]], *, origin: str) -> int:
    """Insert or refresh instruments by symbol. ``rows`` carry the instrument columns except id."""
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into market.instruments (symbol, name, exchange, asset_class, currency, lot_size,
                price_precision, tick_rule, calendar, allows_short, origin)
            values (%(symbol)s, %(name)s, %(exchange)s, %(asset_class)s, %(currency)s, %(lot_size)s,
                %(price_precision)s, %(tick_rule)s, %(calendar)s, %(allows_short)s, %(origin)s)
            on conflict (symbol) do update set name = excluded.name, exchange = excluded.exchange,
                asset_class = excluded.asset_class, currency = excluded.currency, lot_size = excluded.lot_size,
                price_precision = excluded.price_precision, tick_rule = excluded.tick_rule,
                calendar = excluded.calendar, allows_short = excluded.allows_short, updated_at = now()
            where (market.instruments.name, market.instruments.exchange, market.instruments.lot_size,
                   market.instruments.price_precision, market.instruments.tick_rule, market.instruments.calendar,
                   market.instruments.allows_short)
                  is distinct from (excluded.name, excluded.exchange, excluded.lot_size, excluded.price_precision,
                                    excluded.tick_rule, excluded.calendar, excluded.allows_short)
            """,
            [{**row, "origin": origin} for row in rows],
        )
    return len(rows)


def insert_missing_instruments(conn: psycopg.Connection[Any], rows: Sequence[dict[str, Any]]) -> int:
    """Instruments first seen in a file get defaults; an existing instrument is never overwritten by them."""
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into market.instruments (symbol, name, exchange, asset_class, currency, lot_size,
                price_precision, tick_rule, calendar, allows_short, origin)
            values (%(symbol)s, %(name)s, %(exchange)s, %(asset_class)s, %(currency)s, %(lot_size)s,
                %(price_precision)s, %(tick_rule)s, %(calendar)s, %(allows_short)s, 'landing')
            on conflict (symbol) do nothing
            """,
            rows,
        )
        return max(cur.rowcount, 0)


def instrument_refs(conn: psycopg.Connection[Any], symbols: Iterable[str]) -> dict[str, InstrumentRef]:
    cur = conn.execute(
        "select id, symbol, price_precision from market.instruments where symbol = any(%s)", [list(symbols)]
    )
    return {symbol: InstrumentRef(id, symbol, precision) for id, symbol, precision in cur.fetchall()}


def upsert_holidays(conn: psycopg.Connection[Any], rows: Sequence[tuple[str, date, str]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "insert into market.holidays (calendar, day, name) values (%s, %s, %s) "
            "on conflict (calendar, day) do update set name = excluded.name",
            rows,
        )


def ensure_bar_partitions(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> int:
    """Partitions for [start, end] before loading (in its own short transaction: creating a partition locks
    the parent, which must not be held for a whole load)."""
    row = conn.execute("select pasar_internal.ensure_time_partitions('market.bars', %s, %s)", [start, end]).fetchone()
    return int(row[0]) if row else 0


# The bulk loader (sync, pasar_etl) --------------------------------------------------------------------------

BAR_COLUMNS = ("instrument_id", "timeframe", "ts", "open", "high", "low", "close", "volume", "is_adjusted", "source")
_PRICES = ("open", "high", "low", "close")
# A trading day of 100 symbols (~32k rows) goes in 4 pieces, so numpy encodes one while the server parses another.
COPY_CHUNK_ROWS = 8_192
_MAX_SCALED = 9.0e18  # int8 headroom for a scaled volume


@dataclass(frozen=True)
class MergeResult:
    rows_in: int  # rows of the batch
    rows_written: int  # inserted or changed; identical rows are left alone


def _scaled(values: pl.Series, scale: int | pl.Series) -> IntArray:
    """Exact integers of ``values`` × 10^scale (rounded: 1.07219 × 10^5 is 107218.99999999999 in binary)."""
    exponent = scale if isinstance(scale, int) else scale.to_numpy()
    scaled: IntArray = np.rint(values.to_numpy() * np.power(10.0, exponent)).astype(np.int64)
    return scaled


def volume_scale(frame: pl.DataFrame) -> int:
    """Decimals kept of a batch's volumes: up to 8, fewer when the largest volume would overflow an int8."""
    largest = float(frame["volume"].max() or 0.0)  # type: ignore[arg-type]
    return max(0, min(MAX_NUMERIC_SCALE, math.floor(math.log10(_MAX_SCALED / max(largest, 1.0)))))


def bar_columns(
    frame: pl.DataFrame, refs: dict[str, InstrumentRef], *, source: str, volume_decimals: int
) -> list[BinaryColumn]:
    """A canonical frame of one timeframe as the COPY columns of market.bars (BAR_COLUMNS): prices exact at the
    instrument's precision, volumes rounded to ``volume_decimals`` and trimmed."""
    symbol = frame["symbol"]
    ids = symbol.replace_strict({s: ref.id for s, ref in refs.items()}, return_dtype=pl.Int32)
    precision = symbol.replace_strict({s: ref.price_precision for s, ref in refs.items()}, return_dtype=pl.Int16)
    price_scale = precision.to_numpy().astype(np.int64)
    volume = _scaled(frame["volume"], volume_decimals)
    (timeframe,) = frame["timeframe"].unique().to_list()
    return [
        BinaryColumn("instrument_id", "int4", ids.to_numpy()),
        BinaryColumn("timeframe", "text", np.full(frame.height, str(timeframe).encode())),
        BinaryColumn("ts", "timestamptz", frame["ts"].dt.epoch("us").to_numpy()),
        *(BinaryColumn(name, "numeric", _scaled(frame[name], precision), price_scale, price_scale) for name in _PRICES),
        BinaryColumn("volume", "numeric", volume, volume_decimals, trimmed_dscale(volume, volume_decimals)),
        BinaryColumn("is_adjusted", "bool", frame["adjusted"].cast(pl.Int8).to_numpy()),
        BinaryColumn("source", "text", fixed_width_text([source])[np.zeros(frame.height, dtype=np.intp)]),
    ]


def copy_bars(
    conn: psycopg.Connection[Any],
    table: sql.Composable,
    frame: pl.DataFrame,
    refs: dict[str, InstrumentRef],
    *,
    source: str,
) -> None:
    """One binary COPY of ``frame`` into ``table`` (with BAR_COLUMNS), streamed a chunk of one timeframe at a time."""
    decimals = volume_scale(frame)  # once per batch, so a value rounds the same whichever chunk it lands in
    statement = sql.SQL("copy {} ({}) from stdin (format binary)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, BAR_COLUMNS))
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(HEADER)
        for part in frame.partition_by("timeframe", maintain_order=True):
            for offset in range(0, part.height, COPY_CHUNK_ROWS):
                chunk = part.slice(offset, COPY_CHUNK_ROWS)
                copy.write(encode_tuples(bar_columns(chunk, refs, source=source, volume_decimals=decimals)))
        copy.write(TRAILER)


def _range_holds_bars(conn: psycopg.Connection[Any], frame: pl.DataFrame, refs: dict[str, InstrumentRef]) -> bool:
    """Whether market.bars has any row of the batch's instruments and timeframes between its first and last bar
    (a superset of the rows the batch could collide with). Only the series whose span in market.bar_series
    overlaps the batch are probed, so a day appended after the stored ones costs one small-table read; a row the
    index missed would still be caught by the primary key (``write_bars`` then merges)."""
    row = conn.execute(
        """
        select exists (
            select 1 from market.bar_series s
            where s.instrument_id = any(%(ids)s) and s.timeframe = any(%(timeframes)s)
              and s.first_ts <= %(last)s and s.last_ts >= %(first)s
              and exists (select 1 from market.bars b
                          where b.instrument_id = s.instrument_id and b.timeframe = s.timeframe
                            and b.ts between %(first)s and %(last)s))
        """,
        {
            "ids": sorted({refs[symbol].id for symbol in frame["symbol"].unique().to_list()}),
            "timeframes": frame["timeframe"].unique().to_list(),
            "first": frame["ts"].min(),
            "last": frame["ts"].max(),
        },
    ).fetchone()
    return bool(row and row[0])


def write_bars(
    conn: psycopg.Connection[Any], frame: pl.DataFrame, refs: dict[str, InstrumentRef], *, source: str
) -> MergeResult:
    """Write a canonical frame into market.bars inside the caller's transaction (one per partition).

    A batch whose range holds none of its rows yet — the first load of a day, by far the common case — is copied
    straight into market.bars; otherwise (a re-run, a correction, a concurrent load that committed the same rows
    first) it goes through ``stage_and_merge``. Both store the same rows."""
    if frame.is_empty():
        return MergeResult(0, 0)
    if not _range_holds_bars(conn, frame, refs):
        try:
            with conn.transaction():  # a savepoint: a unique violation leaves the caller's transaction usable
                copy_bars(conn, sql.Identifier("market", "bars"), frame, refs, source=source)
        except psycopg.errors.UniqueViolation:
            pass  # another load of this range committed first: merge with what it wrote
        else:
            _record_series(conn, frame, refs)
            return MergeResult(rows_in=frame.height, rows_written=frame.height)
    return stage_and_merge(conn, frame, refs, source=source)


def stage_and_merge(
    conn: psycopg.Connection[Any], frame: pl.DataFrame, refs: dict[str, InstrumentRef], *, source: str
) -> MergeResult:
    """Binary COPY into a temporary staging table, then one INSERT … ON CONFLICT merge into market.bars that
    leaves identical rows alone."""
    if frame.is_empty():
        return MergeResult(0, 0)
    conn.execute("create temp table bars_stage (like market.bars including defaults) on commit drop")
    copy_bars(conn, sql.Identifier("bars_stage"), frame, refs, source=source)
    columns = sql.SQL(", ").join(map(sql.Identifier, BAR_COLUMNS))
    written = conn.execute(
        sql.SQL(
            """
            insert into market.bars as b ({columns}) select {columns} from bars_stage
            on conflict (instrument_id, timeframe, ts) do update
                set open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
                    volume = excluded.volume, is_adjusted = excluded.is_adjusted, source = excluded.source,
                    ingested_at = now()
                where (b.open, b.high, b.low, b.close, b.volume, b.is_adjusted, b.source)
                      is distinct from (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume,
                                        excluded.is_adjusted, excluded.source)
            """
        ).format(columns=columns)
    ).rowcount
    _record_series(conn, frame, refs)
    return MergeResult(rows_in=frame.height, rows_written=written)


def _record_series(conn: psycopg.Connection[Any], frame: pl.DataFrame, refs: dict[str, InstrumentRef]) -> None:
    """Widen market.bar_series (the index of stored series) to the batch's first and last bar of each series."""
    series = frame.group_by("symbol", "timeframe").agg(
        pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last")
    )
    conn.execute(
        """
        insert into market.bar_series (instrument_id, timeframe, first_ts, last_ts)
        select * from unnest(%s::int4[], %s::text[], %s::timestamptz[], %s::timestamptz[])
        on conflict (instrument_id, timeframe) do update
            set first_ts = least(market.bar_series.first_ts, excluded.first_ts),
                last_ts = greatest(market.bar_series.last_ts, excluded.last_ts), updated_at = now()
        """,
        [
            [refs[symbol].id for symbol in series["symbol"].to_list()],
            series["timeframe"].to_list(),
            series["first"].to_list(),
            series["last"].to_list(),
        ],
    )


# Reads of the API (async, pasar_app) ------------------------------------------------------------------------


def _instrument(row: dict[str, Any]) -> InstrumentRow:
    return InstrumentRow(**{column: row[column] for column in _INSTRUMENT_COLUMNS})


async def list_instruments(conn: Conn, *, asset_class: str | None, exchange: str | None) -> list[InstrumentRow]:
    cur = await conn.execute(
        sql.SQL(
            "{} where (%s::text is null or asset_class = %s) and (%s::text is null or exchange = %s) order by symbol"
        ).format(_SELECT_INSTRUMENTS),
        [asset_class, asset_class, exchange, exchange],
    )
    return [_instrument(row) for row in await cur.fetchall()]


async def get_instrument(conn: Conn, symbol: str) -> InstrumentRow | None:
    cur = await conn.execute(sql.SQL("{} where symbol = %s").format(_SELECT_INSTRUMENTS), [symbol])
    row = await cur.fetchone()
    return None if row is None else _instrument(row)


async def stored_timeframes(conn: Conn, instrument_id: int) -> list[str]:
    cur = await conn.execute("select timeframe from market.bar_series where instrument_id = %s", [instrument_id])
    return [row["timeframe"] for row in await cur.fetchall()]


async def fetch_bars(
    conn: Conn, *, instrument_id: int, base_timeframe: str, start: datetime, end: datetime, limit: int
) -> list[dict[str, Any]]:
    """Stored bars as they are, oldest first."""
    cur = await conn.execute(
        "select ts, open, high, low, close, volume from market.bars "
        "where instrument_id = %s and timeframe = %s and ts >= %s and ts < %s order by ts limit %s",
        [instrument_id, base_timeframe, start, end, limit],
    )
    return await cur.fetchall()


async def fetch_bucketed_bars(
    conn: Conn,
    *,
    instrument_id: int,
    base_timeframe: str,
    bucket: str,
    timezone: str,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[dict[str, Any]]:
    """Bars of a coarser timeframe computed from stored base bars. Buckets are aligned in the exchange's time
    zone (a daily bar starts at local midnight, a week on Monday, a month on the 1st) and only whole buckets
    within [start, end) are asked for, since ``start`` is aligned by the caller."""
    cur = await conn.execute(
        """
        with base as (
            select ts, open, high, low, close, volume,
                   case %(bucket)s
                       when '1mo' then date_trunc('month', ts at time zone %(tz)s) at time zone %(tz)s
                       when '1w' then date_trunc('week', ts at time zone %(tz)s) at time zone %(tz)s
                       else date_bin(%(interval)s::interval, ts at time zone %(tz)s, timestamp '2000-01-03')
                            at time zone %(tz)s
                   end as bucket
            from market.bars
            where instrument_id = %(instrument_id)s and timeframe = %(base)s and ts >= %(start)s and ts < %(end)s
        )
        select bucket as ts,
               (array_agg(open order by ts))[1] as open, max(high) as high, min(low) as low,
               (array_agg(close order by ts desc))[1] as close, sum(volume) as volume
        from base group by bucket order by bucket limit %(limit)s
        """,
        {
            "bucket": bucket,
            "tz": timezone,
            "interval": _INTERVALS.get(bucket, "1 day"),
            "instrument_id": instrument_id,
            "base": base_timeframe,
            "start": start,
            "end": end,
            "limit": limit,
        },
    )
    return await cur.fetchall()


_INTERVALS = {
    "1m": "1 minute",
    "5m": "5 minutes",
    "15m": "15 minutes",
    "30m": "30 minutes",
    "1h": "1 hour",
    "1d": "1 day",
}


# Reads for modelling (sync) ---------------------------------------------------------------------------------


_BARS_FRAME_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": pl.Int64(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
}


def read_bars_frame(
    conn: psycopg.Connection[Any],
    *,
    symbols: Sequence[str] | None,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
) -> pl.DataFrame:
    """Stored bars as a polars frame for modelling (features, training, backtests): columns symbol, ts
    (Datetime us UTC), open, high, low, close, volume, ordered by symbol, ts; ``symbols`` None means every
    instrument, ``start <= ts < end`` with None for an open end.

    Prices and volume are Float64 here, not the exact numerics of the table: this read feeds statistics and models,
    never money. Any role that may read market.bars can call it (pasar_etl for training, pasar_app for serving).
    """
    if timeframe not in TIMEFRAME_CODES:
        raise ValueError(f"unknown timeframe {timeframe!r}; known: {', '.join(TIMEFRAME_CODES)}")
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        cur.execute(
            """
            select i.symbol, (extract(epoch from b.ts) * 1000000)::int8,
                   b.open::float8, b.high::float8, b.low::float8, b.close::float8, b.volume::float8
            from market.bars b
            join market.instruments i on i.id = b.instrument_id
            where b.timeframe = %(timeframe)s
              and (%(symbols)s::text[] is null or i.symbol = any(%(symbols)s::text[]))
              and (%(start)s::timestamptz is null or b.ts >= %(start)s::timestamptz)
              and (%(end)s::timestamptz is null or b.ts < %(end)s::timestamptz)
            order by i.symbol, b.ts
            """,
            {
                "timeframe": str(timeframe),
                "symbols": None if symbols is None else list(symbols),
                "start": start,
                "end": end,
            },
        )
        rows = cur.fetchall()
    frame = pl.DataFrame(rows, schema=_BARS_FRAME_SCHEMA, orient="row")
    return frame.with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


# Reads for live signals (async, pasar_app) ------------------------------------------------------------------


async def instruments_with_series(
    conn: Conn, symbols: Sequence[str]
) -> dict[str, tuple[InstrumentRow, list[dict[str, Any]]]]:
    """The instruments of ``symbols`` that exist, each with its stored series (``timeframe, last_ts, updated_at``
    from market.bar_series), in one statement."""
    cur = await conn.execute(
        sql.SQL(
            "select {}, s.timeframe as series_timeframe, s.last_ts, s.updated_at from market.instruments i "
            "left join market.bar_series s on s.instrument_id = i.id where i.symbol = any(%s)"
        ).format(sql.SQL(", ").join(sql.Identifier("i", column) for column in _INSTRUMENT_COLUMNS)),
        [list(symbols)],
    )
    found: dict[str, tuple[InstrumentRow, list[dict[str, Any]]]] = {}
    for row in await cur.fetchall():
        _, series = found.setdefault(row["symbol"], (_instrument(row), []))
        if row["series_timeframe"] is not None:
            series.append(
                {"timeframe": row["series_timeframe"], "last_ts": row["last_ts"], "updated_at": row["updated_at"]}
            )
    return found


_LATEST_BARS_SCHEMA: dict[str, pl.DataType] = {
    "instrument_id": pl.Int32(),
    **{name: dtype for name, dtype in _BARS_FRAME_SCHEMA.items() if name != "symbol"},
}


async def latest_bars_frame(conn: Conn, wanted: Sequence[tuple[int, str, datetime]], *, limit: int) -> pl.DataFrame:
    """The last ``limit`` bars at or before ``last_ts`` of each ``(instrument_id, timeframe, last_ts)`` in one
    statement, as a frame ``instrument_id, ts (Datetime us UTC), open, high, low, close, volume`` (Float64: for
    features, never money), newest first per instrument."""
    async with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        await cur.execute(
            """
            select s.instrument_id, (extract(epoch from b.ts) * 1000000)::int8,
                   b.open::float8, b.high::float8, b.low::float8, b.close::float8, b.volume::float8
            from unnest(%(ids)s::int4[], %(timeframes)s::text[], %(last)s::timestamptz[])
                as s(instrument_id, timeframe, last_ts)
            cross join lateral (
                select ts, open, high, low, close, volume from market.bars
                where instrument_id = s.instrument_id and timeframe = s.timeframe and ts <= s.last_ts
                order by ts desc limit %(limit)s
            ) b
            """,
            {
                "ids": [instrument_id for instrument_id, _, _ in wanted],
                "timeframes": [timeframe for _, timeframe, _ in wanted],
                "last": [last_ts for _, _, last_ts in wanted],
                "limit": limit,
            },
        )
        rows = await cur.fetchall()
    frame = pl.DataFrame(rows, schema=_LATEST_BARS_SCHEMA, orient="row")
    return frame.with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


async def newest_bar_starts(conn: Conn, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
    """The start of the newest stored bar of any instrument per ``(calendar, timeframe)`` asked for."""
    cur = await conn.execute(
        """
        select i.calendar, s.timeframe, max(s.last_ts) as last_ts
        from market.bar_series s join market.instruments i on i.id = s.instrument_id
        where (i.calendar, s.timeframe) in (select * from unnest(%s::text[], %s::text[]))
        group by i.calendar, s.timeframe
        """,
        [[calendar for calendar, _ in pairs], [timeframe for _, timeframe in pairs]],
    )
    return {(row["calendar"], row["timeframe"]): row["last_ts"] for row in await cur.fetchall()}
