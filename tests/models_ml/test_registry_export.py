"""ONNX export and parity for every family; registration, promotion by the alias `champion` (a worse challenger
is refused), and what serving loads."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import pytest
from mlflow import MlflowClient

from models_ml import registry
from models_ml.automl import FAMILIES, TrainingConfig, TrainingResult, build_model, train
from models_ml.data import Dataset, build_dataset
from models_ml.evaluate import Evaluation, evaluate, split_holdout
from models_ml.export import (
    PARITY_TOLERANCE,
    ParityError,
    feature_names_of,
    metadata_of,
    parity,
    positive_proba,
    to_onnx,
)
from models_ml.features import FEATURE_COLUMNS
from pasar.config import Settings
from pasar.market.frames import Timeframe
from pasar.market.sources.synthetic import generate

HORIZON = 15
MODEL = "test-signal"
PARAMS = {
    "lightgbm": {"n_estimators": 80, "num_leaves": 15, "learning_rate": 0.05, "min_child_samples": 50},
    "logistic_regression": {"C": 0.1},
    "random_forest": {"n_estimators": 40, "max_depth": 6, "min_samples_leaf": 40, "max_features": 0.5},
}
CONFIG = TrainingConfig(horizon=HORIZON, n_trials=2, n_splits=3, seed=5, families=("logistic_regression",))


@pytest.fixture(scope="module")
def split() -> tuple[Dataset, Dataset]:
    bars = generate(5, 5, Timeframe.m1, seed=11)
    return split_holdout(build_dataset(bars, horizon=HORIZON, cost=CONFIG.cost), 0.2, embargo=HORIZON)


@pytest.fixture(scope="module")
def models(split) -> dict[str, object]:
    train_part = split[0]
    return {family: build_model(family, PARAMS[family], 0).fit(train_part.X, train_part.y) for family in FAMILIES}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[Settings]:
    """One embedded store for the module (creating one costs seconds); each test uses its own model name."""
    settings = Settings(home=tmp_path_factory.mktemp("home"), mlflow_tracking_uri=None)
    registry.configure(settings)
    yield settings
    registry._configured = None


# Export and parity ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_matches_the_native_model_on_held_out_rows(family, models, split):
    model = models[family]
    onnx_bytes = to_onnx(model, FEATURE_COLUMNS)
    holdout = split[1]

    assert parity(model, onnx_bytes, holdout.X) <= PARITY_TOLERANCE
    metadata = metadata_of(onnx_bytes)
    assert json.loads(metadata["feature_names"]) == list(FEATURE_COLUMNS)
    assert feature_names_of(onnx_bytes) == FEATURE_COLUMNS
    assert metadata["model_family"] == family
    assert metadata["created_at"]
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert (given.name, given.type, given.shape[1]) == ("features", "tensor(float)", len(FEATURE_COLUMNS))
    label, probabilities = session.run(None, {"features": holdout.X[:7]})
    assert label.shape == (7,) and probabilities.shape == (7, 2)  # a plain tensor: no ZipMap


def test_a_tampered_onnx_fails_parity(models, split):
    train_part, holdout = split
    shuffled = np.random.default_rng(0).permutation(train_part.y)
    impostor = build_model("lightgbm", PARAMS["lightgbm"], 0).fit(train_part.X, shuffled)

    with pytest.raises(ParityError, match="max"):
        parity(models["lightgbm"], to_onnx(impostor, FEATURE_COLUMNS), holdout.X)
    narrow = build_model("logistic_regression", PARAMS["logistic_regression"], 0).fit(train_part.X[:, :3], train_part.y)
    with pytest.raises(ParityError, match="features"):
        parity(models["logistic_regression"], to_onnx(narrow, FEATURE_COLUMNS[:3]), holdout.X)
    with pytest.raises(ParityError, match="does not run"):
        parity(models["logistic_regression"], b"not an onnx model", holdout.X)


# Registration and promotion -------------------------------------------------------------------------------------


def _register(
    result: TrainingResult, evaluation: Evaluation, holdout: Dataset, model_name: str = MODEL
) -> registry.PromotionDecision:
    onnx_bytes = to_onnx(result.model, result.feature_names)
    return registry.register_and_promote(
        result,
        evaluation,
        model_name=model_name,
        onnx_bytes=onnx_bytes,
        feature_names=result.feature_names,
        parity=parity(result.model, onnx_bytes, holdout.X),
    )


def test_only_a_better_challenger_takes_the_alias(store, split):
    train_part, holdout = split
    client = MlflowClient()
    assert registry.champion(MODEL) is None

    first = train(train_part, CONFIG)
    first_eval = evaluate(first.model, holdout, config=CONFIG)
    decision = _register(first, first_eval, holdout)
    assert (decision.version, decision.promoted, decision.champion_metric) == (1, True, None)
    info = registry.champion(MODEL)
    assert info is not None
    assert (info.version, info.run_id, info.metric) == (1, first.run_id, first_eval.roc_auc)
    assert info.feature_names == FEATURE_COLUMNS

    # A worse challenger: the same search on inverted labels learns the signal backwards.
    assert first_eval.promotion_metric > 0.5
    backwards = dataclasses.replace(train_part, y=(1 - train_part.y).astype(np.int8))
    worse = train(backwards, CONFIG)
    worse_eval = evaluate(worse.model, holdout, config=CONFIG)
    assert worse_eval.promotion_metric < first_eval.promotion_metric
    refused = _register(worse, worse_eval, holdout)
    assert (refused.version, refused.promoted, refused.previous_champion_version) == (2, False, 1)
    assert refused.champion_metric == first_eval.promotion_metric
    assert registry.champion(MODEL).version == 1  # type: ignore[union-attr]
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["pasar.decision"] == "rejected"
    assert float(tags["pasar.challenger_metric"]) == worse_eval.promotion_metric
    assert float(tags["pasar.champion_metric"]) == first_eval.promotion_metric
    assert tags["pasar.champion_version"] == "1"
    run = client.get_run(worse.run_id).data
    assert run.metrics["promoted"] == 0.0
    assert run.metrics["challenger_promotion_metric"] == pytest.approx(worse_eval.promotion_metric)
    assert run.metrics["champion_promotion_metric"] == pytest.approx(first_eval.promotion_metric)
    assert run.metrics["holdout_roc_auc"] == pytest.approx(worse_eval.roc_auc)
    assert run.tags["pasar.decision"] == "rejected" and run.tags["pasar.model_version"] == "2"

    # An equal figure does not win either; a better one moves the alias.
    tie = _register(worse, dataclasses.replace(worse_eval, roc_auc=first_eval.roc_auc), holdout)
    assert (tie.version, tie.promoted) == (3, False)
    better_eval = dataclasses.replace(worse_eval, roc_auc=first_eval.roc_auc + 0.01)
    better = _register(worse, better_eval, holdout)
    assert (better.version, better.promoted, better.champion_metric) == (4, True, first_eval.roc_auc)
    assert int(client.get_model_version_by_alias(MODEL, registry.CHAMPION_ALIAS).version) == 4
    assert client.get_model_version(MODEL, "4").tags["pasar.decision"] == "promoted"
    assert {alias: int(version) for alias, version in client.get_registered_model(MODEL).aliases.items()} == {
        "champion": 4
    }


def test_serving_loads_the_champion_onnx(store, split):
    train_part, holdout = split
    result = train(train_part, CONFIG)
    _register(result, evaluate(result.model, holdout, config=CONFIG), holdout, "served-signal")

    onnx_bytes, info = registry.load_champion_onnx("served-signal")

    assert (info.name, info.version, info.run_id, info.family) == ("served-signal", 1, result.run_id, result.family)
    assert info.feature_names == FEATURE_COLUMNS == feature_names_of(onnx_bytes)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["probabilities"], {"features": holdout.X})
    assert np.max(np.abs(probabilities[:, 1] - positive_proba(result.model, holdout.X))) <= PARITY_TOLERANCE
    native = mlflow.sklearn.load_model(info.native_model_uri)
    assert np.array_equal(positive_proba(native, holdout.X), positive_proba(result.model, holdout.X))
    artifacts = Path(store.home) / "mlruns"
    assert list(artifacts.rglob("model.onnx")), "artifacts live under PASAR_HOME/mlruns"

    explicit_bytes, explicit = registry.load_champion_onnx("served-signal", settings=store)  # no global state
    assert (explicit_bytes, explicit) == (onnx_bytes, info)
    with pytest.raises(registry.NoChampionError):
        registry.load_champion_onnx("no-such-model")


def test_nothing_is_registered_without_parity(store, split):
    train_part, holdout = split
    result = train(train_part, dataclasses.replace(CONFIG, n_trials=1))
    evaluation = evaluate(result.model, holdout, config=CONFIG)
    onnx_bytes = to_onnx(result.model, result.feature_names)

    with pytest.raises(ParityError):
        registry.register_and_promote(
            result,
            evaluation,
            model_name="unchecked-signal",
            onnx_bytes=onnx_bytes,
            feature_names=result.feature_names,
            parity=1e-3,
        )
    with pytest.raises(ValueError, match="order"):
        registry.register_and_promote(
            result,
            evaluation,
            model_name="unchecked-signal",
            onnx_bytes=onnx_bytes,
            feature_names=tuple(reversed(result.feature_names)),
            parity=0.0,
        )
    assert MlflowClient().search_model_versions("name='unchecked-signal'") == []
    assert registry.champion("unchecked-signal") is None


# The store ------------------------------------------------------------------------------------------------------


def test_tracking_uri_defaults_to_the_embedded_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PASAR_MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(home=tmp_path)
    assert registry.tracking_uri(settings) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert registry.artifact_location(settings) == (tmp_path.resolve() / "mlruns").as_uri()

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert registry.tracking_uri(Settings(home=tmp_path)) == "http://127.0.0.1:5000"
    monkeypatch.setenv("PASAR_MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert registry.tracking_uri(Settings(home=tmp_path)) == "http://127.0.0.1:5001"
