"""The ML assets materialized in process on small data: features → training → evaluation/backtest → ONNX → registered
model, with their metadata (metrics, the backtest plot, the model version) and checks; a re-materialization of the
registration alone reuses the stored upstream values and does not promote an equal challenger; the weekly schedule."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from mlflow import MlflowClient

from models_ml import registry
from orchestration.definitions import defs
from orchestration.defs.ml.assets import (
    assets,
    signal_evaluation,
    signal_features,
    signal_onnx,
    signal_registered_model,
    signal_training,
)
from orchestration.defs.ml.resources import MLflowStore
from orchestration.resources import PasarDatabase
from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from tests.serving.fixtures import SYMBOLS, load_bars

MODEL = "test-dagster-signal"
RUN_CONFIG = {
    "ops": {
        "signal_features": {"config": {"symbols": list(SYMBOLS), "timeframe": "1m", "horizon": 15}},
        "signal_training": {"config": {"n_trials": 2, "seed": 1, "families": ["logistic_regression"]}},
    }
}


@pytest.fixture
def resources(settings: Settings, urls: DatabaseUrls, tmp_path: Path) -> Iterator[dict[str, Any]]:
    load_bars(urls)
    assert settings.etl_database_url is not None
    home = tmp_path / "home"
    yield {
        "database": PasarDatabase(etl_database_url=settings.etl_database_url.get_secret_value(), home=str(home)),
        "mlflow_store": MLflowStore(
            tracking_uri=f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}", home=str(home), model_name=MODEL
        ),
    }
    registry._configured = None


def metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    [materialization] = result.asset_materializations_for_node(node)
    return {key: value.value for key, value in materialization.metadata.items()}


def test_the_chain_trains_evaluates_exports_and_registers(resources: dict[str, Any], tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster"))
    result = dg.materialize(assets, resources=resources, run_config=RUN_CONFIG, instance=instance)
    assert result.success

    features = metadata(result, "signal_features")
    assert features["symbols"] == sorted(SYMBOLS) and features["timeframe"] == "1m"
    assert features["train_rows"] > 0 and features["holdout_rows"] > 0

    training = metadata(result, "signal_training")
    assert training["family"] == "logistic_regression" and training["trials"] == 2
    assert "| trial |" in training["trial_table"]

    evaluation = metadata(result, "signal_evaluation")
    assert 0.0 <= evaluation["holdout_roc_auc"] <= 1.0
    assert evaluation["promotion_metric"] == "holdout_roc_auc"
    assert evaluation["backtest_plot"].startswith("![holdout backtest](data:image/png;base64,")
    assert Path(evaluation["backtest_plot_path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| symbol |" in evaluation["backtests"]

    onnx = metadata(result, "signal_onnx")
    assert onnx["parity_max_abs_diff"] <= 1e-5

    registered = metadata(result, "signal_registered_model")
    assert (registered["model_name"], registered["model_version"], registered["promoted"]) == (MODEL, 1, True)
    assert registered["model_uri"] == f"models:/{MODEL}/1"

    checks = {check.check_name: check for check in result.get_asset_check_evaluations()}
    assert checks["onnx_parity"].passed
    assert "beats_coin_flip" in checks

    uri = resources["mlflow_store"].tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert int(champion.version) == 1
    assert client.get_run(str(champion.run_id)).data.tags["pasar.timeframe"] == "1m"

    # The registration alone, as from the UI: the upstream values come from the IO manager; the same model again
    # is registered as v2 but does not beat the champion, so the alias stays.
    again = dg.materialize(assets, selection=[signal_registered_model], resources=resources, instance=instance)
    assert again.success
    second = metadata(again, "signal_registered_model")
    assert (second["model_version"], second["promoted"], second["previous_champion_version"]) == (2, False, 1)
    assert "does not beat" in second["reason"]
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == 1


def test_the_graph_schedule_and_job() -> None:
    graph = defs.resolve_asset_graph()
    parents = {
        asset.key.to_user_string(): {key.to_user_string() for key in graph.get(asset.key).parent_keys}
        for asset in (signal_features, signal_training, signal_evaluation, signal_onnx, signal_registered_model)
    }
    assert parents == {
        "signal_features": {"synthetic_bars", "landing_bars"},
        "signal_training": {"signal_features"},
        "signal_evaluation": {"signal_features", "signal_training"},
        "signal_onnx": {"signal_features", "signal_training"},
        "signal_registered_model": {"signal_training", "signal_evaluation", "signal_onnx"},
    }
    schedule = defs.resolve_schedule_def("signal_weekly_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 6 * * 6", "Asia/Jakarta")
    assert schedule.job_name == "signal_training_job"
    defs.resolve_job_def("signal_training_job")
    selected = dg.AssetSelection.groups("ml").resolve(graph)
    assert {key.to_user_string() for key in selected} == set(parents)
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
