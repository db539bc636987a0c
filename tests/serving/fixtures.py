"""Shared by the serving, signal API and BentoML tests: a few symbols of synthetic IDX bars in the session database
(symbols no other test uses) and one MLflow store with two registered versions of a tiny signal model, trained once
per test process through the real pipeline (:func:`pasar.signals.training.train_and_promote`).

Version 1 is a LightGBM model and holds the alias ``champion``; version 2 is a logistic regression, registered but
(whatever its figure) not the champion, for the tests that move the alias.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from pasar.market import service as market
from pasar.market.frames import Timeframe
from pasar.market.sources.synthetic import generate

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

MODEL = "test-serving-signal"
SYMBOLS = ("ZSIA", "ZSIB", "ZSIC")  # three trading days of 1m bars each
LAGGING = "ZSID"  # only the first of those days: behind the market clock
DAILY_ONLY = "ZSIE"  # daily bars only: nothing at the model's 1m timeframe
DAYS = 3
SEED = 17

_lock = threading.Lock()
_loaded: set[str] = set()
_stores: dict[str, TrainedStore] = {}


def load_bars(urls: DatabaseUrls) -> None:
    """The test symbols' bars in the database (once per database)."""
    with _lock:
        if urls.etl in _loaded:
            return
        with psycopg.connect(urls.etl, autocommit=True) as conn:
            market.sync_reference_data(conn)
            market.load_frame(conn, generate(list(SYMBOLS), DAYS, Timeframe.m1, seed=SEED), source="test")
            market.load_frame(conn, generate([LAGGING], 1, Timeframe.m1, seed=SEED), source="test")
            market.load_frame(conn, generate([DAILY_ONLY], 5, Timeframe.d1, seed=SEED), source="test")
        _loaded.add(urls.etl)


@dataclass(frozen=True)
class TrainedStore:
    uri: str
    model_name: str
    lightgbm: dict[str, Any]  # what train_and_promote answered for version 1
    logistic: dict[str, Any]  # and for version 2

    def settings(self, base: Settings, **update: Any) -> Settings:
        """``base`` pointed at this store and model (and ``update``)."""
        return base.model_copy(update={"mlflow_tracking_uri": self.uri, "signal_model_name": self.model_name, **update})

    def set_champion(self, version: int) -> None:
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=self.uri, registry_uri=self.uri).set_registered_model_alias(
            self.model_name, "champion", str(version)
        )


def trained_store(settings: Settings, urls: DatabaseUrls, root: Path) -> TrainedStore:
    """The shared store (trained on first use, under ``root``; later calls reuse it)."""
    from models_ml import registry
    from pasar.signals.training import train_and_promote

    with _lock:
        found = _stores.get(urls.etl)
        if found is not None:
            return found
    load_bars(urls)
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{(root / 'mlflow.db').as_posix()}"
    store_settings = settings.model_copy(update={"mlflow_tracking_uri": uri, "signal_model_name": MODEL, "home": root})
    try:
        first = train_and_promote(
            store_settings, urls, symbols=SYMBOLS, timeframe="1m", trials=1, families=["lightgbm"], seed=3
        )
        second = train_and_promote(
            store_settings, urls, symbols=SYMBOLS, timeframe="1m", trials=1, families=["logistic_regression"], seed=3
        )
    finally:
        registry._configured = None  # leave no process-wide MLflow configuration behind
    store = TrainedStore(uri, MODEL, first, second)
    store.set_champion(first["version"])
    with _lock:
        _stores[urls.etl] = store
    return store
