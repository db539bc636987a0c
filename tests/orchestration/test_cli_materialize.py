"""The Dagster CLI on the real code location: `dagster asset materialize` on one partition, as a script would run
it (a fresh DAGSTER_HOME with our dagster.yaml, Pasar configured only through PASAR_* variables)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pasar.config import Settings
from pasar.market import exchange
from pasar.market.frames import Timeframe
from pasar.market.sources.synthetic import synthetic_symbols

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = ROOT / ".venv" / "bin" / "dagster"
CLI_TIMEOUT_S = 240  # a cold start of the code location plus the run takes 15-25 s on the 2-core machine


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(ROOT / "orchestration" / "dagster.yaml", dagster_home / "dagster.yaml")
    secrets = {
        "PASAR_DATABASE_URL": settings.database_url,
        "PASAR_APP_DATABASE_URL": settings.app_database_url,
        "PASAR_ETL_DATABASE_URL": settings.etl_database_url,
        "PASAR_JWT_SECRET": settings.jwt_secret,
    }
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PASAR_", "DAGSTER_"))}
    for key, secret in secrets.items():
        assert secret is not None
        env[key] = secret.get_secret_value()
    return {**env, "PASAR_HOME": str(tmp_path / "home"), "PASAR_ENV": "test", "DAGSTER_HOME": str(dagster_home)}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DAGSTER), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
    )


def test_dagster_asset_materialize_cli_loads_one_partition(settings: Settings, cli_env: dict[str, str]) -> None:
    config: dict[str, Any] = {"ops": {"synthetic_bars": {"config": {"symbols": 3, "timeframe": "5m", "seed": 3}}}}
    result = run(
        [
            "asset",
            "materialize",
            "-m",
            "orchestration.definitions",
            "--select",
            "synthetic_bars",
            "--partition",
            "2026-01-07",
            "--config-json",
            json.dumps(config),
        ],
        cli_env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "RUN_SUCCESS" in result.stdout + result.stderr

    idx = exchange.calendar("IDX")
    day = date(2026, 1, 7)
    start = datetime.combine(day, datetime.min.time(), tzinfo=idx.timezone)
    assert settings.etl_database_url is not None
    with psycopg.connect(settings.etl_database_url.get_secret_value()) as conn:
        row = conn.execute(
            "select count(*), count(distinct i.symbol), min(b.ts), bool_and(b.source = 'synthetic') "
            "from market.bars b join market.instruments i on i.id = b.instrument_id "
            "where i.symbol = any(%s) and b.timeframe = '5m' and b.ts >= %s and b.ts < %s",
            [synthetic_symbols(3), start, start + timedelta(days=1)],
        ).fetchone()
    bars = idx.bar_starts(day, Timeframe.m5)
    assert row == (3 * len(bars), 3, bars[0], True)


def test_dagster_definitions_validate_on_the_workspace(cli_env: dict[str, str]) -> None:
    result = run(["definitions", "validate", "-w", "workspace.yaml"], cli_env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "passed validation" in result.stdout + result.stderr
