"""Read-only queries of the data-quality checks on market.bars (run as pasar_etl by the Dagster asset checks).

Every query looks at a :class:`BarSlice`: the bars of some symbols in a half-open time window, optionally of one
timeframe and one source, which is what one load (a partition, a landing file) wrote. The rules that judge the
figures (calendars, auto-rejection bands, allowed lags) are applied by the callers; this module only counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

__all__ = [
    "BarSlice",
    "DayCloseRange",
    "SliceSummary",
    "bar_times",
    "bars_outside",
    "day_close_ranges",
    "duplicate_keys",
    "holiday_keys",
    "instrument_calendars",
    "known_symbols",
    "latest_bars",
    "ohlc_violations",
    "preview",
    "slice_summary",
]


@dataclass(frozen=True)
class BarSlice:
    """Bars of ``symbols`` with ``start <= ts < end``; ``timeframe`` / ``source`` narrow it when given."""

    symbols: tuple[str, ...]
    start: datetime
    end: datetime
    timeframe: str | None = None
    source: str | None = None

    def params(self) -> dict[str, Any]:
        return {
            "symbols": list(self.symbols),
            "start": self.start,
            "end": self.end,
            "timeframe": self.timeframe,
            "source": self.source,
        }


# The bars of a slice, joined to their instrument (``b`` and ``i``); every query below starts from it.
_SLICE = sql.SQL("""
    from market.bars b
    join market.instruments i on i.id = b.instrument_id
    where i.symbol = any(%(symbols)s)
      and b.ts >= %(start)s and b.ts < %(end)s
      and (%(timeframe)s::text is null or b.timeframe = %(timeframe)s::text)
      and (%(source)s::text is null or b.source = %(source)s::text)
""")


@dataclass(frozen=True)
class SliceSummary:
    rows: int
    first_ts: datetime | None
    last_ts: datetime | None
    symbols: list[str]
    timeframes: list[str]
    close_sum: Decimal | None  # with ``digest``: a checksum of the stored rows
    digest: str | None  # md5 of every stored row as text, in key order


def slice_summary(conn: psycopg.Connection[Any], bars: BarSlice) -> SliceSummary:
    """Row count, time range and a checksum of the stored bars of ``bars`` (the same rows give the same digest)."""
    row = conn.execute(
        sql.SQL(
            """
            select count(*), min(b.ts), max(b.ts),
                   coalesce(array_agg(distinct i.symbol), array[]::text[]),
                   coalesce(array_agg(distinct b.timeframe), array[]::text[]),
                   sum(b.close),
                   md5(string_agg(concat_ws('|', i.symbol, b.timeframe, b.ts, b.open, b.high, b.low, b.close,
                                            b.volume), ',' order by i.symbol, b.timeframe, b.ts))
            {}
            """
        ).format(_SLICE),
        bars.params(),
    ).fetchone()
    assert row is not None
    rows, first_ts, last_ts, symbols, timeframes, close_sum, digest = row
    return SliceSummary(int(rows), first_ts, last_ts, sorted(symbols), sorted(timeframes), close_sum, digest)


def preview(conn: psycopg.Connection[Any], bars: BarSlice, limit: int = 5) -> list[dict[str, Any]]:
    """The first stored bars of the slice (by symbol, timeframe, ts)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL(
                "select i.symbol, b.timeframe, b.ts, b.open, b.high, b.low, b.close, b.volume, b.source {} "
                "order by i.symbol, b.timeframe, b.ts limit %(limit)s"
            ).format(_SLICE),
            {**bars.params(), "limit": limit},
        )
        return cur.fetchall()


def ohlc_violations(
    conn: psycopg.Connection[Any], bars: BarSlice, examples: int = 5
) -> tuple[int, list[dict[str, Any]]]:
    """Bars where not ``low <= min(open, close) <= max(open, close) <= high`` or ``volume < 0``: how many, and
    the first few."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL(
                """
                select i.symbol, b.timeframe, b.ts, b.open, b.high, b.low, b.close, b.volume,
                       count(*) over () as total
                {}
                  and not (b.low <= least(b.open, b.close) and greatest(b.open, b.close) <= b.high
                           and b.volume >= 0)
                order by i.symbol, b.timeframe, b.ts limit %(limit)s
                """
            ).format(_SLICE),
            {**bars.params(), "limit": examples},
        )
        rows = cur.fetchall()
    total = int(rows[0].pop("total")) if rows else 0
    for row in rows[1:]:
        row.pop("total")
    return total, rows


def duplicate_keys(conn: psycopg.Connection[Any], bars: BarSlice) -> int:
    """(instrument, timeframe, ts) keys stored more than once (the primary key keeps this at 0)."""
    row = conn.execute(
        sql.SQL(
            "select count(*) from (select b.instrument_id, b.timeframe, b.ts {} group by 1, 2, 3 "
            "having count(*) > 1) duplicated"
        ).format(_SLICE),
        bars.params(),
    ).fetchone()
    return int(row[0]) if row else 0


def bar_times(conn: psycopg.Connection[Any], bars: BarSlice) -> dict[tuple[str, str, str], list[datetime]]:
    """Stored bar starts per (symbol, calendar code, timeframe), ascending."""
    times: dict[tuple[str, str, str], list[datetime]] = {}
    cur = conn.execute(
        sql.SQL("select i.symbol, i.calendar, b.timeframe, b.ts {} order by 1, 3, 4").format(_SLICE),
        bars.params(),
    )
    for symbol, calendar, timeframe, ts in cur:
        times.setdefault((symbol, calendar, timeframe), []).append(ts)
    return times


@dataclass(frozen=True)
class DayCloseRange:
    """One local trading day of an IDX-rule instrument: its closes' range and the reference price (the last close
    of the previous day with bars, None when there is none within the lookback)."""

    symbol: str
    timeframe: str
    day: date
    bars: int
    min_close: Decimal
    max_close: Decimal
    reference: Decimal | None
    reference_day: date | None


def day_close_ranges(
    conn: psycopg.Connection[Any], bars: BarSlice, timezone: str, lookback: timedelta = timedelta(days=14)
) -> list[DayCloseRange]:
    """Per symbol, timeframe and local day (in ``timezone``) with bars in the slice, for instruments under the
    ``idx_equity`` tick rule: the lowest and highest close of the slice's bars that day and the previous day's
    last close. The reference is taken from any source, and from up to ``lookback`` before the slice."""
    cur = conn.execute(
        """
        with bars as (
            select i.symbol, b.timeframe, b.ts, b.close, (b.ts at time zone %(tz)s)::date as day,
                   b.ts >= %(start)s and (%(source)s::text is null or b.source = %(source)s::text) as in_slice
            from market.bars b
            join market.instruments i on i.id = b.instrument_id
            where i.symbol = any(%(symbols)s) and i.tick_rule = 'idx_equity'
              and b.ts >= %(lookback_start)s and b.ts < %(end)s
              and (%(timeframe)s::text is null or b.timeframe = %(timeframe)s::text)
        ), days as (
            select symbol, timeframe, day, count(*) filter (where in_slice) as bars,
                   min(close) filter (where in_slice) as min_close, max(close) filter (where in_slice) as max_close,
                   (array_agg(close order by ts desc))[1] as last_close
            from bars
            group by symbol, timeframe, day
        ), referenced as (
            select symbol, timeframe, day, bars, min_close, max_close,
                   lag(last_close) over w as reference, lag(day) over w as reference_day
            from days
            window w as (partition by symbol, timeframe order by day)
        )
        select symbol, timeframe, day, bars, min_close, max_close, reference, reference_day
        from referenced
        where bars > 0
        order by symbol, timeframe, day
        """,
        {**bars.params(), "tz": timezone, "lookback_start": bars.start - lookback},
    )
    return [DayCloseRange(*row) for row in cur.fetchall()]


def bars_outside(
    conn: psycopg.Connection[Any],
    *,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    lower: Decimal,
    upper: Decimal,
    limit: int = 3,
) -> list[dict[str, Any]]:
    """Bars of one series in ``[start, end)`` whose close is outside ``[lower, upper]`` (the first few)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL(
                "select i.symbol, b.timeframe, b.ts, b.close {} "
                "and (b.close < %(lower)s or b.close > %(upper)s) order by b.ts limit %(limit)s"
            ).format(_SLICE),
            {
                **BarSlice((symbol,), start, end, timeframe).params(),
                "lower": lower,
                "upper": upper,
                "limit": limit,
            },
        )
        return cur.fetchall()


def latest_bars(
    conn: psycopg.Connection[Any], symbols: Sequence[str], timeframe: str | None = None
) -> list[tuple[str, str, datetime]]:
    """(symbol, timeframe, last bar start) of every stored series of ``symbols`` (from market.bar_series)."""
    cur = conn.execute(
        "select i.symbol, s.timeframe, s.last_ts from market.bar_series s "
        "join market.instruments i on i.id = s.instrument_id "
        "where i.symbol = any(%s) and (%s::text is null or s.timeframe = %s::text) order by 1, 2",
        [list(symbols), timeframe, timeframe],
    )
    return [(symbol, tf, last_ts) for symbol, tf, last_ts in cur.fetchall()]


def instrument_calendars(conn: psycopg.Connection[Any], symbols: Sequence[str]) -> dict[str, str]:
    """Symbol -> trading calendar code of the stored instruments among ``symbols``."""
    cur = conn.execute("select symbol, calendar from market.instruments where symbol = any(%s)", [list(symbols)])
    return {symbol: calendar for symbol, calendar in cur.fetchall()}


def known_symbols(conn: psycopg.Connection[Any], symbols: Sequence[str]) -> set[str]:
    cur = conn.execute("select symbol from market.instruments where symbol = any(%s)", [list(symbols)])
    return {symbol for (symbol,) in cur.fetchall()}


def holiday_keys(conn: psycopg.Connection[Any]) -> set[tuple[str, date]]:
    return {(calendar, day) for calendar, day in conn.execute("select calendar, day from market.holidays")}
