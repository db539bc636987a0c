"""The backtester: hand-computed cases, no look-ahead, the reference engine (backtesting.py) on real data, the CLI.

The hand cases use ``sma_cross(1, 2)``: the 1-bar SMA is the close itself and the 2-bar SMA the mean of the last two
closes, so a cross up on bar t is exactly a local minimum of the closes at t-1 (c[t-2] > c[t-1] < c[t]) and a cross
down a local maximum -- easy to place by hand.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner, Result

from models_ml.backtest import (
    STATS_KEYS,
    BacktestError,
    BacktestResult,
    Strategy,
    run_backtest,
    signal,
    sma_cross,
    write_report,
)
from pasar.cli import main
from pasar.config import Settings, get_settings
from pasar.market.sources.bundled import bundled_frame

START = datetime(2024, 1, 1, tzinfo=UTC)


def make_bars(opens: list[float], closes: list[float], start: datetime = START) -> pl.DataFrame:
    """Daily bars (every calendar day) with the given opens and closes; high/low just wide enough."""
    assert len(opens) == len(closes)
    return pl.DataFrame(
        {
            "ts": [start + timedelta(days=i) for i in range(len(opens))],
            "open": opens,
            "high": [max(o, c) + 0.25 for o, c in zip(opens, closes, strict=True)],
            "low": [min(o, c) - 0.25 for o, c in zip(opens, closes, strict=True)],
            "close": closes,
            "volume": [1_000.0] * len(opens),
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )


# Bar:              0   1  2   3     4   5   6     7   8  9   10
CLOSES = [10.0, 9.0, 10.0, 11.0, 12.0, 11.0, 10.0, 10.0, 9.0, 10.0, 11.0]
OPENS = [10.0, 10.0, 9.0, 10.5, 11.0, 12.0, 11.5, 10.0, 10.0, 9.0, 9.8]
# Crosses: up on bar 2 (minimum at bar 1), down on bar 5 (maximum at bar 4), up on bar 9 (minimum at bar 8).
# Fills at the next opens: bar 3 (10.5), bar 6 (11.5), bar 10 (9.8).


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-12, abs=1e-9)


# Hand-computed cases ------------------------------------------------------------------------------------------


def test_one_trade_enters_at_the_next_open_and_exits_on_the_cross_down() -> None:
    bars = make_bars(OPENS[:8], CLOSES[:8])
    result = run_backtest(bars, sma_cross(1, 2, allow_short=False), cash=1_000, commission=0)

    assert len(result.trades) == 1
    trade = result.trades[0]
    # Decided on the close of bar 2, executed at the open of bar 3 -- not at bar 2's close (10).
    assert (trade.entry_bar, trade.entry_ts, trade.entry_price) == (3, START + timedelta(days=3), 10.5)
    assert trade.size == 95  # floor(1000 / 10.5) = 95; 2.50 stays in cash
    # The cross down on bar 5 exits at the open of bar 6.
    assert (trade.exit_bar, trade.exit_ts, trade.exit_price) == (6, START + timedelta(days=6), 11.5)
    assert trade.pnl == approx(95 * (11.5 - 10.5))
    assert trade.return_pct == approx((11.5 / 10.5 - 1) * 100)
    assert trade.commission == 0
    assert result.open_position is None
    # Marked at each close: cash + 95 x (close - 10.5) while long.
    assert result.equity.to_list() == [1000, 1000, 1000, 1047.5, 1142.5, 1047.5, 1095, 1095]
    assert result.curve["position"].to_list() == [0, 0, 0, 95, 95, 95, 0, 0]
    stats = result.stats()
    assert stats["final_equity"] == approx(1095)
    assert stats["return_pct"] == approx(9.5)
    assert stats["trades"] == 1
    assert stats["win_rate_pct"] == 100
    assert stats["exposure_pct"] == approx(4 / 8 * 100)  # bars 3..6, entry and exit bars included
    assert stats["max_drawdown_pct"] == approx((1047.5 / 1142.5 - 1) * 100)
    assert result.warmup == 1  # the 2-bar SMA's first value is on bar 1: buy & hold runs from close[1]
    assert stats["buy_hold_return_pct"] == approx((10 / 9 - 1) * 100)


def test_buy_and_hold_starts_after_the_warm_up_like_backtesting_py() -> None:
    bars = make_bars(OPENS, CLOSES)
    result = run_backtest(bars, sma_cross(2, 4), cash=1_000, commission=0)
    assert result.warmup == 3  # the slow SMA's first value is on bar 3
    assert result.stats()["buy_hold_return_pct"] == approx((CLOSES[-1] / CLOSES[3] - 1) * 100)


def test_a_reversal_closes_the_long_and_opens_a_short_at_the_same_open() -> None:
    bars = make_bars(OPENS, CLOSES)
    result = run_backtest(bars, sma_cross(1, 2), cash=1_000, commission=0)

    long_leg, short_leg = result.trades
    assert (long_leg.size, long_leg.entry_price, long_leg.exit_price) == (95, 10.5, 11.5)
    assert long_leg.pnl == approx(95.0)
    # At the open of bar 6 the long is closed (cash 1095) and a short of floor(1095 / 11.5) = 95 is opened.
    assert (short_leg.entry_bar, short_leg.size, short_leg.entry_price) == (6, -95, 11.5)
    # The cross up on bar 9 closes the short at the open of bar 10: 95 x (11.5 - 9.8) = 161.5 gained.
    assert (short_leg.exit_bar, short_leg.exit_price) == (10, 9.8)
    assert short_leg.pnl == approx(95 * (11.5 - 9.8))
    assert short_leg.return_pct == approx((1 - 9.8 / 11.5) * 100)
    # ... and the long is reopened with everything: floor(1256.5 / 9.8) = 128, still open at the end.
    held = result.open_position
    assert held is not None
    assert (held.entry_bar, held.size, held.entry_price) == (10, 128, 9.8)
    assert held.unrealized_pnl == approx(128 * (11 - 9.8))
    assert result.final_equity == approx(1_000 + 95 + 161.5 + 128 * (11 - 9.8))
    # A short's equity moves against the price: bar 7 closes at 10 -> 1095 + 95 x 1.5.
    assert result.equity[7] == approx(1095 + 95 * 1.5)
    assert result.stats()["trades"] == 2
    assert result.stats()["exposure_pct"] == approx(8 / 11 * 100)  # bars 3..10 (the open long included)


def test_commission_is_charged_on_entry_and_on_exit() -> None:
    bars = make_bars(OPENS[:8], CLOSES[:8])
    result = run_backtest(bars, sma_cross(1, 2, allow_short=False), cash=1_000, commission=0.01)

    (trade,) = result.trades
    # Size: floor(1000 / (10.5 x 1.01)) = floor(94.29) = 94.
    assert trade.size == 94
    entry_fee, exit_fee = 94 * 10.5 * 0.01, 94 * 11.5 * 0.01  # 9.87 and 10.81
    assert trade.commission == approx(entry_fee + exit_fee)
    assert trade.pnl == approx(94 * (11.5 - 10.5) - entry_fee - exit_fee)  # 94 - 20.68 = 73.32
    assert trade.return_pct == approx((11.5 / 10.5 - 1 - (entry_fee + exit_fee) / (94 * 10.5)) * 100)
    # The entry fee leaves the cash at once; the exit fee only when the position is closed.
    assert result.equity[2] == 1000
    assert result.equity[3] == approx(1000 - entry_fee + 94 * (11 - 10.5))
    assert result.equity[6] == approx(1000 + 73.32)
    assert result.final_equity == approx(1073.32)


def test_sizes_are_whole_lots_and_the_remainder_stays_in_cash() -> None:
    # An IDX stock at 9,875 rupiah, lots of 100 shares, 10 million rupiah, 0.15% commission.
    bars = make_bars([9_900.0, 9_900.0, 9_875.0, 10_000.0], [9_900.0, 9_850.0, 9_950.0, 10_100.0])
    result = run_backtest(bars, signal([0.5, 0.9, 0.9, 0.9]), cash=10_000_000, commission=0.0015, lot_size=100)

    held = result.open_position
    assert held is not None
    # 10,000,000 / (9,875 x 1.0015) = 1,011.1 shares -> 10 whole lots; 11 lots would cost 10,878,795.
    assert (held.entry_bar, held.entry_price, held.size) == (2, 9_875.0, 1_000)
    assert held.size % 100 == 0
    fee = 1_000 * 9_875 * 0.0015
    assert held.commission == approx(fee)
    cash_left = 10_000_000 - 1_000 * 9_875 - fee
    assert cash_left == approx(110_187.5)  # what the 11th lot would have needed is left over
    assert result.equity[2] == approx(10_000_000 - fee + 1_000 * (9_950 - 9_875))


def test_an_order_smaller_than_one_lot_is_not_filled() -> None:
    bars = make_bars([100.0, 100.0, 100.0], [100.0, 100.0, 100.0])
    result = run_backtest(bars, signal([0.9, 0.9, 0.9]), cash=9_000, commission=0, lot_size=100)
    assert result.trades == ()
    assert result.open_position is None
    assert result.skipped_orders == 2  # tried at the opens of bars 1 and 2
    assert result.final_equity == 9_000
    assert result.stats()["win_rate_pct"] is None


def test_a_gap_open_executes_at_the_open_not_at_the_previous_close() -> None:
    # Long decided on bar 1's close (10); bar 2 gaps up to 15. Flat decided on bar 3's close (14); bar 4 gaps to 12.
    bars = make_bars([10.0, 10.0, 15.0, 15.0, 12.0], [10.0, 10.0, 15.0, 14.0, 12.5])
    result = run_backtest(bars, signal([0.5, 0.9, 0.9, 0.5, 0.5]), cash=1_000, commission=0.001)

    (trade,) = result.trades
    assert (trade.entry_bar, trade.entry_price) == (2, 15.0)
    assert trade.size == math.floor(1_000 / (15 * 1.001))  # 66, sized at the gapped price
    assert (trade.exit_bar, trade.exit_price) == (4, 12.0)
    fees = 66 * 15 * 0.001 + 66 * 12 * 0.001
    assert trade.pnl == approx(66 * (12 - 15) - fees)
    assert result.final_equity == approx(1_000 + 66 * (12 - 15) - fees)


def test_a_decision_on_the_last_bar_is_never_executed() -> None:
    bars = make_bars([10.0, 10.0, 10.0], [10.0, 10.0, 10.0])
    result = run_backtest(bars, signal([0.5, 0.5, 0.9]), cash=1_000, commission=0)
    assert result.trades == ()
    assert result.open_position is None
    assert result.curve["position"].to_list() == [0, 0, 0]


def test_a_wiped_out_short_is_closed_at_the_close_and_trading_stops() -> None:
    bars = make_bars([10.0, 10.0, 10.0, 25.0, 26.0], [10.0, 10.0, 10.0, 25.0, 26.0])
    result = run_backtest(bars, signal([0.5, 0.1, 0.1, 0.1, 0.9]), cash=1_000, commission=0)
    (trade,) = result.trades
    assert (trade.size, trade.entry_bar, trade.exit_bar, trade.exit_price) == (-100, 2, 3, 25.0)
    assert result.out_of_money
    assert result.equity.to_list() == [1_000, 1_000, 1_000, 0, 0]
    assert result.stats()["max_drawdown_pct"] == -100


# The signal strategy -------------------------------------------------------------------------------------------


def test_the_signal_goes_long_above_the_threshold_short_below_its_mirror_and_flat_between() -> None:
    bars = make_bars([10.0] * 6, [10.0] * 6)
    scores = pl.Series([None, 0.61, 0.6, 0.5, 0.39, 0.4])
    assert signal(scores, 0.6).targets(bars).tolist() == [0, 1, 0, 0, -1, 0]
    assert signal(scores, 0.6, allow_short=False).targets(bars).tolist() == [0, 1, 0, 0, 0, 0]
    assert signal(scores.to_numpy(), 0.6).warmup(bars) == 1  # the first score
    with pytest.raises(BacktestError, match="one score per bar"):
        signal([0.5, 0.6], 0.6).targets(bars)
    with pytest.raises(BacktestError, match=r"threshold must be in \[0\.5, 1\)"):
        signal(scores, 0.4)  # long above 0.4 and short below 0.6 would overlap
    assert signal(scores, 0.4, allow_short=False).targets(bars).tolist() == [0, 1, 1, 1, 0, 0]
    with pytest.raises(BacktestError, match=r"threshold must be in \[0, 1\)"):
        signal(scores, 1.0, allow_short=False)


def test_strategies_satisfy_the_protocol() -> None:
    assert isinstance(sma_cross(10, 20), Strategy)
    assert isinstance(signal([0.5]), Strategy)


# No look-ahead ---------------------------------------------------------------------------------------------------


def test_a_decision_on_bar_t_does_not_change_when_later_bars_change() -> None:
    bars = bundled_frame(["GOOG"]).select("ts", "open", "high", "low", "close", "volume")
    strategy = sma_cross(10, 20)
    full = strategy.targets(bars)
    rng = np.random.default_rng(5)
    for t in (0, 19, 20, 21, 300, 1_000, bars.height - 2):
        assert np.array_equal(strategy.targets(bars.head(t + 1)), full[: t + 1]), t
        shocked = bars.with_columns(
            pl.when(pl.int_range(pl.len()) > t)
            .then(pl.col(c) * pl.Series(rng.uniform(0.5, 1.5, bars.height)))
            .otherwise(pl.col(c))
            for c in ("open", "high", "low", "close")
        )
        assert np.array_equal(strategy.targets(shocked)[: t + 1], full[: t + 1]), t


def test_the_engine_up_to_bar_t_does_not_depend_on_later_bars() -> None:
    bars = bundled_frame(["GOOG"]).select("ts", "open", "high", "low", "close", "volume")
    full = run_backtest(bars, sma_cross(10, 20), cash=10_000, commission=0.002)
    for t in (100, 777, 1_500):
        part = run_backtest(bars.head(t + 1), sma_cross(10, 20), cash=10_000, commission=0.002)
        assert part.equity.to_list() == full.equity.head(t + 1).to_list()
        assert part.trades == tuple(trade for trade in full.trades if trade.exit_bar <= t)


# Input checks ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cash": 0, "commission": 0.0}, "cash"),
        ({"cash": -5, "commission": 0.0}, "cash"),
        ({"cash": 1_000, "commission": 0.1}, "commission"),
        ({"cash": 1_000, "commission": -0.001}, "commission"),
        ({"cash": 1_000, "commission": 0.0, "lot_size": 0}, "lot_size"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(BacktestError, match=message):
        run_backtest(make_bars(OPENS, CLOSES), sma_cross(1, 2), **kwargs)


def test_bad_bars_and_strategies_are_refused() -> None:
    bars = make_bars(OPENS, CLOSES)
    with pytest.raises(BacktestError, match="fast SMA"):
        sma_cross(20, 20)
    with pytest.raises(BacktestError, match="no column open"):
        run_backtest(bars.drop("open"), sma_cross(1, 2), cash=1, commission=0)
    with pytest.raises(BacktestError, match="increasing"):
        run_backtest(bars.reverse(), sma_cross(1, 2), cash=1, commission=0)
    with pytest.raises(BacktestError, match="no bars"):
        run_backtest(bars.clear(), sma_cross(1, 2), cash=1, commission=0)
    with pytest.raises(BacktestError, match="positive"):
        run_backtest(bars.with_columns(pl.lit(0.0).alias("low")), sma_cross(1, 2), cash=1, commission=0)


# The reference engine ---------------------------------------------------------------------------------------------


def run_reference(symbol: str, fast: int, slow: int, cash: float) -> Any:
    """backtesting.py's SmaCross example on its own data, configured to our rules: market orders fill at the next
    open (trade_on_close=False), each order closes the open position first (exclusive_orders=True, no hedging),
    buy()/sell() at their default size (all available equity, whole units), no leverage (margin=1), no spread, and
    a position still open at the end stays out of the trade list (finalize_trades=False). Returns (stats, data)."""
    import backtesting.test  # type: ignore[import-untyped]
    from backtesting import Backtest, Strategy  # type: ignore[import-untyped]
    from backtesting.lib import crossover  # type: ignore[import-untyped]
    from backtesting.test import SMA

    class SmaCross(Strategy):  # type: ignore[misc]
        n1 = fast
        n2 = slow

        def init(self) -> None:
            self.sma1 = self.I(SMA, self.data.Close, self.n1)
            self.sma2 = self.I(SMA, self.data.Close, self.n2)

        def next(self) -> None:
            if crossover(self.sma1, self.sma2):
                self.position.close()
                self.buy()
            elif crossover(self.sma2, self.sma1):
                self.position.close()
                self.sell()

    data = getattr(backtesting.test, symbol)
    engine = Backtest(
        data,
        SmaCross,
        cash=cash,
        commission=0.002,
        spread=0.0,
        margin=1.0,
        trade_on_close=False,
        hedging=False,
        exclusive_orders=True,
        finalize_trades=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Some trades remain open", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*dayofweek is deprecated")  # inside backtesting.py, pandas 3
        return engine.run(), data


def close_to(expected: Any) -> Any:
    """The same arithmetic in both engines; only the order of some float additions differs."""
    return pytest.approx(expected, rel=1e-12, abs=1e-9)


STAT_PAIRS = {
    "final_equity": "Equity Final [$]",
    "return_pct": "Return [%]",
    "buy_hold_return_pct": "Buy & Hold Return [%]",
    "annual_return_pct": "Return (Ann.) [%]",
    "annual_volatility_pct": "Volatility (Ann.) [%]",
    "sharpe": "Sharpe Ratio",
    "max_drawdown_pct": "Max. Drawdown [%]",
    "win_rate_pct": "Win Rate [%]",
}


def test_the_same_trades_and_figures_as_backtesting_py_on_real_data() -> None:
    reference, goog = run_reference("GOOG", 10, 20, 10_000)
    bars = bundled_frame(["GOOG"])
    assert bars["close"].to_list() == goog["Close"].to_list()  # the same file
    ours = run_backtest(bars, sma_cross(10, 20), cash=10_000, commission=0.002, timezone="America/New_York")
    stats = ours.stats()
    expected = reference["_trades"]

    # Trade by trade: the same bars, sizes and prices exactly; P&L, return and commission to rounding.
    assert stats["trades"] == reference["# Trades"] == len(expected) == 93
    assert [t.entry_bar for t in ours.trades] == expected["EntryBar"].tolist()
    assert [t.exit_bar for t in ours.trades] == expected["ExitBar"].tolist()
    assert [t.size for t in ours.trades] == expected["Size"].tolist()
    assert [t.entry_price for t in ours.trades] == expected["EntryPrice"].tolist()
    assert [t.exit_price for t in ours.trades] == expected["ExitPrice"].tolist()

    assert [t.pnl for t in ours.trades] == close_to(expected["PnL"].tolist())
    assert [t.commission for t in ours.trades] == close_to(expected["Commission"].tolist())
    assert [t.return_pct for t in ours.trades] == close_to((expected["ReturnPct"] * 100).tolist())

    # The equity curve, bar by bar, and the statistics.
    assert ours.equity.to_list() == close_to(reference["_equity_curve"]["Equity"].tolist())
    for ours_key, reference_key in STAT_PAIRS.items():
        assert stats[ours_key] == close_to(float(reference[reference_key])), ours_key
    assert stats["final_equity"] == pytest.approx(56_263.52, abs=0.005)

    # Exposure: backtesting.py counts closed trades only; ours also counts the long still open at the end (entered
    # on the bar where the last closed trade exited).
    held = ours.open_position
    assert held is not None and held.entry_bar == ours.trades[-1].exit_bar
    open_only = (ours.curve.height - 1 - held.entry_bar) / ours.curve.height * 100
    assert stats["exposure_pct"] == close_to(float(reference["Exposure Time [%]"]) + open_only)


@pytest.mark.parametrize(
    ("symbol", "fast", "slow", "cash", "trades"),
    [("EURUSD", 10, 20, 10_000, 262), ("BTCUSD", 3, 6, 1_000_000, 19)],
    ids=["hourly-fx", "monthly-crypto"],
)
def test_the_same_figures_as_backtesting_py_on_hourly_and_monthly_bars(
    symbol: str, fast: int, slow: int, cash: float, trades: int
) -> None:
    """Other bar periods exercise the annualisation: hourly bars count per day (252 a year), monthly per month."""
    reference, data = run_reference(symbol, fast, slow, cash)
    bars = bundled_frame([symbol])
    assert bars["close"].to_list() == data["Close"].to_list()
    ours = run_backtest(bars, sma_cross(fast, slow), cash=cash, commission=0.002, timezone="UTC")
    stats = ours.stats()
    expected = reference["_trades"]
    assert stats["trades"] == len(expected) == trades
    assert [(t.entry_bar, t.exit_bar, t.size) for t in ours.trades] == list(
        zip(expected["EntryBar"], expected["ExitBar"], expected["Size"], strict=True)
    )
    assert [t.pnl for t in ours.trades] == close_to(expected["PnL"].tolist())
    for ours_key, reference_key in STAT_PAIRS.items():
        assert stats[ours_key] == close_to(float(reference[reference_key])), ours_key


def test_ten_thousand_bars_run_well_under_a_second() -> None:
    rng = np.random.default_rng(11)
    n = 10_000
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    opens = np.r_[100.0, closes[:-1] * np.exp(rng.normal(0, 0.002, n - 1))]
    bars = make_bars(opens.tolist(), closes.tolist(), start=datetime(1990, 1, 1, tzinfo=UTC))
    started = time.perf_counter()
    result = run_backtest(bars, sma_cross(3, 7), cash=100_000, commission=0.001)
    result.stats()
    elapsed = time.perf_counter() - started
    assert len(result.trades) > 1_000
    assert elapsed < 0.5, f"{elapsed:.3f}s for {n} bars"


# The report --------------------------------------------------------------------------------------------------


def test_the_report_holds_the_plot_the_statistics_and_the_trades(tmp_path: Path) -> None:
    result: BacktestResult = run_backtest(make_bars(OPENS, CLOSES), sma_cross(1, 2), cash=1_000, commission=0.001)
    path = write_report(result, tmp_path / "out" / "report.html", title="TEST <1d>")
    text = path.read_text(encoding="utf-8")
    assert path == tmp_path / "out" / "report.html"
    assert "<title>TEST &lt;1d&gt;</title>" in text
    png = re.search(r'src="data:image/png;base64,([^"]+)"', text)
    assert png is not None and base64.b64decode(png.group(1)).startswith(b"\x89PNG\r\n\x1a\n")
    assert "Max. drawdown [%]" in text and "Sharpe ratio" in text
    assert text.count("<tr><td>1</td>") == 1 and "<tr><td>2</td>" in text  # both closed trades listed


# The CLI -----------------------------------------------------------------------------------------------------


def yahoo_csv(path: Path) -> Path:
    """GOOG as a Yahoo Finance download: Date, Open, High, Low, Close, Adj Close, Volume."""
    goog = bundled_frame(["GOOG"])
    goog.select(
        pl.col("ts").dt.convert_time_zone("America/New_York").dt.date().alias("Date"),
        pl.col("open").alias("Open"),
        pl.col("high").alias("High"),
        pl.col("low").alias("Low"),
        pl.col("close").alias("Close"),
        pl.col("close").alias("Adj Close"),
        pl.col("volume").cast(pl.Int64).alias("Volume"),
    ).write_csv(path)
    return path


def backtest(*args: str) -> Result:
    return CliRunner().invoke(main, ["backtest", *args])


def assert_clean_failure(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in result.output, result.output


ARGS = ("--strategy", "sma_cross", "--fast", "10", "--slow", "20", "--cash", "10000", "--commission", "0.002")


def test_cli_backtests_a_yahoo_csv_and_writes_the_report_beside_it(tmp_path: Path) -> None:
    csv = yahoo_csv(tmp_path / "GOOG.csv")
    result = backtest(*ARGS, "--csv", str(csv), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert list(document) == list(STATS_KEYS)
    assert document["trades"] == len(document["trade_list"]) == 93
    assert document["final_equity"] == pytest.approx(56_263.52, abs=0.005)
    assert set(document["trade_list"][0]) == {
        "entry_ts", "exit_ts", "size", "entry_price", "exit_price", "pnl", "return_pct", "commission",
    }  # fmt: skip
    assert document["trade_list"][0]["entry_ts"].startswith("2004-11-17T00:00:00")
    assert document["start"].startswith("2004-08-19") and document["end"].startswith("2013-03-01")
    report = tmp_path / "GOOG_backtest_sma_cross_10_20.html"
    assert report.is_file() and "data:image/png;base64," in report.read_text(encoding="utf-8")


def test_cli_prints_a_table_and_reads_parquet(tmp_path: Path) -> None:
    parquet = tmp_path / "GOOG_1d.parquet"
    bundled_frame(["GOOG"]).select("ts", "open", "high", "low", "close", "volume").write_parquet(parquet)
    result = backtest(*ARGS, "--parquet", str(parquet), "--no-report")
    assert result.exit_code == 0, result.output
    assert "Final equity" in result.output and "56,263.52" in result.output
    assert "Trades" in result.output and "93" in result.output
    assert not list(tmp_path.glob("*.html"))


def test_cli_lot_size_option(tmp_path: Path) -> None:
    csv = yahoo_csv(tmp_path / "GOOG.csv")
    document = json.loads(backtest(*ARGS, "--csv", str(csv), "--lot-size", "10", "--json", "--no-report").stdout)
    assert all(trade["size"] % 10 == 0 for trade in document["trade_list"])


def test_cli_refuses_bad_arguments_with_one_clear_line(tmp_path: Path) -> None:
    csv = yahoo_csv(tmp_path / "GOOG.csv")
    assert_clean_failure(backtest("--csv", str(tmp_path / "missing.csv")), 2, "does not exist")
    assert_clean_failure(backtest("--fast", "20", "--slow", "10", "--csv", str(csv)), 2, "shorter than the slow")
    assert_clean_failure(backtest("--fast", "20", "--slow", "20", "--csv", str(csv)), 2, "--fast")
    assert_clean_failure(backtest("--cash", "0", "--csv", str(csv)), 2, "--cash", "positive")
    assert_clean_failure(backtest("--cash", "-1", "--csv", str(csv)), 2, "--cash")
    assert_clean_failure(backtest("--commission", "0.1", "--csv", str(csv)), 2, "--commission")
    assert_clean_failure(backtest("--commission", "-0.01", "--csv", str(csv)), 2, "--commission")
    assert_clean_failure(backtest("--json"), 2, "exactly one of --symbol, --csv and --parquet")
    assert_clean_failure(backtest("--csv", str(csv), "--symbol", "BBCA"), 2, "exactly one of")
    assert_clean_failure(backtest("--strategy", "momentum", "--csv", str(csv)), 2, "--strategy")

    bad = tmp_path / "prices.csv"
    bad.write_text("when,price\n2024-01-02,10\n", encoding="utf-8")
    assert_clean_failure(backtest("--csv", str(bad), "--json"), 1, "prices.csv", "missing")

    both = tmp_path / "two.csv"
    both.write_text(
        "symbol,date,open,high,low,close,volume\nAAAA,2024-01-02,1,1,1,1,1\nBBBB,2024-01-02,1,1,1,1,1\n",
        encoding="utf-8",
    )
    assert_clean_failure(backtest("--csv", str(both)), 1, "2 symbols (AAAA, BBBB)")

    parquet = tmp_path / "GOOG.parquet"
    bundled_frame(["GOOG"]).write_parquet(parquet)
    assert_clean_failure(backtest("--csv", str(parquet)), 1, "is a parquet file", "--parquet")
    for result in (backtest("--csv", str(bad)), backtest("--csv", str(both))):
        assert len(result.output.strip().splitlines()) == 1


# The CLI against the database (--symbol) ------------------------------------------------------------------------


@pytest.fixture
def pasar_db(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Result]]:
    """``pasar_db(*args)``: runs ``pasar *args`` against the session's database, PASAR_HOME in tmp_path."""
    assert settings.database_url and settings.app_database_url and settings.etl_database_url and settings.jwt_secret
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("PASAR_")}
    env.update(
        {
            "PASAR_HOME": str(tmp_path / "home"),
            "PASAR_DATABASE_URL": settings.database_url.get_secret_value(),
            "PASAR_APP_DATABASE_URL": settings.app_database_url.get_secret_value(),
            "PASAR_ETL_DATABASE_URL": settings.etl_database_url.get_secret_value(),
            "PASAR_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        }
    )

    def run(*args: str) -> Result:
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(main, list(args), env=env)
        finally:
            get_settings.cache_clear()

    yield run
    get_settings.cache_clear()


def test_cli_backtests_stored_bars_and_writes_the_report_under_pasar_home(
    pasar_db: Callable[..., Result], tmp_path: Path
) -> None:
    loaded = pasar_db("ingest", "bundled", "--json")
    assert loaded.exit_code == 0, loaded.output
    result = pasar_db("backtest", *ARGS, "--symbol", "goog", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert list(document) == list(STATS_KEYS)
    assert document["trades"] == 93  # the same bars as the file: the same trades
    assert document["final_equity"] == pytest.approx(56_263.52, abs=0.005)
    assert document["start"] == "2004-08-19T00:00:00-04:00"  # GOOG's calendar: New York
    assert (tmp_path / "home" / "reports" / "backtests" / "GOOG_1d_backtest_sma_cross_10_20.html").is_file()

    missing = pasar_db("backtest", "--symbol", "GOOG", "--timeframe", "1h", "--json")
    assert_clean_failure(missing, 1, "no 1h bars of GOOG")


def test_cli_trades_whole_lots_of_an_idx_stock(pasar_db: Callable[..., Result]) -> None:
    loaded = pasar_db("ingest", "synthetic", "--symbols", "1", "--days", "60", "--timeframe", "1d", "--json")
    assert loaded.exit_code == 0, loaded.output
    (symbol,) = json.loads(loaded.stdout)["symbols"]
    args = ("backtest", "--symbol", symbol, "--fast", "2", "--slow", "5", "--cash", "50000000", "--json")
    document = json.loads(pasar_db(*args, "--no-report").stdout)
    assert document["trades"] > 0
    assert all(trade["size"] % 100 == 0 for trade in document["trade_list"])  # IDX: lots of 100 shares
    assert document["start"].endswith("+07:00")  # daily IDX bars are Jakarta dates
