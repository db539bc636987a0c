"""Out-of-sample evaluation of a trained signal model: the holdout split, classification metrics and a light-weight
backtest after costs.

The holdout (:func:`split_holdout`)
    The last ``fraction`` of the distinct bar timestamps (all symbols together, time-ordered) is the holdout; the
    ``embargo`` timestamps before it are dropped, and the rest is the training set. A label at bar t reads the close
    ``horizon`` bars later, so with ``embargo >= horizon`` no training label reaches into the holdout.

Classification metrics (on every holdout row)
    ``roc_auc``, ``log_loss``, and at the threshold (long when P(class 1) > 0.5 by default) ``accuracy``, ``precision``,
    ``recall``; ``positive_rate`` is the share of positive labels, ``long_rate`` the share of rows signalled long.

The backtest after costs -- a light-weight *evaluation* backtest on the dataset rows
    ``long_mean_return``: the mean of ``forward_return - cost`` over the rows where the model is long (NaN when
    it never is). ``strategy_return``: per symbol in time order, a long signal opens a trade that earns
    ``forward_return - cost`` and holds for ``horizon`` rows, during which further signals are ignored
    (non-overlapping); the sum over all trades of all symbols (simple, not compounded), with ``n_trades`` and
    ``hit_rate`` (share of trades that made money after cost). ``cost`` is the round-trip cost of
    :class:`~models_ml.automl.TrainingConfig` (the labels are net of the same cost).
    With ``bars`` (the holdout bars), each symbol is also run through the bar-level engine
    :func:`models_ml.backtest.run_backtest` with the long-only :func:`models_ml.backtest.signal` of the model's
    scores (decided on a bar's close, executed on the next open, commission ``cost / 2`` per side, whole IDX lots):
    :attr:`Evaluation.backtests` holds the results (for reports and plots), ``backtest_return_pct`` their mean.

The promotion metric: the holdout ROC AUC
    It measures how well the score ranks the rows that beat the costs above those that do not, out of sample. It
    needs no threshold, does not move with the base rate of positive labels (which drifts from one period to the
    next, and so between the champion's holdout and the challenger's), and is far less noisy on a few days of
    holdout than a backtest's return, which hinges on a handful of trades. The after-cost figures are logged beside
    it for people to judge, not used as the gate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from models_ml.automl import TrainingConfig, classification_metrics
from models_ml.data import Dataset
from models_ml.export import positive_proba

if TYPE_CHECKING:
    from models_ml.backtest import BacktestResult

__all__ = ["PROMOTION_METRIC", "THRESHOLD", "Evaluation", "evaluate", "split_holdout"]

PROMOTION_METRIC: Final = "holdout_roc_auc"
THRESHOLD: Final = 0.5
BACKTEST_CASH: Final = 100_000_000.0  # rupiah: enough for whole lots of any IDX price
IDX_LOT: Final = 100


@dataclass(frozen=True)
class Evaluation:
    """The out-of-sample figures of one model on one holdout (see the module docstring)."""

    n_rows: int
    positive_rate: float
    roc_auc: float
    log_loss: float
    accuracy: float
    precision: float
    recall: float
    long_rate: float
    long_mean_return: float
    strategy_return: float
    n_trades: int
    hit_rate: float
    cost: float
    horizon: int
    data_range: tuple[str, str]
    threshold: float = THRESHOLD
    backtest_return_pct: float = math.nan
    backtests: Mapping[str, BacktestResult] = field(default_factory=dict, repr=False, compare=False)

    promotion_metric_name: str = PROMOTION_METRIC

    @property
    def promotion_metric(self) -> float:
        """The figure that decides promotion: the holdout ROC AUC (higher is better)."""
        return self.roc_auc

    def metrics(self) -> dict[str, float]:
        """Every figure as a ``holdout_*`` metric (NaN where undefined)."""
        figures = {
            "n_rows": float(self.n_rows),
            "positive_rate": self.positive_rate,
            "roc_auc": self.roc_auc,
            "log_loss": self.log_loss,
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "long_rate": self.long_rate,
            "long_mean_return": self.long_mean_return,
            "strategy_return": self.strategy_return,
            "n_trades": float(self.n_trades),
            "hit_rate": self.hit_rate,
            "backtest_return_pct": self.backtest_return_pct,
        }
        return {f"holdout_{key}": float(value) for key, value in figures.items()}


# The holdout ----------------------------------------------------------------------------------------------------


def _take(dataset: Dataset, rows: npt.NDArray[np.bool_]) -> Dataset:
    index = np.flatnonzero(rows)
    return dataclasses.replace(
        dataset,
        X=np.ascontiguousarray(dataset.X[index]),
        y=dataset.y[index],
        ts=dataset.ts[index],
        symbols=dataset.symbols[index],
        forward_returns=dataset.forward_returns[index],
    )


def split_holdout(dataset: Dataset, fraction: float = 0.2, *, embargo: int) -> tuple[Dataset, Dataset]:
    """``(train, holdout)``: the holdout is the last ``fraction`` of the distinct timestamps; the ``embargo``
    timestamps (bars) before it belong to neither."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if embargo < 0:
        raise ValueError(f"embargo must be >= 0 bars, got {embargo}")
    stamps = np.asarray(dataset.ts).astype("datetime64[us]")
    distinct = np.unique(stamps)
    n_holdout = max(1, math.ceil(fraction * distinct.size))
    first_holdout = distinct.size - n_holdout
    if first_holdout - embargo < 1:
        raise ValueError(
            f"{distinct.size} timestamps leave nothing to train on with a {fraction:.0%} holdout "
            f"and an embargo of {embargo}"
        )
    cutoff = distinct[first_holdout]
    train_end = distinct[first_holdout - embargo]  # first embargoed timestamp
    return _take(dataset, stamps < train_end), _take(dataset, stamps >= cutoff)


# The evaluation -------------------------------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def _trades(
    symbols: npt.NDArray[Any], stamps: npt.NDArray[np.datetime64], long: npt.NDArray[np.bool_], horizon: int
) -> npt.NDArray[np.int64]:
    """Row indices of the non-overlapping long trades: per symbol in time order, a trade blocks ``horizon`` rows."""
    order = np.lexsort((stamps, symbols))
    ordered = symbols[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    group = np.searchsorted(starts, np.arange(order.size), side="right") - 1
    position = np.arange(order.size) - starts[group]
    taken: list[int] = []
    current, next_allowed = -1, 0
    for candidate in np.flatnonzero(long[order]):  # only the long rows: usually a small share
        if group[candidate] != current:
            current, next_allowed = int(group[candidate]), 0
        if position[candidate] >= next_allowed:
            taken.append(int(order[candidate]))
            next_allowed = int(position[candidate]) + horizon
    return np.asarray(taken, dtype=np.int64)


def _utc(column: str, dtype: pl.DataType) -> pl.Expr:
    """``column`` as aware UTC microsecond datetimes (naive values are read as UTC)."""
    expr = pl.col(column).cast(pl.Datetime("us", getattr(dtype, "time_zone", None)))
    if getattr(dtype, "time_zone", None) is None:
        return expr.dt.replace_time_zone("UTC")
    return expr.dt.convert_time_zone("UTC")


def _bar_backtests(
    scores: npt.NDArray[np.float64],
    holdout: Dataset,
    bars: pl.DataFrame,
    config: TrainingConfig,
    calendar_code: str,
    threshold: float,
) -> dict[str, BacktestResult]:
    """The bar-level backtest of the long-only signal per symbol over the holdout period's bars."""
    from models_ml.backtest import run_backtest, signal
    from pasar.market.exchange import calendar

    scored = pl.DataFrame(
        {"symbol": holdout.symbols.astype(str), "ts": holdout.ts.astype("datetime64[us]"), "score": scores}
    ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))
    start = scored["ts"].min()
    frame = bars.with_columns(_utc("ts", bars.schema["ts"]).alias("ts")).filter(pl.col("ts") >= start)
    zone = str(calendar(calendar_code).timezone)
    results: dict[str, BacktestResult] = {}
    for symbol in sorted(set(scored["symbol"].to_list())):
        own = frame.filter(pl.col("symbol") == symbol).sort("ts")
        if own.height < 2:
            continue
        aligned = own.join(scored, on=["symbol", "ts"], how="left")
        results[symbol] = run_backtest(
            aligned.select("ts", "open", "high", "low", "close", "volume"),
            signal(aligned["score"], threshold, allow_short=False),
            cash=BACKTEST_CASH,
            commission=config.cost / 2,
            lot_size=IDX_LOT,
            timezone=zone,
        )
    return results


def evaluate(
    model: Any,
    holdout: Dataset,
    bars: pl.DataFrame | None = None,
    *,
    config: TrainingConfig | None = None,
    calendar_code: str = "IDX",
    threshold: float = THRESHOLD,
) -> Evaluation:
    """Score ``model`` (native) on the ``holdout`` rows: classification metrics, the after-cost evaluation backtest
    and, with ``bars`` (of the holdout's symbols; earlier bars are ignored), the bar-level backtest per symbol, its
    days counted in the time zone of ``calendar_code`` (see the module docstring). The model is long where
    P(class 1) > ``threshold``."""
    from sklearn.metrics import accuracy_score, precision_score, recall_score  # type: ignore[import-untyped]

    config = config or TrainingConfig()
    y = np.asarray(holdout.y).astype(np.int8)
    if y.size == 0:
        raise ValueError("the holdout is empty")
    scores = positive_proba(model, holdout.X)
    long = scores > threshold
    predicted = long.astype(np.int8)
    ranked = classification_metrics(y, scores)
    net = np.asarray(holdout.forward_returns, dtype=np.float64) - config.cost
    stamps = np.asarray(holdout.ts).astype("datetime64[us]")
    trades = _trades(np.asarray(holdout.symbols), stamps, long, config.horizon)
    backtests = {} if bars is None else _bar_backtests(scores, holdout, bars, config, calendar_code, threshold)
    returns = [result.stats()["return_pct"] for result in backtests.values()]
    finite_returns = [float(value) for value in returns if value is not None and math.isfinite(value)]
    return Evaluation(
        n_rows=int(y.size),
        positive_rate=float(y.mean()),
        roc_auc=ranked["roc_auc"],
        log_loss=ranked["log_loss"],
        accuracy=float(accuracy_score(y, predicted)),
        precision=float(precision_score(y, predicted, zero_division=np.nan)),
        recall=float(recall_score(y, predicted, zero_division=np.nan)),
        long_rate=float(long.mean()),
        long_mean_return=float(net[long].mean()) if long.any() else math.nan,
        strategy_return=float(net[trades].sum()),
        n_trades=int(trades.size),
        hit_rate=_ratio(float((net[trades] > 0).sum()), float(trades.size)),
        cost=config.cost,
        horizon=config.horizon,
        data_range=holdout.data_range,
        threshold=threshold,
        backtest_return_pct=float(np.mean(finite_returns)) if finite_returns else math.nan,
        backtests=backtests,
    )
