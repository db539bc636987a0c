"""A seeded synthetic IDX market, for demos, tests and load tests at any size.

Every bar follows the IDX rules of :mod:`pasar.market.exchange`: bars only inside continuous-trading sessions on
IDX trading days (``TradingCalendar.bar_starts``: no lunch break, weekend or holiday bars), every price on the
``idx_equity`` tick grid for its level, every price of a day inside that day's auto-rejection band around the
previous close (so a day can end "ARA"/"ARB" at the limit, as IDX stocks sometimes do), ``low <= min(open, close)``
and ``high >= max(open, close)``, and volumes in shares that are positive multiples of the 100-share lot.

How a price path is made
    *Daily path.* Each symbol has seeded parameters (a starting price log-uniform in 150..15,000 rupiah, a daily
    volatility in 1.5-3%, a daily turnover of 5 billion to 500 billion rupiah). From the fixed anchor date
    :data:`ANCHOR` onwards, every IDX trading day draws an overnight gap (15% of the day's variance) and an
    open-to-close return (the rest), with a random day-to-day volatility multiplier, rare 3x "news" days and a
    slow pull back towards the starting price (half-life about two years, so prices stay in a realistic range);
    open and close are rounded to the tick grid and clipped into the day's auto-rejection band.
    *Intraday path.* Inside a day, the bars follow a Brownian bridge in log price from that open to that close,
    with a U-shaped volatility profile over the trading day (about 2.5x the midday volatility at the open and the
    close); highs and lows extend the bar's body by an exponential amount of the bar's volatility; volumes follow
    a U-shaped profile with lognormal noise, a little higher on bars that moved more.

Determinism
    The random numbers of a symbol depend only on ``(seed, symbol, year)`` for the daily path and on
    ``(seed, symbol, day, timeframe)`` for a day's bars, never on the other symbols asked for or on the window.
    So ``generate`` and :class:`SyntheticSource` give the same bars for the same day whatever window or symbol
    list they are asked for, and fetching two adjacent days separately equals fetching both at once. The cost of
    that consistency: the daily path is always computed from :data:`ANCHOR` (a few milliseconds per year of
    history; cached), and no bars exist before :data:`ANCHOR`. Different timeframes share each day's open and close
    (the daily path) but draw their intraday paths independently, so 5m bars are not the exact rollup of 1m bars.
    The holiday list is part of the path: adding a holiday changes the path from that day on.

Speed: everything is vectorised over symbols and bars; the Python loops are per trading day (and per symbol only
to reseed its random generator). Measured on the 2-core development machine: ``generate(50, 20, Timeframe.m1)``
(311,000 bars) in about 0.1 s warm (0.15 s cold, which includes the daily path from the anchor), and
``generate(500, 250, Timeframe.m1)`` (38.6 million bars) in about 17 s (2.2 million bars/s, 3.2 GB peak memory).
For loads that size, :meth:`SyntheticSource.iter_days` yields one day at a time.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import polars as pl

from pasar.market import exchange
from pasar.market.frames import BAR_SCHEMA, Timeframe, empty_bars
from pasar.market.sources.base import filter_window, validate_window

__all__ = ["ANCHOR", "DEFAULT_START", "SyntheticSource", "generate", "synthetic_symbols", "trading_days_from"]

ANCHOR = date(2024, 1, 1)  # the synthetic market's first day (where the shipped IDX holidays start); no bars before
DEFAULT_START = date(2026, 1, 5)  # a fixed default start (a Monday) so that runs are reproducible
CALENDAR = "IDX"
LOT = 100

GAP_SHARE = 0.15  # share of a day's return variance in the overnight gap
VOL_OF_VOL = 0.25  # lognormal sd of the day-to-day volatility multiplier
NEWS_Z = 2.326  # a day is a 3x-volatility "news" day when its draw exceeds this (1% of days)
NEWS_SCALE = 3.0
HALF_LIFE_DAYS = 500  # mean reversion of log price towards the symbol's starting price
RANGE_SCALE = 0.8  # high/low extension beyond the bar body, in bar volatilities
VOLUME_NOISE = 0.6  # lognormal sd of a bar's volume around the intraday profile
DAILY_VOLUME_NOISE = 0.35

_PARAMS, _DAILY, _INTRADAY = 0, 1, 2  # random stream tags
_DAILY_DRAWS = 5  # gap, open-to-close return, volatility multiplier, volume, news
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def synthetic_symbols(count: int) -> list[str]:
    """The first ``count`` reference IDX stocks (BBCA, BBRI, ...), then made-up 4-letter codes SXAA, SXAB, ...
    (skipping any real reference code)."""
    if count < 0:
        raise ValueError(f"symbol count must be >= 0, got {count}")
    real = [spec.symbol for spec in exchange.reference_instruments() if spec.calendar == CALENDAR]
    symbols = real[:count]
    taken = set(real)
    code = (ord("S") - 65) * 26**3 + (ord("X") - 65) * 26**2  # "SXAA"
    while len(symbols) < count:
        if code >= 26**4:
            raise ValueError(f"cannot make {count} distinct 4-letter symbols")
        letters = "".join(chr(65 + code // 26**power % 26) for power in (3, 2, 1, 0))
        code += 1
        if letters not in taken:
            symbols.append(letters)
    return symbols


def _symbol_list(symbols: int | Sequence[str]) -> tuple[str, ...]:
    if isinstance(symbols, int):
        return tuple(synthetic_symbols(symbols))
    if isinstance(symbols, str):
        raise TypeError("symbols must be a count or a list of symbols, not a single string")
    listed = tuple(symbols)
    if len(set(listed)) != len(listed):
        raise ValueError("symbols are not unique")
    if not all(isinstance(symbol, str) and symbol for symbol in listed):
        raise ValueError("symbols must be non-empty strings")
    return listed


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


def _rng(seed: int, symbol: str, *tags: int) -> np.random.Generator:
    bit_generator = np.random.PCG64()
    _reseed_from(bit_generator, _seeders(seed, [symbol], *tags)[0])
    return np.random.Generator(bit_generator)


def trading_days_from(start: date, days: int) -> list[date]:
    """The first ``days`` IDX trading days on or after ``start``."""
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    cal = exchange.calendar(CALENDAR)
    result: list[date] = []
    day = start if cal.is_trading_day(start) else cal.next_trading_day(start)
    while len(result) < days:
        result.append(day)
        day = cal.next_trading_day(day)
    return result


# The daily path --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DailyPath:
    """Per symbol (rows) and trading day from ANCHOR (columns): the day's band, open, close and scale."""

    index: dict[date, int]
    lower: FloatArray
    upper: FloatArray
    open: FloatArray
    close: FloatArray
    sigma: FloatArray  # open-to-close volatility (log), spread over the day's bars
    volume: FloatArray  # expected shares traded in the day


def _round_ticks(prices: FloatArray) -> FloatArray:
    return exchange.idx_round_to_tick_array(prices, "nearest")


@lru_cache(maxsize=4)
def _daily_path(seed: int, symbols: tuple[str, ...], through_year: int) -> _DailyPath:
    """The daily path of ``symbols`` from ANCHOR through the end of ``through_year`` (causal: a later
    ``through_year`` extends it without changing the days before)."""
    cal = exchange.calendar(CALENDAR)
    days = cal.trading_days(ANCHOR, date(through_year, 12, 31))
    count = len(symbols)
    base = np.empty(count)
    sigma = np.empty(count)
    turnover = np.empty(count)
    draws = np.empty((count, len(days), _DAILY_DRAWS))
    years = range(ANCHOR.year, through_year + 1)
    rows_by_year = {year: [day.timetuple().tm_yday - 1 for day in days if day.year == year] for year in years}
    for i, symbol in enumerate(symbols):
        params = _rng(seed, symbol, _PARAMS)
        base[i] = math.exp(params.uniform(math.log(150), math.log(15_000)))
        sigma[i] = params.uniform(0.015, 0.03)
        turnover[i] = math.exp(params.uniform(math.log(5e9), math.log(5e11)))
        column = 0
        for year in years:
            block = _rng(seed, symbol, _DAILY, year).standard_normal((366, _DAILY_DRAWS), dtype=np.float32)
            rows = rows_by_year[year]
            draws[i, column : column + len(rows)] = block[rows]
            column += len(rows)
    base = _round_ticks(base)
    kappa = math.log(2) / HALF_LIFE_DAYS
    shape = (count, len(days))
    lower, upper, opens, closes, sigmas, volumes = (np.empty(shape) for _ in range(6))
    reference = base.copy()
    for t in range(len(days)):
        z_gap, z_ret, z_vol, z_volume, z_news = (draws[:, t, k] for k in range(_DAILY_DRAWS))
        low_limit, high_limit = (
            limit.astype(np.float64) for limit in exchange.idx_auto_rejection_limits_array(reference)
        )
        pull = -kappa * np.log(reference / base)
        day_sigma = sigma * np.exp(VOL_OF_VOL * z_vol - VOL_OF_VOL**2 / 2)
        day_open = np.clip(
            _round_ticks(reference * np.exp(GAP_SHARE * pull + day_sigma * math.sqrt(GAP_SHARE) * z_gap)),
            low_limit,
            high_limit,
        )
        move_sigma = day_sigma * math.sqrt(1 - GAP_SHARE) * np.where(z_news > NEWS_Z, NEWS_SCALE, 1.0)
        day_close = np.clip(
            _round_ticks(day_open * np.exp((1 - GAP_SHARE) * pull + move_sigma * z_ret)), low_limit, high_limit
        )
        activity = 1.0 + np.abs(np.log(day_close / reference)) / day_sigma
        lower[:, t], upper[:, t], opens[:, t], closes[:, t], sigmas[:, t] = (
            low_limit,
            high_limit,
            day_open,
            day_close,
            move_sigma,
        )
        volumes[:, t] = (
            turnover
            / reference
            * np.exp(DAILY_VOLUME_NOISE * z_volume - DAILY_VOLUME_NOISE**2 / 2)
            * activity
            / 1.8  # E[1 + |z|] = 1.8: keeps the mean turnover near the symbol's
        )
        reference = day_close
    return _DailyPath({day: t for t, day in enumerate(days)}, lower, upper, opens, closes, sigmas, volumes)


# A day's bars ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    ts: IntArray  # bar starts, microseconds since the epoch (UTC)
    spread: FloatArray  # sqrt of each bar's share of the day's variance (shares sum to 1)
    cumulative: FloatArray  # running sum of the variance shares (last = 1)
    activity: FloatArray  # share of the day's volume per bar (sums to 1)


def _profile(position: FloatArray, floor: float, edge: float) -> FloatArray:
    """U shape over the trading day: ``floor`` at midday, ``floor + edge`` at the open and the close."""
    shape: FloatArray = floor + edge * (2 * position - 1) ** 2
    return shape


@lru_cache(maxsize=64)
def _shape(sessions: tuple[exchange.Session, ...], offsets: tuple[int, ...], length: int) -> tuple[FloatArray, ...]:
    """Per bar (local start ``offsets``): its variance and volume shares, weighted by the session time it covers
    (a 1h bar at 15:00 covers 50 minutes) and by the U-shaped profile at its position in the trading day."""
    total = sum(session.seconds for session in sessions)
    starts = np.array(offsets, dtype=np.float64)
    covered = np.zeros(len(offsets))
    for session in sessions:
        ends = np.minimum(starts + length, session.end_seconds)
        covered += np.clip(ends - np.maximum(starts, session.start_seconds), 0, None)
    position = (np.cumsum(covered) - covered / 2) / total
    variance = covered * _profile(position, 0.5, 2.5)
    variance /= variance.sum()
    cumulative = np.cumsum(variance)
    cumulative[-1] = 1.0
    activity = covered * _profile(position, 0.4, 2.6)
    activity /= activity.sum()
    return np.sqrt(variance), cumulative, activity


def _layout(day: date, timeframe: Timeframe) -> _Layout:
    cal = exchange.calendar(CALENDAR)
    starts = cal.bar_starts(day, timeframe)
    ts = np.array([(start - _EPOCH) // _US for start in starts], dtype=np.int64)
    if timeframe is Timeframe.d1:
        one = np.ones(1)
        return _Layout(ts, one, one, one)
    midnight = cal.local_midnight_utc(day)
    offsets = tuple(int((start - midnight).total_seconds()) for start in starts)
    spread, cumulative, activity = _shape(cal.sessions_on(day), offsets, timeframe.seconds)
    return _Layout(ts, spread, cumulative, activity)


def _seeders(seed: int, symbols: Sequence[str], *tags: int) -> list[hashlib.blake2b]:
    """Per symbol, a hash of ``(seed, symbol, *tags)`` still open for more input (see :func:`_reseed_from`)."""
    return [hashlib.blake2b(repr((seed, symbol, *tags)).encode("utf-8"), digest_size=32) for symbol in symbols]


def _reseed_from(bit_generator: np.random.PCG64, seeder: hashlib.blake2b, extra: bytes = b"") -> None:
    """Set ``bit_generator`` to a PCG64 state (128-bit state and stream) hashed from the seeder's input plus
    ``extra``: an independent generator per symbol and day, far cheaper to set than to build a new one."""
    hasher = seeder.copy()
    hasher.update(extra)
    digest = hasher.digest()
    bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": int.from_bytes(digest[:16], "little"), "inc": int.from_bytes(digest[16:], "little") | 1},
        "has_uint32": 0,
        "uinteger": 0,
    }


@dataclass(frozen=True)
class _RowGrid:
    """The tick grid of each row's auto-rejection band ``[lower, upper]`` (arrays of shape (symbols, 1)): ``low``
    below ``boundary``, ``high`` from it on. With IDX's bands a band never spans two tier boundaries (its width
    ratio is at most 1.35 / 0.65 < 2.5, the closest ratio of two boundaries); rows where it would are rounded
    price by price."""

    boundary: FloatArray
    low: FloatArray
    high: FloatArray
    fallback: IntArray

    @classmethod
    def of(cls, lower: FloatArray, upper: FloatArray) -> _RowGrid:
        bounds = np.array([float(bound) for bound, _ in exchange.IDX_TICK_TIERS[1:]] + [math.inf])
        boundary = bounds[np.searchsorted(bounds, lower, side="right")]
        low, high = exchange.idx_tick_size_array(lower), exchange.idx_tick_size_array(upper)
        beyond = np.minimum(boundary, upper)  # the tick from the boundary on must be the one at the upper limit
        fallback = np.flatnonzero((exchange.idx_tick_size_array(beyond) != high) & (boundary <= upper))
        return cls(boundary, low, high, fallback)

    def round(self, prices: FloatArray) -> FloatArray:
        """``prices`` rounded to the nearest tick of their row's grid; exact once clipped into the band (a price
        beyond a limit rounds to some grid price beyond it, then clips to the limit, which is on the grid)."""
        ticks = np.where(prices < self.boundary, self.low, self.high)
        rounded = np.divide(prices, ticks)
        np.rint(rounded, out=rounded)
        rounded *= ticks
        if self.fallback.size:
            rounded[self.fallback] = exchange.idx_round_to_tick_array(prices[self.fallback], "nearest")
        return rounded


def _day_bars(
    seeders: Sequence[hashlib.blake2b],
    path: _DailyPath,
    day: date,
    layout: _Layout,
) -> dict[str, FloatArray]:
    """One day's bars of every symbol: (symbols, bars) arrays by column."""
    t = path.index[day]
    count, bars = len(seeders), len(layout.ts)
    normals = np.empty((count, 2, bars), dtype=np.float32)
    exponentials = np.empty((count, 2, bars), dtype=np.float32)
    bit_generator = np.random.PCG64()
    generator = np.random.Generator(bit_generator)
    ordinal = day.toordinal().to_bytes(4, "little")
    for i, seeder in enumerate(seeders):
        _reseed_from(bit_generator, seeder, ordinal)
        generator.standard_normal(dtype=np.float32, out=normals[i])
        generator.standard_exponential(dtype=np.float32, out=exponentials[i])
    lower, upper = path.lower[:, t : t + 1], path.upper[:, t : t + 1]
    day_open, day_close = path.open[:, t : t + 1], path.close[:, t : t + 1]
    grid = _RowGrid.of(lower, upper)

    bar_sigma = path.sigma[:, t : t + 1] * layout.spread
    walk = np.cumsum(normals[:, 0, :] * bar_sigma, axis=1)
    log_open = np.log(day_open)
    bridge = (np.log(day_close) - log_open - walk[:, -1:]) * layout.cumulative  # pins the walk to the close
    walk += bridge
    walk += log_open
    prices = np.exp(walk, out=walk)

    close = np.clip(grid.round(prices), lower, upper)
    close[:, -1:] = day_close
    open_ = np.empty_like(close)
    open_[:, :1] = day_open
    open_[:, 1:] = close[:, :-1]

    top = np.maximum(open_, close)
    stretch = exponentials[:, 0, :] * bar_sigma
    stretch *= RANGE_SCALE
    stretch += 1.0
    stretch *= top
    high = grid.round(stretch)
    np.maximum(high, top, out=high)
    np.minimum(high, upper, out=high)

    bottom = np.minimum(open_, close, out=top)
    stretch = exponentials[:, 1, :] * bar_sigma
    stretch *= RANGE_SCALE
    stretch += 1.0
    np.divide(bottom, stretch, out=stretch)
    low = grid.round(stretch)
    np.minimum(low, bottom, out=low)
    np.maximum(low, lower, out=low)

    noise = normals[:, 1, :] * np.float32(VOLUME_NOISE)
    noise -= np.float32(VOLUME_NOISE**2 / 2)
    np.exp(noise, out=noise)
    noise *= np.abs(normals[:, 0, :]) * np.float32(0.5) + np.float32(0.6)  # bars that move trade more
    volume = np.multiply(noise, path.volume[:, t : t + 1] * (layout.activity / LOT), dtype=np.float64)
    np.rint(volume, out=volume)
    np.maximum(volume, 1.0, out=volume)
    volume *= LOT
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


_PRICE_COLUMNS = ("open", "high", "low", "close", "volume")


def _frame(
    symbols: tuple[str, ...], timeframe: Timeframe, ts: IntArray, columns: dict[str, FloatArray]
) -> pl.DataFrame:
    """The canonical frame, one chunk per symbol, sorted by symbol (in the given order) then ts."""
    bars = len(ts)
    if not symbols or bars == 0:
        return empty_bars()
    stamps = pl.Series("ts", ts).cast(BAR_SCHEMA["ts"])
    frame_column = pl.repeat(timeframe.value, bars, eager=True, dtype=pl.String).alias("timeframe")
    adjusted = pl.repeat(False, bars, eager=True, dtype=pl.Boolean).alias("adjusted")
    parts = [
        pl.DataFrame(
            [
                pl.repeat(symbol, bars, eager=True, dtype=pl.String).alias("symbol"),
                frame_column,
                stamps,
                *(pl.Series(name, columns[name][i]) for name in _PRICE_COLUMNS),
                adjusted,
            ]
        )
        for i, symbol in enumerate(symbols)
    ]
    frame = pl.concat(parts, rechunk=False)
    return frame.rechunk() if frame.height <= 100_000 else frame


def _generate_days(symbols: tuple[str, ...], days: Sequence[date], timeframe: Timeframe, seed: int) -> pl.DataFrame:
    if timeframe in (Timeframe.w1, Timeframe.mo1):
        raise ValueError(f"the synthetic market makes intraday or daily bars, not {timeframe.value}")
    days = sorted(day for day in days if day >= ANCHOR)
    if not days or not symbols:
        return empty_bars()
    path = _daily_path(seed, symbols, days[-1].year)
    layouts = [_layout(day, timeframe) for day in days]
    seeders = _seeders(seed, symbols, _INTRADAY, timeframe.seconds)  # + the day: one generator per symbol and day
    blocks = [_day_bars(seeders, path, day, layout) for day, layout in zip(days, layouts, strict=True)]
    ts = np.concatenate([layout.ts for layout in layouts])
    columns: dict[str, FloatArray] = {}
    for name in _PRICE_COLUMNS:  # one contiguous (symbols, bars) array per column, freeing the day blocks as it goes
        columns[name] = np.concatenate([block.pop(name) for block in blocks], axis=1)
    return _frame(symbols, timeframe, ts, columns)


def generate(
    symbols: int | Sequence[str],
    days: int,
    timeframe: Timeframe,
    *,
    start: date | None = None,
    seed: int = 7,
) -> pl.DataFrame:
    """Synthetic IDX bars in the canonical frame (``adjusted`` False), sorted by symbol then ``ts``.

    ``symbols``: a count (the first N reference IDX stocks, then SXAA, SXAB, ...) or the symbols themselves.
    ``days``: how many IDX trading days, the first on or after ``start`` (default :data:`DEFAULT_START`,
    2026-01-05, fixed so that runs are reproducible; not before :data:`ANCHOR`). ``timeframe``: 1m..1h or 1d.
    The same arguments give the same frame; a different seed gives a different market.
    """
    seed = _check_seed(seed)
    first = DEFAULT_START if start is None else start
    if first < ANCHOR:
        raise ValueError(f"the synthetic market starts on {ANCHOR.isoformat()}, not {first.isoformat()}")
    return _generate_days(_symbol_list(symbols), trading_days_from(first, days), Timeframe(timeframe), seed)


class SyntheticSource:
    """The synthetic market as a :class:`~pasar.market.sources.base.Source`: ``fetch(start, end)`` returns the bars
    with ``start <= ts < end``; any window gives the same bars for the same day (see the module docstring)."""

    def __init__(
        self, symbols: int | Sequence[str] = 30, timeframe: Timeframe = Timeframe.m1, *, seed: int = 7
    ) -> None:
        self._symbols = _symbol_list(symbols)
        self._timeframe = Timeframe(timeframe)
        if self._timeframe in (Timeframe.w1, Timeframe.mo1):
            raise ValueError(f"the synthetic market makes intraday or daily bars, not {self._timeframe.value}")
        self._seed = _check_seed(seed)

    @property
    def name(self) -> str:
        return "synthetic"

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    @property
    def timeframe(self) -> Timeframe:
        return self._timeframe

    @property
    def seed(self) -> int:
        return self._seed

    def fetch(self, start: datetime, end: datetime) -> pl.DataFrame:
        start_utc, end_utc = validate_window(start, end)
        if start_utc == end_utc:
            return empty_bars()
        cal = exchange.calendar(CALENDAR)
        first = max(start_utc.astimezone(cal.timezone).date(), ANCHOR)
        last = (end_utc - _US).astimezone(cal.timezone).date()
        frame = _generate_days(self._symbols, cal.trading_days(first, last), self._timeframe, self._seed)
        return filter_window(frame, start_utc, end_utc)

    def iter_days(self, start: date, days: int) -> Iterator[tuple[date, pl.DataFrame]]:
        """The bars of ``days`` trading days from ``start``, one day at a time (bounded memory for big loads)."""
        for day in trading_days_from(start, days):
            yield day, _generate_days(self._symbols, [day], self._timeframe, self._seed)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(symbols={len(self._symbols)}, timeframe={self._timeframe.value!r}, "
            f"seed={self._seed})"
        )
