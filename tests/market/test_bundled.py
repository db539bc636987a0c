"""The bundled real data (shipped by the backtesting package) and the in-memory sources."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from pasar.market.frames import BAR_SCHEMA, BarFrameError, Timeframe, conform
from pasar.market.sources.base import Source, StaticSource
from pasar.market.sources.bundled import (
    BUNDLED,
    BUNDLED_SYMBOLS,
    BundledSource,
    bundled_data_dir,
    bundled_frame,
)

EXPECTED_ROWS = {"GOOG": 2148, "EURUSD": 5000, "BTCUSD": 156}
EXPECTED_TIMEFRAMES = {"GOOG": "1d", "EURUSD": "1h", "BTCUSD": "1mo"}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def csv_rows(symbol: str) -> list[list[str]]:
    with (bundled_data_dir() / f"{symbol}.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["", "Open", "High", "Low", "Close", "Volume"]
    return rows[1:]


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return bundled_frame()


def test_three_symbols_with_their_row_counts_and_timeframes(frame: pl.DataFrame) -> None:
    assert BUNDLED_SYMBOLS == ("GOOG", "EURUSD", "BTCUSD")
    assert dict(frame.schema) == BAR_SCHEMA
    assert conform(frame).equals(frame)
    counts = dict(frame.group_by("symbol").len().iter_rows())
    assert counts == EXPECTED_ROWS
    timeframes = {s: tuple(v) for s, v in frame.group_by("symbol").agg(pl.col("timeframe").unique()).iter_rows()}
    assert timeframes == {s: (tf,) for s, tf in EXPECTED_TIMEFRAMES.items()}
    assert {BUNDLED[s].timeframe for s in BUNDLED_SYMBOLS} == {Timeframe.d1, Timeframe.h1, Timeframe.mo1}
    assert not frame["adjusted"].any()


def test_ohlc_sanity(frame: pl.DataFrame) -> None:
    assert frame.null_count().sum_horizontal().item() == 0
    insane = frame.filter(
        (pl.col("low") > pl.col("high"))
        | (pl.col("open") < pl.col("low"))
        | (pl.col("open") > pl.col("high"))
        | (pl.col("close") < pl.col("low"))
        | (pl.col("close") > pl.col("high"))
        | (pl.col("low") <= 0)
        | (pl.col("volume") < 0)
    )
    assert insane.is_empty()
    assert frame.select(pl.struct("symbol", "ts").is_unique().all()).item()
    for symbol in BUNDLED_SYMBOLS:
        assert frame.filter(pl.col("symbol") == symbol)["ts"].is_sorted()


@pytest.mark.parametrize("symbol", BUNDLED_SYMBOLS)
def test_first_and_last_values_equal_the_csv(frame: pl.DataFrame, symbol: str) -> None:
    rows = csv_rows(symbol)
    bars = frame.filter(pl.col("symbol") == symbol)
    for source, bar in ((rows[0], bars.row(0, named=True)), (rows[-1], bars.row(-1, named=True))):
        assert [bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"]] == [float(v) for v in source[1:]]


def test_timestamps_in_utc(frame: pl.DataFrame) -> None:
    def stamps(symbol: str) -> pl.Series:
        return frame.filter(pl.col("symbol") == symbol)["ts"]

    goog = stamps("GOOG")
    # 2004-08-19 is a New York trading day: 00:00 EDT (UTC-4) is 04:00 UTC; in winter EST (UTC-5) gives 05:00.
    assert goog[0] == utc(2004, 8, 19, 4)
    assert goog[-1] == utc(2013, 3, 1, 5)
    assert utc(2005, 1, 3, 5) in goog.to_list()
    assert stamps("EURUSD")[0] == utc(2017, 4, 19, 9)  # hourly FX, UTC as given
    assert stamps("EURUSD")[-1] == utc(2018, 2, 7, 15)
    assert stamps("BTCUSD")[0] == utc(2012, 1, 31)  # the month's date as given, 00:00 UTC
    assert stamps("BTCUSD")[-1] == utc(2024, 12, 31)


def test_subset_and_unknown_symbols() -> None:
    goog = bundled_frame(["goog"])
    assert goog["symbol"].unique().to_list() == ["GOOG"]
    assert goog.height == EXPECTED_ROWS["GOOG"]
    with pytest.raises(ValueError, match="not bundled: BBCA"):
        bundled_frame(["BBCA"])
    assert bundled_frame([]).is_empty()


def test_reading_does_not_import_backtesting_or_bokeh() -> None:
    code = (
        "import sys\n"
        "from pasar.market.sources.bundled import bundled_frame\n"
        "assert bundled_frame().height == 7304\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'backtesting', 'bokeh'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd())
    assert out.stdout.strip() == "[]"


# ---- sources ------------------------------------------------------------------------------------------------------


def test_bundled_source_window_is_half_open() -> None:
    source = BundledSource()
    assert isinstance(source, Source)
    assert source.name == "bundled"
    assert source.symbols == ("BTCUSD", "EURUSD", "GOOG")
    start, end = utc(2017, 4, 19, 9), utc(2017, 4, 19, 12)
    window = source.fetch(start, end)
    assert dict(window.schema) == BAR_SCHEMA
    assert window.filter(pl.col("symbol") == "EURUSD")["ts"].to_list() == [utc(2017, 4, 19, h) for h in (9, 10, 11)]
    assert window["symbol"].unique().to_list() == ["EURUSD"]  # no GOOG bar starts at 04:00 or 05:00 UTC in there
    assert source.fetch(start, end).equals(window)  # idempotent for a window
    assert source.fetch(start, start).is_empty()


def test_window_bounds_in_any_zone() -> None:
    source = BundledSource(["GOOG"])
    new_york = timezone(timedelta(hours=-4))
    # 2004-08-19 00:00 EDT is the first GOOG bar; [that, +1 day) holds exactly it.
    day = source.fetch(datetime(2004, 8, 19, tzinfo=new_york), datetime(2004, 8, 20, tzinfo=new_york))
    assert day["ts"].to_list() == [utc(2004, 8, 19, 4)]
    everything = source.fetch(utc(2000, 1, 1), utc(2030, 1, 1))
    assert everything.height == EXPECTED_ROWS["GOOG"]


def test_static_source_filters_and_validates() -> None:
    bars = pl.DataFrame(
        {
            "symbol": ["BBCA", "BBCA", "BBCA"],
            "timeframe": ["1m"] * 3,
            "ts": [utc(2026, 1, 5, 2, m) for m in range(3)],
            "open": [1.0, 1.0, 1.0],
            "high": [2.0, 2.0, 2.0],
            "low": [1.0, 1.0, 1.0],
            "close": [2.0, 2.0, 2.0],
            "volume": [5, 6, 7],  # ints: conform() casts
            "adjusted": [False] * 3,
        }
    )
    source = StaticSource(bars, name="fixture")
    assert isinstance(source, Source)
    assert source.name == "fixture"
    got = source.fetch(utc(2026, 1, 5, 2, 1), utc(2026, 1, 5, 2, 2))
    assert got["ts"].to_list() == [utc(2026, 1, 5, 2, 1)]
    assert got["volume"].dtype == pl.Float64
    with pytest.raises(ValueError, match="timezone-aware"):
        source.fetch(datetime(2026, 1, 5), utc(2026, 1, 6))  # naive on purpose
    with pytest.raises(ValueError, match="ends before it starts"):
        source.fetch(utc(2026, 1, 6), utc(2026, 1, 5))
    with pytest.raises(BarFrameError, match="missing columns: adjusted"):
        StaticSource(bars.drop("adjusted"))
