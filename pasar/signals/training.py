"""The training pipeline of the signal model, step by step (the Dagster assets run one step each) and end to end
(:func:`train_and_promote`, behind ``pasar train`` and the demo).

bars (as pasar_etl) → dataset (features ⨝ labels) → holdout split → AutoML (:func:`models_ml.automl.train`) →
out-of-sample evaluation and backtest (:func:`models_ml.evaluate.evaluate`) → ONNX export and parity
(:mod:`models_ml.export`) → registration, and the alias ``champion`` only if the challenger wins
(:func:`models_ml.registry.register_and_promote`).

The timeframe and symbols the model was trained on are tagged on the training run (``pasar.timeframe``,
``pasar.symbols``) before registration, so that serving computes live features on the same timeframe.

``models_ml`` is imported inside the functions: the domain core does not load the ML stack unless it trains.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import polars as pl
import psycopg

from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from pasar.signals.models import direction_thresholds

if TYPE_CHECKING:
    from models_ml.automl import TrainingConfig, TrainingResult
    from models_ml.data import Dataset
    from models_ml.evaluate import Evaluation
    from models_ml.registry import PromotionDecision

__all__ = [
    "DEFAULT_HOLDOUT",
    "ExportedModel",
    "PreparedData",
    "backtest_plot_png",
    "evaluate_model",
    "export_model",
    "fit_model",
    "load_training_bars",
    "prepare_data",
    "register_model",
    "train_and_promote",
    "training_config",
]

DEFAULT_HOLDOUT: Final = 0.2
TIMEFRAME_TAG: Final = "pasar.timeframe"
BASE_RATE_TAG: Final = "pasar.base_rate"  # share of positive labels in the training rows: the signal's prior
SYMBOLS_TAG: Final = "pasar.symbols"


@dataclass(frozen=True)
class PreparedData:
    """The bars a model is trained on, the model matrix, and its time-ordered train/holdout split."""

    bars: pl.DataFrame
    dataset: Dataset
    train: Dataset
    holdout: Dataset
    timeframe: str
    symbols: tuple[str, ...]
    horizon: int
    cost: float
    calendar_code: str = "IDX"

    @property
    def base_rate(self) -> float:
        """The share of positive labels (the price beat the costs) among the training rows."""
        return float(self.train.y.mean())


@dataclass(frozen=True)
class ExportedModel:
    """The ONNX bytes of a trained model and the parity figure (max |ΔP| vs the native model on the holdout)."""

    onnx_bytes: bytes
    parity: float


def training_config(
    *,
    trials: int = 20,
    horizon: int = 15,
    seed: int = 42,
    families: Sequence[str] | None = None,
    n_splits: int = 3,
    model_name: str = "pasar-signal",
) -> TrainingConfig:
    """The AutoML configuration of a Pasar training run."""
    from models_ml.automl import FAMILIES, TrainingConfig

    return TrainingConfig(
        horizon=horizon,
        n_trials=trials,
        n_splits=n_splits,
        seed=seed,
        families=tuple(families) if families else FAMILIES,
        model_name=model_name,
    )


def load_training_bars(
    conn: psycopg.Connection[Any],
    *,
    symbols: Sequence[str] | None,
    timeframe: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pl.DataFrame:
    """The stored bars to train on (``symbols`` None: every instrument with bars at ``timeframe``)."""
    from models_ml.data import load_bars

    return load_bars(conn, symbols=list(symbols) if symbols else None, timeframe=timeframe, start=start, end=end)


def prepare_data(
    bars: pl.DataFrame,
    config: TrainingConfig,
    *,
    timeframe: str,
    calendar_code: str = "IDX",
    holdout: float = DEFAULT_HOLDOUT,
) -> PreparedData:
    """Features ⨝ labels of ``bars`` and the holdout split (the last ``holdout`` of the timestamps, after an embargo
    of the horizon). ValueError when the bars are too few to train on."""
    from models_ml.data import build_dataset
    from models_ml.evaluate import split_holdout

    if bars.is_empty():
        raise ValueError(f"no {timeframe} bars to train on: load market data first (pasar ingest synthetic)")
    dataset = build_dataset(bars, horizon=config.horizon, cost=config.cost, calendar_code=calendar_code)
    if len(dataset) == 0:
        raise ValueError("the bars leave no complete training rows (too little history per symbol)")
    train_part, holdout_part = split_holdout(dataset, holdout, embargo=config.embargo_bars)
    symbols = tuple(sorted(set(bars["symbol"].to_list())))
    return PreparedData(
        bars, dataset, train_part, holdout_part, timeframe, symbols, config.horizon, config.cost, calendar_code
    )


def fit_model(data: PreparedData, config: TrainingConfig, settings: Settings) -> TrainingResult:
    """The AutoML search on the training part, tracked in the MLflow store of ``settings``; the run is tagged with
    the timeframe and symbols."""
    from mlflow import MlflowClient

    from models_ml import automl, registry

    registry.configure(settings, experiment=config.experiment)
    result = automl.train(data.train, config)
    client = MlflowClient()
    client.set_tag(result.run_id, TIMEFRAME_TAG, data.timeframe)
    client.set_tag(result.run_id, SYMBOLS_TAG, ",".join(data.symbols)[:5000])
    client.set_tag(result.run_id, BASE_RATE_TAG, f"{data.base_rate:.6f}")
    return result


def evaluate_model(result: TrainingResult, data: PreparedData) -> Evaluation:
    """Out-of-sample metrics and the bar-level backtest of the holdout period, long where the served signal would
    be (score at or above the long threshold of the model's base rate)."""
    from models_ml.evaluate import evaluate

    long_at, _ = direction_thresholds(data.base_rate)
    return evaluate(
        result.model,
        data.holdout,
        data.bars,
        config=result.config,
        calendar_code=data.calendar_code,
        threshold=long_at,
    )


def export_model(result: TrainingResult, data: PreparedData) -> ExportedModel:
    """The ONNX graph of the trained model; raises ``models_ml.export.ParityError`` when it does not reproduce the
    native model's probabilities on the holdout within 1e-5."""
    from models_ml.export import parity, to_onnx

    onnx_bytes = to_onnx(result.model, result.feature_names)
    return ExportedModel(onnx_bytes, parity(result.model, onnx_bytes, data.holdout.X))


def register_model(
    result: TrainingResult,
    evaluation: Evaluation,
    exported: ExportedModel,
    settings: Settings,
    *,
    model_name: str,
) -> PromotionDecision:
    """Register the ONNX model as a new version of ``model_name``; the alias ``champion`` moves only if it wins."""
    from models_ml import registry

    registry.configure(settings, experiment=result.config.experiment)
    return registry.register_and_promote(
        result,
        evaluation,
        model_name=model_name,
        onnx_bytes=exported.onnx_bytes,
        feature_names=result.feature_names,
        parity=exported.parity,
    )


def backtest_plot_png(evaluation: Evaluation, *, max_symbols: int = 8) -> bytes | None:
    """A PNG of the holdout backtest: each symbol's equity as % of its starting cash (the first ``max_symbols``),
    and their mean; None when the evaluation ran no bar-level backtest."""
    results = list(evaluation.backtests.items())
    if not results:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 5), dpi=90, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    curves: list[pl.Series] = []
    for symbol, result in results[:max_symbols]:
        equity = result.curve["equity"] / result.cash * 100.0 - 100.0
        curves.append(equity)
        times = [t.replace(tzinfo=None) for t in result.curve["ts"].to_list()]
        axes.plot(times, equity.to_numpy(), linewidth=0.9, alpha=0.7, label=symbol)
    axes.axhline(0.0, color="#888888", linewidth=0.8, linestyle="--")
    axes.set_title(f"holdout backtest after costs ({len(results)} symbols, long when P(up) > {evaluation.threshold:g})")
    axes.set_ylabel("return [%]")
    axes.grid(visible=True, alpha=0.3)
    axes.legend(loc="upper left", fontsize="small", ncols=2)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str = "backtest") -> str:
    """``png`` as a Markdown image with a data URI (what Dagster's ``MetadataValue.md`` renders inline)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def train_and_promote(
    settings: Settings,
    urls: DatabaseUrls,
    *,
    symbols: Sequence[str] | None = None,
    timeframe: str = "1m",
    trials: int = 20,
    horizon: int = 15,
    seed: int = 42,
    families: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    calendar_code: str = "IDX",
) -> dict[str, Any]:
    """Train, evaluate, export and register a signal model on the stored bars, promoting it to ``champion`` only
    if it beats the current one. Returns a JSON-ready summary (what ``pasar train --json`` prints)."""
    model_name = settings.signal_model_name
    config = training_config(trials=trials, horizon=horizon, seed=seed, families=families, model_name=model_name)
    with psycopg.connect(urls.etl, autocommit=True) as conn:
        bars = load_training_bars(conn, symbols=symbols, timeframe=timeframe, start=start, end=end)
    data = prepare_data(bars, config, timeframe=timeframe, calendar_code=calendar_code)
    result = fit_model(data, config, settings)
    evaluation = evaluate_model(result, data)
    exported = export_model(result, data)
    decision = register_model(result, evaluation, exported, settings, model_name=model_name)
    metrics = {key: _finite(value) for key, value in evaluation.metrics().items()}
    return {
        "model_name": decision.model_name,
        "version": decision.version,
        "promoted": decision.promoted,
        "reason": decision.reason,
        "promotion_metric": decision.metric_name,
        "challenger_metric": _finite(decision.challenger_metric),
        "champion_metric": _finite(decision.champion_metric),
        "previous_champion_version": decision.previous_champion_version,
        "run_id": decision.run_id,
        "family": result.family,
        "params": result.params,
        "cv_metrics": {key: _finite(value) for key, value in result.cv_metrics.items() if key.startswith("cv_")},
        "holdout_metrics": metrics,
        "onnx_parity_max_abs_diff": exported.parity,
        "timeframe": timeframe,
        "base_rate": round(data.base_rate, 6),
        "symbols": list(data.symbols),
        "rows": {"train": len(data.train), "holdout": len(data.holdout)},
        "data_range": list(result.data_range),
        "trials": len(result.trials),
    }
