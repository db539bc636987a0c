"""The canonical bar frame: what every source produces and the loader consumes.

Prices arrive as float64 from files and generators; the loader rounds them to the instrument's price
precision into exact integers (numeric in the database), so no float ever reaches a stored price.
"""

from __future__ import annotations

from enum import StrEnum

import polars as pl


class Timeframe(StrEnum):
    m1 = "1m"
    m5 = "5m"
    m15 = "15m"
    m30 = "30m"
    h1 = "1h"
    d1 = "1d"
    w1 = "1w"
    mo1 = "1mo"

    @property
    def seconds(self) -> int:
        """Nominal length; months are 30 days (only used to compare and bucket intraday frames)."""
        return {
            "1m": 60,
            "5m": 300,
            "15m": 900,
            "30m": 1_800,
            "1h": 3_600,
            "1d": 86_400,
            "1w": 604_800,
            "1mo": 2_592_000,
        }[self.value]

    @property
    def polars_every(self) -> str:
        return {"1m": "1m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1h", "1d": "1d", "1w": "1w", "1mo": "1mo"}[
            self.value
        ]


BAR_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "timeframe": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "adjusted": pl.Boolean(),  # prices already adjusted for corporate actions (splits, dividends)
}


class BarFrameError(ValueError):
    """A frame that does not follow the canonical schema; the message says what is wrong."""


def empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema=BAR_SCHEMA)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Select and cast the canonical columns in order; raise BarFrameError if any is missing or uncastable, or a
    value is missing or (prices, volume) not finite."""
    missing = [name for name in BAR_SCHEMA if name not in frame.columns]
    if missing:
        raise BarFrameError(f"missing columns: {', '.join(missing)}")
    try:
        out = frame.select([pl.col(name).cast(dtype, strict=True) for name, dtype in BAR_SCHEMA.items()])
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise BarFrameError(f"columns of the wrong type: {exc}") from exc
    nulls = [name for name, count in zip(out.columns, out.null_count().row(0), strict=True) if count]
    if nulls:
        raise BarFrameError(f"missing values in columns: {', '.join(nulls)}")
    bad_timeframes = set(out["timeframe"].unique().to_list()) - {t.value for t in Timeframe}
    if bad_timeframes:
        raise BarFrameError(f"unknown timeframes: {sorted(map(str, bad_timeframes))}")
    not_finite = out.select(pl.any_horizontal(~pl.col("open", "high", "low", "close", "volume").is_finite()).sum())
    if not_finite.item():
        raise BarFrameError(f"{not_finite.item()} bar(s) with a NaN or infinite price or volume")
    return out
