"""The in-process predictor: loads the champion ONNX once, agrees with the native model, reloads when the alias
moves, explains additively; and the signal rules it serves (direction, feature age on the venue's clock)."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from models_ml.automl import build_model
from models_ml.data import build_dataset, load_bars
from models_ml.export import positive_proba
from models_ml.features import FEATURE_COLUMNS, LIVE_HISTORY
from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from pasar.market.exchange import calendar
from pasar.signals.models import Direction, direction, direction_thresholds, session_seconds_between
from pasar.signals.service import HISTORY_BARS
from serving.predictor import ModelNotLoaded, Predictor, RegistrySource, explain_native
from tests.serving.fixtures import SYMBOLS, TrainedStore, trained_store

IDX = calendar("IDX")


@pytest.fixture(scope="module")
def store(settings: Settings, urls: DatabaseUrls, tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return trained_store(settings, urls, tmp_path_factory.mktemp("mlflow-store"))


@pytest.fixture(scope="module")
def rows(urls: DatabaseUrls, store: TrainedStore) -> np.ndarray[Any, np.dtype[np.float32]]:
    with psycopg.connect(urls.etl, autocommit=True) as conn:
        bars = load_bars(conn, symbols=list(SYMBOLS), timeframe="1m", start=None, end=None)
    X = build_dataset(bars, horizon=15, cost=0.004).X
    return np.ascontiguousarray(X[-400:])


def _predictor(store: TrainedStore, settings: Settings, **kwargs: Any) -> Predictor:
    predictor = Predictor(RegistrySource(store.uri, store.model_name), **kwargs)
    assert predictor.load()
    return predictor


def test_loads_the_champion_and_agrees_with_the_native_model(store, settings, rows) -> None:
    predictor = _predictor(store, settings)
    status = predictor.status
    assert status is not None
    assert (status.name, status.version, status.family) == (store.model_name, store.lightgbm["version"], "lightgbm")
    assert status.feature_names == FEATURE_COLUMNS
    assert status.timeframe == "1m"
    assert status.base_rate is not None and 0 < status.base_rate < 1  # the share of rows that beat the costs
    assert status.registered_at is not None and status.age_days() is not None and status.age_days() < 1  # type: ignore[operator]
    native = predictor.model.native if predictor.model else None
    assert native is not None  # loaded beside the ONNX, for explanations

    scores = predictor.predict(rows)
    assert scores.dtype == np.float32 and scores.shape == (rows.shape[0],)
    assert float(np.max(np.abs(scores - positive_proba(native, rows)))) <= 1e-5
    assert predictor.predict_one(rows[:1]) == pytest.approx(float(scores[0]), abs=1e-7)
    assert predictor.predict_one(rows[0]) == pytest.approx(float(scores[0]), abs=1e-7)  # a 1-d row works too
    keyed = [dict(zip(FEATURE_COLUMNS, map(float, row), strict=True)) for row in rows[:3]]
    assert np.allclose(predictor.predict(predictor.rows_from_dicts(keyed)), scores[:3])
    with pytest.raises(KeyError, match="ret_1"):
        predictor.rows_from_dicts([{"ret_5": 0.0}])


def test_single_row_is_a_fast_path(store, settings, rows) -> None:
    predictor = _predictor(store, settings)
    row = np.ascontiguousarray(rows[:1])
    for _ in range(200):
        predictor.predict_one(row)
    timings = []
    for _ in range(2_000):
        started = time.perf_counter_ns()
        predictor.predict_one(row)
        timings.append(time.perf_counter_ns() - started)
    assert float(np.median(timings)) / 1_000 < 500  # µs: a loose bound for a busy CI machine (bench: tens of µs)


def test_reloads_when_the_alias_moves(store, settings, rows) -> None:
    first, second = store.lightgbm["version"], store.logistic["version"]
    predictor = _predictor(store, settings, check_interval=3_600.0)
    before = predictor.predict(rows)
    try:
        store.set_champion(second)
        assert predictor.reload_if_moved() is False  # not due yet: the registry is asked at most every interval
        assert predictor.status is not None and predictor.status.version == first

        assert predictor.reload_if_moved(force=True) is True
        status = predictor.status
        assert status is not None and (status.version, status.family) == (second, "logistic_regression")
        native = RegistrySource(store.uri, store.model_name).load_native(
            RegistrySource(store.uri, store.model_name).fetch().native_model_uri  # type: ignore[union-attr]
        )
        assert float(np.max(np.abs(predictor.predict(rows) - positive_proba(native, rows)))) <= 1e-5
        assert predictor.reload_if_moved(force=True) is False  # the same version: nothing to swap

        # In the background, as a request would: poke() when due, without waiting.
        store.set_champion(first)
        predictor.check_interval = 0.0
        predictor.poke()
        assert predictor.wait_idle(60)
        assert predictor.status is not None and predictor.status.version == first
        assert np.array_equal(predictor.predict(rows), before)
    finally:
        store.set_champion(first)


def test_start_loads_in_the_background_then_calls_back_in_that_thread(store, settings) -> None:
    predictor = Predictor(RegistrySource(store.uri, store.model_name))
    seen: list[tuple[str, bool]] = []
    predictor.start(then=lambda: seen.append((threading.current_thread().name, predictor.model is not None)))
    assert predictor.wait_idle(60)
    assert seen == [("pasar-model", True)]  # after the load, before the predictor counts as idle


def test_start_calls_back_when_the_load_fails_too(tmp_path: Path) -> None:
    predictor = Predictor(RegistrySource(f"sqlite:///{tmp_path / 'broken.db'}", "no_such_model"))
    (tmp_path / "broken.db").write_bytes(b"not a database")
    called = threading.Event()
    predictor.start(then=called.set)
    assert predictor.wait_idle(60) and called.is_set()
    assert predictor.model is None


def test_lightgbm_contributions_sum_to_the_raw_score(store, settings, rows) -> None:
    predictor = _predictor(store, settings)
    for row in rows[:5]:
        explanation = predictor.explain(row.reshape(1, -1))
        assert explanation.space == "log_odds" and explanation.method == "lightgbm_pred_contrib"
        total = explanation.bias + sum(item.contribution for item in explanation.items)
        assert total == pytest.approx(explanation.raw_score, abs=1e-9)
        assert 1 / (1 + math.exp(-explanation.raw_score)) == pytest.approx(predictor.predict_one(row), abs=1e-5)
        assert {item.feature for item in explanation.items} == set(FEATURE_COLUMNS)
        magnitudes = [abs(item.contribution) for item in explanation.items]
        assert magnitudes == sorted(magnitudes, reverse=True)


@pytest.mark.parametrize("family", ["logistic_regression", "random_forest"])
def test_sklearn_explanations_are_additive(family, rows) -> None:
    y = (rows[:, 0] > np.median(rows[:, 0])).astype(np.int8)
    params = {"C": 1.0} if family == "logistic_regression" else {"n_estimators": 10, "max_depth": 4}
    model = build_model(family, params, 0).fit(rows, y)
    for row in rows[:5]:
        explanation = explain_native(model, family, row, FEATURE_COLUMNS)
        total = explanation.bias + sum(item.contribution for item in explanation.items)
        assert total == pytest.approx(explanation.raw_score, abs=1e-9)
        probability = positive_proba(model, row.reshape(1, -1))[0]
        if family == "logistic_regression":
            assert explanation.space == "log_odds"
            assert 1 / (1 + math.exp(-explanation.raw_score)) == pytest.approx(probability, abs=1e-6)  # float32 model
        else:
            assert explanation.space == "probability"
            assert explanation.raw_score == pytest.approx(probability, abs=1e-6)


def test_no_store_means_no_model_and_no_store_is_created(tmp_path: Path) -> None:
    predictor = Predictor.from_settings(Settings(home=tmp_path / "home", mlflow_tracking_uri=None))
    assert predictor.load() is False
    assert predictor.status is None
    assert not (tmp_path / "home" / "mlflow.db").exists()
    with pytest.raises(ModelNotLoaded):
        predictor.predict(np.zeros((1, len(FEATURE_COLUMNS)), dtype=np.float32))
    assert predictor.document()["loaded"] is False


def test_direction_bands() -> None:
    assert [direction(score) for score in (0.0, 0.45, 0.4501, 0.5, 0.5499, 0.55, 1.0)] == [
        Direction.short,
        Direction.short,
        Direction.flat,
        Direction.flat,
        Direction.flat,
        Direction.long,
        Direction.long,
    ]


def test_direction_bands_follow_the_models_base_rate() -> None:
    """A calibrated model of a rare move (22% of the training rows beat the costs) scores around 0.22: the band
    sits around that prior, not around a coin flip."""
    assert direction_thresholds(0.22) == (0.27, 0.17)
    assert direction_thresholds(None) == direction_thresholds(0.5) == (0.55, 0.45)
    assert [direction(score, 0.22) for score in (0.17, 0.1701, 0.22, 0.2699, 0.27, 0.4)] == [
        Direction.short,
        Direction.flat,
        Direction.flat,
        Direction.flat,
        Direction.long,
        Direction.long,
    ]


def test_feature_age_counts_trading_time_only() -> None:
    # Friday 2026-01-09 16:00 WIB close (09:00 UTC) → Monday 09:10 WIB: ten minutes of trading passed.
    friday_close = datetime(2026, 1, 9, 9, 0, tzinfo=UTC)
    monday = datetime(2026, 1, 12, 2, 10, tzinfo=UTC)
    assert session_seconds_between(IDX, friday_close, monday) == pytest.approx(600)
    # Within a session, wall time; across the lunch break only the sessions count.
    assert session_seconds_between(IDX, datetime(2026, 1, 12, 2, 0, tzinfo=UTC), monday) == pytest.approx(600)
    day = IDX.session_seconds(datetime(2026, 1, 12).date())
    full = session_seconds_between(
        IDX, datetime(2026, 1, 11, 17, 0, tzinfo=UTC), datetime(2026, 1, 12, 17, 0, tzinfo=UTC)
    )
    assert full == pytest.approx(day)
    assert session_seconds_between(IDX, monday, friday_close) == 0.0


def test_live_history_matches_the_features() -> None:
    assert HISTORY_BARS == LIVE_HISTORY
