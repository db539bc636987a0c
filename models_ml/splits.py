"""Time-ordered walk-forward splits with an embargo, for model selection without look-ahead.

The distinct timestamps, sorted, are the time axis. The first ``min_train`` of them are only ever trained on; the
rest is cut into ``n_splits`` consecutive, non-overlapping test blocks (sizes differ by at most one timestamp).
Fold k tests on block k and trains on every timestamp before it (an expanding window) except the embargo: the
timestamps just before the test block whose labels would read prices inside it.

Embargo
    ``int``: that many distinct timestamps before the test block are left out. With labels over ``h`` bars and
    bars on a common grid (every symbol has a bar at every timestamp, as the synthetic market and most intraday
    data do), ``embargo = h`` is exactly enough: the last training row's label reads the close ``h`` timestamps
    later, just before the test block.
    ``timedelta``: every training timestamp is earlier than the first test timestamp minus the embargo. Clock
    time and bars differ over nights, weekends and holidays (a 15-bar label at 15:45 reaches the next day), so the
    embargo must cover the longest clock span of ``h`` bars; prefer the ``int`` form.

Rows that share a timestamp (the symbols of one bar) always fall on the same side. Indices are positions of the
rows of the sequence as given (it need not be sorted), ascending, as int64 arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = ["walk_forward_splits"]

IndexArray = npt.NDArray[np.int64]


def _as_microseconds(timestamps: Sequence[datetime] | pl.Series | npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Microseconds since the epoch of every timestamp (aware ones in UTC; naive ones as they are)."""
    if isinstance(timestamps, np.ndarray):
        if not np.issubdtype(timestamps.dtype, np.datetime64):
            raise ValueError(f"timestamps must be datetime64 values, got an array of {timestamps.dtype}")
        if np.isnat(timestamps).any():
            raise ValueError("timestamps contain NaT")
        micros: npt.NDArray[np.int64] = timestamps.astype("datetime64[us]").astype(np.int64)
        return micros
    series = timestamps if isinstance(timestamps, pl.Series) else pl.Series("ts", list(timestamps))
    if series.len() and not isinstance(series.dtype, pl.Datetime):
        raise ValueError(f"timestamps must be datetimes, got {series.dtype}")
    if series.null_count():
        raise ValueError("timestamps contain nulls")
    if series.len() == 0:
        return np.empty(0, dtype=np.int64)
    converted: npt.NDArray[np.int64] = series.dt.epoch("us").to_numpy().astype(np.int64)
    return converted


def _first_test_position(min_train: int | float, distinct: int) -> int:
    if isinstance(min_train, bool) or not isinstance(min_train, int | float):
        raise ValueError(f"min_train must be a count or a fraction, got {min_train!r}")
    if isinstance(min_train, float):
        if not 0.0 < min_train < 1.0:
            raise ValueError(f"min_train as a fraction must be in (0, 1), got {min_train}")
        return math.ceil(min_train * distinct)
    if min_train < 1:
        raise ValueError(f"min_train as a count of timestamps must be >= 1, got {min_train}")
    return min_train


def walk_forward_splits(
    timestamps: Sequence[datetime] | pl.Series | npt.NDArray[Any],
    *,
    n_splits: int,
    embargo: timedelta | int,
    min_train: int | float = 0.5,
) -> list[tuple[IndexArray, IndexArray]]:
    """``n_splits`` (train, test) index pairs over the rows of ``timestamps``, in time order.

    ``timestamps``: one per row (a sequence of datetimes, a polars Datetime Series or a numpy datetime64 array,
    e.g. ``Dataset.ts``). ``embargo``: distinct timestamps (int >= 0) or clock time (timedelta >= 0) left out
    before each test block (see the module docstring). ``min_train``: the distinct timestamps before the first
    test block, as a count (int >= 1) or a fraction of all of them (float in (0, 1)).

    Guarantees: every training timestamp is earlier than every test timestamp of its fold by more than the
    embargo; the test blocks are consecutive, do not overlap and cover every timestamp from the first test block
    on; rows sharing a timestamp are on the same side. ValueError for bad arguments, or when a fold would have no
    training or no test rows (too few timestamps for the splits, the embargo and min_train asked for).
    """
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 1:
        raise ValueError(f"n_splits must be a positive integer, got {n_splits!r}")
    if isinstance(embargo, bool) or not isinstance(embargo, int | timedelta):
        raise ValueError(f"embargo must be an int (timestamps) or a timedelta, got {embargo!r}")
    if (embargo if isinstance(embargo, int) else embargo.total_seconds()) < 0:
        raise ValueError(f"embargo must be >= 0, got {embargo!r}")
    micros = _as_microseconds(timestamps)
    if micros.size == 0:
        raise ValueError("no timestamps to split")
    distinct, rank = np.unique(micros, return_inverse=True)
    first_test = _first_test_position(min_train, len(distinct))
    if first_test + n_splits > len(distinct):
        raise ValueError(
            f"{len(distinct)} distinct timestamps cannot give {n_splits} test blocks after min_train={min_train!r} "
            f"({first_test} timestamps)"
        )
    sizes = [len(block) for block in np.array_split(np.arange(len(distinct) - first_test), n_splits)]
    bounds = (first_test + np.cumsum(sizes)).tolist()
    starts = [first_test, *bounds[:-1]]
    folds: list[tuple[IndexArray, IndexArray]] = []
    for number, (start, stop) in enumerate(zip(starts, bounds, strict=True)):
        if isinstance(embargo, int):
            train_stop = start - embargo
        else:
            cutoff = distinct[start] - embargo // timedelta(microseconds=1)
            train_stop = int(np.searchsorted(distinct, cutoff, side="left"))  # distinct[:train_stop] < cutoff
        if train_stop <= 0:
            raise ValueError(
                f"fold {number} has no training rows: the embargo {embargo!r} covers every timestamp before its "
                f"test block; raise min_train or lower the embargo"
            )
        train = np.flatnonzero(rank < train_stop).astype(np.int64)
        test = np.flatnonzero((rank >= start) & (rank < stop)).astype(np.int64)
        folds.append((train, test))
    return folds
