"""A bar-level backtester: a strategy's target position per bar, executed on the next bar's open, all-in, no leverage.

Conventions (issue 5, item 3)
    * **Decide on the close, execute on the next open.** A strategy looks at bars ``0..t`` and gives a target position
      sign for bar ``t`` (+1 long, 0 flat, -1 short). When it differs from the position held at the close of ``t``,
      the position is closed and the new one opened at the *open* of bar ``t + 1`` -- whatever that open is, so a gap
      (an open far from the previous close) is executed at the gapped price. A decision on the last bar never executes.
    * **Commission** is a fraction of traded value (``|size| x price x commission``), charged on entry and on exit.
    * **Sizes** are whole units, in whole lots of ``lot_size`` (100 for IDX equities). An order takes all available
      equity: ``floor(equity / (price x (1 + commission)) / lot) x lot`` -- the entry commission is paid out of the
      same equity, and the rest stays as cash. No leverage: a short is sized the same way as a long.
    * **Equity** is marked at each bar's close: cash (initial cash + realised P&L - commissions paid) plus the open
      position's unrealised P&L. The exit commission of a position still open at the end is not deducted.

These are the rules of `backtesting.py <https://kernc.github.io/backtesting.py/>`_ (0.6) with
``Backtest(..., trade_on_close=False, exclusive_orders=True, hedging=False, margin=1, spread=0,
finalize_trades=False)`` and ``buy()``/``sell()`` at their default size (all equity); the tests run both engines on
the same real data and compare trade by trade. Known, deliberate differences:

    * a strategy here gives a *target*, so a target the account cannot afford (equity below one lot) is retried at
      every following bar while the target stands; backtesting.py drops such an order. Unfilled attempts are counted
      in :attr:`BacktestResult.skipped_orders`.
    * :func:`sma_cross` is a target too: a second cross in the same direction (possible only after an exact tie of
      the two averages) keeps the position, where backtesting.py's ``SmaCross`` closes it and opens it again.
    * sizing divides ``equity`` by ``price + price x commission``; backtesting.py divides ``equity x (1 - 2^-52)``. The
      unit count can only differ when the quotient is within a rounding error of a whole lot.
    * exposure counts a position still open at the end (backtesting.py counts only closed trades); the trade list,
      like backtesting.py's, holds the closed trades, and the open one is :attr:`BacktestResult.open_position`.
    * ``return_pct`` of a trade and every ``*_pct`` statistic are percentages (backtesting.py's trade ``ReturnPct`` is
      a fraction).

Statistics (:meth:`BacktestResult.stats`) are defined as in backtesting.py's ``compute_stats``: the bar period is the
median gap of the last 100 bars; returns are taken per calendar period -- the last equity of each day (of each week,
month or year for weekly, monthly or yearly bars; intraday bars count per day) in the given time zone -- and
annualised over 252 periods a year (365 when Saturday and Sunday bars make up more than 60% of their 2/7 share, i.e.
the market trades at weekends; 52 for weekly, 12 for monthly, 1 for yearly bars -- a median gap of 28 to 31 days is
monthly and 366 yearly here, where backtesting.py wants exactly 31 and 365); the annual return is the geometric
mean period return compounded over a year, the annual volatility its compounded counterpart, the Sharpe ratio their
quotient without a risk-free rate; the maximum drawdown is the largest fall from a running equity peak, as a
negative percentage; buy & hold is ``close[-1] / close[warmup] - 1`` with ``warmup`` the bars the strategy needs
before its first decision; the win rate is the share of closed trades with a positive P&L; exposure is the share of
bars with a position, counting a trade's entry and exit bars. A figure that is undefined (no trades, too few bars,
no volatility) is ``None``.

Why a Python loop: the strategy's targets, the statistics and the report are vectorised (polars/numpy), but the fills
are path dependent -- each order is sized from the equity that the previous trades left -- so they are simulated bar
by bar over plain Python floats (10,000 bars with thousands of trades: a few tens of milliseconds).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = [
    "STATS_KEYS",
    "BacktestError",
    "BacktestResult",
    "OpenPosition",
    "SignalStrategy",
    "SmaCross",
    "Strategy",
    "Trade",
    "format_value",
    "run_backtest",
    "signal",
    "sma_cross",
    "stats_table",
    "write_report",
]

FloatArray = npt.NDArray[np.float64]
TargetArray = npt.NDArray[np.int8]

#: The keys of :meth:`BacktestResult.stats`, in order (also the keys of ``pasar backtest --json``).
STATS_KEYS: tuple[str, ...] = (
    "start",
    "end",
    "final_equity",
    "return_pct",
    "buy_hold_return_pct",
    "annual_return_pct",
    "annual_volatility_pct",
    "sharpe",
    "max_drawdown_pct",
    "trades",
    "win_rate_pct",
    "exposure_pct",
    "trade_list",
)
MAX_COMMISSION = 0.1
_BAR_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
_US_PER_DAY = 86_400_000_000


class BacktestError(ValueError):
    """Input the backtester refuses (bars, parameters or a strategy's output); the message says what is wrong."""


# Strategies ---------------------------------------------------------------------------------------------------


@runtime_checkable
class Strategy(Protocol):
    """Gives a target position sign per bar, deciding on bar ``t`` from bars ``0..t`` only (no look-ahead)."""

    @property
    def name(self) -> str:
        """A short label for reports, e.g. ``sma_cross(10,20)``."""
        ...

    def warmup(self, bars: pl.DataFrame) -> int:
        """How many leading bars the strategy needs before it can decide (its indicators' warm-up)."""
        ...

    def targets(self, bars: pl.DataFrame) -> TargetArray:
        """The target sign (+1 long, 0 flat, -1 short) decided on each bar's close, one per bar (int8)."""
        ...


@dataclass(frozen=True)
class SmaCross:
    """Moving-average crossover: long from a cross of the fast SMA above the slow one, short from a cross below.

    A cross on bar ``t`` is ``fast[t-1] < slow[t-1]`` and ``fast[t] > slow[t]`` (and the mirror for a cross below),
    exactly ``backtesting.lib.crossover``; the target holds until the opposite cross, so each cross closes the
    position and opens the opposite one. Before the first cross the target is flat. ``allow_short=False`` turns the
    short side into flat (for instruments that cannot be sold short).
    """

    fast: int
    slow: int
    allow_short: bool = True

    def __post_init__(self) -> None:
        for label, value in (("fast", self.fast), ("slow", self.slow)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BacktestError(f"the {label} SMA length must be a positive integer, got {value!r}")
        if self.fast >= self.slow:
            raise BacktestError(f"the fast SMA ({self.fast}) must be shorter than the slow SMA ({self.slow})")

    @property
    def name(self) -> str:
        return f"sma_cross({self.fast},{self.slow})" + ("" if self.allow_short else " long-only")

    def warmup(self, bars: pl.DataFrame) -> int:
        return min(self.slow - 1, bars.height)

    def targets(self, bars: pl.DataFrame) -> TargetArray:
        close = pl.col("close")
        fast, slow = close.rolling_mean(self.fast), close.rolling_mean(self.slow)
        # Null (warm-up) comparisons are null, and when/then treats null as false: no cross before both SMAs exist.
        up = (fast.shift(1) < slow.shift(1)) & (fast > slow)
        down = (fast.shift(1) > slow.shift(1)) & (fast < slow)
        short = -1 if self.allow_short else 0
        event = pl.when(up).then(pl.lit(1, pl.Int8)).when(down).then(pl.lit(short, pl.Int8)).otherwise(None)
        target = bars.select(event.forward_fill().fill_null(0).alias("target"))["target"]
        return target.to_numpy().astype(np.int8, copy=False)


@dataclass(frozen=True, eq=False)
class SignalStrategy:
    """A model's scores (probability of an up move), one per bar, decided on the bar's close: long when
    ``score > threshold``, short when ``score < 1 - threshold`` (flat instead with ``allow_short=False``), flat in
    between and on a missing (null/NaN) score. The scores must be computed from data up to their bar. A long-only
    threshold may sit below 0.5 (a model of a rare move, e.g. up beyond the costs, scores around its base rate)."""

    scores: FloatArray
    threshold: float = 0.5
    allow_short: bool = True

    def __post_init__(self) -> None:
        lowest = 0.5 if self.allow_short else 0.0  # below 0.5 the long and short bands would overlap
        if not (lowest <= self.threshold < 1):
            raise BacktestError(f"the signal threshold must be in [{lowest:g}, 1), got {self.threshold!r}")
        if self.scores.ndim != 1:
            raise BacktestError(f"scores must be one-dimensional, got shape {self.scores.shape}")

    @property
    def name(self) -> str:
        return f"signal(threshold={self.threshold:g}" + ("" if self.allow_short else ", long-only") + ")"

    def _checked(self, bars: pl.DataFrame) -> FloatArray:
        if self.scores.shape[0] != bars.height:
            raise BacktestError(f"{self.scores.shape[0]} scores for {bars.height} bars: give one score per bar")
        return self.scores

    def warmup(self, bars: pl.DataFrame) -> int:
        finite = np.flatnonzero(np.isfinite(self._checked(bars)))
        return int(finite[0]) if finite.size else bars.height

    def targets(self, bars: pl.DataFrame) -> TargetArray:
        scores = self._checked(bars)
        with np.errstate(invalid="ignore"):
            long = scores > self.threshold
            short = (scores < 1 - self.threshold) if self.allow_short else np.zeros_like(long)
        return long.astype(np.int8) - short.astype(np.int8)


def sma_cross(fast: int, slow: int, *, allow_short: bool = True) -> SmaCross:
    """The moving-average crossover baseline (see :class:`SmaCross`)."""
    return SmaCross(fast, slow, allow_short)


def signal(scores: pl.Series | npt.ArrayLike, threshold: float = 0.5, allow_short: bool = True) -> SignalStrategy:
    """The model's signal as a strategy (see :class:`SignalStrategy`); nulls in a polars Series count as missing."""
    if isinstance(scores, pl.Series):
        values = scores.cast(pl.Float64).fill_null(float("nan")).to_numpy()
    else:
        try:
            values = np.asarray(scores, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise BacktestError(f"scores must be numbers: {exc}") from exc
    return SignalStrategy(np.array(values, dtype=np.float64), float(threshold), bool(allow_short))


# Results ------------------------------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.isoformat()


@dataclass(frozen=True)
class Trade:
    """A closed trade. ``size`` is signed (negative: short); ``pnl`` is net of both commissions; ``return_pct`` is
    the P&L per unit of entry value, in percent, net of commissions (backtesting.py's ``ReturnPct`` x 100)."""

    entry_bar: int
    exit_bar: int
    entry_ts: datetime
    exit_ts: datetime
    size: int
    entry_price: float
    exit_price: float
    pnl: float
    return_pct: float
    commission: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry_ts": _iso(self.entry_ts),
            "exit_ts": _iso(self.exit_ts),
            "size": self.size,
            "entry_price": self.entry_price,
            "exit_price": self.exit_price,
            "pnl": self.pnl,
            "return_pct": self.return_pct,
            "commission": self.commission,
        }


@dataclass(frozen=True)
class OpenPosition:
    """The position still open after the last bar: marked at the last close, exit commission not charged."""

    entry_bar: int
    entry_ts: datetime
    size: int
    entry_price: float
    commission: float  # paid on entry
    unrealized_pnl: float  # size x (last close - entry price), before commissions


@dataclass(frozen=True)
class BacktestResult:
    """The outcome of :func:`run_backtest`.

    ``curve`` has one row per bar: ``ts`` (in ``timezone``), ``close``, ``position`` (signed units held at the
    close), ``equity`` (marked at the close) and ``drawdown_pct`` (equity below its running peak, <= 0).
    """

    strategy: str
    cash: float
    commission: float
    lot_size: int
    timezone: str
    warmup: int
    curve: pl.DataFrame
    trades: tuple[Trade, ...]
    open_position: OpenPosition | None
    skipped_orders: int  # targets that could not be filled: equity below one lot at the open
    out_of_money: bool  # equity reached zero; the position was closed and trading stopped
    _stats: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def equity(self) -> pl.Series:
        return self.curve["equity"]

    @property
    def drawdown(self) -> pl.Series:
        return self.curve["drawdown_pct"]

    @property
    def final_equity(self) -> float:
        return float(self.curve["equity"][-1])

    def stats(self) -> dict[str, Any]:
        """The statistics: exactly the keys of :data:`STATS_KEYS`, JSON-ready (undefined figures are None)."""
        if not self._stats:
            self._stats.update(_compute_stats(self))
        return {key: ([dict(t) for t in value] if key == "trade_list" else value) for key, value in self._stats.items()}


# The engine ---------------------------------------------------------------------------------------------------


def _check_bars(bars: pl.DataFrame) -> None:
    missing = [name for name in _BAR_COLUMNS if name not in bars.columns]
    if missing:
        raise BacktestError(f"the bars have no column {', '.join(missing)} (need {', '.join(_BAR_COLUMNS)})")
    if bars.height == 0:
        raise BacktestError("no bars to backtest")
    ts_type = bars.schema["ts"]
    if not (ts_type == pl.Date or isinstance(ts_type, pl.Datetime)):
        raise BacktestError(f"the ts column must hold dates or datetimes, not {ts_type}")
    prices = bars.select(pl.col("open", "high", "low", "close").cast(pl.Float64))
    nulls = [name for name in _BAR_COLUMNS if bars[name].null_count()]
    if nulls:
        raise BacktestError(f"missing values in {', '.join(nulls)}")
    if not prices.select(pl.all_horizontal((pl.all().is_finite()) & (pl.all() > 0)).all()).item():
        raise BacktestError("prices must be finite and positive")
    if bars.height > 1 and not bars.select((pl.col("ts").diff().drop_nulls() > pl.duration()).all()).item():
        raise BacktestError("the bars must be in strictly increasing ts order, one bar per ts")


def _localised(ts: pl.Series, timezone: str) -> pl.Series:
    """Aware datetimes in ``timezone``: aware input is converted, naive input (or dates) is wall-clock there."""
    if ts.dtype == pl.Date:
        ts = ts.cast(pl.Datetime("us"))
    dtype = ts.dtype
    assert isinstance(dtype, pl.Datetime)
    try:
        if dtype.time_zone is None:
            return ts.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
        return ts.dt.convert_time_zone(timezone)
    except pl.exceptions.ComputeError as exc:
        raise BacktestError(f"unknown time zone {timezone!r}") from exc


def _check_targets(targets: Any, n: int, strategy: Strategy) -> TargetArray:
    array = np.asarray(targets)
    if array.shape != (n,):
        raise BacktestError(f"strategy {strategy.name} gave {array.shape} targets for {n} bars")
    if not np.isin(array, (-1, 0, 1)).all():
        raise BacktestError(f"strategy {strategy.name} gave targets other than -1, 0 and 1")
    return array.astype(np.int8)


def run_backtest(
    bars: pl.DataFrame,
    strategy: Strategy,
    *,
    cash: float,
    commission: float,
    lot_size: int = 1,
    timezone: str | None = None,
) -> BacktestResult:
    """Run ``strategy`` over one instrument's ``bars`` (``ts, open, high, low, close, volume``, ascending ts).

    ``cash`` > 0 is the starting equity; ``commission`` in [0, 0.1) the fraction of traded value charged on entry
    and on exit; ``lot_size`` the units per lot. ``timezone`` (IANA name; default UTC) is where calendar days are
    counted for the statistics and how timestamps are shown; naive timestamps are wall-clock times there.
    """
    if not (isinstance(cash, int | float) and math.isfinite(cash) and cash > 0):
        raise BacktestError(f"cash must be a positive amount, got {cash!r}")
    if not (isinstance(commission, int | float) and 0 <= commission < MAX_COMMISSION):
        raise BacktestError(f"commission must be a fraction in [0, {MAX_COMMISSION}), got {commission!r}")
    if isinstance(lot_size, bool) or not isinstance(lot_size, int) or lot_size < 1:
        raise BacktestError(f"lot_size must be a positive integer, got {lot_size!r}")
    _check_bars(bars)
    zone = timezone or "UTC"
    stamps = _localised(bars["ts"], zone)
    if stamps.null_count():
        raise BacktestError(f"some timestamps do not exist in {zone} (daylight-saving gap)")
    n = bars.height
    targets = _check_targets(strategy.targets(bars), n, strategy)
    warmup = max(0, min(int(strategy.warmup(bars)), n - 1))

    opens: list[float] = bars["open"].cast(pl.Float64).to_list()
    closes: list[float] = bars["close"].cast(pl.Float64).to_list()
    wanted: list[int] = targets.tolist()
    times: list[datetime] = stamps.to_list()
    fee = float(commission)
    cash_ = float(cash)

    equity = [0.0] * n
    position = [0] * n
    trades: list[Trade] = []
    size = 0  # signed units held
    entry_price = entry_fee = 0.0
    entry_bar = -1
    pending: int | None = None  # the target to execute at this bar's open
    skipped = 0
    out_of_money = False

    def close_position(bar: int, price: float) -> None:
        nonlocal cash_, size
        exit_fee = abs(size) * price * fee
        gross = size * (price - entry_price)
        cash_ += gross - exit_fee
        fees = entry_fee + exit_fee
        side = 1.0 if size > 0 else -1.0
        trades.append(
            Trade(
                entry_bar=entry_bar,
                exit_bar=bar,
                entry_ts=times[entry_bar],
                exit_ts=times[bar],
                size=size,
                entry_price=entry_price,
                exit_price=price,
                pnl=gross - fees,
                return_pct=(side * (price / entry_price - 1) - fees / (abs(size) * entry_price)) * 100,
                commission=fees,
            )
        )
        size = 0

    for i in range(n):
        if pending is not None:
            price = opens[i]
            if size:
                close_position(i, price)
            if pending:
                unit_cost = price + price * fee
                units = math.floor(cash_ / unit_cost / lot_size) * lot_size
                while units > 0 and units * unit_cost > cash_:  # a quotient rounded up onto a whole lot
                    units -= lot_size
                if units > 0:
                    size, entry_price, entry_bar = pending * units, price, i
                    entry_fee = units * price * fee
                    cash_ -= entry_fee
                else:
                    skipped += 1
            pending = None
        marked = cash_ + size * (closes[i] - entry_price) if size else cash_
        if marked <= 0:  # only a position can lose everything: close it at this close and stop, as backtesting.py
            close_position(i, closes[i])
            out_of_money = True
            cash_ = 0.0
            break
        equity[i] = marked
        position[i] = size
        if wanted[i] != (size > 0) - (size < 0) and i + 1 < n:
            pending = wanted[i]

    open_position = None
    if size:
        open_position = OpenPosition(
            entry_bar, times[entry_bar], size, entry_price, entry_fee, size * (closes[-1] - entry_price)
        )
    equity_series = pl.Series("equity", equity, dtype=pl.Float64)
    curve = pl.DataFrame(
        [stamps.alias("ts"), bars["close"].cast(pl.Float64), pl.Series("position", position, pl.Int64), equity_series]
    ).with_columns(
        pl.when(pl.col("equity").cum_max() > 0)
        .then((pl.col("equity") / pl.col("equity").cum_max() - 1) * 100)
        .otherwise(-100.0)
        .alias("drawdown_pct")
    )
    return BacktestResult(
        strategy=strategy.name,
        cash=float(cash),
        commission=fee,
        lot_size=lot_size,
        timezone=zone,
        warmup=warmup,
        curve=curve,
        trades=tuple(trades),
        open_position=open_position,
        skipped_orders=skipped,
        out_of_money=out_of_money,
    )


# Statistics ---------------------------------------------------------------------------------------------------


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _geometric_mean(returns: FloatArray) -> float:
    """backtesting.py's ``geometric_mean``: 0 if any return is -100% or worse, NaN without returns."""
    grown = np.nan_to_num(returns, nan=0.0) + 1
    if np.any(grown <= 0):
        return 0.0
    if grown.size == 0:
        return math.nan
    return float(np.exp(np.log(grown).sum() / grown.size) - 1)


def _period_returns(curve: pl.DataFrame) -> tuple[FloatArray, float]:
    """The equity's returns per calendar period and the periods per year (backtesting.py's choice)."""
    local = curve.select(pl.col("ts").dt.replace_time_zone(None).alias("t"), "equity")
    tail = local["t"].tail(100).dt.epoch("us").to_numpy()
    median_gap = float(np.median(np.diff(tail))) if tail.size > 1 else math.nan
    freq_days = math.floor(median_gap / _US_PER_DAY) if math.isfinite(median_gap) else -1
    # backtesting.py recognises a median gap of exactly 31 days as monthly and 365 as yearly; a shorter month or a
    # leap year is the same period here (it would otherwise count as daily bars).
    freq_days = 31 if 28 <= freq_days <= 31 else 365 if freq_days == 366 else freq_days
    weekend_share = local.select(pl.col("t").dt.weekday().is_in([6, 7]).mean()).item()
    have_weekends = weekend_share > 2 / 7 * 0.6
    periods_per_year, every = {7: (52.0, "1w"), 31: (12.0, "1mo"), 365: (1.0, "1y")}.get(
        freq_days, (365.0 if have_weekends else 252.0, "1d")
    )
    last = (
        local.group_by(pl.col("t").dt.truncate(every).alias("period"), maintain_order=True)
        .agg(pl.col("equity").last())
        .sort("period")["equity"]
        .to_numpy()
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = last[1:] / last[:-1] - 1 if last.size > 1 else np.empty(0)
    return returns[~np.isnan(returns)].astype(np.float64), periods_per_year  # 0 -> 0 after a wipe-out: dropped


def _compute_stats(result: BacktestResult) -> dict[str, Any]:
    curve = result.curve
    equity = curve["equity"].to_numpy()
    close = curve["close"].to_numpy()
    n = curve.height
    returns, periods = _period_returns(curve)
    gmean = _geometric_mean(returns)
    annual_return = (1 + gmean) ** periods - 1
    variance = float(returns.var(ddof=1)) if returns.size > 1 else math.nan
    annual_volatility = (
        math.sqrt(max(0.0, (variance + (1 + gmean) ** 2) ** periods - (1 + gmean) ** (2 * periods)))
        if math.isfinite(variance) and math.isfinite(gmean)
        else math.nan
    )
    sharpe = annual_return * 100 / (annual_volatility * 100) if annual_volatility else math.nan

    held = np.zeros(n + 1, dtype=np.int64)
    spans = [(t.entry_bar, t.exit_bar) for t in result.trades]
    if result.open_position is not None:
        spans.append((result.open_position.entry_bar, n - 1))
    for first, last in spans:
        held[first] += 1
        held[last + 1] -= 1
    exposure = float((np.cumsum(held[:n]) > 0).mean()) * 100

    pnls = np.array([t.pnl for t in result.trades], dtype=np.float64)
    stamps = curve["ts"]
    return {
        "start": _iso(stamps[0]),
        "end": _iso(stamps[-1]),
        "final_equity": float(equity[-1]),
        "return_pct": (float(equity[-1]) - result.cash) / result.cash * 100,
        "buy_hold_return_pct": float((close[-1] - close[result.warmup]) / close[result.warmup] * 100),
        "annual_return_pct": _number(annual_return * 100),
        "annual_volatility_pct": _number(annual_volatility * 100),
        "sharpe": _number(sharpe),
        "max_drawdown_pct": float(curve["drawdown_pct"].min()),  # type: ignore[arg-type]
        "trades": len(result.trades),
        "win_rate_pct": float((pnls > 0).mean() * 100) if pnls.size else None,
        "exposure_pct": exposure,
        "trade_list": tuple(t.to_dict() for t in result.trades),
    }


# Report -------------------------------------------------------------------------------------------------------

_STAT_LABELS: dict[str, str] = {
    "start": "Start",
    "end": "End",
    "final_equity": "Final equity",
    "return_pct": "Return [%]",
    "buy_hold_return_pct": "Buy & hold return [%]",
    "annual_return_pct": "Annual return [%]",
    "annual_volatility_pct": "Annual volatility [%]",
    "sharpe": "Sharpe ratio",
    "max_drawdown_pct": "Max. drawdown [%]",
    "trades": "Trades",
    "win_rate_pct": "Win rate [%]",
    "exposure_pct": "Exposure [%]",
}


def format_value(value: Any) -> str:
    """A statistic as shown in the CLI table and the report."""
    if value is None:
        return "n/a"
    if isinstance(value, bool | int):
        return str(value)
    if isinstance(value, float):
        if value and abs(value) < 0.01:
            return f"{value:.4g}"
        return f"{value:,.2f}"
    return str(value)


def stats_table(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the statistics (without the trade list)."""
    return [(label, format_value(stats[key])) for key, label in _STAT_LABELS.items()]


def _plot_png(result: BacktestResult, title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    times = [t.replace(tzinfo=None) for t in result.curve["ts"].to_list()]
    figure = Figure(figsize=(11, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot(times, result.curve["equity"].to_numpy(), color="#1f77b4", linewidth=1.2, label="equity")
    top.axhline(result.cash, color="#888888", linewidth=0.8, linestyle="--", label="initial cash")
    for trade in result.trades:
        colour = "#2ca02c" if trade.pnl > 0 else "#d62728"
        top.axvspan(times[trade.entry_bar], times[trade.exit_bar], color=colour, alpha=0.06, linewidth=0)
    top.set_title(title)
    top.set_ylabel("equity")
    top.legend(loc="upper left")
    top.grid(visible=True, alpha=0.3)
    drawdown = result.curve["drawdown_pct"].to_numpy()
    bottom.fill_between(times, drawdown, 0, color="#d62728", alpha=0.4, linewidth=0)
    bottom.plot(times, drawdown, color="#d62728", linewidth=0.8)
    bottom.set_ylabel("drawdown [%]")
    bottom.grid(visible=True, alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _rows(cells: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
    return f"<table>{head}{body}</table>"


def write_report(result: BacktestResult, path: Path, *, title: str) -> Path:
    """Write an HTML report (equity and drawdown plot as an embedded PNG, statistics, trade list) to ``path``."""
    path = Path(path)
    stats = result.stats()
    png = base64.b64encode(_plot_png(result, title)).decode("ascii")
    settings = [
        ("Strategy", result.strategy),
        ("Initial cash", format_value(result.cash)),
        ("Commission", f"{result.commission:g} of traded value, on entry and on exit"),
        ("Lot size", str(result.lot_size)),
        ("Time zone", result.timezone),
        ("Bars", str(result.curve.height)),
    ]
    if result.skipped_orders:
        settings.append(("Orders not filled (equity below one lot)", str(result.skipped_orders)))
    if result.out_of_money:
        settings.append(("Out of money", "equity reached zero; trading stopped"))
    if result.open_position is not None:
        held = result.open_position
        settings.append(
            ("Open at the end", f"{held.size} from {_iso(held.entry_ts)} at {held.entry_price:g} (marked at the close)")
        )
    trade_rows = [
        [
            str(number),
            _iso(t.entry_ts),
            _iso(t.exit_ts),
            str(t.size),
            f"{t.entry_price:g}",
            f"{t.exit_price:g}",
            f"{t.pnl:,.2f}",
            f"{t.return_pct:.2f}",
            f"{t.commission:,.2f}",
        ]
        for number, t in enumerate(result.trades, start=1)
    ]
    trade_header = ["#", "entry", "exit", "size", "entry price", "exit price", "P&L", "return [%]", "commission"]
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<img alt="equity and drawdown" src="data:image/png;base64,{png}">
<h2>Statistics</h2>
{_rows(stats_table(stats))}
<h2>Settings</h2>
{_rows(settings)}
<h2>Trades ({len(result.trades)})</h2>
{_rows(trade_rows, trade_header)}
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path
