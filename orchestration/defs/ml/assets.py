"""The signal model's lifecycle as assets: features → training (AutoML) → evaluation and backtest → ONNX export →
registered model. Each asset calls one step of :mod:`pasar.signals.training` and reports its figures as
materialization metadata (metrics, the backtest plot, the model version).

The ONNX export comes before the registration because the registry logs and registers the parity-checked ONNX
graph itself: a model whose ONNX does not reproduce the native probabilities (max |ΔP| > 1e-5) is never registered.
"""

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.defs.ml.resources import MLflowStore
from orchestration.resources import PasarDatabase
from pasar.signals import training

GROUP = "ml"
RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)
BEATS_COIN_FLIP = "beats_coin_flip"
PARITY = "onnx_parity"


def _float(value: float | None) -> dg.MetadataValue[Any]:
    return dg.MetadataValue.null() if value is None or not math.isfinite(value) else dg.MetadataValue.float(value)


class SignalDataConfig(dg.Config):
    """Which bars to learn from and what to predict."""

    symbols: list[str] | None = None  # None: every instrument with bars at the timeframe
    timeframe: str = "1m"
    horizon: int = 15  # bars ahead the label looks (and the embargo of the splits)
    holdout: float = 0.2  # the last share of the timestamps, for evaluation
    calendar: str = "IDX"


class SignalTrainingConfig(dg.Config):
    """How hard to search."""

    n_trials: int = 20
    seed: int = 42
    families: list[str] | None = None  # None: lightgbm, logistic_regression, random_forest
    n_splits: int = 3


@dg.asset(
    group_name=GROUP,
    deps=[dg.AssetKey("synthetic_bars"), dg.AssetKey("landing_bars")],
    retry_policy=RETRY,
    kinds={"postgres", "polars"},
    description="Features (pure polars functions of the bars) joined to forward-return labels net of costs, split "
    "in time order into a training part and a holdout after an embargo.",
)
def signal_features(
    context: dg.AssetExecutionContext, config: SignalDataConfig, database: PasarDatabase
) -> dg.Output[training.PreparedData]:
    base = training.training_config(horizon=config.horizon)
    with database.connect() as conn:
        bars = training.load_training_bars(conn, symbols=config.symbols, timeframe=config.timeframe)
    data = training.prepare_data(
        bars, base, timeframe=config.timeframe, calendar_code=config.calendar, holdout=config.holdout
    )
    start, end = data.dataset.data_range
    return dg.Output(
        data,
        metadata={
            "bars": dg.MetadataValue.int(bars.height),
            "rows": dg.MetadataValue.int(len(data.dataset)),
            "train_rows": dg.MetadataValue.int(len(data.train)),
            "holdout_rows": dg.MetadataValue.int(len(data.holdout)),
            "symbols": dg.MetadataValue.json(list(data.symbols)),
            "timeframe": dg.MetadataValue.text(data.timeframe),
            "data_start": dg.MetadataValue.text(start),
            "data_end": dg.MetadataValue.text(end),
            "positive_rate": _float(float(data.dataset.y.mean())),
            "features": dg.MetadataValue.json(list(data.dataset.feature_names)),
            "config": dg.MetadataValue.json(config.model_dump()),
        },
    )


@dg.asset(
    group_name=GROUP,
    retry_policy=RETRY,
    kinds={"optuna", "mlflow", "lightgbm", "scikitlearn"},
    description="An Optuna search over LightGBM and scikit-learn models on walk-forward splits, every trial an "
    "MLflow run under one parent; the best configuration refitted on the training part.",
)
def signal_training(
    config: SignalTrainingConfig, signal_features: training.PreparedData, mlflow_store: MLflowStore
) -> dg.Output[Any]:
    data = signal_features
    settings = mlflow_store.settings()
    search = training.training_config(
        trials=config.n_trials,
        horizon=data.horizon,
        seed=config.seed,
        families=config.families,
        n_splits=config.n_splits,
        model_name=settings.signal_model_name,
    )
    result = training.fit_model(data, search, settings)
    return dg.Output(
        result,
        metadata={
            "family": dg.MetadataValue.text(result.family),
            "params": dg.MetadataValue.json(result.params),
            "cv_log_loss": _float(result.cv_metrics.get("cv_log_loss")),
            "cv_roc_auc": _float(result.cv_metrics.get("cv_roc_auc")),
            "trials": dg.MetadataValue.int(len(result.trials)),
            "mlflow_run_id": dg.MetadataValue.text(result.run_id),
            "best_trial_run_id": dg.MetadataValue.text(result.best_trial_run_id),
            "code_version": dg.MetadataValue.text(result.code_version),
            "trial_table": dg.MetadataValue.md(_trial_table(result)),
        },
    )


def _trial_table(result: Any) -> str:
    lines = ["| trial | family | cv_log_loss | cv_roc_auc |", "| --- | --- | --- | --- |"]
    for trial in result.trials:
        lines.append(
            f"| {trial.number} | {trial.family} | {trial.metrics.get('cv_log_loss', math.nan):.5f} "
            f"| {trial.metrics.get('cv_roc_auc', math.nan):.4f} |"
        )
    return "\n".join(lines)


@dg.asset(
    group_name=GROUP,
    retry_policy=RETRY,
    check_specs=[dg.AssetCheckSpec(BEATS_COIN_FLIP, asset="signal_evaluation")],
    kinds={"polars", "matplotlib"},
    description="Out-of-sample classification metrics on the holdout and a bar-level backtest after costs (decided "
    "on a bar's close, executed at the next open, commission on entry and exit, whole IDX lots), with its plot.",
)
def signal_evaluation(
    context: dg.AssetExecutionContext,
    signal_features: training.PreparedData,
    signal_training: Any,
    database: PasarDatabase,
) -> Iterator[dg.Output[Any] | dg.AssetCheckResult]:
    data, result = signal_features, signal_training
    evaluation = training.evaluate_model(result, data)
    metadata: dict[str, Any] = {key: _float(value) for key, value in evaluation.metrics().items()}
    metadata["promotion_metric"] = dg.MetadataValue.text(evaluation.promotion_metric_name)
    png = training.backtest_plot_png(evaluation)
    if png is not None:
        folder = Path(database.home) / "reports" / "ml"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"backtest_{result.run_id}.png"
        path.write_bytes(png)
        metadata["backtest_plot"] = dg.MetadataValue.md(training.png_markdown(png, "holdout backtest"))
        metadata["backtest_plot_path"] = dg.MetadataValue.path(str(path))
    stats = {symbol: backtest.stats() for symbol, backtest in evaluation.backtests.items()}
    metadata["backtests"] = dg.MetadataValue.md(_backtest_table(stats))
    yield dg.Output(evaluation, metadata=metadata)
    auc = evaluation.roc_auc
    yield dg.AssetCheckResult(
        check_name=BEATS_COIN_FLIP,
        passed=bool(math.isfinite(auc) and auc > 0.5),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"holdout_roc_auc": _float(auc)},
        description="The holdout ROC AUC is above 0.5 (the model ranks better than chance).",
    )


def _backtest_table(stats: dict[str, dict[str, Any]]) -> str:
    if not stats:
        return "_no bar-level backtest_"
    lines = ["| symbol | return % | buy & hold % | trades | max drawdown % |", "| --- | --- | --- | --- | --- |"]
    for symbol, figures in sorted(stats.items()):
        cells = [figures.get(key) for key in ("return_pct", "buy_hold_return_pct", "trades", "max_drawdown_pct")]
        lines.append(f"| {symbol} | " + " | ".join("-" if cell is None else f"{cell:.4g}" for cell in cells) + " |")
    return "\n".join(lines)


@dg.asset(
    group_name=GROUP,
    retry_policy=RETRY,
    check_specs=[dg.AssetCheckSpec(PARITY, asset="signal_onnx", blocking=True)],
    kinds={"onnx"},
    description="The trained model exported to ONNX (onnxmltools / skl2onnx) with its feature names and order in the "
    "metadata; the native and ONNX probabilities must agree within 1e-5 on the holdout before it goes further.",
)
def signal_onnx(
    signal_features: training.PreparedData, signal_training: Any
) -> Iterator[dg.Output[training.ExportedModel] | dg.AssetCheckResult]:
    exported = training.export_model(signal_training, signal_features)  # raises ParityError above 1e-5
    yield dg.Output(
        exported,
        metadata={
            "parity_max_abs_diff": dg.MetadataValue.float(exported.parity),
            "bytes": dg.MetadataValue.int(len(exported.onnx_bytes)),
            "feature_names": dg.MetadataValue.json(list(signal_training.feature_names)),
        },
    )
    yield dg.AssetCheckResult(
        check_name=PARITY,
        passed=exported.parity <= 1e-5,
        metadata={"max_abs_diff": dg.MetadataValue.float(exported.parity)},
    )


@dg.asset(
    group_name=GROUP,
    retry_policy=RETRY,
    kinds={"mlflow"},
    description="The ONNX model registered as a new version in the MLflow Model Registry; the alias `champion` "
    "moves to it only if it beats the current champion's holdout ROC AUC. Serving picks the move up by itself.",
)
def signal_registered_model(
    signal_training: Any, signal_evaluation: Any, signal_onnx: training.ExportedModel, mlflow_store: MLflowStore
) -> dg.MaterializeResult[None]:
    settings = mlflow_store.settings()
    decision = training.register_model(
        signal_training, signal_evaluation, signal_onnx, settings, model_name=settings.signal_model_name
    )
    return dg.MaterializeResult(
        metadata={
            "model_name": dg.MetadataValue.text(decision.model_name),
            "model_version": dg.MetadataValue.int(decision.version),
            "promoted": dg.MetadataValue.bool(decision.promoted),
            "reason": dg.MetadataValue.text(decision.reason),
            "challenger_metric": _float(decision.challenger_metric),
            "champion_metric": _float(decision.champion_metric),
            "previous_champion_version": (
                dg.MetadataValue.null()
                if decision.previous_champion_version is None
                else dg.MetadataValue.int(decision.previous_champion_version)
            ),
            "model_uri": dg.MetadataValue.text(f"models:/{decision.model_name}/{decision.version}"),
            "run_id": dg.MetadataValue.text(decision.run_id),
            "registered_at": dg.MetadataValue.text(datetime.now(UTC).isoformat(timespec="seconds")),
            "decision": dg.MetadataValue.json(json.loads(json.dumps(decision.__dict__, default=str))),
        }
    )


assets = [signal_features, signal_training, signal_evaluation, signal_onnx, signal_registered_model]
