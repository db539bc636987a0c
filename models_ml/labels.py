"""Training labels: the forward return over a horizon and whether it beats the round-trip cost.

Labels look ahead BY DESIGN: the label of the bar at t is made from the close ``horizon`` bars later. They are
only ever joined to features for training and evaluation (:func:`models_ml.data.build_dataset`), never computed
at inference time; and the walk-forward splits (:mod:`models_ml.splits`) keep an embargo of at least the horizon
between the last training row and the first test row, so that no training label reads a test-period price.

``horizon`` counts bars of the same symbol (rows in time order), not clock time: on 1m IDX bars a horizon of 15
from 15:45 reaches into the next trading day. Bars of different symbols never mix.
"""

from __future__ import annotations

import math

import polars as pl

from models_ml.features import conform_bars

__all__ = ["IDX_ROUND_TRIP_COST", "forward_return", "label"]

# A long round trip on IDX at typical retail rates: about 0.15% on the buy, 0.25% on the sell (0.15% + 0.1% sell tax).
IDX_ROUND_TRIP_COST = 0.004


def _check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a positive number of bars, got {horizon!r}")
    return horizon


def _forward_return_expr(horizon: int) -> pl.Expr:
    close = pl.col("close").cast(pl.Float64)
    value = close.shift(-horizon).over("symbol", order_by="ts") / close - 1.0
    return pl.when(value.is_finite()).then(value).alias("forward_return")


def forward_return(bars: pl.DataFrame, horizon: int) -> pl.Series:
    """``close[t+h] / close[t] - 1`` per symbol (``h`` = ``horizon`` bars of that symbol in ts order), as a
    Float64 Series named ``forward_return`` aligned with the rows of ``bars`` as given; null for the last
    ``horizon`` bars of each symbol (the future is unknown) and where a close is null or zero."""
    _check_horizon(horizon)
    missing = [name for name in ("symbol", "ts", "close") if name not in bars.columns]
    if missing:
        raise ValueError(f"bars lack the columns: {', '.join(missing)}")
    return bars.select(_forward_return_expr(horizon)).to_series()


def label(bars: pl.DataFrame, *, horizon: int, cost: float) -> pl.DataFrame:
    """``symbol, ts, forward_return, label`` for every bar, sorted by symbol, ts.

    ``label`` (Int8) is 1 when the forward return over ``horizon`` bars beats ``cost`` (the round-trip cost as a
    fraction of the traded value, e.g. :data:`IDX_ROUND_TRIP_COST`): a long entry at this close and an exit
    ``horizon`` bars later would have made money after costs; 0 otherwise; null where the forward return is
    unknown (each symbol's last ``horizon`` bars). Looks ahead by design: training and evaluation only.
    """
    _check_horizon(horizon)
    if isinstance(cost, bool) or not isinstance(cost, int | float) or not math.isfinite(cost) or cost < 0:
        raise ValueError(f"cost must be a finite fraction >= 0, got {cost!r}")
    frame = conform_bars(bars, columns=("close",))
    future = frame.select("symbol", "ts", _forward_return_expr(horizon))
    return future.with_columns(
        pl.when(pl.col("forward_return").is_not_null())
        .then((pl.col("forward_return") > cost).cast(pl.Int8))
        .otherwise(None)
        .cast(pl.Int8)
        .alias("label")
    )
