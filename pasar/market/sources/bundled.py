"""Real historical bars shipped inside the ``backtesting`` PyPI package, loaded as is (no network, no resampling).

``backtesting`` ships three CSVs in its ``backtesting/test/`` folder, each with the header
``,Open,High,Low,Close,Volume`` and naive timestamps in the unnamed first column:

========  =========================  =========  ============================================================
symbol    content                    timeframe  timestamp convention
========  =========================  =========  ============================================================
GOOG      daily US equity 2004–2013  1d         a New York trading day; the bar starts at 00:00
                                                America/New_York of that date, stored in UTC (04:00 or 05:00
                                                UTC depending on daylight saving time)
EURUSD    hourly FX 2017–2018        1h         the timestamps are taken to be UTC, as given
BTCUSD    monthly crypto 2012–2024   1mo        the month's date as given (the last day of the month) at
                                                00:00 UTC
========  =========================  =========  ============================================================

The files are read with polars straight from the installed package folder, located with
``importlib.util.find_spec`` (which does not execute ``backtesting/__init__.py``: importing ``backtesting`` pulls in
bokeh). The GOOG prices are the raw, unadjusted quotes (the 2004 IPO opens at 100, before the 2014 split), so every
bundled bar has ``adjusted = False``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl

from pasar.market.frames import Timeframe, conform, empty_bars
from pasar.market.sources.base import StaticSource

__all__ = ["BUNDLED", "BUNDLED_SYMBOLS", "BundledSeries", "BundledSource", "bundled_data_dir", "bundled_frame"]

PACKAGE = "backtesting"
HEADER = ("", "Open", "High", "Low", "Close", "Volume")


@dataclass(frozen=True)
class BundledSeries:
    """One bundled CSV and how its timestamps are read."""

    symbol: str
    filename: str
    timeframe: Timeframe
    timezone: str  # the zone the naive timestamps are interpreted in before conversion to UTC
    date_only: bool  # timestamps are dates (bar start = 00:00 in `timezone`)
    asset_class: str
    currency: str
    description: str


BUNDLED: dict[str, BundledSeries] = {
    "GOOG": BundledSeries(
        "GOOG", "GOOG.csv", Timeframe.d1, "America/New_York", True, "equity", "USD", "Alphabet (Google) class C, NASDAQ"
    ),
    "EURUSD": BundledSeries("EURUSD", "EURUSD.csv", Timeframe.h1, "UTC", False, "fx", "USD", "Euro / US dollar spot"),
    "BTCUSD": BundledSeries("BTCUSD", "BTCUSD.csv", Timeframe.mo1, "UTC", True, "crypto", "USD", "Bitcoin / US dollar"),
}
BUNDLED_SYMBOLS: tuple[str, ...] = ("GOOG", "EURUSD", "BTCUSD")


def bundled_data_dir() -> Path:
    """The installed ``backtesting/test`` folder (found without importing ``backtesting``)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {PACKAGE!r} package is not installed; it ships the bundled market data")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "test"
        if all((folder / series.filename).is_file() for series in BUNDLED.values()):
            return folder
    raise FileNotFoundError(f"the {PACKAGE!r} package has no test/ folder with {', '.join(BUNDLED_SYMBOLS)} CSVs")


@cache
def _load(symbol: str) -> pl.DataFrame:
    series = BUNDLED[symbol]
    path = bundled_data_dir() / series.filename
    raw = pl.read_csv(path, infer_schema=False)
    if raw.columns != list(HEADER):
        raise ValueError(f"{path}: unexpected header {raw.columns} (expected {list(HEADER)})")
    raw = raw.rename(dict(zip(HEADER, ("date", "open", "high", "low", "close", "volume"), strict=True))).with_columns(
        pl.col("open", "high", "low", "close", "volume").cast(pl.Float64(), strict=True)
    )
    if series.date_only:
        local = pl.col("date").str.strptime(pl.Date(), "%Y-%m-%d").cast(pl.Datetime("us"))
    else:
        local = pl.col("date").str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S")
    ts = local.dt.replace_time_zone(series.timezone).dt.convert_time_zone("UTC")
    frame = raw.select(
        pl.lit(series.symbol).alias("symbol"),
        pl.lit(series.timeframe.value).alias("timeframe"),
        ts.alias("ts"),
        "open",
        "high",
        "low",
        "close",
        "volume",
        pl.lit(False).alias("adjusted"),
    )
    return conform(frame)


def bundled_frame(symbols: Iterable[str] | None = None) -> pl.DataFrame:
    """The canonical frame of the bundled series (all of them by default), sorted by symbol and ts."""
    wanted = BUNDLED_SYMBOLS if symbols is None else tuple(dict.fromkeys(s.upper() for s in symbols))
    unknown = [s for s in wanted if s not in BUNDLED]
    if unknown:
        raise ValueError(f"not bundled: {', '.join(unknown)} (bundled: {', '.join(BUNDLED_SYMBOLS)})")
    if not wanted:
        return empty_bars()
    return pl.concat([_load(s) for s in wanted]).sort("symbol", "ts")


class BundledSource(StaticSource):
    """The bundled real data as a :class:`~pasar.market.sources.base.Source` named ``"bundled"``."""

    def __init__(self, symbols: Iterable[str] | None = None) -> None:
        super().__init__(bundled_frame(symbols), name="bundled")
