"""The one ``defs`` loads: every job, the asset graph, schedules and sensors resolve; every asset has its checks,
group and retry policy; the schedules target the right partitions; the resource follows the settings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with dagster

from orchestration import definitions, resources
from orchestration.definitions import defs
from orchestration.resources import PasarDatabase
from pasar.config import get_settings
from pasar.db.urls import DatabaseUrls

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_CHECKS = {
    "instruments": {"reference_complete"},
    "bundled_bars": {"ohlc_sanity", "no_duplicates", "calendar_gaps", "freshness"},
    "synthetic_bars": {"ohlc_sanity", "no_duplicates", "calendar_gaps", "price_jumps"},
    "landing_bars": {"ohlc_sanity", "no_duplicates", "calendar_gaps", "freshness", "price_jumps"},
    "usage_daily": set(),
}
GROUPS = {
    "instruments": "market",
    "bundled_bars": "market",
    "synthetic_bars": "market",
    "landing_bars": "market",
    "usage_daily": "usage",
}


def test_every_job_schedule_and_sensor_resolves() -> None:
    dg.Definitions.validate_loadable(defs)
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"instruments_job", "bundled_job", "synthetic_job", "landing_job", "usage_job"} <= jobs
    repository = defs.get_repository_def()
    assert {schedule.name for schedule in repository.schedule_defs} >= {
        "synthetic_daily_schedule",
        "bundled_weekly_schedule",
        "instruments_weekly_schedule",
        "usage_daily_schedule",
    }
    assert {sensor.name for sensor in repository.sensor_defs} >= {"landing_sensor"}
    for schedule in repository.schedule_defs:
        assert defs.resolve_schedule_def(schedule.name).job_name in jobs
    sensor = defs.resolve_sensor_def("landing_sensor")
    assert sensor.minimum_interval_seconds == 30
    assert sensor.job_name == "landing_job"


def test_every_asset_has_its_checks_group_and_retry_policy() -> None:
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} >= set(EXPECTED_CHECKS)
    for name, expected in EXPECTED_CHECKS.items():
        asset = defs.resolve_assets_def(name)
        assert {check.name for check in asset.check_specs} == expected, name
        assert asset.group_names_by_key[dg.AssetKey(name)] == GROUPS[name]
        policy = asset.op.retry_policy
        assert policy is not None
        assert (policy.max_retries, policy.delay, policy.backoff) == (2, 5, dg.Backoff.EXPONENTIAL)
    upstream = {key.to_user_string() for key in graph.get(dg.AssetKey("synthetic_bars")).parent_keys}
    assert upstream == {"instruments"}


def test_partitions() -> None:
    assert defs.resolve_assets_def("bundled_bars").partitions_def is not None
    assert set(defs.resolve_job_def("bundled_job").partitions_def.get_partition_keys()) == {  # type: ignore[union-attr]
        "GOOG",
        "EURUSD",
        "BTCUSD",
    }
    synthetic = defs.resolve_job_def("synthetic_job").partitions_def
    assert isinstance(synthetic, dg.DailyPartitionsDefinition)
    assert synthetic.timezone == "Asia/Jakarta"
    assert synthetic.get_first_partition_key() == "2026-01-05"
    usage = defs.resolve_job_def("usage_job").partitions_def
    assert isinstance(usage, dg.DailyPartitionsDefinition)
    assert usage.timezone == "UTC"
    assert usage.get_first_partition_key() == "2026-01-01"


def _run_requests(name: str, when: datetime) -> list[dg.RunRequest]:
    """What the schedule asks for at ``when`` (no instance: a temporary one would outlive its global state)."""
    context = dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def())
    return list(defs.resolve_schedule_def(name).evaluate_tick(context).run_requests or [])


def test_synthetic_schedule_runs_at_17_wib_for_the_latest_complete_day() -> None:
    schedule = defs.resolve_schedule_def("synthetic_daily_schedule")
    assert schedule.cron_schedule == "0 17 * * *"
    assert schedule.execution_timezone == "Asia/Jakarta"
    [request] = _run_requests(schedule.name, datetime(2026, 3, 10, 17, 0, tzinfo=ZoneInfo("Asia/Jakarta")))
    assert request.partition_key == "2026-03-09"


def test_usage_schedule_runs_at_0030_utc_for_the_previous_day() -> None:
    schedule = defs.resolve_schedule_def("usage_daily_schedule")
    assert schedule.cron_schedule == "30 0 * * *"
    [request] = _run_requests(schedule.name, datetime(2026, 3, 10, 0, 30, tzinfo=UTC))
    assert request.partition_key == "2026-03-09"


def test_bundled_schedule_requests_one_run_per_symbol() -> None:
    schedule = defs.resolve_schedule_def("bundled_weekly_schedule")
    when = datetime(2026, 3, 8, 6, 0, tzinfo=ZoneInfo("Asia/Jakarta"))
    requests = _run_requests(schedule.name, when)
    assert [request.partition_key for request in requests] == ["GOOG", "EURUSD", "BTCUSD"]
    assert len({request.run_key for request in requests}) == 3
    assert [r.run_key for r in _run_requests(schedule.name, when)] == [r.run_key for r in requests]


def test_instruments_schedule_is_weekly() -> None:
    schedule = defs.resolve_schedule_def("instruments_weekly_schedule")
    assert schedule.job_name == "instruments_job"
    assert schedule.cron_schedule == "0 6 * * 1"


@pytest.fixture
def fresh_settings() -> Any:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_resource_reads_the_etl_url_from_the_environment_when_configured(
    monkeypatch: pytest.MonkeyPatch, fresh_settings: None, tmp_path: Path
) -> None:
    monkeypatch.setenv("PASAR_HOME", str(tmp_path))
    monkeypatch.setenv("PASAR_DATABASE_URL", "postgresql://owner@db/pasar")
    monkeypatch.setenv("PASAR_APP_DATABASE_URL", "postgresql://pasar_app@db/pasar")
    monkeypatch.setenv("PASAR_ETL_DATABASE_URL", "postgresql://pasar_etl@db/pasar")
    configured = definitions.database_resource()
    assert isinstance(configured.etl_database_url, dg.EnvVar)
    assert configured.etl_database_url.env_var_name == "PASAR_ETL_DATABASE_URL"
    assert configured.home == str(tmp_path)


def test_resource_uses_the_embedded_cluster_by_default(
    monkeypatch: pytest.MonkeyPatch, fresh_settings: None, tmp_path: Path
) -> None:
    for name in ("PASAR_DATABASE_URL", "PASAR_APP_DATABASE_URL", "PASAR_ETL_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PASAR_HOME", str(tmp_path))
    embedded = definitions.database_resource()
    assert embedded.etl_database_url is None
    assert embedded.home == str(tmp_path)

    # The cluster is started and migrated once per process and home, not per connection.
    started: list[Path] = []
    migrated: list[DatabaseUrls] = []
    urls = DatabaseUrls(owner="host=x user=owner", app="host=x user=pasar_app", etl="host=x user=pasar_etl")

    def fake_database_urls(settings: Any) -> DatabaseUrls:
        started.append(settings.home)
        return urls

    monkeypatch.setattr(resources, "database_urls", fake_database_urls)
    monkeypatch.setattr(resources, "migrate", migrated.append)
    monkeypatch.setattr(resources, "_embedded_etl", {})
    resource = PasarDatabase(home=str(tmp_path))
    assert resource.conninfo() == urls.etl
    assert resource.conninfo() == urls.etl
    assert started == [tmp_path]
    assert migrated == [urls]


def test_instance_and_workspace_files() -> None:
    instance = yaml.safe_load((ROOT / "orchestration" / "dagster.yaml").read_text())
    assert instance["telemetry"] == {"enabled": False}
    assert instance["run_retries"]["enabled"] is True
    assert instance["run_retries"]["max_retries"] == 2
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert workspace == {
        "load_from": [{"python_module": {"module_name": "orchestration.definitions", "working_directory": "."}}]
    }
