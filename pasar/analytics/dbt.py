"""Running the dbt project (``dbt_project/``) as pasar_etl, without the network.

dbt reads its connection from ``profiles.yml``, which reads one environment variable per field
(``PASAR_DBT_HOST``, ``PASAR_DBT_PORT``, ``PASAR_DBT_USER``, ``PASAR_DBT_PASSWORD``, ``PASAR_DBT_DBNAME``, plus
``PASAR_DBT_SCHEMA``, ``PASAR_DBT_THREADS`` and ``PASAR_DBT_SSLMODE`` with defaults). :func:`dbt_env` derives them
from the pasar_etl connection string (the embedded cluster by default), so nobody sets them by hand.

Every invocation runs the ``dbt`` executable beside the running interpreter with anonymous usage statistics and
the version check off: dbt never reaches the internet (the project uses no hub packages, so no ``dbt deps``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from pasar.config import Settings
from pasar.db.urls import database_urls

PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
DEFAULT_TARGET_PATH = PROJECT_DIR / "target"
DEFAULT_SCHEMA = "analytics"

# What dbt must never do on its own: report usage, check PyPI for a newer version.
OFFLINE_ENV = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DBT_VERSION_CHECK": "false",
    "DO_NOT_TRACK": "1",
}
# Session settings of dbt's connections (libpq reads PGOPTIONS). JIT off: the planner's cost of a join over a whole
# table buys compilation that costs more than the query it speeds up (about 1 s of a 1.7 s incremental model).
SESSION_ENV = {"PGOPTIONS": "-c jit=off"}
# Variables of ours that dbt has no business seeing (the owner's URL, the JWT key, …).
_WITHHELD_PREFIXES = ("PASAR_",)
_PASSED_THROUGH = ("PASAR_HOME", "PASAR_ENV", "PASAR_DBT_THREADS")


class DbtError(RuntimeError):
    """dbt exited with an error; ``result`` holds its output."""

    def __init__(self, message: str, result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(message)
        self.result = result


def dbt_executable() -> Path:
    """``dbt`` of this virtual environment: the interpreter's sibling."""
    return Path(sys.executable).with_name("dbt")


def dbt_env_for(conninfo: str, *, schema: str = DEFAULT_SCHEMA) -> dict[str, str]:
    """The ``PASAR_DBT_*`` variables profiles.yml reads, from a pasar_etl connection string, and the session
    settings of dbt's connections (``SESSION_ENV``)."""
    params = conninfo_to_dict(conninfo)
    missing = [key for key in ("host", "user", "dbname") if not params.get(key)]
    if missing:
        raise ValueError(f"the ETL connection string lacks {', '.join(missing)}")
    return {
        "PASAR_DBT_HOST": str(params["host"]),
        "PASAR_DBT_PORT": str(params.get("port") or 5432),
        "PASAR_DBT_USER": str(params["user"]),
        "PASAR_DBT_PASSWORD": str(params.get("password") or ""),
        "PASAR_DBT_DBNAME": str(params["dbname"]),
        "PASAR_DBT_SSLMODE": str(params.get("sslmode") or "prefer"),
        "PASAR_DBT_SCHEMA": schema,
        **SESSION_ENV,
    }


def dbt_env(settings: Settings) -> dict[str, str]:
    """The dbt variables for the pasar_etl role of ``settings`` (starts the embedded cluster if that is the
    database)."""
    return dbt_env_for(database_urls(settings).etl)


def subprocess_env(
    connection: Mapping[str, str], *, target_path: Path | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The whole environment of a dbt process: ``base`` (default: ours) without our secrets, the connection
    variables, the offline switches, the project and profiles directories, and the target and log paths."""
    source = os.environ if base is None else base
    env = {
        key: value
        for key, value in source.items()
        if not key.startswith(_WITHHELD_PREFIXES) or key in _PASSED_THROUGH or key.startswith("PASAR_DBT_")
    }
    target = target_path or DEFAULT_TARGET_PATH
    env.update(connection)
    env.update(OFFLINE_ENV)
    env.update(
        {
            "DBT_PROJECT_DIR": str(PROJECT_DIR),
            "DBT_PROFILES_DIR": str(PROJECT_DIR),
            "DBT_TARGET_PATH": str(target),
            "DBT_LOG_PATH": str(target / "logs"),
        }
    )
    return env


def _command(args: Sequence[str], dbt_vars: Mapping[str, Any] | None) -> list[str]:
    command = [str(dbt_executable()), *args]
    if dbt_vars:
        command += ["--vars", json.dumps(dict(dbt_vars), sort_keys=True, default=str)]
    return command


# The daily build (Dagster's daily job, one partition or a backfill's range in one run): the unit tests (static
# fixtures) are left to the full builds and CI; the window goes in the environment (window_env).
DAILY_BUILD_ARGS = ("build", "--exclude-resource-type", "unit_test")


def window_env(start: datetime, end: datetime) -> dict[str, str]:
    """The partition window ``[start, end)`` as the dbt project reads it (macro partition_window): the window of the
    partitioned incremental models, and the switch that has the incremental models' data tests read only the rows
    the build wrote (macro get_where_subquery). Environment variables rather than ``--vars``, which would make dbt
    parse the whole project again on every daily build."""
    return {"PASAR_DBT_WINDOW_START": start.isoformat(), "PASAR_DBT_WINDOW_END": end.isoformat()}


def run_dbt_with(
    args: Sequence[str],
    connection: Mapping[str, str],
    *,
    target_path: Path | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
    check: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """``dbt <args>`` on the project with the given connection variables; output captured as text."""
    result = subprocess.run(
        _command(args, dbt_vars),
        cwd=PROJECT_DIR,
        env=subprocess_env(connection, target_path=target_path),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise DbtError(f"dbt {' '.join(args[:1])} failed (exit {result.returncode}):\n{tail}", result)
    return result


def run_dbt(
    args: Sequence[str],
    settings: Settings,
    *,
    target_path: Path | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """``dbt <args>`` as the pasar_etl role of ``settings`` (e.g. ``run_dbt(["build"], settings)``), with ``env``
    (e.g. :func:`window_env`) added to dbt's environment."""
    connection = {**dbt_env(settings), **(env or {})}
    return run_dbt_with(args, connection, target_path=target_path, dbt_vars=dbt_vars, check=check, timeout=timeout)


# Parsing without a database: profiles.yml has defaults for every variable, and parse never connects.
PARSE_ONLY_CONNECTION = {
    "PASAR_DBT_HOST": "127.0.0.1",
    "PASAR_DBT_PORT": "5432",
    "PASAR_DBT_USER": "pasar_etl",
    "PASAR_DBT_PASSWORD": "",
    "PASAR_DBT_DBNAME": "pasar",
    "PASAR_DBT_SCHEMA": DEFAULT_SCHEMA,
}


def manifest_path(target_path: Path | None = None) -> Path:
    return (target_path or DEFAULT_TARGET_PATH) / "manifest.json"


def ensure_manifest(target_path: Path | None = None, *, refresh: bool = False) -> Path:
    """``target/manifest.json``, made by ``dbt parse`` (no database needed) when missing or when asked to."""
    path = manifest_path(target_path)
    if refresh or not path.exists():
        run_dbt_with(["parse", "--quiet"], PARSE_ONLY_CONNECTION, target_path=target_path, check=True, timeout=300)
    return path


def generate_docs(settings: Settings, *, target_path: Path | None = None) -> Path:
    """``dbt docs generate`` (reads the catalog of the built models); returns the directory holding index.html."""
    run_dbt(["docs", "generate"], settings, target_path=target_path, check=True, timeout=600)
    return target_path or DEFAULT_TARGET_PATH


def serve_docs(
    settings: Settings, port: int, *, host: str = "127.0.0.1", target_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """``dbt docs serve`` in the background (generating the docs first when they are missing), for ``make demo``:
    the docs are at ``http://{host}:{port}``. The caller terminates the process."""
    target = target_path or DEFAULT_TARGET_PATH
    if not (target / "index.html").exists() or not (target / "catalog.json").exists():
        generate_docs(settings, target_path=target)
    return subprocess.Popen(
        _command(["docs", "serve", "--host", host, "--port", str(port), "--no-browser"], None),
        cwd=PROJECT_DIR,
        env=subprocess_env(dbt_env(settings), target_path=target),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
