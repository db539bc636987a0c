"""The synthetic IDX market: reproducible, and every bar obeys the IDX rules of pasar.market.exchange."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from pasar.market import exchange
from pasar.market.frames import BAR_SCHEMA, Timeframe, conform
from pasar.market.sources.base import Source
from pasar.market.sources.synthetic import (
    ANCHOR,
    DEFAULT_START,
    SyntheticSource,
    generate,
    synthetic_symbols,
    trading_days_from,
)

WIB = ZoneInfo("Asia/Jakarta")
IDX = exchange.calendar("IDX")
START = date(2026, 1, 13)  # 10 trading days: skips the Isra Mikraj holiday (Fri 16 Jan) and a weekend
DAYS = 10
SYMBOLS = 8


def wib(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=WIB)


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return generate(SYMBOLS, DAYS, Timeframe.m1, start=START)


def with_day(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("ts").dt.convert_time_zone("Asia/Jakarta").dt.date().alias("day"))


def test_schema_conforms(bars: pl.DataFrame) -> None:
    assert dict(bars.schema) == BAR_SCHEMA
    assert conform(bars).equals(bars)
    assert bars["timeframe"].unique().to_list() == ["1m"]
    assert not bars["adjusted"].any()
    assert bars["symbol"].unique(maintain_order=True).to_list() == synthetic_symbols(SYMBOLS)
    assert bars.select(pl.col("ts").is_sorted().over("symbol").all()).item()


def test_reproducible_and_seed_dependent(bars: pl.DataFrame) -> None:
    assert generate(SYMBOLS, DAYS, Timeframe.m1, start=START).equals(bars)
    other = generate(SYMBOLS, DAYS, Timeframe.m1, start=START, seed=8)
    assert other.select("symbol", "ts").equals(bars.select("symbol", "ts"))
    assert not other["close"].equals(bars["close"])


def test_a_symbol_does_not_depend_on_the_others(bars: pl.DataFrame) -> None:
    alone = generate(["BBRI"], DAYS, Timeframe.m1, start=START)
    assert alone.equals(bars.filter(pl.col("symbol") == "BBRI"))
    assert (
        generate(["BBRI", "ZZZZ"], 1, Timeframe.m1, start=START)
        .filter(pl.col("symbol") == "BBRI")
        .equals(alone.head(320))
    )


def test_complete_days_only_inside_sessions(bars: pl.DataFrame) -> None:
    expected_days = trading_days_from(START, DAYS)
    assert date(2026, 1, 16) not in expected_days
    frame = with_day(bars)
    assert sorted(frame["day"].unique().to_list()) == expected_days
    for day in expected_days:
        expected = IDX.bar_starts(day, Timeframe.m1)
        for symbol in synthetic_symbols(SYMBOLS)[:2]:
            got = frame.filter((pl.col("day") == day) & (pl.col("symbol") == symbol))["ts"].to_list()
            assert got == expected
    counts = frame.group_by("symbol", "day").len()["len"]
    assert set(counts.to_list()) == {320, 260}  # Monday-Thursday and Friday
    assert all(IDX.is_open(ts) for ts in bars["ts"].unique().to_list())


def test_every_price_on_the_tick_grid(bars: pl.DataFrame) -> None:
    for column in ("open", "high", "low", "close"):
        prices = bars[column].to_numpy()
        assert np.array_equal(prices, np.rint(prices))
        assert np.all(np.mod(prices, exchange.idx_tick_size_array(prices)) == 0)
        assert prices.min() >= 50
    for value in bars["close"].gather_every(997).to_list():
        assert exchange.on_tick_grid(Decimal(int(value)), "idx_equity")


def test_ohlc_consistency(bars: pl.DataFrame) -> None:
    bad = bars.filter(
        (pl.col("low") > pl.min_horizontal("open", "close"))
        | (pl.col("high") < pl.max_horizontal("open", "close"))
        | (pl.col("low") <= 0)
    )
    assert bad.is_empty()
    assert bars.select((pl.col("high") > pl.col("low")).mean()).item() > 0.05  # not all flat bars


def test_prices_stay_inside_the_auto_rejection_band(bars: pl.DataFrame) -> None:
    source = SyntheticSource(SYMBOLS, Timeframe.m1)
    before = IDX.previous_trading_day(START)
    previous = source.fetch(wib(before), wib(START))
    daily = (
        with_day(pl.concat([previous, bars]))
        .group_by("symbol", "day")
        .agg(pl.col("close").last(), pl.col("low").min(), pl.col("high").max(), pl.col("open").first())
        .sort("symbol", "day")
        .with_columns(pl.col("close").shift().over("symbol").alias("reference"))
        .drop_nulls("reference")
    )
    assert daily.height == SYMBOLS * DAYS
    for row in daily.iter_rows(named=True):
        limits = exchange.auto_rejection_limits(Decimal(int(row["reference"])), "idx_equity")
        assert limits is not None
        lower, upper = limits
        assert lower <= Decimal(int(row["low"])) <= Decimal(int(row["high"])) <= upper, row


def test_volumes_are_positive_whole_lots(bars: pl.DataFrame) -> None:
    volume = bars["volume"].to_numpy()
    assert volume.min() >= 100
    assert np.all(np.mod(volume, 100) == 0)


def test_intraday_profiles_are_u_shaped(bars: pl.DataFrame) -> None:
    frame = with_day(bars).with_columns(
        pl.col("ts").dt.convert_time_zone("Asia/Jakarta").dt.time().alias("clock"),
        (pl.col("close") / pl.col("open")).log().abs().alias("move"),
        ((pl.col("high") - pl.col("low")) / pl.col("close")).alias("range"),
    )
    edges = frame.filter((pl.col("clock") < time(9, 20)) | (pl.col("clock") >= time(15, 30)))
    middle = frame.filter((pl.col("clock") >= time(10, 30)) & (pl.col("clock") < time(11, 30)))
    assert edges["volume"].mean() > 2 * middle["volume"].mean()  # type: ignore[operator]
    assert edges["range"].mean() > 1.5 * middle["range"].mean()  # type: ignore[operator]


def test_daily_volatility_is_realistic() -> None:
    daily = generate(30, 120, Timeframe.d1, start=date(2025, 6, 2))
    returns = (
        daily.sort("symbol", "ts").select("symbol", pl.col("close").log().diff().over("symbol").alias("r")).drop_nulls()
    )
    by_symbol = returns.group_by("symbol").agg(pl.col("r").std())["r"]
    assert 0.01 < by_symbol.median() < 0.035  # type: ignore[operator]
    assert daily["close"].min() >= 50  # type: ignore[operator]


def test_daily_bars_share_the_open_and_close_of_intraday_bars(bars: pl.DataFrame) -> None:
    daily = generate(SYMBOLS, DAYS, Timeframe.d1, start=START)
    assert daily.height == SYMBOLS * DAYS
    assert daily["ts"].dt.convert_time_zone("Asia/Jakarta").dt.time().unique().to_list() == [time(0)]
    intraday = (
        with_day(bars)
        .group_by("symbol", "day")
        .agg(pl.col("open").first(), pl.col("close").last())
        .sort("symbol", "day")
    )
    merged = with_day(daily).sort("symbol", "day").select("symbol", "day", "open", "close")
    assert merged.equals(intraday.select("symbol", "day", "open", "close"))


@pytest.mark.parametrize("timeframe", [Timeframe.m5, Timeframe.h1])
def test_coarser_intraday_timeframes(timeframe: Timeframe) -> None:
    frame = generate(3, 3, timeframe, start=START)
    for day in trading_days_from(START, 3):
        got = with_day(frame).filter((pl.col("day") == day) & (pl.col("symbol") == "BBCA"))["ts"].to_list()
        assert got == IDX.bar_starts(day, timeframe)
    assert frame.filter(pl.col("low") > pl.min_horizontal("open", "close")).is_empty()


def test_source_windows_are_consistent() -> None:
    source = SyntheticSource(["BBCA", "GOTO", "SXAA"], Timeframe.m1, seed=11)
    assert isinstance(source, Source)
    assert source.name == "synthetic"
    first, second = date(2026, 1, 15), date(2026, 1, 19)  # around a holiday and a weekend
    one = source.fetch(wib(first), wib(first + timedelta(days=1)))
    gap = source.fetch(wib(first + timedelta(days=1)), wib(second))
    two = source.fetch(wib(second), wib(second + timedelta(days=1)))
    both = source.fetch(wib(first), wib(second + timedelta(days=1)))
    assert gap.is_empty()
    assert one.height == two.height == 3 * 320
    assert pl.concat([one, two]).sort("symbol", "ts").equals(both.sort("symbol", "ts"))
    # UTC-midnight windows split the same bars the same way.
    utc = [datetime(2026, 1, d, tzinfo=UTC) for d in (15, 16, 20)]
    split = pl.concat([source.fetch(utc[0], utc[1]), source.fetch(utc[1], utc[2])]).sort("symbol", "ts")
    assert split.equals(both.sort("symbol", "ts"))
    # A window inside a day is a slice of that day.
    inner = source.fetch(wib(first, 10), wib(first, 10, 30))
    assert inner.height == 3 * 30
    window = (pl.col("ts") >= wib(first, 10).astimezone(UTC)) & (pl.col("ts") < wib(first, 10, 30).astimezone(UTC))
    assert inner.equals(one.filter(window))
    # The source and generate agree.
    generated = generate(["BBCA", "GOTO", "SXAA"], 2, Timeframe.m1, start=first, seed=11)
    assert generated.sort("symbol", "ts").equals(both.sort("symbol", "ts"))
    days = [frame for _, frame in source.iter_days(first, 2)]
    assert pl.concat(days).sort("symbol", "ts").equals(both.sort("symbol", "ts"))


def test_source_edges() -> None:
    source = SyntheticSource(2, Timeframe.d1)
    assert source.fetch(wib(START), wib(START)).is_empty()
    assert source.fetch(wib(date(2023, 1, 2)), wib(date(2023, 2, 1))).is_empty()  # before the anchor
    with pytest.raises(ValueError, match="timezone-aware"):
        source.fetch(datetime(2026, 1, 5), datetime(2026, 1, 6))
    with pytest.raises(ValueError, match="intraday or daily"):
        SyntheticSource(2, Timeframe.w1)


def test_arguments() -> None:
    symbols = synthetic_symbols(35)
    idx_reference = [spec.symbol for spec in exchange.reference_instruments() if spec.exchange == "IDX"]
    assert symbols[:30] == idx_reference
    assert symbols[30:] == ["SXAA", "SXAB", "SXAC", "SXAD", "SXAE"]
    many = synthetic_symbols(800)
    assert len(set(many)) == 800
    assert all(len(symbol) == 4 and symbol.isalpha() and symbol.isupper() for symbol in many)
    assert generate(2, 0, Timeframe.m1).is_empty()
    assert dict(generate(0, 2, Timeframe.m1).schema) == BAR_SCHEMA
    default = generate(1, 1, Timeframe.d1)
    assert default["ts"].to_list() == [IDX.local_midnight_utc(DEFAULT_START)]
    with pytest.raises(ValueError, match="starts on"):
        generate(1, 1, Timeframe.m1, start=ANCHOR - timedelta(days=1))
    with pytest.raises(ValueError, match="seed"):
        generate(1, 1, Timeframe.m1, seed=-1)
    with pytest.raises(ValueError, match="unique"):
        generate(["BBCA", "BBCA"], 1, Timeframe.m1)
    with pytest.raises(ValueError, match="intraday or daily"):
        generate(1, 1, Timeframe.mo1)


def test_many_symbols_respect_grid_and_bands() -> None:
    """With hundreds of symbols many auto-rejection bands straddle a tick-tier boundary (e.g. 380..630 around 500)."""
    frame = generate(300, 3, Timeframe.m5, start=date(2025, 3, 3), seed=3)
    for column in ("open", "high", "low", "close"):
        prices = frame[column].to_numpy()
        assert np.all(np.mod(prices, exchange.idx_tick_size_array(prices)) == 0)
    first = frame.filter(pl.col("ts") == pl.col("ts").min().over("symbol"))
    source = SyntheticSource(300, Timeframe.d1, seed=3)
    before = IDX.previous_trading_day(date(2025, 3, 3))
    reference = source.fetch(wib(before), wib(before + timedelta(days=1))).select("symbol", reference="close")
    day = (
        frame.filter(pl.col("ts") < wib(date(2025, 3, 4)).astimezone(UTC))
        .group_by("symbol")
        .agg(pl.col("low").min(), pl.col("high").max())
    )
    checked = day.join(reference, on="symbol")
    assert checked.height == first.height == 300
    lower, upper = exchange.idx_auto_rejection_limits_array(checked["reference"].to_numpy())
    assert np.all(checked["low"].to_numpy() >= lower)
    assert np.all(checked["high"].to_numpy() <= upper)
    straddling = exchange.idx_tick_size_array(lower) != exchange.idx_tick_size_array(upper)
    assert straddling.any()  # the case this test is about does occur


def test_row_grid_rounding_matches_the_exchange() -> None:
    from pasar.market.sources.synthetic import _RowGrid

    lower = np.array([[50.0], [380.0], [1500.0], [150.0]])
    upper = np.array([[67.0], [630.0], [2500.0], [2500.0]])  # the last spans three boundaries: price by price
    grid = _RowGrid.of(lower, upper)
    assert grid.fallback.tolist() == [3]
    prices = np.linspace(lower, upper, 400, axis=1)[:, :, 0] + 0.37
    rounded = np.clip(grid.round(prices), lower, upper)
    expected = np.clip(exchange.idx_round_to_tick_array(prices), lower, upper)
    assert np.array_equal(rounded, expected)
