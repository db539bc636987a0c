"""The API process tunes CPython's garbage collector for serving; an app embedded in another process does not."""

from __future__ import annotations

import asyncio
import gc
import threading

from fastapi.testclient import TestClient

from api.app import YOUNG_GENERATION_THRESHOLD, create_app
from api.runtime import Runtime
from pasar.config import Settings


def test_a_serving_process_freezes_its_startup_objects_and_collects_young_ones_less_often(settings: Settings) -> None:
    before = gc.get_threshold()
    try:
        with TestClient(create_app(settings, serving_process=True)) as client:
            assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, 10, 10)
            assert gc.get_freeze_count() > 0
            assert client.get("/healthz").status_code == 200
            assert client.app.state.runtime.predictor.wait_idle(60)  # type: ignore[attr-defined]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_runtime_calls_back_once_the_model_has_loaded_in_the_background(settings: Settings) -> None:
    """What lets the serving process freeze the model's libraries too, which load after startup."""
    loaded = threading.Event()

    async def start_and_stop() -> bool:
        runtime = await Runtime.start(settings, after_model_load=loaded.set)
        try:
            return await asyncio.to_thread(runtime.predictor.wait_idle, 60)
        finally:
            await runtime.stop()

    assert asyncio.run(start_and_stop())
    assert loaded.is_set()


def test_an_app_embedded_in_another_process_leaves_the_collector_alone(settings: Settings) -> None:
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with TestClient(create_app(settings)):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == frozen
