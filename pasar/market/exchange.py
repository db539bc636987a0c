"""Exchange rules and trading calendars, as data plus pure functions (no database, no I/O beyond two shipped CSVs).

Prices here are :class:`~decimal.Decimal` in and out, never float. The only float code is the vectorised numpy
helpers at the end (``idx_*_array``), which work on integer-valued float/int arrays of whole rupiah for the
synthetic generator and bulk checks, and agree exactly with the Decimal functions (tested).

Tick rules (``InstrumentSpec.tick_rule``, also ``market.instruments.tick_rule``)
    ``"idx_equity"``  IDX equities: the tick depends on the price band, see :data:`IDX_TICK_TIERS`
                      (< 200: 1; 200-<500: 2; 500-<2000: 5; 2000-<5000: 10; >= 5000: 25 rupiah). Every tier starts
                      at a multiple of its own tick, so the grid is well defined and rounding never leaves it.
    ``"decimal:N"``   a fixed 10^-N grid (FX, crypto, US equities), N in 0..8 as the database allows.

Auto-rejection (ARA/ARB)
    IDX rejects orders priced outside a band around the reference price (normally the previous close). The band
    by reference price is :data:`IDX_AUTO_REJECTION_BANDS`: here the symmetric table (50-200: 35%, 200-5000: 25%,
    > 5000: 20%, up and down) that IDX used in 2017-2020 and from September 2023. IDX changes it in stress: an ARB
    of 7% for every price in 2020-2023, and since 8 April 2025 an ARB of 15% for every price with the ARA unchanged
    (Kep-00003/BEI/04-2025). The table carries an upper and a lower fraction per band, so following IDX is a data
    change in that one constant. Limits are rounded *inward* to the tick grid and the lower limit never goes below
    :data:`IDX_MIN_PRICE` (50 rupiah, the lowest price on the regular board). A reference price below 50 is refused
    (ValueError): such a stock does not trade on the regular board. Rules without auto-rejection (every
    ``decimal:N`` rule) get ``None``: no exchange-imposed band, not a made-up wide one.

Trading calendars (:func:`calendar`)
    ``IDX``     Asia/Jakarta (WIB, UTC+7, no daylight saving). Continuous trading Mon-Thu 09:00-12:00 and 13:30-15:50,
                Fri 09:00-11:30 and 14:00-15:50. The pre-opening call auction (08:45-09:00), the pre-closing and
                closing auction (15:50-16:00) and post-trading are *not* continuous trading and are excluded. Shorter
                Ramadan sessions are not modelled. Holidays from ``data/holidays.csv`` (2024-2026, refreshed yearly).
    ``XNAS``    America/New_York, 09:30-16:00 Mon-Fri. Holidays are deliberately empty: no US holiday list is
                shipped, so a US holiday counts as a trading day (the bundled GOOG data simply has no bar that day).
    ``FX``      UTC, 24 hours Mon-Fri (sessions 00:00-24:00; see :class:`Session` for how 24:00 is written).
    ``CRYPTO``  UTC, 24/7, no holidays.

Bar conventions (:meth:`TradingCalendar.bar_starts`), the same as the bucketing of the bars API
    * Intraday bars are aligned to the wall clock of the exchange time zone (multiples of the bar length from local
      midnight), and a complete day has every bar whose interval ``[start, start + length)`` overlaps a session.
      For IDX at 1m-30m this is exactly "every bar whose start lies in a session"; at 1h it adds a 13:00 bar on
      Mon-Thu that carries 13:30-14:00 (the afternoon session does not start on the hour).
    * A daily bar's ``ts`` is 00:00 of its date in the exchange time zone, converted to UTC
      (IDX 2026-01-05 -> 2026-01-04T17:00Z); a weekly bar starts on Monday 00:00 local, a monthly bar on the 1st
      00:00 local. Those bars belong to the first trading day of their week/month.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from functools import cache
from importlib import resources
from itertools import pairwise
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from pasar.market.frames import Timeframe

__all__ = [
    "ASSET_CLASSES",
    "CALENDAR_CODES",
    "IDX_AUTO_REJECTION_BANDS",
    "IDX_MIN_PRICE",
    "IDX_TICK_TIERS",
    "InstrumentSpec",
    "RoundingMode",
    "Session",
    "TickRule",
    "TradingCalendar",
    "auto_rejection_limits",
    "calendar",
    "default_instrument",
    "idx_auto_rejection_limits_array",
    "idx_round_to_tick_array",
    "idx_tick_size_array",
    "on_tick_grid",
    "reference_holidays",
    "reference_instrument",
    "reference_instruments",
    "round_to_tick",
    "tick_size",
]

RoundingMode = Literal["down", "up", "nearest"]

# IDX tick tiers: (lowest price of the tier, tick), ascending. Each tier's lower bound is a multiple of its tick.
IDX_TICK_TIERS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal(0), Decimal(1)),
    (Decimal(200), Decimal(2)),
    (Decimal(500), Decimal(5)),
    (Decimal(2000), Decimal(10)),
    (Decimal(5000), Decimal(25)),
)

# IDX auto-rejection: (highest reference price of the band, inclusive, None = no upper end; ARA fraction up;
# ARB fraction down), ascending. The one place to change when IDX changes the bands (since 8 April 2025 IDX applies
# an ARB of 0.15 in every band; this table keeps the symmetric rule Pasar was specified with).
IDX_AUTO_REJECTION_BANDS: tuple[tuple[Decimal | None, Decimal, Decimal], ...] = (
    (Decimal(200), Decimal("0.35"), Decimal("0.35")),
    (Decimal(5000), Decimal("0.25"), Decimal("0.25")),
    (None, Decimal("0.20"), Decimal("0.20")),
)

# The lowest price on IDX's regular board ("gocap"): the auto-rejection lower limit never goes below it.
IDX_MIN_PRICE = Decimal(50)

MAX_DECIMAL_PLACES = 8  # market.instruments allows tick_rule decimal:0..8 and price_precision 0..8
_DECIMAL_RULE = re.compile(r"decimal:(\d)")


# Tick rules ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TickRule:
    """A named tick grid: ``tiers`` are (lowest price, tick) ascending; ``places`` the decimals of its prices."""

    name: str
    tiers: tuple[tuple[Decimal, Decimal], ...]
    places: int
    min_price: Decimal | None  # prices below are refused (None: any sign allowed)
    auto_rejection: tuple[tuple[Decimal | None, Decimal, Decimal], ...] | None

    @staticmethod
    def parse(rule: str | TickRule) -> TickRule:
        """The rule for a name (``"idx_equity"`` or ``"decimal:N"``); ValueError for anything else."""
        if isinstance(rule, TickRule):
            return rule
        return _parse_rule(rule)

    def tick_at(self, price: Decimal) -> Decimal:
        tick = self.tiers[0][1]
        for lower, tier_tick in self.tiers[1:]:
            if price < lower:
                break
            tick = tier_tick
        return tick

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.places)


@cache
def _parse_rule(name: str) -> TickRule:
    if name == "idx_equity":
        return TickRule(name, IDX_TICK_TIERS, 0, Decimal(0), IDX_AUTO_REJECTION_BANDS)
    match = _DECIMAL_RULE.fullmatch(name) if isinstance(name, str) else None
    if match is None or int(match.group(1)) > MAX_DECIMAL_PLACES:
        raise ValueError(f"unknown tick rule {name!r}: expected 'idx_equity' or 'decimal:N' with N in 0..8")
    places = int(match.group(1))
    return TickRule(name, ((Decimal(0), Decimal(1).scaleb(-places)),), places, None, None)


def _checked_price(price: object, rule: TickRule, what: str = "price") -> Decimal:
    if not isinstance(price, Decimal):
        if isinstance(price, int) and not isinstance(price, bool):
            price = Decimal(price)
        else:
            raise TypeError(f"{what} must be a Decimal (or int), not {type(price).__name__}")
    if not price.is_finite():
        raise ValueError(f"{what} must be finite, got {price}")
    if rule.min_price is not None and price < rule.min_price:
        raise ValueError(f"{what} {price} is below {rule.min_price} under tick rule {rule.name}")
    return price


def tick_size(price: Decimal, rule: str | TickRule) -> Decimal:
    """The tick that applies at ``price`` under ``rule`` (IDX: by price tier)."""
    parsed = TickRule.parse(rule)
    return parsed.tick_at(_checked_price(price, parsed))


def on_tick_grid(price: Decimal, rule: str | TickRule) -> bool:
    """Whether ``price`` is a multiple of the tick that applies at its own level."""
    parsed = TickRule.parse(rule)
    checked = _checked_price(price, parsed)
    return checked % parsed.tick_at(checked) == 0


def round_to_tick(price: Decimal, rule: str | TickRule, mode: RoundingMode = "nearest") -> Decimal:
    """``price`` moved onto the tick grid: ``down`` / ``up`` to the next grid price, or ``nearest`` (a tie goes up).

    The tick is the one at ``price``'s own level; rounding up from just below a tier boundary lands on the boundary,
    which is on both grids (499 -> 500 under idx_equity). The result is quantized to the rule's decimals
    (``Decimal("1500")``, ``Decimal("1.08450")``).
    """
    if mode not in ("down", "up", "nearest"):
        raise ValueError(f"unknown rounding mode {mode!r}: expected 'down', 'up' or 'nearest'")
    parsed = TickRule.parse(rule)
    checked = _checked_price(price, parsed)
    tick = parsed.tick_at(checked)
    down = (checked / tick).to_integral_value(rounding=ROUND_FLOOR) * tick
    if down == checked or mode == "down":
        result = down
    else:
        up = down + tick
        result = up if mode == "up" or (up - checked) <= (checked - down) else down
    return result.quantize(parsed.quantum)


def auto_rejection_limits(reference_price: Decimal, rule: str | TickRule) -> tuple[Decimal, Decimal] | None:
    """(lower, upper) auto-rejection limits around ``reference_price``, inclusive, on the tick grid.

    ``None`` for rules without auto-rejection (every ``decimal:N`` rule). For ``idx_equity`` the band's fractions are
    looked up in :data:`IDX_AUTO_REJECTION_BANDS` by the reference price; the upper limit is rounded down and the
    lower limit up (inward), and the lower limit is at least :data:`IDX_MIN_PRICE`. A reference price below
    :data:`IDX_MIN_PRICE` raises ValueError.
    """
    parsed = TickRule.parse(rule)
    if parsed.auto_rejection is None:
        return None
    reference = _checked_price(reference_price, parsed, "reference price")
    if reference < IDX_MIN_PRICE:
        raise ValueError(f"reference price {reference} is below the regular board minimum of {IDX_MIN_PRICE}")
    up, down = _band_fractions(reference, parsed.auto_rejection)
    upper = round_to_tick(reference * (1 + up), parsed, "down")
    lower = max(round_to_tick(reference * (1 - down), parsed, "up"), IDX_MIN_PRICE.quantize(parsed.quantum))
    return lower, upper


def _band_fractions(
    reference: Decimal, bands: Sequence[tuple[Decimal | None, Decimal, Decimal]]
) -> tuple[Decimal, Decimal]:
    for highest, up, down in bands:
        if highest is None or reference <= highest:
            return up, down
    raise ValueError(f"no auto-rejection band covers {reference}")  # a table without an open-ended last band


# Calendars -------------------------------------------------------------------------------------------------

_MIDNIGHT = time(0)
_DAY_SECONDS = 86_400


def _seconds(value: time) -> int:
    return value.hour * 3600 + value.minute * 60 + value.second


@dataclass(frozen=True, slots=True)
class Session:
    """A continuous-trading session ``[start, end)`` in the calendar's local time (naive ``time`` values).

    ``end == time(0)`` means 24:00, the end of the day (so a 24-hour day is ``Session(time(0), time(0))``);
    otherwise ``end`` must be after ``start``. Sessions never cross midnight. Whole seconds only.
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        for value in (self.start, self.end):
            if value.tzinfo is not None or value.microsecond:
                raise ValueError(f"session times are naive whole seconds, got {value!r}")
        if self.end_seconds <= self.start_seconds:
            raise ValueError(f"session ends at or before it starts: {self.start}-{self.end}")

    @property
    def start_seconds(self) -> int:
        """Seconds after local midnight."""
        return _seconds(self.start)

    @property
    def end_seconds(self) -> int:
        """Seconds after local midnight (86400 for an end of 24:00)."""
        return _DAY_SECONDS if self.end == _MIDNIGHT else _seconds(self.end)

    @property
    def seconds(self) -> int:
        return self.end_seconds - self.start_seconds

    def contains(self, seconds_of_day: float) -> bool:
        return self.start_seconds <= seconds_of_day < self.end_seconds


def _local_seconds(local: datetime) -> float:
    return local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6


@dataclass(frozen=True, slots=True)
class TradingCalendar:
    """An exchange's trading week and holidays. ``sessions[weekday]`` (Mon=0..Sun=6) are the continuous-trading
    sessions of that weekday in ``timezone``, ascending and not overlapping; a weekday without sessions is closed."""

    code: str
    timezone: ZoneInfo
    sessions: tuple[tuple[Session, ...], ...]
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if len(self.sessions) != 7:
            raise ValueError(f"calendar {self.code}: sessions needs 7 weekdays, got {len(self.sessions)}")
        for weekday, day_sessions in enumerate(self.sessions):
            for before, after in pairwise(day_sessions):
                if after.start_seconds < before.end_seconds:
                    raise ValueError(f"calendar {self.code}: sessions of weekday {weekday} overlap or are unordered")

    # Days

    def is_trading_day(self, day: date) -> bool:
        return bool(self.sessions[day.weekday()]) and day not in self.holidays

    def sessions_on(self, day: date) -> tuple[Session, ...]:
        """The sessions of ``day`` (empty on weekends and holidays)."""
        return self.sessions[day.weekday()] if day not in self.holidays else ()

    def session_seconds(self, day: date) -> int:
        """Total continuous-trading time of ``day`` in seconds (0 when closed)."""
        return sum(session.seconds for session in self.sessions_on(day))

    def trading_days(self, start: date, end: date) -> list[date]:
        """Trading days from ``start`` to ``end``, both inclusive (empty if ``end`` is before ``start``)."""
        days: list[date] = []
        day = start
        while day <= end:
            if self.is_trading_day(day):
                days.append(day)
            day += timedelta(days=1)
        return days

    def next_trading_day(self, day: date) -> date:
        """The first trading day strictly after ``day``."""
        return self._step(day, 1)

    def previous_trading_day(self, day: date) -> date:
        """The last trading day strictly before ``day``."""
        return self._step(day, -1)

    def _step(self, day: date, direction: int) -> date:
        candidate = day
        for _ in range(370):
            candidate += timedelta(days=direction)
            if self.is_trading_day(candidate):
                return candidate
        raise ValueError(f"calendar {self.code} has no trading day within a year of {day}")

    # Instants

    def _local(self, ts: datetime) -> datetime:
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError(f"timestamp must be timezone-aware, got naive {ts.isoformat()}")
        return ts.astimezone(self.timezone)

    def is_open(self, ts: datetime) -> bool:
        """Whether continuous trading is on at the instant ``ts`` (timezone-aware; sessions are half-open)."""
        local = self._local(ts)
        seconds = _local_seconds(local)
        return any(session.contains(seconds) for session in self.sessions_on(local.date()))

    def session_position(self, ts: datetime) -> float | None:
        """Where ``ts`` lies in its trading day, as the fraction of the day's total session time already elapsed:
        0.0 at the first session's open, approaching 1.0 at the last close, flat over breaks; None outside sessions
        (breaks, nights, weekends, holidays)."""
        local = self._local(ts)
        seconds = _local_seconds(local)
        day_sessions = self.sessions_on(local.date())
        elapsed = 0.0
        for session in day_sessions:
            if session.contains(seconds):
                return (elapsed + seconds - session.start_seconds) / sum(s.seconds for s in day_sessions)
            elapsed += session.seconds
        return None

    def local_midnight_utc(self, day: date) -> datetime:
        """00:00 of ``day`` in the exchange time zone, in UTC: the ``ts`` of that day's daily bar."""
        return datetime.combine(day, _MIDNIGHT, tzinfo=self.timezone).astimezone(UTC)

    def _wall_utc(self, day: date, seconds: int) -> datetime:
        wall = datetime.combine(day, _MIDNIGHT) + timedelta(seconds=seconds)
        return wall.replace(tzinfo=self.timezone).astimezone(UTC)

    def bar_starts(self, day: date, timeframe: Timeframe) -> list[datetime]:
        """UTC starts of the bars a complete ``day`` has at ``timeframe`` (empty when the market is closed).

        Intraday: every bar aligned to the local wall clock whose interval overlaps a session. ``1d``: one bar at
        local midnight. ``1w`` / ``1mo``: one bar at the local Monday / 1st, returned on the first trading day of
        that week / month only (so summing over trading days counts each bar once). See the module docstring.
        """
        day_sessions = self.sessions_on(day)
        if not day_sessions:
            return []
        if timeframe is Timeframe.d1:
            return [self.local_midnight_utc(day)]
        if timeframe is Timeframe.w1:
            monday = day - timedelta(days=day.weekday())
            first = self.trading_days(monday, day)[0]
            return [self.local_midnight_utc(monday)] if first == day else []
        if timeframe is Timeframe.mo1:
            first_of_month = day.replace(day=1)
            first = self.trading_days(first_of_month, day)[0]
            return [self.local_midnight_utc(first_of_month)] if first == day else []
        return [self._wall_utc(day, start) for start in _intraday_starts(day_sessions, timeframe.seconds)]


@cache
def _intraday_starts(day_sessions: tuple[Session, ...], length: int) -> tuple[int, ...]:
    """Local seconds-of-day of the clock-aligned bars of ``length`` seconds that overlap any session."""
    starts: list[int] = []
    for session in day_sessions:
        first = session.start_seconds - session.start_seconds % length
        starts.extend(range(first, session.end_seconds, length))
    return tuple(sorted(set(starts)))


def _holidays_for(code: str) -> frozenset[date]:
    return frozenset(day for calendar_code, day, _ in reference_holidays() if calendar_code == code)


_WEEKDAYS, _WEEKEND = 5, 2
_FULL_DAY = Session(_MIDNIGHT, _MIDNIGHT)


@cache
def _calendars() -> dict[str, TradingCalendar]:
    idx_mon_thu = (Session(time(9), time(12)), Session(time(13, 30), time(15, 50)))
    idx_fri = (Session(time(9), time(11, 30)), Session(time(14), time(15, 50)))
    us = (Session(time(9, 30), time(16)),)
    return {
        "IDX": TradingCalendar(
            "IDX", ZoneInfo("Asia/Jakarta"), (idx_mon_thu,) * 4 + (idx_fri, (), ()), _holidays_for("IDX")
        ),
        "XNAS": TradingCalendar("XNAS", ZoneInfo("America/New_York"), (us,) * _WEEKDAYS + ((),) * _WEEKEND),
        # The FX week runs from Sunday 21:00 to Friday 21:00 UTC (Sydney open to New York close).
        "FX": TradingCalendar(
            "FX",
            ZoneInfo("UTC"),
            ((_FULL_DAY,),) * 4 + ((Session(time(0), time(21)),), (), (Session(time(21), time(0)),)),
        ),
        "CRYPTO": TradingCalendar("CRYPTO", ZoneInfo("UTC"), ((_FULL_DAY,),) * 7),
    }


CALENDAR_CODES: tuple[str, ...] = ("IDX", "XNAS", "FX", "CRYPTO")


def calendar(code: str) -> TradingCalendar:
    """The trading calendar ``code`` (one of :data:`CALENDAR_CODES`); ValueError for an unknown code."""
    try:
        return _calendars()[code]
    except KeyError:
        raise ValueError(f"unknown trading calendar {code!r}; known: {', '.join(CALENDAR_CODES)}") from None


# Shipped data ----------------------------------------------------------------------------------------------


def _read_data_csv(filename: str) -> list[dict[str, str]]:
    text = resources.files("pasar.market").joinpath("data").joinpath(filename).read_text(encoding="utf-8")
    lines = [line for line in io.StringIO(text) if line.strip() and not line.lstrip().startswith("#")]
    return [{key: value.strip() for key, value in row.items()} for row in csv.DictReader(lines)]


@cache
def _reference_holidays() -> tuple[tuple[str, date, str], ...]:
    rows = []
    for row in _read_data_csv("holidays.csv"):
        rows.append((row["calendar"], date.fromisoformat(row["date"]), row["name"]))
    return tuple(sorted(rows))


def reference_holidays() -> list[tuple[str, date, str]]:
    """The shipped exchange holidays as (calendar, day, name), sorted (``data/holidays.csv``)."""
    return list(_reference_holidays())


ASSET_CLASSES: frozenset[str] = frozenset({"equity", "fx", "crypto", "index"})
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,31}")  # the market.instruments.symbol check
_IDX_CODE = re.compile(r"[A-Z]{4}")
_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """A tradable instrument's reference data (validated on construction; ValueError says what is wrong)."""

    symbol: str
    name: str
    exchange: str
    asset_class: str  # "equity" | "fx" | "crypto" | "index"
    currency: str  # ISO 4217, 3 letters (the quote currency for FX and crypto pairs)
    lot_size: int  # units per lot; order quantities are multiples of it
    price_precision: int  # decimals of a price
    tick_rule: str  # see TickRule
    calendar: str  # see calendar()
    allows_short: bool

    def __post_init__(self) -> None:
        problems = []
        if not _SYMBOL.fullmatch(self.symbol):
            problems.append(f"symbol {self.symbol!r} is not 1-32 of A-Z 0-9 . _ - starting with A-Z or 0-9")
        if not self.exchange:
            problems.append("exchange is empty")
        if self.asset_class not in ASSET_CLASSES:
            problems.append(f"asset_class {self.asset_class!r} is not one of {sorted(ASSET_CLASSES)}")
        if not _CURRENCY.fullmatch(self.currency):
            problems.append(f"currency {self.currency!r} is not 3 uppercase letters")
        if isinstance(self.lot_size, bool) or not isinstance(self.lot_size, int) or self.lot_size <= 0:
            problems.append(f"lot_size {self.lot_size!r} is not a positive integer")
        if not isinstance(self.price_precision, int) or not 0 <= self.price_precision <= MAX_DECIMAL_PLACES:
            problems.append(f"price_precision {self.price_precision!r} is not in 0..{MAX_DECIMAL_PLACES}")
        try:
            rule = TickRule.parse(self.tick_rule)
        except ValueError as exc:
            problems.append(str(exc))
        else:
            if isinstance(self.price_precision, int) and rule.places > self.price_precision:
                problems.append(f"tick rule {self.tick_rule} is finer than price_precision {self.price_precision}")
        if self.calendar not in CALENDAR_CODES:
            problems.append(f"calendar {self.calendar!r} is not one of {', '.join(CALENDAR_CODES)}")
        if problems:
            raise ValueError(f"instrument {self.symbol!r}: " + "; ".join(problems))

    @property
    def rule(self) -> TickRule:
        return TickRule.parse(self.tick_rule)

    def trading_calendar(self) -> TradingCalendar:
        return calendar(self.calendar)


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


@cache
def _reference_instruments() -> tuple[InstrumentSpec, ...]:
    specs = []
    for row in _read_data_csv("instruments.csv"):
        fields: dict[str, Any] = dict(row)
        fields["lot_size"] = int(row["lot_size"])
        fields["price_precision"] = int(row["price_precision"])
        fields["allows_short"] = _parse_bool(row["allows_short"])
        specs.append(InstrumentSpec(**fields))
    symbols = [spec.symbol for spec in specs]
    duplicates = sorted({symbol for symbol in symbols if symbols.count(symbol) > 1})
    if duplicates:
        raise ValueError(f"instruments.csv lists {', '.join(duplicates)} more than once")
    return tuple(specs)


def reference_instruments() -> list[InstrumentSpec]:
    """The shipped instrument list (``data/instruments.csv``): liquid IDX stocks plus the bundled real-data
    instruments (GOOG, EURUSD, BTCUSD), in file order."""
    return list(_reference_instruments())


def reference_instrument(symbol: str) -> InstrumentSpec | None:
    """The shipped spec of ``symbol``, or None."""
    return next((spec for spec in _reference_instruments() if spec.symbol == symbol), None)


def default_instrument(symbol: str) -> InstrumentSpec:
    """The spec for a symbol first seen in data (e.g. a file dropped in the landing folder).

    A shipped symbol gets its reference spec. A symbol that looks like an IDX code (exactly 4 uppercase letters)
    becomes an IDX equity (IDR, lot 100, precision 0, idx_equity ticks, IDX calendar, no short selling). Anything
    else becomes an instrument of the generic exchange ``OTHER``: an equity quoted in USD, lot 1, 4 decimals on a
    ``decimal:4`` grid, short selling allowed, on the always-open ``CRYPTO`` calendar (we know nothing of its
    hours, so no bar is ever flagged as outside a session). Operators correct these in market.instruments.
    The symbol must already satisfy the instruments table's pattern (uppercase); ValueError otherwise.
    """
    known = reference_instrument(symbol)
    if known is not None:
        return known
    if _IDX_CODE.fullmatch(symbol):
        return InstrumentSpec(symbol, symbol, "IDX", "equity", "IDR", 100, 0, "idx_equity", "IDX", False)
    return InstrumentSpec(symbol, symbol, "OTHER", "equity", "USD", 1, 4, "decimal:4", "CRYPTO", True)


# Vectorised IDX helpers (numpy), exact on whole-rupiah prices --------------------------------------------------

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_IDX_TIER_BOUNDS = np.array([float(lower) for lower, _ in IDX_TICK_TIERS[1:]])
_IDX_TIER_TICKS = np.array([float(tick) for _, tick in IDX_TICK_TIERS])


def idx_tick_size_array(prices: npt.ArrayLike) -> FloatArray:
    """:func:`tick_size` under idx_equity for every price of an array."""
    values = np.asarray(prices, dtype=np.float64)
    ticks: FloatArray = _IDX_TIER_TICKS[np.searchsorted(_IDX_TIER_BOUNDS, values, side="right")]
    return ticks


def idx_round_to_tick_array(prices: npt.ArrayLike, mode: RoundingMode = "nearest") -> FloatArray:
    """:func:`round_to_tick` under idx_equity for every price of an array (whole rupiah as float64; a ``nearest``
    tie goes to the even multiple of the tick, the only way it may differ from the Decimal function)."""
    values = np.asarray(prices, dtype=np.float64)
    ticks = idx_tick_size_array(values)
    scaled = values / ticks
    if mode == "down":
        steps = np.floor(scaled)
    elif mode == "up":
        steps = np.ceil(scaled)
    elif mode == "nearest":
        steps = np.rint(scaled)
    else:
        raise ValueError(f"unknown rounding mode {mode!r}: expected 'down', 'up' or 'nearest'")
    result: FloatArray = steps * ticks
    return result


def _bps(fraction: Decimal) -> int:
    bps = fraction * 10_000
    if bps != bps.to_integral_value():
        raise ValueError(f"auto-rejection fraction {fraction} is not a whole number of basis points")
    return int(bps)


_ARB_UPPER_BOUNDS = np.array([int(highest) for highest, _, _ in IDX_AUTO_REJECTION_BANDS if highest is not None])
_ARA_BPS = np.array([_bps(up) for _, up, _ in IDX_AUTO_REJECTION_BANDS], dtype=np.int64)
_ARB_BPS = np.array([_bps(down) for _, _, down in IDX_AUTO_REJECTION_BANDS], dtype=np.int64)
_IDX_TIER_BOUNDS_INT = np.array([int(lower) for lower, _ in IDX_TICK_TIERS[1:]], dtype=np.int64)
_IDX_TIER_TICKS_INT = np.array([int(tick) for _, tick in IDX_TICK_TIERS], dtype=np.int64)


def idx_auto_rejection_limits_array(reference_prices: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """:func:`auto_rejection_limits` under idx_equity for an array of whole-rupiah reference prices (>= 50),
    computed in exact integer arithmetic; returns (lower, upper) as int64 arrays."""
    reference = np.asarray(reference_prices)
    if reference.size and not np.array_equal(reference, np.rint(reference)):
        raise ValueError("reference prices must be whole rupiah")
    ref = reference.astype(np.int64)
    if ref.size and int(ref.min()) < int(IDX_MIN_PRICE):
        raise ValueError(f"reference prices below the regular board minimum of {IDX_MIN_PRICE}")
    band = np.searchsorted(_ARB_UPPER_BOUNDS, ref, side="left")
    upper_x = ref * (10_000 + _ARA_BPS[band])  # the raw limits in units of 1/10000 rupiah
    lower_x = ref * (10_000 - _ARB_BPS[band])
    upper_tick = _IDX_TIER_TICKS_INT[np.searchsorted(_IDX_TIER_BOUNDS_INT, upper_x // 10_000, side="right")]
    lower_tick = _IDX_TIER_TICKS_INT[np.searchsorted(_IDX_TIER_BOUNDS_INT, lower_x // 10_000, side="right")]
    upper: IntArray = (upper_x // (10_000 * upper_tick)) * upper_tick
    lower: IntArray = -((-lower_x) // (10_000 * lower_tick)) * lower_tick
    lower = np.maximum(lower, int(IDX_MIN_PRICE))
    return lower, upper
