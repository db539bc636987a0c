"""The real BentoML server (``pasar serve-model``) on a loopback port, against the session database and a store
where a tiny model was trained and promoted: /predict and /signal answer what the in-process predictor answers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from models_ml.data import build_dataset, load_bars
from models_ml.features import FEATURE_COLUMNS, LIVE_HISTORY, latest_features
from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from serving.predictor import Predictor, RegistrySource
from tests.conftest import free_port
from tests.serving.fixtures import SYMBOLS, TrainedStore, trained_store

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 180


@pytest.fixture(scope="module")
def store(settings: Settings, urls: DatabaseUrls, tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return trained_store(settings, urls, tmp_path_factory.mktemp("mlflow-store"))


def _post(port: int, path: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(settings: Settings, store: TrainedStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    home = tmp_path_factory.mktemp("bentoml")
    assert settings.database_url and settings.app_database_url and settings.etl_database_url
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PASAR_", "MLFLOW_", "BENTOML_"))}
    env.update(
        {
            "PASAR_HOME": str(home / "pasar"),
            "PASAR_DATABASE_URL": settings.database_url.get_secret_value(),
            "PASAR_APP_DATABASE_URL": settings.app_database_url.get_secret_value(),
            "PASAR_ETL_DATABASE_URL": settings.etl_database_url.get_secret_value(),
            "PASAR_MLFLOW_TRACKING_URI": store.uri,
            "PASAR_SIGNAL_MODEL_NAME": store.model_name,
            "PASAR_SIGNAL_MAX_FEATURE_AGE_SECONDS": "0",  # other tests' bars move the market clock
            "BENTOML_HOME": str(home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
    )
    port = free_port()
    pasar = Path(sys.executable).parent / "pasar"
    log = home / "serve-model.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(pasar), "serve-model", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the server and its workers stop together
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _ready(port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pasar serve-model did not become ready:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def in_process(store: TrainedStore) -> Predictor:
    predictor = Predictor(RegistrySource(store.uri, store.model_name))
    assert predictor.load()
    return predictor


@pytest.fixture(scope="module")
def bars(urls: DatabaseUrls) -> Any:
    with psycopg.connect(urls.etl, autocommit=True) as conn:
        return load_bars(conn, symbols=list(SYMBOLS), timeframe="1m", start=None, end=None)


def test_predict_answers_what_the_in_process_predictor_answers(server, in_process, bars, store) -> None:
    rows = np.ascontiguousarray(build_dataset(bars, horizon=15, cost=0.004).X[-50:])
    expected = in_process.predict(rows)
    status, body = _post(server, "/predict", {"rows": rows.tolist()})
    assert status == 200, body
    assert (body["model_name"], body["model_version"]) == (store.model_name, store.lightgbm["version"])
    assert body["feature_names"] == list(FEATURE_COLUMNS)
    assert np.allclose(body["scores"], expected, rtol=0, atol=1e-7)

    keyed = [dict(zip(FEATURE_COLUMNS, map(float, row), strict=True)) for row in rows[:5]]
    status, body = _post(server, "/predict", {"rows": keyed})
    assert status == 200, body
    assert np.allclose(body["scores"], expected[:5], rtol=0, atol=1e-7)

    status, body = _post(server, "/predict", {"rows": [[0.1, 0.2]]})
    assert status == 400
    assert body["error"]["code"] == "invalid_rows"


def test_signal_answers_what_the_in_process_predictor_answers(server, in_process, bars) -> None:
    symbol = SYMBOLS[2]
    features = latest_features(bars.filter(bars["symbol"] == symbol).tail(LIVE_HISTORY), calendar_code="IDX")
    row = features.select(FEATURE_COLUMNS).to_numpy().astype(np.float32)
    status, body = _post(server, "/signal", {"symbol": symbol})
    assert status == 200, body
    assert body["symbol"] == symbol and body["timeframe"] == "1m"
    assert body["score"] == pytest.approx(in_process.predict_one(row), abs=1e-7)
    assert body["feature_ts"] == features["ts"][0].isoformat()
    assert body["direction"] in ("long", "short", "flat")

    status, body = _post(server, "/signal", {"symbol": symbol, "explain": True})
    assert status == 200, body
    explanation = body["explanation"]
    total = explanation["bias"] + sum(item["contribution"] for item in explanation["items"])
    assert total == pytest.approx(explanation["raw_score"], abs=1e-9)

    status, body = _post(server, "/signal", {"symbol": "ZZQX"})
    assert status == 404
    assert body["error"]["code"] == "unknown_symbol"

    status, body = _post(server, "/model", {})
    assert status == 200 and body["loaded"] is True
