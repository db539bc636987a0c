"""Model features of bars: pure polars functions, the same for training and live inference.

Input: a frame of bars with the columns ``symbol, ts, open, high, low, close, volume`` (any numeric types; ``ts`` a
Datetime, naive read as UTC; other columns are ignored). :func:`compute_features` sorts it by ``symbol, ts`` and
computes every feature per symbol with window expressions (``.over("symbol")``) over the rows in time order, so the
value at a row depends only on that row and the rows before it of the same symbol: never on a later bar, never on
another symbol. ``tests/models_ml/test_features.py`` proves it by truncating and by perturbing the future.

Features (:data:`FEATURE_COLUMNS`, in this order, all Float64; a "bar" is a row of the symbol):

``ret_1, ret_5, ret_15, ret_60``
    Simple return over the last k bars: ``close[t] / close[t-k] - 1``.
``vol_15, vol_60``
    Realized volatility: the sample standard deviation (ddof 1) of the last k one-bar log returns
    ``ln(close[t] / close[t-1])``, per bar (not annualised).
``rsi_14``
    Wilder's RSI, 0..100: the changes ``close[t] - close[t-1]`` split into gains and losses, each smoothed with
    Wilder's weights ``alpha = 1/14`` as a normalised exponential mean (``adjust=True``: the weighted mean of the
    changes so far, so the first values carry no bias from a seed; later it is Wilder's recursion);
    ``100 * gain / (gain + loss)``. A series that only rises is 100, only falls 0; one that has not moved is 50.
``macd, macd_signal, macd_hist``
    MACD (12, 26, 9), normalised by the close so that symbols at any price level compare: ``(EMA12 - EMA26) /
    close``, the signal ``EMA9(EMA12 - EMA26) / close`` and the histogram ``macd - macd_signal``. The EMAs are
    exponential means with ``alpha = 2 / (span + 1)``, ``adjust=False``.
``bb_pos_20``
    Position within the Bollinger bands (20 bars, 2 standard deviations, population std): 0 at the lower band,
    0.5 at the 20-bar mean, 1 at the upper band (beyond the bands it leaves 0..1). A flat window (std 0) is 0.5.
``vol_z_20``
    Volume z-score: ``(volume - mean) / std`` over the last 20 bars including the current one (population std).
    A constant volume (std 0) is 0.0: the bar's volume is exactly the mean, zero deviations away.
``session_pos``
    Where the bar's start lies in its trading day under the trading calendar ``calendar_code``
    (:meth:`pasar.market.exchange.TradingCalendar.session_position`): 0.0 at the open of the first session,
    approaching 1.0 at the last close. Bars that start outside continuous trading (daily bars at local midnight, a
    1h bar starting in the lunch break, holidays) have no position: they get 0.5, the middle of the day, so that
    those rows stay usable rather than being dropped.
``range_pct``
    The bar's range relative to its close: ``(high - low) / close``.

Warm-up: rows without enough history of their symbol are null (``ret_60`` and ``vol_60`` need
:data:`MIN_HISTORY` = 61 bars; ``macd_signal`` 34). Non-finite values (a zero price) are null too. :func:`complete`
keeps the rows where every feature is known. The exponential means remember all earlier bars with weights that
fade geometrically, so for live inference load :data:`LIVE_HISTORY` bars or more per symbol: the features of the
last bar then agree with those computed from the full history to about 1e-9.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Final

import polars as pl

from pasar.market import exchange

__all__ = [
    "BAR_COLUMNS",
    "FEATURE_COLUMNS",
    "LIVE_HISTORY",
    "MIN_HISTORY",
    "complete",
    "compute_features",
    "conform_bars",
    "latest_features",
]

FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "ret_1",
    "ret_5",
    "ret_15",
    "ret_60",
    "vol_15",
    "vol_60",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_pos_20",
    "vol_z_20",
    "session_pos",
    "range_pct",
)

BAR_COLUMNS: Final[tuple[str, ...]] = ("symbol", "ts", "open", "high", "low", "close", "volume")

RETURN_HORIZONS: Final[tuple[int, ...]] = (1, 5, 15, 60)
VOLATILITY_WINDOWS: Final[tuple[int, ...]] = (15, 60)
RSI_PERIOD: Final = 14
MACD_FAST: Final = 12
MACD_SLOW: Final = 26
MACD_SIGNAL: Final = 9
BOLLINGER_WINDOW: Final = 20
BOLLINGER_WIDTH: Final = 2.0
VOLUME_WINDOW: Final = 20
SESSION_FILL: Final = 0.5  # session_pos of a bar outside continuous trading

MIN_HISTORY: Final = max(*RETURN_HORIZONS, *VOLATILITY_WINDOWS) + 1  # bars before a symbol's first complete row
LIVE_HISTORY: Final = 300  # bars per symbol to load for live inference (older bars weigh (13/14)^300 ≈ 2e-10)

# A rolling std this small relative to the rolling mean is a flat window (the std of a constant series comes out
# as a rounding residue rather than exactly 0, depending on the summation).
FLAT_TOLERANCE: Final = 1e-12

_BY = "symbol"
_EPOCH_DATE: Final = date(1970, 1, 1)


def conform_bars(bars: pl.DataFrame, columns: Sequence[str] = BAR_COLUMNS) -> pl.DataFrame:
    """``columns`` of ``bars`` cast for modelling (symbol String, ts Datetime(us, UTC), the others Float64),
    sorted by symbol, ts. ValueError when a column is missing, a symbol or ts is null or a (symbol, ts) pair
    repeats."""
    wanted = ["symbol", "ts", *(name for name in columns if name not in ("symbol", "ts"))]
    missing = [name for name in wanted if name not in bars.columns]
    if missing:
        raise ValueError(f"bars lack the columns: {', '.join(missing)}")
    if bars.select(pl.col("symbol").null_count() + pl.col("ts").null_count()).item():
        raise ValueError("bars have a null symbol or ts")
    ts_dtype = bars.schema["ts"]
    if not isinstance(ts_dtype, pl.Datetime):
        raise ValueError(f"bars.ts must be a Datetime, not {ts_dtype}")
    ts = pl.col("ts")
    ts = ts.dt.replace_time_zone("UTC") if ts_dtype.time_zone is None else ts.dt.convert_time_zone("UTC")
    frame = bars.select(
        pl.col("symbol").cast(pl.String),
        ts.dt.cast_time_unit("us"),
        *(pl.col(name).cast(pl.Float64) for name in wanted[2:]),
    )
    if not _sorted_and_unique(frame):  # bars from the database are sorted already
        # Bars in time order per symbol (the generator's, a concatenation of symbols) need only a stable sort by
        # symbol, far cheaper than sorting by (symbol, ts).
        frame = frame.sort(_BY, maintain_order=True)
        if not _sorted_and_unique(frame):
            frame = frame.sort(_BY, "ts")
            if not _sorted_and_unique(frame):
                raise ValueError("bars repeat a (symbol, ts) pair")
    return frame


def _sorted_and_unique(frame: pl.DataFrame) -> bool:
    """Whether the rows are in strictly increasing (symbol, ts) order (so also without a repeated pair)."""
    symbol, ts = pl.col(_BY), pl.col("ts")
    prev_symbol, prev_ts = symbol.shift(1), ts.shift(1)
    increasing = (symbol > prev_symbol) | ((symbol == prev_symbol) & (ts > prev_ts))
    return bool(frame.select(increasing.slice(1).all()).item())


def _finite(expr: pl.Expr) -> pl.Expr:
    """``expr`` with NaN and ±inf as null (one notion of "unknown")."""
    return pl.when(expr.is_finite()).then(expr)


def _per_symbol(expr: pl.Expr) -> pl.Expr:
    return expr.over(_BY)


_DAY_US: Final = 86_400_000_000
_EPOCH_WEEKDAY: Final = 3  # 1970-01-01 was a Thursday (Monday = 0)


def _session_positions(ts: pl.Series, calendar_code: str) -> pl.DataFrame:
    """``ts`` and ``session_pos`` of every distinct timestamp: :meth:`TradingCalendar.session_position`
    vectorised over the local wall clock (the same arithmetic, to the last bit or two), filled with
    :data:`SESSION_FILL` where it is None. Computed once per distinct timestamp, which symbols share."""
    cal = exchange.calendar(calendar_code)
    distinct = ts.unique().to_frame("ts")
    wall = pl.col("ts").dt.convert_time_zone(cal.timezone.key).dt.replace_time_zone(None).dt.epoch("us")
    clock = distinct.with_columns(wall.alias("_wall")).with_columns(pl.col("_wall").floordiv(_DAY_US).alias("_day"))
    clock = clock.with_columns(
        ((pl.col("_day") + _EPOCH_WEEKDAY) % 7).alias("_weekday"),
        (pl.col("_wall") - pl.col("_day") * _DAY_US).alias("_of_day"),
    )
    of_day = pl.col("_of_day")
    seconds = of_day.floordiv(1_000_000).cast(pl.Float64) + (of_day % 1_000_000).cast(pl.Float64) / 1e6
    clock = clock.with_columns(seconds.alias("_seconds"))
    day, weekday, seconds = pl.col("_day"), pl.col("_weekday"), pl.col("_seconds")
    by_sessions: dict[tuple[exchange.Session, ...], list[int]] = {}
    for number, sessions in enumerate(cal.sessions):
        if sessions:
            by_sessions.setdefault(sessions, []).append(number)
    chain: Any = None
    for sessions, weekdays in by_sessions.items():
        total = float(sum(session.seconds for session in sessions))
        on_day = weekday.is_in(weekdays)
        elapsed = 0.0
        for session in sessions:
            inside = on_day & (seconds >= session.start_seconds) & (seconds < session.end_seconds)
            value = (elapsed + seconds - session.start_seconds) / total
            chain = pl.when(inside).then(value) if chain is None else chain.when(inside).then(value)
            elapsed += session.seconds
    position: pl.Expr = pl.lit(None, pl.Float64) if chain is None else chain.otherwise(None)
    if cal.holidays:
        holidays = sorted((holiday - _EPOCH_DATE).days for holiday in cal.holidays)
        position = pl.when(day.is_in(holidays)).then(None).otherwise(position)
    return clock.select("ts", position.fill_null(SESSION_FILL).alias("session_pos"))


def compute_features(bars: pl.DataFrame, *, calendar_code: str = "IDX") -> pl.DataFrame:
    """``symbol, ts, close`` and :data:`FEATURE_COLUMNS` (Float64) of every bar, sorted by symbol, ts.

    Pure: no I/O, no state. The value at a row depends only on the rows at or before it of the same symbol; rows
    without enough history are null (see the module docstring). ValueError for a missing column, a repeated
    (symbol, ts) or an unknown calendar.
    """
    exchange.calendar(calendar_code)  # an unknown code fails before any work
    frame = conform_bars(bars)
    close, volume = pl.col("close"), pl.col("volume")
    # Stage 1: per-symbol windows of the raw columns (each computed once and kept as a helper column).
    staged = frame.with_columns(
        *(_per_symbol(close.shift(k)).alias(f"_close_{k}") for k in RETURN_HORIZONS),
        _per_symbol(close.ewm_mean(span=MACD_FAST, adjust=False, min_samples=MACD_FAST)).alias("_ema_fast"),
        _per_symbol(close.ewm_mean(span=MACD_SLOW, adjust=False, min_samples=MACD_SLOW)).alias("_ema_slow"),
        _per_symbol(close.rolling_mean(BOLLINGER_WINDOW, min_samples=BOLLINGER_WINDOW)).alias("_bb_mean"),
        _per_symbol(close.rolling_std(BOLLINGER_WINDOW, min_samples=BOLLINGER_WINDOW, ddof=0)).alias("_bb_std"),
        _per_symbol(volume.rolling_mean(VOLUME_WINDOW, min_samples=VOLUME_WINDOW)).alias("_volume_mean"),
        _per_symbol(volume.rolling_std(VOLUME_WINDOW, min_samples=VOLUME_WINDOW, ddof=0)).alias("_volume_std"),
    )
    # Stage 2: one-bar changes and the raw MACD line.
    previous = pl.col("_close_1")
    change = close - previous
    staged = staged.with_columns(
        (close / previous).log().alias("_log_return"),
        change.clip(lower_bound=0.0).alias("_gain"),
        (-change).clip(lower_bound=0.0).alias("_loss"),
        (pl.col("_ema_fast") - pl.col("_ema_slow")).alias("_macd"),
    )
    # Stage 3: windows of the derived columns.
    rsi_alpha = 1.0 / RSI_PERIOD
    staged = staged.with_columns(
        *(
            _per_symbol(pl.col("_log_return").rolling_std(k, min_samples=k, ddof=1)).alias(f"_vol_{k}")
            for k in VOLATILITY_WINDOWS
        ),
        _per_symbol(pl.col("_gain").ewm_mean(alpha=rsi_alpha, adjust=True, min_samples=RSI_PERIOD)).alias("_up"),
        _per_symbol(pl.col("_loss").ewm_mean(alpha=rsi_alpha, adjust=True, min_samples=RSI_PERIOD)).alias("_down"),
        _per_symbol(pl.col("_macd").ewm_mean(span=MACD_SIGNAL, adjust=False, min_samples=MACD_SIGNAL)).alias("_signal"),
    )
    up, down = pl.col("_up"), pl.col("_down")
    moved = up + down
    macd, signal = pl.col("_macd"), pl.col("_signal")
    bb_mean, bb_std = pl.col("_bb_mean"), pl.col("_bb_std")
    volume_mean, volume_std = pl.col("_volume_mean"), pl.col("_volume_std")
    features: dict[str, pl.Expr] = {
        **{f"ret_{k}": close / pl.col(f"_close_{k}") - 1.0 for k in RETURN_HORIZONS},
        **{f"vol_{k}": pl.col(f"_vol_{k}") for k in VOLATILITY_WINDOWS},
        "rsi_14": pl.when(moved > 0).then(100.0 * up / moved).when(moved == 0).then(50.0),
        "macd": macd / close,
        "macd_signal": signal / close,
        "macd_hist": (macd - signal) / close,
        "bb_pos_20": pl.when(bb_std <= FLAT_TOLERANCE * bb_mean.abs())
        .then(0.5)
        .otherwise(0.5 + (close - bb_mean) / (2.0 * BOLLINGER_WIDTH * bb_std)),
        "vol_z_20": pl.when(volume_std <= FLAT_TOLERANCE * volume_mean.abs())
        .then(0.0)
        .otherwise((volume - volume_mean) / volume_std),
        "session_pos": pl.col("session_pos"),
        "range_pct": (pl.col("high") - pl.col("low")) / close,
    }
    sessions = _session_positions(frame["ts"], calendar_code)
    staged = staged.join(sessions, on="ts", how="left", maintain_order="left")
    out = staged.select(_BY, "ts", "close", *(features[name].cast(pl.Float64).alias(name) for name in FEATURE_COLUMNS))
    return out.with_columns(_finite(pl.col(name)).alias(name) for name in FEATURE_COLUMNS)


def complete(features: pl.DataFrame) -> pl.DataFrame:
    """The rows of a :func:`compute_features` frame where every feature is known."""
    return features.drop_nulls(subset=list(FEATURE_COLUMNS))


def latest_features(bars: pl.DataFrame, *, calendar_code: str = "IDX") -> pl.DataFrame:
    """One row per symbol (sorted by symbol): the :func:`compute_features` row of the symbol's last bar, nulls
    included (a symbol with too little history has null features; the caller decides). What live inference
    scores, computed by the same function as training; give it at least :data:`LIVE_HISTORY` bars per symbol."""
    return compute_features(bars, calendar_code=calendar_code).group_by(_BY, maintain_order=True).tail(1)
