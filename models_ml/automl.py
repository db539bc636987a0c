"""AutoML for the trading signal: an Optuna search over model families and their hyperparameters, every trial an
MLflow run, seeded and reproducible.

The search
    One Optuna study (``TPESampler(seed=config.seed)``, ``n_jobs=1``) picks a model family among
    :attr:`TrainingConfig.families` -- ``lightgbm`` (``LGBMClassifier``), ``logistic_regression`` (a
    ``StandardScaler`` + ``LogisticRegression`` pipeline) and ``random_forest`` (``RandomForestClassifier``) -- and
    that family's hyperparameters (:func:`suggest_params`). A trial fits the model on each training part of the
    walk-forward splits of :func:`models_ml.splits.walk_forward_splits` (time-ordered, ``config.n_splits`` folds,
    ``config.embargo`` bars between a training part and its test part, so that no training label overlaps a test
    bar) and scores it on the test part.

The objective: mean out-of-fold log loss (minimised)
    Log loss is a proper scoring rule: it rewards probabilities that are *calibrated*, which matters because the
    signal is read as a probability (long when P(up after costs) > 0.5, and the score is served as is). ROC AUC
    is logged beside it for every fold but only ranks rows; the promotion gate uses the holdout ROC AUC instead
    (:mod:`models_ml.evaluate`), so that a search tuned on one figure is judged on another, out of sample.

Determinism
    Same data, same config, same seed → same trials, same metrics, same best model: the sampler is seeded, trials
    run one at a time, LightGBM runs with ``deterministic=True``, ``force_row_wise=True``, one thread and
    ``seed=config.seed``; the scikit-learn models get ``random_state=config.seed`` and ``n_jobs=1``. A ``timeout_s``
    breaks this (how many trials fit in the time is not deterministic); leave it None where it matters.

Tracking
    One parent MLflow run per call of :func:`train` (in experiment ``config.experiment``) holds the configuration,
    the data range, the code version and, at the end, the best trial (``best_*`` params, ``best_cv_*`` metrics, the
    ``pasar.best_trial_run_id`` tag). Every trial is a nested run with the family and its hyperparameters as params,
    the per-fold and mean metrics (``fold<i>_log_loss``, ``fold<i>_roc_auc``, ``cv_log_loss``, ``cv_roc_auc``), the
    feature list (``features.json`` artifact, with ``n_features`` and ``features_sha256`` params), the data range
    (``pasar.data_start``, ``pasar.data_end`` tags, ``n_rows`` param) and the code version (``pasar.code_version``:
    ``git rev-parse HEAD`` or ``unknown``; ``pasar.code_dirty``). The tracking store is the one configured by
    :func:`models_ml.registry.configure` (the embedded sqlite store under ``PASAR_HOME`` by default).

The best configuration is refitted on all of ``dataset`` -- the training part: hold the evaluation rows out first
with :func:`models_ml.evaluate.split_holdout` -- and returned as its native model in :class:`TrainingResult`.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import lightgbm as lgb
import mlflow
import numpy as np
import numpy.typing as npt
import optuna

from models_ml.data import Dataset
from models_ml.export import positive_proba
from models_ml.splits import walk_forward_splits

__all__ = [
    "FAMILIES",
    "OBJECTIVE_METRIC",
    "TrainingConfig",
    "TrainingResult",
    "TrialSummary",
    "build_model",
    "classification_metrics",
    "code_version",
    "data_range_tags",
    "suggest_params",
    "train",
]

FAMILIES: Final[tuple[str, ...]] = ("lightgbm", "logistic_regression", "random_forest")
OBJECTIVE_METRIC: Final = "cv_log_loss"  # minimised


@dataclass(frozen=True)
class TrainingConfig:
    """What to learn and how to search. ``embargo`` (bars) defaults to ``horizon`` (None: follow ``horizon``, also
    through ``dataclasses.replace``; read :attr:`embargo_bars`): a label at bar t looks ``horizon`` bars ahead, so
    the last ``horizon`` bars before a test part would leak it into training."""

    horizon: int = 15
    cost: float = 0.004
    n_trials: int = 20
    n_splits: int = 4
    embargo: int | None = None
    seed: int = 42
    families: tuple[str, ...] = FAMILIES
    timeout_s: float | None = None
    experiment: str = "pasar-signals"
    model_name: str = "pasar-signal"

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1 bar, got {self.horizon}")
        if not 0 <= self.cost < 1:
            raise ValueError(f"cost must be a fraction in [0, 1), got {self.cost}")
        if self.n_trials < 1 or self.n_splits < 2:
            raise ValueError("n_trials must be >= 1 and n_splits >= 2")
        if self.embargo is not None and self.embargo < 0:
            raise ValueError(f"embargo must be >= 0 bars, got {self.embargo}")
        if not self.families or len(set(self.families)) != len(self.families):
            raise ValueError("families must be a non-empty tuple without repeats")
        unknown = set(self.families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown model families {sorted(unknown)}; known: {list(FAMILIES)}")

    @property
    def embargo_bars(self) -> int:
        """The embargo as an int (``embargo`` resolved to ``horizon`` when not given)."""
        return self.horizon if self.embargo is None else self.embargo

    def as_params(self) -> dict[str, str]:
        """The configuration as MLflow params."""
        values = asdict(self) | {"embargo": self.embargo_bars}
        return {
            f"config_{key}": (",".join(value) if isinstance(value, tuple) else str(value))
            for key, value in values.items()
        }


@dataclass(frozen=True)
class TrialSummary:
    """One trial of the search: its family, hyperparameters, cross-validated metrics and MLflow run."""

    number: int
    family: str
    params: dict[str, Any]
    metrics: dict[str, float]
    run_id: str

    @property
    def value(self) -> float:
        return self.metrics[OBJECTIVE_METRIC]


@dataclass(frozen=True)
class TrainingResult:
    """The outcome of :func:`train`: the best configuration refitted on the whole training set (``model``, a native
    ``LGBMClassifier`` or scikit-learn estimator/pipeline), the search that found it and where it was tracked."""

    model: Any
    family: str
    params: dict[str, Any]
    cv_metrics: dict[str, float]
    trials: tuple[TrialSummary, ...]
    run_id: str  # the parent run: the training session, its best trial and (after registration) the models
    best_trial_run_id: str
    experiment_id: str
    feature_names: tuple[str, ...]
    data_range: tuple[str, str]
    n_rows: int
    code_version: str
    config: TrainingConfig = field(repr=False)

    @property
    def objective(self) -> float:
        """The best trial's mean out-of-fold log loss."""
        return self.cv_metrics[OBJECTIVE_METRIC]


# Models ---------------------------------------------------------------------------------------------------------


def suggest_params(trial: optuna.Trial, family: str) -> dict[str, Any]:
    """The hyperparameters of ``family`` drawn for ``trial`` (Optuna names are prefixed by the family, so the
    conditional spaces never share a name; the returned keys are not)."""

    def name(key: str) -> str:
        return f"{family}.{key}"

    if family == "lightgbm":
        return {
            "n_estimators": trial.suggest_int(name("n_estimators"), 50, 400, log=True),
            "learning_rate": trial.suggest_float(name("learning_rate"), 0.01, 0.2, log=True),
            "num_leaves": trial.suggest_int(name("num_leaves"), 7, 63, log=True),
            "min_child_samples": trial.suggest_int(name("min_child_samples"), 20, 400, log=True),
            "subsample": trial.suggest_float(name("subsample"), 0.5, 1.0),
            "colsample_bytree": trial.suggest_float(name("colsample_bytree"), 0.5, 1.0),
            "reg_lambda": trial.suggest_float(name("reg_lambda"), 1e-3, 10.0, log=True),
        }
    if family == "logistic_regression":
        return {"C": trial.suggest_float(name("C"), 1e-4, 10.0, log=True)}
    if family == "random_forest":
        return {
            "n_estimators": trial.suggest_int(name("n_estimators"), 25, 150, log=True),
            "max_depth": trial.suggest_int(name("max_depth"), 3, 8),
            "min_samples_leaf": trial.suggest_int(name("min_samples_leaf"), 20, 400, log=True),
            "max_features": trial.suggest_float(name("max_features"), 0.2, 0.8),
            "max_samples": trial.suggest_float(name("max_samples"), 0.3, 1.0),
        }
    raise ValueError(f"unknown model family {family!r}")


def build_model(family: str, params: Mapping[str, Any], seed: int) -> Any:
    """An unfitted, seeded, single-threaded model of ``family`` with ``params``."""
    if family == "lightgbm":
        return lgb.LGBMClassifier(
            objective="binary",
            subsample_freq=1,
            random_state=seed,
            n_jobs=1,
            deterministic=True,
            force_row_wise=True,
            verbosity=-1,
            **params,
        )
    if family == "logistic_regression":
        from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
        from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]
        from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

        return Pipeline(
            [("scale", StandardScaler()), ("model", LogisticRegression(max_iter=2_000, random_state=seed, **params))]
        )
    if family == "random_forest":
        from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]

        return RandomForestClassifier(random_state=seed, n_jobs=1, **params)
    raise ValueError(f"unknown model family {family!r}")


def classification_metrics(y: npt.ArrayLike, scores: npt.ArrayLike) -> dict[str, float]:
    """Log loss and ROC AUC of P(class 1) ``scores`` for binary labels ``y`` (ROC AUC is NaN with one class)."""
    from sklearn.metrics import log_loss, roc_auc_score  # type: ignore[import-untyped]

    labels = np.asarray(y).astype(np.int64)
    probabilities = np.clip(np.asarray(scores, dtype=np.float64), 1e-15, 1 - 1e-15)
    both = np.unique(labels).size == 2
    return {
        "log_loss": float(log_loss(labels, probabilities, labels=[0, 1])),
        "roc_auc": float(roc_auc_score(labels, probabilities)) if both else math.nan,
    }


# Provenance -----------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _git_state() -> tuple[str, bool]:
    git = shutil.which("git")
    if git is None:
        return "unknown", False
    repo = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            [git, "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return (head or "unknown"), bool(status)


def code_version() -> str:
    """The git commit of the code (``git rev-parse HEAD``), or ``unknown`` outside a git checkout."""
    return _git_state()[0]


def data_range_tags(dataset: Dataset) -> dict[str, str]:
    """The data range of ``dataset`` as MLflow tags: first and last bar timestamps (ISO 8601, UTC), rows, symbols."""
    start, end = dataset.data_range
    return {
        "pasar.data_start": start,
        "pasar.data_end": end,
        "pasar.n_rows": str(len(dataset.y)),
        "pasar.n_symbols": str(np.unique(np.asarray(dataset.symbols)).size),
    }


def _provenance_tags(dataset: Dataset) -> dict[str, str]:
    commit, dirty = _git_state()
    return {
        "pasar.code_version": commit,
        "pasar.code_dirty": str(dirty).lower(),
        "mlflow.source.git.commit": commit,
        **data_range_tags(dataset),
    }


def _feature_payload(names: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    joined = json.dumps(list(names))
    digest = hashlib.sha256(joined.encode()).hexdigest()
    return {"feature_names": list(names)}, {"n_features": str(len(names)), "features_sha256": digest}


# The search -----------------------------------------------------------------------------------------------------


def _folds(dataset: Dataset, config: TrainingConfig) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    splits = walk_forward_splits(np.asarray(dataset.ts), n_splits=config.n_splits, embargo=config.embargo_bars)
    folds = [(np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)) for train, test in splits]
    y = np.asarray(dataset.y)
    if not folds:
        raise ValueError("walk_forward_splits gave no folds: the dataset is too short for the splits asked for")
    for number, (train_idx, test_idx) in enumerate(folds):
        if train_idx.size == 0 or test_idx.size == 0 or np.unique(y[train_idx]).size < 2:
            raise ValueError(
                f"fold {number}: {train_idx.size} training rows ({np.unique(y[train_idx]).size} classes) and "
                f"{test_idx.size} test rows; need both classes to train: more data, fewer splits or a lower cost"
            )
    return folds


def _cross_validate(
    family: str,
    params: Mapping[str, Any],
    X: npt.NDArray[np.float32],
    y: npt.NDArray[np.int8],
    folds: Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
    seed: int,
) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for number, (train_idx, test_idx) in enumerate(folds):
        model = build_model(family, params, seed).fit(X[train_idx], y[train_idx])
        scores = positive_proba(model, X[test_idx])
        for key, value in classification_metrics(y[test_idx], scores).items():
            metrics[f"fold{number}_{key}"] = value
    for key in ("log_loss", "roc_auc"):
        values = [metrics[f"fold{number}_{key}"] for number in range(len(folds))]
        finite = [value for value in values if math.isfinite(value)]
        metrics[f"cv_{key}"] = float(np.mean(finite)) if finite else math.nan
    return metrics


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if math.isfinite(value)}


def train(dataset: Dataset, config: TrainingConfig | None = None) -> TrainingResult:
    """Search, track and refit: see the module docstring. ``dataset`` is the training part (the evaluation holdout
    already removed); the returned model is the best configuration refitted on all of it."""
    from models_ml import registry

    config = config or TrainingConfig()
    X = np.ascontiguousarray(dataset.X, dtype=np.float32)
    y = np.asarray(dataset.y).astype(np.int8)
    feature_names = tuple(str(name) for name in dataset.feature_names)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[1] != len(feature_names):
        raise ValueError(f"X {X.shape}, y {y.shape} and {len(feature_names)} feature names do not agree")
    if np.unique(y).size < 2:
        raise ValueError("the training labels have a single class: nothing to learn")
    folds = _folds(dataset, config)
    experiment_id = registry.ensure_experiment(config.experiment)
    tags = _provenance_tags(dataset)
    features_json, feature_params = _feature_payload(feature_names)
    data_params = {"n_rows": str(X.shape[0]), **feature_params}
    trials: list[TrialSummary] = []

    nested = mlflow.active_run() is not None  # inside a caller's run (an orchestrator's), nest under it
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"automl-seed{config.seed}", nested=nested) as parent:
        mlflow.set_tags(tags | {"pasar.kind": "automl", "pasar.objective": f"{OBJECTIVE_METRIC} (min)"})
        mlflow.log_params(config.as_params() | data_params)
        mlflow.log_dict(features_json, "features.json")

        def objective(trial: optuna.Trial) -> float:
            family = trial.suggest_categorical("family", list(config.families))
            params = suggest_params(trial, str(family))
            with mlflow.start_run(
                experiment_id=experiment_id, run_name=f"trial-{trial.number:03d}-{family}", nested=True
            ) as run:
                mlflow.set_tags(tags | {"pasar.kind": "trial", "pasar.trial": str(trial.number)})
                mlflow.log_params({"family": family, "seed": str(config.seed), **params} | data_params)
                mlflow.log_dict(features_json, "features.json")
                metrics = _cross_validate(str(family), params, X, y, folds, config.seed)
                mlflow.log_metrics(_finite(metrics))
            trials.append(TrialSummary(trial.number, str(family), dict(params), metrics, run.info.run_id))
            return metrics[OBJECTIVE_METRIC]

        sampler = optuna.samplers.TPESampler(seed=config.seed)
        study = optuna.create_study(direction="minimize", sampler=sampler, study_name=f"pasar-{parent.info.run_id}")
        study.optimize(objective, n_trials=config.n_trials, timeout=config.timeout_s, n_jobs=1)

        best = next(summary for summary in trials if summary.number == study.best_trial.number)
        mlflow.log_params({"best_family": best.family} | {f"best_{key}": value for key, value in best.params.items()})
        mlflow.log_metrics({f"best_{key}": value for key, value in _finite(best.metrics).items()})
        mlflow.set_tags(
            {
                "pasar.best_trial": str(best.number),
                "pasar.best_trial_run_id": best.run_id,
                "pasar.n_trials": str(len(trials)),
            }
        )
        model = build_model(best.family, best.params, config.seed).fit(X, y)
        in_sample = classification_metrics(y, positive_proba(model, X))
        mlflow.log_metrics(_finite({f"refit_train_{key}": value for key, value in in_sample.items()}))

    return TrainingResult(
        model=model,
        family=best.family,
        params=dict(best.params),
        cv_metrics=dict(best.metrics),
        trials=tuple(sorted(trials, key=lambda summary: summary.number)),
        run_id=parent.info.run_id,
        best_trial_run_id=best.run_id,
        experiment_id=experiment_id,
        feature_names=feature_names,
        data_range=dataset.data_range,
        n_rows=int(X.shape[0]),
        code_version=tags["pasar.code_version"],
        config=config,
    )
