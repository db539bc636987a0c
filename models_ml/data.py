"""Training data: bars from the database, and the model matrix of features joined to labels.

:func:`build_dataset` is the one place where features (which never look ahead) meet labels (which do, by
design): rows are kept only where every feature and the label are known, and sorted by ts, symbol so that
:func:`models_ml.splits.walk_forward_splits` over ``Dataset.ts`` gives time-ordered folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import psycopg

from models_ml.features import FEATURE_COLUMNS, complete, compute_features
from models_ml.labels import label
from pasar.market import repository

__all__ = ["Dataset", "build_dataset", "load_bars"]


@dataclass(frozen=True)
class Dataset:
    """A model matrix, one row per (ts, symbol), sorted by ts then symbol.

    ``X`` float32 [n, len(feature_names)] in the order of ``feature_names`` (= FEATURE_COLUMNS); ``y`` int8 (the
    label: 1 when the forward return beat the cost); ``ts`` datetime64[us] (UTC, naive in numpy); ``symbols``
    str; ``forward_returns`` float64 (the return the label was made from, for backtests and metrics after cost).
    """

    X: npt.NDArray[np.float32]
    y: npt.NDArray[np.int8]
    ts: npt.NDArray[np.datetime64]
    symbols: npt.NDArray[np.str_]
    forward_returns: npt.NDArray[np.float64]
    feature_names: tuple[str, ...]

    def __post_init__(self) -> None:
        rows = self.X.shape[0]
        if self.X.ndim != 2 or self.X.shape[1] != len(self.feature_names):
            raise ValueError(f"X has shape {self.X.shape}, expected (n, {len(self.feature_names)})")
        for name in ("y", "ts", "symbols", "forward_returns"):
            if getattr(self, name).shape != (rows,):
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected ({rows},)")

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def take(self, indices: npt.ArrayLike) -> Dataset:
        """The rows at ``indices`` (positions, e.g. a fold of :func:`models_ml.splits.walk_forward_splits`)."""
        rows = np.asarray(indices, dtype=np.int64)
        return Dataset(
            X=self.X[rows],
            y=self.y[rows],
            ts=self.ts[rows],
            symbols=self.symbols[rows],
            forward_returns=self.forward_returns[rows],
            feature_names=self.feature_names,
        )

    @property
    def data_range(self) -> tuple[str, str]:
        """ISO 8601 (UTC) of the first and last ``ts``; ValueError when the dataset is empty."""
        if len(self) == 0:
            raise ValueError("the dataset is empty")
        first, last = (value.astype("datetime64[us]").item() for value in (self.ts.min(), self.ts.max()))
        return first.replace(tzinfo=UTC).isoformat(), last.replace(tzinfo=UTC).isoformat()


def build_dataset(bars: pl.DataFrame, *, horizon: int, cost: float, calendar_code: str = "IDX") -> Dataset:
    """Features ⨝ labels on (symbol, ts) of ``bars`` (see :func:`compute_features` and :func:`label`): complete rows
    only (every feature and the label known), sorted by ts, symbol."""
    features = complete(compute_features(bars, calendar_code=calendar_code))
    labels = label(bars, horizon=horizon, cost=cost).drop_nulls("label")
    joined = features.join(labels, on=["symbol", "ts"], how="inner").sort("ts", "symbol")
    return Dataset(
        X=np.ascontiguousarray(joined.select(FEATURE_COLUMNS).to_numpy(), dtype=np.float32),
        y=joined["label"].to_numpy().astype(np.int8),
        ts=joined["ts"].dt.replace_time_zone(None).to_numpy().astype("datetime64[us]"),
        symbols=joined["symbol"].to_numpy().astype(np.str_),
        forward_returns=joined["forward_return"].to_numpy().astype(np.float64),
        feature_names=FEATURE_COLUMNS,
    )


def load_bars(
    conn: psycopg.Connection[Any],
    *,
    symbols: Sequence[str] | None,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
) -> pl.DataFrame:
    """Bars of ``symbols`` (None: all) at ``timeframe`` with ``start <= ts < end`` (None: open) from market.bars,
    as the Float64 frame the features take (:func:`pasar.market.repository.read_bars_frame`)."""
    return repository.read_bars_frame(conn, symbols=symbols, timeframe=timeframe, start=start, end=end)
