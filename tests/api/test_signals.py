"""Signal endpoints through the in-process predictor: the signal and its log, explanations that add up, batches,
and the clear answers when there is no model (503), a stale one (503), stale features (503), an unknown symbol
(404) or no bars (422); a tenant never sees another tenant's signal log."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from api.app import create_app
from api.runtime import Runtime
from models_ml.features import FEATURE_COLUMNS, LIVE_HISTORY, latest_features
from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from pasar.market import repository
from pasar.signals.models import direction_thresholds
from serving.predictor import Predictor
from tests.serving.fixtures import DAILY_ONLY, LAGGING, SYMBOLS, TrainedStore, trained_store

SYMBOL = SYMBOLS[0]


@pytest.fixture(scope="module")
def store(settings: Settings, urls: DatabaseUrls, tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return trained_store(settings, urls, tmp_path_factory.mktemp("mlflow-store"))


@pytest.fixture(scope="module")
def signal_client(settings: Settings, store: TrainedStore) -> Iterator[TestClient]:
    """The API serving the store's champion; feature staleness off unless a test turns it on (other tests load bars
    of later dates, which move the market clock)."""
    with TestClient(create_app(store.settings(settings, signal_max_feature_age_seconds=0.0))) as client:
        runtime(client).predictor.wait_idle(120)
        yield client


def runtime(client: TestClient) -> Runtime:
    found: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return found


@pytest.fixture
def policy(signal_client: TestClient) -> Iterator[Any]:
    """Change the running API's signal settings for one test."""
    state = runtime(signal_client)
    original = state.settings

    def apply(**update: Any) -> None:
        state.settings = original.model_copy(update=update)

    yield apply
    state.settings = original


def configure_venue_clock(urls: DatabaseUrls, tenant_id: str, clock: str) -> None:
    with psycopg.connect(urls.owner, autocommit=True) as conn:
        conn.execute(
            "update tenancy.tenants set config = jsonb_set(config, '{trading}', (config -> 'trading') || %s) "
            "where id = %s",
            [Jsonb({"venue_clock": clock}), tenant_id],
        )


def get(client: TestClient, tenant: Any, symbol: str, **params: Any) -> Any:
    return client.get(f"/v1/signals/{symbol}", params=params, headers=tenant.headers)


def expected_features(urls: DatabaseUrls, symbol: str) -> dict[str, Any]:
    """The features of the symbol's last bar computed offline from its last LIVE_HISTORY stored bars."""
    with psycopg.connect(urls.etl, autocommit=True) as conn:
        bars = repository.read_bars_frame(conn, symbols=[symbol], timeframe="1m", start=None, end=None)
    row = latest_features(bars.tail(LIVE_HISTORY), calendar_code="IDX").row(0, named=True)
    return dict(row)


def test_a_signal_from_the_latest_bars(signal_client, tenant_a, urls, store) -> None:
    response = get(signal_client, tenant_a, SYMBOL)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = expected_features(urls, SYMBOL)
    assert body["symbol"] == SYMBOL
    assert (body["model_name"], body["model_version"]) == (store.model_name, store.lightgbm["version"])
    assert body["timeframe"] == "1m"
    assert body["feature_ts"].replace("Z", "+00:00") == expected["ts"].isoformat()
    assert list(body["features"]) == list(FEATURE_COLUMNS)
    for name in FEATURE_COLUMNS:
        assert body["features"][name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12)
    row = np.array([[body["features"][name] for name in FEATURE_COLUMNS]], dtype=np.float32)
    assert body["score"] == pytest.approx(runtime(signal_client).predictor.predict_one(row), abs=1e-7)
    assert 0.0 <= body["score"] <= 1.0
    score = body["score"]
    status = runtime(signal_client).predictor.status
    assert status is not None and status.base_rate is not None
    long_at, short_at = direction_thresholds(status.base_rate)
    assert body["direction"] == ("long" if score >= long_at else "short" if score <= short_at else "flat")
    assert body["explanation"] is None
    assert body["signal_id"] and body["created_at"]

    logged = signal_client.get(f"/v1/signals/log/{body['signal_id']}", headers=tenant_a.headers)
    assert logged.status_code == 200, logged.text
    entry = logged.json()
    assert (entry["symbol"], entry["score"], entry["model_version"]) == (SYMBOL, score, body["model_version"])
    assert entry["features"] == body["features"]
    assert entry["actor_type"] == "api_key" and entry["contributions"] is None

    again = get(signal_client, tenant_a, SYMBOL).json()  # the second comes from the feature cache
    assert again["score"] == score and again["signal_id"] != body["signal_id"]
    assert runtime(signal_client).signal_cache.features.hits >= 1


def test_explain_returns_contributions_that_add_up_to_the_raw_score(signal_client, tenant_a) -> None:
    response = get(signal_client, tenant_a, SYMBOLS[1], explain="true")
    assert response.status_code == 200, response.text
    body = response.json()
    explanation = body["explanation"]
    assert explanation["space"] == "log_odds" and explanation["method"] == "lightgbm_pred_contrib"
    assert [item["feature"] for item in explanation["items"]] != []
    assert {item["feature"] for item in explanation["items"]} == set(FEATURE_COLUMNS)
    total = explanation["bias"] + sum(item["contribution"] for item in explanation["items"])
    assert total == pytest.approx(explanation["raw_score"], abs=1e-9)
    assert 1 / (1 + math.exp(-explanation["raw_score"])) == pytest.approx(body["score"], abs=1e-5)
    for item in explanation["items"]:
        assert item["value"] == pytest.approx(body["features"][item["feature"]], rel=1e-6, abs=1e-9)
    logged = signal_client.get(f"/v1/signals/log/{body['signal_id']}", headers=tenant_a.headers).json()
    assert logged["contributions"]["raw_score"] == explanation["raw_score"]


def test_batch(signal_client, tenant_a) -> None:
    symbols = [SYMBOLS[0], "ZZQX", SYMBOLS[2], DAILY_ONLY, SYMBOLS[0]]
    response = signal_client.post("/v1/signals/batch", json={"symbols": symbols}, headers=tenant_a.headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [item["symbol"] for item in items] == [SYMBOLS[0], "ZZQX", SYMBOLS[2], DAILY_ONLY]  # once each, in order
    assert items[0]["signal"]["score"] == get(signal_client, tenant_a, SYMBOLS[0]).json()["score"]
    assert items[1]["error"]["code"] == "unknown_symbol" and items[1]["signal"] is None
    assert items[2]["signal"]["symbol"] == SYMBOLS[2]
    assert items[3]["error"]["code"] == "no_bars"

    too_many = {"symbols": [f"S{i:03d}" for i in range(101)]}
    assert signal_client.post("/v1/signals/batch", json=too_many, headers=tenant_a.headers).status_code == 422
    assert signal_client.post("/v1/signals/batch", json={"symbols": []}, headers=tenant_a.headers).status_code == 422
    bad = {"symbols": ["BB CA"]}
    assert signal_client.post("/v1/signals/batch", json=bad, headers=tenant_a.headers).status_code == 422


def test_unknown_symbol_is_404_and_no_bars_is_422(signal_client, tenant_a) -> None:
    unknown = get(signal_client, tenant_a, "ZZQX")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_symbol"
    daily = get(signal_client, tenant_a, DAILY_ONLY)
    assert daily.status_code == 422
    assert daily.json()["error"]["code"] == "no_bars"
    assert "1m" in daily.json()["error"]["message"]
    assert signal_client.get("/v1/signals/ZSIA").status_code == 401


def test_no_model_is_503_model_unavailable(signal_client, tenant_a) -> None:
    state = runtime(signal_client)
    served = state.predictor
    state.predictor = Predictor(None)
    try:
        response = get(signal_client, tenant_a, SYMBOL)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "model_unavailable"
        assert response.headers["Retry-After"] == "1"
        batch = signal_client.post("/v1/signals/batch", json={"symbols": [SYMBOL]}, headers=tenant_a.headers)
        assert batch.status_code == 503 and batch.json()["error"]["code"] == "model_unavailable"
        status = signal_client.get("/v1/models/champion", headers=tenant_a.headers).json()
        assert status["loaded"] is False
    finally:
        state.predictor = served


def test_an_api_started_without_any_model_answers_503(settings, tenant_a, tmp_path: Path) -> None:
    empty = settings.model_copy(update={"mlflow_tracking_uri": f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"})
    with TestClient(create_app(empty)) as client:
        runtime(client).predictor.wait_idle(60)
        response = get(client, tenant_a, SYMBOL)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "model_unavailable"
    assert not (tmp_path / "none").exists()


def test_a_stale_champion_is_503(signal_client, tenant_a, policy) -> None:
    policy(signal_max_model_age_days=1e-9)
    response = get(signal_client, tenant_a, SYMBOL)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_unavailable"
    assert error["details"]["reason"] == "model_stale"


def test_stale_features_are_503(signal_client, tenant_a, tenant_b, urls, policy) -> None:
    policy(signal_max_feature_age_seconds=900.0)
    # Market clock (the paper venue's default): LAGGING stopped a day before the others of its calendar.
    lagging = get(signal_client, tenant_a, LAGGING)
    assert lagging.status_code == 503, lagging.text
    error = lagging.json()["error"]
    assert error["code"] == "features_stale"
    assert error["details"]["venue_clock"] == "market" and error["details"]["age_seconds"] > 900
    # Wall clock: bars of January 2026 are months of trading time old.
    configure_venue_clock(urls, tenant_b.id, "wall")
    wall = get(signal_client, tenant_b, SYMBOL)
    assert wall.status_code == 503
    assert wall.json()["error"]["code"] == "features_stale"
    assert wall.json()["error"]["details"]["venue_clock"] == "wall"
    batch = signal_client.post("/v1/signals/batch", json={"symbols": [SYMBOL]}, headers=tenant_b.headers).json()
    assert batch["items"][0]["error"]["code"] == "features_stale"


def test_the_signal_log_is_per_tenant(signal_client, tenant_a, tenant_b, urls) -> None:
    signal_id = get(signal_client, tenant_a, SYMBOL).json()["signal_id"]
    assert signal_client.get(f"/v1/signals/log/{signal_id}", headers=tenant_a.headers).status_code == 200
    other = signal_client.get(f"/v1/signals/log/{signal_id}", headers=tenant_b.headers)
    assert other.status_code == 404
    with psycopg.connect(urls.app, autocommit=True) as conn, conn.transaction():
        conn.execute("select set_config('app.tenant_id', %s, true)", [tenant_b.id])
        assert conn.execute("select count(*) from ai.signals where id = %s", [signal_id]).fetchone() == (0,)
        conn.execute("select set_config('app.tenant_id', %s, true)", [tenant_a.id])
        assert conn.execute("select count(*) from ai.signals where id = %s", [signal_id]).fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():  # append-only for the app
            conn.execute("update ai.signals set score = 0 where id = %s", [signal_id])


def test_the_served_model(signal_client, tenant_a, store) -> None:
    body = signal_client.get("/v1/models/champion", headers=tenant_a.headers).json()
    assert body["loaded"] is True
    assert body["model"]["version"] == store.lightgbm["version"]
    assert body["model"]["family"] == "lightgbm"
    assert body["model"]["feature_names"] == list(FEATURE_COLUMNS)
