"""Features: no look-ahead (truncating or perturbing the future changes nothing before it), hand-checked values,
warm-up, order invariance, and the live-inference path."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from models_ml.features import (
    FEATURE_COLUMNS,
    LIVE_HISTORY,
    MIN_HISTORY,
    complete,
    compute_features,
    latest_features,
)
from pasar.market import exchange
from pasar.market.frames import Timeframe
from pasar.market.sources.synthetic import generate

WIB = exchange.calendar("IDX").timezone
MONDAY = datetime(2026, 1, 5, 9, 0, tzinfo=WIB)  # an IDX trading day


def _bars(
    closes: list[float],
    *,
    symbol: str = "TEST",
    volumes: list[float] | None = None,
    start: datetime = MONDAY,
    step: timedelta = timedelta(minutes=1),
) -> pl.DataFrame:
    n = len(closes)
    return pl.DataFrame(
        {
            "symbol": [symbol] * n,
            "ts": [(start + i * step).astimezone(UTC) for i in range(n)],
            "open": closes,
            "high": [c * 1.01 for c in closes],
            "low": [c * 0.99 for c in closes],
            "close": closes,
            "volume": volumes if volumes is not None else [1000.0 + 10 * i for i in range(n)],
        }
    )


def _column(frame: pl.DataFrame, name: str) -> list[Any]:
    return frame[name].to_list()


def _two_symbols_interleaved(timeframe: Timeframe, days: int, seed: int) -> pl.DataFrame:
    """Two synthetic symbols with partly different timestamps (10% of bars dropped at random), rows interleaved
    in time order as a database would return them by ts."""
    bars = generate(["AAAA", "BBBB"], days, timeframe, seed=seed).select(
        "symbol", "ts", "open", "high", "low", "close", "volume"
    )
    keep = np.random.default_rng(seed).random(bars.height) > 0.1
    return bars.filter(pl.Series(keep)).sort("ts", "symbol")


# Look-ahead guard ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("timeframe", "days"), [(Timeframe.m1, 3), (Timeframe.d1, 150)])
def test_no_feature_reads_a_later_bar_truncation(timeframe: Timeframe, days: int) -> None:
    bars = _two_symbols_interleaved(timeframe, days, seed=11)
    full = compute_features(bars)
    stamps = bars["ts"].unique().sort()
    rng = np.random.default_rng(5)
    # Random cuts, plus cuts inside the warm-up and at the very ends.
    positions = {0, 1, MIN_HISTORY - 1, MIN_HISTORY, len(stamps) - 2, len(stamps) - 1}
    positions |= set(rng.integers(0, len(stamps), size=8).tolist())
    for position in sorted(positions):
        cut = stamps[position]
        truncated = compute_features(bars.filter(pl.col("ts") <= cut))
        assert_frame_equal(truncated, full.filter(pl.col("ts") <= cut), check_exact=True)
        # Per symbol: cutting one symbol's future changes nothing of its past nor anything of the other symbol.
        for symbol in ("AAAA", "BBBB"):
            one_cut = compute_features(bars.filter((pl.col("symbol") != symbol) | (pl.col("ts") <= cut)))
            expected = full.filter((pl.col("symbol") != symbol) | (pl.col("ts") <= cut))
            assert_frame_equal(one_cut, expected, check_exact=True)


@pytest.mark.parametrize(("timeframe", "days"), [(Timeframe.m1, 3), (Timeframe.d1, 150)])
def test_no_feature_reads_a_later_bar_perturbation(timeframe: Timeframe, days: int) -> None:
    bars = _two_symbols_interleaved(timeframe, days, seed=12)
    full = compute_features(bars)
    stamps = bars["ts"].unique().sort()
    rng = np.random.default_rng(6)
    for position in rng.integers(MIN_HISTORY, len(stamps) - 5, size=6).tolist():
        cut = stamps[position]
        later = pl.col("ts") > cut
        noise = pl.Series(rng.uniform(0.5, 1.5, bars.height))
        volume_noise = pl.Series(rng.uniform(0.1, 10.0, bars.height))
        perturbed = bars.with_columns(
            *(pl.when(later).then(pl.col(name) * noise).otherwise(pl.col(name)).alias(name) for name in
              ("open", "high", "low", "close")),
            pl.when(later).then(pl.col("volume") * volume_noise).otherwise(pl.col("volume")).alias("volume"),
        )  # fmt: skip
        changed = compute_features(perturbed)
        assert_frame_equal(changed.filter(~later), full.filter(~later), check_exact=True)
        # The perturbation is real: features after the cut did change.
        assert not changed.filter(later).select(FEATURE_COLUMNS).equals(full.filter(later).select(FEATURE_COLUMNS))


def test_rows_in_any_order_give_the_same_features() -> None:
    bars = _two_symbols_interleaved(Timeframe.m1, 2, seed=3)
    expected = compute_features(bars)
    shuffled = bars.sample(fraction=1.0, shuffle=True, seed=1)
    assert_frame_equal(compute_features(shuffled), expected, check_exact=True)
    by_symbol = bars.sort("symbol", "ts")
    assert_frame_equal(compute_features(by_symbol), expected, check_exact=True)
    assert expected.select("symbol", "ts").equals(bars.select("symbol", "ts").sort("symbol", "ts"))


# Output contract -------------------------------------------------------------------------------------------


def test_output_columns_and_types() -> None:
    bars = generate(2, 1, Timeframe.m1).with_columns(pl.col("volume").cast(pl.Int64), pl.col("close").cast(pl.Float32))
    features = compute_features(bars)
    assert features.columns == ["symbol", "ts", "close", *FEATURE_COLUMNS]
    assert features.schema["symbol"] == pl.String
    assert features.schema["ts"] == pl.Datetime("us", "UTC")
    assert all(features.schema[name] == pl.Float64 for name in ("close", *FEATURE_COLUMNS))
    assert features.height == bars.height
    assert len(set(FEATURE_COLUMNS)) == len(FEATURE_COLUMNS) == 14


def test_naive_and_other_time_zones_read_as_instants() -> None:
    bars = _bars([100.0 + (i % 7) for i in range(80)])
    expected = compute_features(bars)
    naive = bars.with_columns(pl.col("ts").dt.replace_time_zone(None).dt.cast_time_unit("ns"))
    local = bars.with_columns(pl.col("ts").dt.convert_time_zone("Asia/Jakarta").dt.cast_time_unit("ms"))
    assert_frame_equal(compute_features(naive), expected, check_exact=True)
    assert_frame_equal(compute_features(local), expected, check_exact=True)


def test_bad_input_is_refused() -> None:
    bars = _bars([100.0, 101.0, 102.0])
    with pytest.raises(ValueError, match="lack the columns: volume"):
        compute_features(bars.drop("volume"))
    with pytest.raises(ValueError, match="repeat a"):
        compute_features(pl.concat([bars, bars.head(1)]))
    with pytest.raises(ValueError, match="unknown trading calendar"):
        compute_features(bars, calendar_code="NOPE")
    with pytest.raises(ValueError, match="null symbol or ts"):
        compute_features(bars.with_columns(pl.when(pl.col("close") > 101).then(pl.col("ts")).alias("ts")))
    with pytest.raises(ValueError, match="Datetime"):
        compute_features(bars.with_columns(pl.col("ts").dt.date()))


def test_warm_up_rows_are_null_and_complete_drops_them() -> None:
    bars = _bars([100.0 * math.exp(0.01 * math.sin(i)) for i in range(100)])
    features = compute_features(bars)
    first_known = {name: features[name].is_not_null().arg_true()[0] for name in FEATURE_COLUMNS}
    assert first_known == {
        "ret_1": 1, "ret_5": 5, "ret_15": 15, "ret_60": 60,
        "vol_15": 15, "vol_60": 60,  # k log returns need k + 1 bars
        "rsi_14": 14,
        "macd": 25, "macd_signal": 33, "macd_hist": 33,  # EMA26 from the 26th bar, then 9 MACD values
        "bb_pos_20": 19, "vol_z_20": 19,
        "session_pos": 0, "range_pct": 0,
    }  # fmt: skip
    # Once known, a feature stays known.
    assert all(features[name][first_known[name] :].null_count() == 0 for name in FEATURE_COLUMNS)
    done = complete(features)
    assert done.height == 100 - (MIN_HISTORY - 1)
    assert done["ts"][0] == features["ts"][MIN_HISTORY - 1]
    assert done.select(pl.all().null_count()).sum_horizontal().item() == 0


# Hand-checked values ---------------------------------------------------------------------------------------


def test_returns() -> None:
    features = compute_features(_bars([100.0, 110.0, 99.0, 99.0, 120.0, 150.0]))
    assert _column(features, "ret_1")[0] is None
    assert _column(features, "ret_1")[1:] == pytest.approx([0.1, -0.1, 0.0, 120 / 99 - 1, 0.25])
    assert _column(features, "ret_5") == [None] * 5 + [pytest.approx(0.5)]
    assert _column(features, "range_pct") == pytest.approx([0.02] * 6)


def test_realized_volatility_is_the_std_of_log_returns() -> None:
    closes = [100.0 * math.exp(0.02 * math.sin(1.7 * i) + 0.001 * i) for i in range(80)]
    features = compute_features(_bars(closes))
    log_returns = np.diff(np.log(closes))
    for t in (15, 40, 79):
        assert features["vol_15"][t] == pytest.approx(np.std(log_returns[t - 15 : t], ddof=1), rel=1e-10)
    assert features["vol_60"][79] == pytest.approx(np.std(log_returns[79 - 60 : 79], ddof=1), rel=1e-10)
    flat = compute_features(_bars([500.0] * 70))
    assert flat["vol_15"][15:].to_list() == [0.0] * 55


def _wilder_rsi(closes: list[float], period: int = 14) -> list[float | None]:
    """Wilder's weights as a normalised exponential mean of the gains and losses so far."""
    decay = 1 - 1 / period
    out: list[float | None] = [None]
    up = down = weight = 0.0
    for i in range(1, len(closes)):
        change = closes[i] - closes[i - 1]
        up = decay * up + max(change, 0.0)
        down = decay * down + max(-change, 0.0)
        weight = decay * weight + 1.0
        gain, loss = up / weight, down / weight
        out.append(None if i < period else 50.0 if gain + loss == 0 else 100 * gain / (gain + loss))
    return out


def test_rsi_on_textbook_series() -> None:
    rising = compute_features(_bars([100.0 + i for i in range(40)]))["rsi_14"]
    assert rising[:14].to_list() == [None] * 14
    assert rising[14:].to_list() == [100.0] * 26
    falling = compute_features(_bars([200.0 - i for i in range(40)]))["rsi_14"]
    assert falling[14:].to_list() == [0.0] * 26
    flat = compute_features(_bars([100.0] * 40))["rsi_14"]
    assert flat[14:].to_list() == [50.0] * 26
    alternating_closes = [100.0 + (i % 2) for i in range(200)]
    alternating = compute_features(_bars(alternating_closes))["rsi_14"]
    assert all(abs(value - 50.0) < 5.0 for value in alternating[14:].to_list())
    assert (alternating[-1] + alternating[-2]) / 2 == pytest.approx(50.0, abs=0.5)
    wavy = [100.0 + 5 * math.sin(i / 3) + (i % 5) for i in range(120)]
    ours, reference = compute_features(_bars(wavy))["rsi_14"].to_list(), _wilder_rsi(wavy)
    assert ours[:14] == reference[:14] == [None] * 14
    assert ours[14:] == pytest.approx(reference[14:], rel=1e-12)


def _ema(values: list[float], span: int) -> list[float]:
    alpha = 2 / (span + 1)
    out = [values[0]]
    for value in values[1:]:
        out.append((1 - alpha) * out[-1] + alpha * value)
    return out


def test_macd_against_a_loop() -> None:
    closes = [1000.0 + 30 * math.sin(i / 7) + i for i in range(120)]
    features = compute_features(_bars(closes))
    line = [fast - slow for fast, slow in zip(_ema(closes, 12), _ema(closes, 26), strict=True)]
    signal = _ema(line[25:], 9)  # the signal starts where the MACD line is first known
    t = 100
    assert features["macd"][t] == pytest.approx(line[t] / closes[t], rel=1e-9)
    assert features["macd_signal"][t] == pytest.approx(signal[t - 25] / closes[t], rel=1e-9)
    assert features["macd_hist"][t] == pytest.approx((line[t] - signal[t - 25]) / closes[t], rel=1e-9)


def test_bollinger_position() -> None:
    at_mean = [10.0, 12.0] * 9 + [11.0, 11.0]  # the 20-bar mean is 11, the last close
    assert compute_features(_bars(at_mean))["bb_pos_20"][19] == pytest.approx(0.5, abs=1e-12)
    above = [*([10.0, 12.0] * 9), 11.0, 14.0]
    mean, std = float(np.mean(above)), float(np.std(above))  # population std, as Bollinger bands use
    assert compute_features(_bars(above))["bb_pos_20"][19] == pytest.approx(
        (14.0 - (mean - 2 * std)) / (4 * std), rel=1e-12
    )
    flat = compute_features(_bars([250.0] * 25))["bb_pos_20"]
    assert flat[:19].to_list() == [None] * 19
    assert flat[19:].to_list() == [0.5] * 6


def test_volume_z_score() -> None:
    constant = compute_features(_bars([100.0] * 25, volumes=[5000.0] * 25))["vol_z_20"]
    assert constant[:19].to_list() == [None] * 19
    assert constant[19:].to_list() == [0.0] * 6  # std 0: the volume is the mean, zero deviations away
    ramp = compute_features(_bars([100.0] * 20, volumes=[float(v) for v in range(1, 21)]))["vol_z_20"]
    assert ramp[19] == pytest.approx((20 - 10.5) / math.sqrt((20**2 - 1) / 12), rel=1e-12)


def test_session_position_from_the_calendar() -> None:
    def position(local: datetime) -> float:
        bars = _bars([100.0], start=local)
        return float(compute_features(bars)["session_pos"][0])

    assert position(datetime(2026, 1, 5, 9, 0, tzinfo=WIB)) == 0.0  # Monday open
    assert position(datetime(2026, 1, 5, 15, 49, tzinfo=WIB)) == pytest.approx(319 / 320)  # last minute
    assert position(datetime(2026, 1, 5, 13, 30, tzinfo=WIB)) == pytest.approx(180 / 320)  # afternoon open
    assert position(datetime(2026, 1, 9, 14, 0, tzinfo=WIB)) == pytest.approx(150 / 260)  # Friday afternoon
    # Outside continuous trading: the documented fill of 0.5.
    assert position(datetime(2026, 1, 5, 12, 30, tzinfo=WIB)) == 0.5  # lunch break
    assert position(datetime(2026, 1, 5, 15, 55, tzinfo=WIB)) == 0.5  # closing auction
    assert position(datetime(2026, 1, 10, 10, 0, tzinfo=WIB)) == 0.5  # Saturday
    assert position(datetime(2026, 1, 1, 10, 0, tzinfo=WIB)) == 0.5  # New Year's Day, a holiday
    daily = compute_features(generate(1, 5, Timeframe.d1))
    assert daily["session_pos"].to_list() == [0.5] * 5  # a daily bar starts at local midnight


def test_session_position_agrees_with_the_calendar_everywhere() -> None:
    cal = exchange.calendar("IDX")
    bars = generate(1, 6, Timeframe.m1, start=datetime(2026, 1, 12).date())
    ours = compute_features(bars)["session_pos"].to_list()
    theirs = [cal.session_position(ts) for ts in bars["ts"].to_list()]
    assert ours == pytest.approx([0.5 if value is None else value for value in theirs], abs=1e-15)
    crypto = _bars([1.0] * 3, start=datetime(2026, 1, 10, 6, 0, tzinfo=UTC), step=timedelta(hours=6))
    assert compute_features(crypto, calendar_code="CRYPTO")["session_pos"].to_list() == [0.25, 0.5, 0.75]


# Live inference ----------------------------------------------------------------------------------------------


def test_latest_features_is_the_last_row_of_each_symbol() -> None:
    bars = _two_symbols_interleaved(Timeframe.m1, 2, seed=8)
    latest = latest_features(bars)
    full = compute_features(bars)
    expected = full.group_by("symbol").agg(pl.all().last()).sort("symbol")
    assert_frame_equal(latest, expected, check_exact=True)
    assert latest["symbol"].to_list() == ["AAAA", "BBBB"]
    short = latest_features(bars.filter(pl.col("symbol") == "AAAA").head(10))
    assert short.height == 1
    assert short["ret_60"][0] is None  # too little history: nulls, the caller decides


def test_live_history_reproduces_the_training_features() -> None:
    bars = generate(3, 4, Timeframe.m1, seed=4)
    full = latest_features(bars)
    recent = latest_features(bars.group_by("symbol", maintain_order=True).tail(LIVE_HISTORY))
    assert recent.select("symbol", "ts").equals(full.select("symbol", "ts"))
    for name in FEATURE_COLUMNS:
        assert recent[name].to_list() == pytest.approx(full[name].to_list(), rel=1e-9, abs=1e-9), name
