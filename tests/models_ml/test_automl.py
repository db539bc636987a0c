"""AutoML: seeded and reproducible, every trial an MLflow run under one parent; the holdout split and the
after-cost evaluation backtest by hand."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from models_ml import registry
from models_ml.automl import FAMILIES, TrainingConfig, TrainingResult, code_version, train
from models_ml.data import Dataset, build_dataset
from models_ml.evaluate import PROMOTION_METRIC, evaluate, split_holdout
from models_ml.features import FEATURE_COLUMNS
from pasar.config import Settings
from pasar.market.frames import Timeframe
from pasar.market.sources.synthetic import generate

HORIZON = 15
CONFIG = TrainingConfig(horizon=HORIZON, n_trials=4, n_splits=3, seed=3)


@pytest.fixture(scope="module")
def bars():
    return generate(5, 5, Timeframe.m1, seed=7)


@pytest.fixture(scope="module")
def dataset(bars) -> Dataset:
    return build_dataset(bars, horizon=HORIZON, cost=CONFIG.cost)


@pytest.fixture(scope="module")
def split(dataset) -> tuple[Dataset, Dataset]:
    return split_holdout(dataset, 0.2, embargo=HORIZON)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[Settings]:
    settings = Settings(home=tmp_path_factory.mktemp("pasar-home"), mlflow_tracking_uri=None)
    registry.configure(settings)
    yield settings
    registry._configured = None


@pytest.fixture(scope="module")
def first(store, split) -> TrainingResult:
    return train(split[0], CONFIG)


def _trials(result: TrainingResult) -> list[tuple[int, str, dict[str, object], dict[str, float]]]:
    return [(trial.number, trial.family, trial.params, trial.metrics) for trial in result.trials]


def test_same_seed_gives_the_same_trials_metrics_and_model(first, split):
    again = train(split[0], CONFIG)

    assert again.run_id != first.run_id
    assert _trials(again) == _trials(first)
    assert (again.family, again.params, again.cv_metrics) == (first.family, first.params, first.cv_metrics)
    holdout = split[1]
    assert evaluate(again.model, holdout, config=CONFIG) == evaluate(first.model, holdout, config=CONFIG)
    assert math.isfinite(first.objective) and first.objective > 0


def test_another_seed_samples_other_configurations(first, split):
    other = train(split[0], dataclasses.replace(CONFIG, seed=4, n_trials=2))

    assert [(t.family, t.params) for t in other.trials] != [(t.family, t.params) for t in first.trials[:2]]


def test_every_trial_is_a_run_under_one_parent(first, store, dataset, split):
    client = MlflowClient()
    parent = client.get_run(first.run_id)
    children = client.search_runs(
        [first.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{first.run_id}'", max_results=100
    )

    assert len(children) == CONFIG.n_trials
    assert {child.info.run_id for child in children} == {trial.run_id for trial in first.trials}
    start, end = split[0].data_range
    # The commit at the first training of the process (other sessions may commit while the tests run).
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", code_version())
    for run in [parent, *children]:
        tags, params = run.data.tags, run.data.params
        assert (tags["pasar.data_start"], tags["pasar.data_end"]) == (start, end)
        assert tags["pasar.code_version"] == code_version()
        assert params["n_features"] == str(len(FEATURE_COLUMNS))
        assert params["n_rows"] == str(len(split[0]))
        features = json.loads(Path(client.download_artifacts(run.info.run_id, "features.json")).read_text())
        assert features == {"feature_names": list(FEATURE_COLUMNS)}
    for child in children:
        assert child.data.params["family"] in FAMILIES
        metrics = child.data.metrics
        assert {f"fold{i}_log_loss" for i in range(CONFIG.n_splits)} <= metrics.keys()
        assert {f"fold{i}_roc_auc" for i in range(CONFIG.n_splits)} <= metrics.keys()
        mean = np.mean([metrics[f"fold{i}_log_loss"] for i in range(CONFIG.n_splits)])
        assert metrics["cv_log_loss"] == pytest.approx(mean)
    best = next(child for child in children if child.info.run_id == first.best_trial_run_id)
    assert parent.data.tags["pasar.best_trial_run_id"] == best.info.run_id
    assert parent.data.params["best_family"] == first.family == best.data.params["family"]
    assert parent.data.metrics["best_cv_log_loss"] == pytest.approx(min(t.value for t in first.trials))
    assert parent.data.params["config_seed"] == str(CONFIG.seed)
    assert parent.data.params["config_embargo"] == str(HORIZON)
    assert mlflow.get_tracking_uri() == registry.tracking_uri(store)


def test_config_embargo_follows_the_horizon():
    assert TrainingConfig().embargo_bars == 15
    assert dataclasses.replace(TrainingConfig(), horizon=30).embargo_bars == 30
    assert TrainingConfig(horizon=30, embargo=40).embargo_bars == 40
    with pytest.raises(ValueError, match="unknown model families"):
        TrainingConfig(families=("xgboost",))


def test_holdout_is_the_last_part_after_an_embargo(dataset, split):
    train_part, holdout = split
    stamps = np.unique(dataset.ts)
    first_holdout = int(np.searchsorted(stamps, holdout.ts.min()))

    assert len(stamps) - first_holdout == math.ceil(0.2 * len(stamps))
    assert holdout.ts.min() > train_part.ts.max()
    assert int(np.searchsorted(stamps, train_part.ts.max())) == first_holdout - HORIZON - 1
    assert len(train_part) == int((dataset.ts < stamps[first_holdout - HORIZON]).sum())
    assert len(holdout) == int((dataset.ts >= stamps[first_holdout]).sum())


class _Constant:
    """A 'model' that scores every row the same."""

    def __init__(self, score: float) -> None:
        self.score = score

    def predict_proba(self, X):
        return np.column_stack([np.full(len(X), 1 - self.score), np.full(len(X), self.score)])


def test_evaluation_backtest_by_hand(split, bars):
    holdout = split[1]
    always = evaluate(_Constant(0.9), holdout, bars, config=CONFIG)

    net = holdout.forward_returns - CONFIG.cost
    assert always.long_rate == 1.0
    assert always.long_mean_return == pytest.approx(net.mean())
    expected, trades = 0.0, 0
    for symbol in np.unique(holdout.symbols):
        rows = np.flatnonzero(holdout.symbols == symbol)
        rows = rows[np.argsort(holdout.ts[rows], kind="stable")]
        taken = rows[::HORIZON]  # every row is long: a trade every `horizon` rows
        expected += float(net[taken].sum())
        trades += taken.size
    assert always.n_trades == trades
    assert always.strategy_return == pytest.approx(expected)
    assert always.recall == 1.0 and always.precision == pytest.approx(holdout.y.mean())
    assert always.promotion_metric_name == PROMOTION_METRIC and always.promotion_metric == 0.5  # all tied
    assert set(always.backtests) == set(np.unique(holdout.symbols).tolist())
    assert all(result.trades or result.open_position for result in always.backtests.values())

    never = evaluate(_Constant(0.1), holdout, config=CONFIG)
    assert (never.long_rate, never.n_trades, never.strategy_return) == (0.0, 0, 0.0)
    assert math.isnan(never.long_mean_return) and math.isnan(never.precision)
    assert all(key.startswith("holdout_") for key in never.metrics())
