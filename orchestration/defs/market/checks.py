"""Asset checks of the market assets, evaluated inside the asset's own step (declared with ``check_specs``), so
each result belongs to the partition (or landing files) just loaded. Every check returns its figures as metadata.

The queries are in :mod:`pasar.market.quality`; the rules that judge them (trading calendars, the IDX
auto-rejection band) come from :mod:`pasar.market.exchange`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
import psycopg

from pasar.market import exchange, quality
from pasar.market.frames import Timeframe
from pasar.market.quality import BarSlice

OHLC_SANITY = "ohlc_sanity"
NO_DUPLICATES = "no_duplicates"
CALENDAR_GAPS = "calendar_gaps"
FRESHNESS = "freshness"
PRICE_JUMPS = "price_jumps"
REFERENCE_COMPLETE = "reference_complete"

DESCRIPTIONS = {
    OHLC_SANITY: "Every loaded bar has low ≤ open, close ≤ high and volume ≥ 0.",
    NO_DUPLICATES: "No (instrument, timeframe, ts) is stored twice, and the loaded frame had no repeated key.",
    CALENDAR_GAPS: "Every bar the instrument's trading calendar expects on the loaded trading days is present, "
    "and none lies outside the sessions.",
    FRESHNESS: "The latest stored bar of each loaded series is within the allowed lag.",
    PRICE_JUMPS: "No close of an IDX instrument lies outside the auto-rejection band around the previous day's close.",
    REFERENCE_COMPLETE: "Every shipped instrument and exchange holiday is in the database.",
}

# Freshness: a series is stale when its last bar is older than one bar length plus this slack (a weekend and a
# holiday or two).
FRESHNESS_SLACK = timedelta(days=4)
EXAMPLES = 5
_US = timedelta(microseconds=1)


def specs(asset: str, *names: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset, description=DESCRIPTIONS[name]) for name in names]


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat()


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A row for JSON metadata: timestamps in UTC ISO form, numbers as exact strings."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            out[key] = _iso(value)
        elif isinstance(value, Decimal):
            out[key] = str(value)
        else:
            out[key] = value
    return out


def ohlc_sanity(conn: psycopg.Connection[Any], slices: Sequence[BarSlice]) -> dg.AssetCheckResult:
    total, examples = 0, []
    for bars in slices:
        count, rows = quality.ohlc_violations(conn, bars, EXAMPLES)
        total += count
        examples.extend(rows)
    return dg.AssetCheckResult(
        check_name=OHLC_SANITY,
        passed=total == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "violations": dg.MetadataValue.int(total),
            "examples": dg.MetadataValue.json([_jsonable(row) for row in examples[:EXAMPLES]]),
        },
    )


def no_duplicates(
    conn: psycopg.Connection[Any], slices: Sequence[BarSlice], *, frame_duplicates: int = 0
) -> dg.AssetCheckResult:
    """``frame_duplicates``: keys repeated in the frame that was loaded (the loader refuses such a frame, so a
    non-zero count here means the source produced duplicates)."""
    stored = sum(quality.duplicate_keys(conn, bars) for bars in slices)
    return dg.AssetCheckResult(
        check_name=NO_DUPLICATES,
        passed=stored == 0 and frame_duplicates == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "stored_duplicate_keys": dg.MetadataValue.int(stored),
            "frame_duplicate_keys": dg.MetadataValue.int(frame_duplicates),
        },
    )


def _expected_starts(calendar: exchange.TradingCalendar, timeframe: Timeframe, bars: BarSlice) -> set[datetime]:
    first_day = bars.start.astimezone(calendar.timezone).date()
    last_day = (bars.end - _US).astimezone(calendar.timezone).date()
    return {
        ts
        for day in calendar.trading_days(first_day, last_day)
        for ts in calendar.bar_starts(day, timeframe)
        if bars.start <= ts < bars.end
    }


def calendar_gaps(conn: psycopg.Connection[Any], slices: Sequence[BarSlice]) -> dg.AssetCheckResult:
    """Per series of each slice: the bars its calendar expects on the trading days of the slice's window, against
    the stored ones. A slice with a timeframe checks each of its symbols even when none of their bars is stored."""
    per_series: dict[str, dict[str, Any]] = {}
    missing_total = unexpected_total = 0
    for bars in slices:
        stored = quality.bar_times(conn, bars)
        series = set(stored)
        if bars.timeframe is not None:
            calendars = quality.instrument_calendars(conn, bars.symbols)
            series |= {(symbol, calendars[symbol], bars.timeframe) for symbol in bars.symbols if symbol in calendars}
        for symbol, calendar_code, timeframe in sorted(series):
            calendar = exchange.calendar(calendar_code)
            expected = _expected_starts(calendar, Timeframe(timeframe), bars)
            present = set(stored.get((symbol, calendar_code, timeframe), []))
            missing = sorted(expected - present)
            unexpected = sorted(present - expected)
            missing_total += len(missing)
            unexpected_total += len(unexpected)
            per_series[f"{symbol} {timeframe}"] = {
                "calendar": calendar_code,
                "expected": len(expected),
                "present": len(present),
                "missing": len(missing),
                "first_missing": [_iso(ts) for ts in missing[:EXAMPLES]],
                "outside_calendar": len(unexpected),
                "first_outside_calendar": [_iso(ts) for ts in unexpected[:EXAMPLES]],
            }
    return dg.AssetCheckResult(
        check_name=CALENDAR_GAPS,
        passed=missing_total == 0 and unexpected_total == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "missing": dg.MetadataValue.int(missing_total),
            "outside_calendar": dg.MetadataValue.int(unexpected_total),
            "series_with_gaps": dg.MetadataValue.int(
                sum(1 for entry in per_series.values() if entry["missing"] or entry["outside_calendar"])
            ),
            "per_series": dg.MetadataValue.json(per_series),
        },
    )


def freshness(
    conn: psycopg.Connection[Any], series: Iterable[tuple[str, str]], *, as_of: datetime, as_of_label: str
) -> dg.AssetCheckResult:
    """Each (symbol, timeframe) in ``series``: its last stored bar against ``as_of`` (now, or the last bar the
    source has when the source is frozen history), allowed one bar length plus :data:`FRESHNESS_SLACK`."""
    wanted = set(series)
    symbols = sorted({symbol for symbol, _ in wanted})
    latest = {(symbol, tf): ts for symbol, tf, ts in quality.latest_bars(conn, symbols) if (symbol, tf) in wanted}
    per_series: dict[str, dict[str, Any]] = {}
    stale = 0
    for symbol, timeframe in sorted(wanted):
        allowed = Timeframe(timeframe).seconds + FRESHNESS_SLACK.total_seconds()
        last = latest.get((symbol, timeframe))
        lag = None if last is None else max((as_of - last).total_seconds(), 0.0)
        is_stale = lag is None or lag > allowed
        stale += is_stale
        per_series[f"{symbol} {timeframe}"] = {
            "last_bar": None if last is None else _iso(last),
            "lag_hours": None if lag is None else round(lag / 3600, 2),
            "allowed_lag_hours": round(allowed / 3600, 2),
            "stale": is_stale,
        }
    lags = [entry["lag_hours"] for entry in per_series.values() if entry["lag_hours"] is not None]
    return dg.AssetCheckResult(
        check_name=FRESHNESS,
        passed=stale == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "as_of": dg.MetadataValue.text(f"{_iso(as_of)} ({as_of_label})"),
            "series": dg.MetadataValue.int(len(per_series)),
            "stale_series": dg.MetadataValue.int(stale),
            "max_lag_hours": dg.MetadataValue.float(float(max(lags, default=0.0))),
            "per_series": dg.MetadataValue.json(per_series),
        },
    )


def price_jumps(conn: psycopg.Connection[Any], slices: Sequence[BarSlice]) -> dg.AssetCheckResult:
    """Closes of instruments under the IDX tick rule outside the auto-rejection band around the previous trading
    day's last close (for daily bars: close to close). Not checked: a day whose previous trading day has no bars
    (no reference price), a reference below the regular board's minimum, weekly and monthly bars."""
    idx = exchange.calendar("IDX")
    checked = unchecked = beyond = bars_checked = 0
    examples: list[dict[str, Any]] = []
    for bars in slices:
        for day in quality.day_close_ranges(conn, bars, idx.timezone.key):
            limits = None
            if (
                Timeframe(day.timeframe).seconds <= Timeframe.d1.seconds
                and day.reference is not None
                and day.reference >= exchange.IDX_MIN_PRICE
                and day.reference_day == idx.previous_trading_day(day.day)
            ):
                limits = exchange.auto_rejection_limits(day.reference, "idx_equity")
            if limits is None:
                unchecked += 1
                continue
            checked += 1
            bars_checked += day.bars
            lower, upper = limits
            if lower <= day.min_close and day.max_close <= upper:
                continue
            beyond += 1
            if len(examples) < EXAMPLES:
                day_start = datetime.combine(day.day, datetime.min.time(), tzinfo=idx.timezone)
                for row in quality.bars_outside(
                    conn,
                    symbol=day.symbol,
                    timeframe=day.timeframe,
                    start=day_start,
                    end=day_start + timedelta(days=1),
                    lower=lower,
                    upper=upper,
                ):
                    reference = {"reference": day.reference, "reference_day": str(day.reference_day)}
                    examples.append(_jsonable({**row, **reference, "lower": lower, "upper": upper}))
    return dg.AssetCheckResult(
        check_name=PRICE_JUMPS,
        passed=beyond == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "days_checked": dg.MetadataValue.int(checked),
            "bars_checked": dg.MetadataValue.int(bars_checked),
            "days_without_reference": dg.MetadataValue.int(unchecked),
            "days_beyond_band": dg.MetadataValue.int(beyond),
            "examples": dg.MetadataValue.json(examples[:EXAMPLES]),
        },
    )


def reference_complete(conn: psycopg.Connection[Any]) -> dg.AssetCheckResult:
    shipped = [spec.symbol for spec in exchange.reference_instruments()]
    holidays = {(calendar, day) for calendar, day, _ in exchange.reference_holidays()}
    missing_symbols = sorted(set(shipped) - quality.known_symbols(conn, shipped))
    missing_holidays = sorted(holidays - quality.holiday_keys(conn))
    return dg.AssetCheckResult(
        check_name=REFERENCE_COMPLETE,
        passed=not missing_symbols and not missing_holidays,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "missing_instruments": dg.MetadataValue.json(missing_symbols),
            "missing_holidays": dg.MetadataValue.json([f"{cal} {day}" for cal, day in missing_holidays]),
        },
    )
