"""The ``pasar`` command, in process: against the session's database, and in embedded mode under a PASAR_HOME."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from api.app import create_app
from pasar.cli import main
from pasar.config import Settings, get_settings
from pasar.db.embedded import EmbeddedCluster, EmbeddedPostgresError, find_bin_dir
from pasar.db.migrate import alembic_config
from tests.conftest import let_server_user_through

Invoke = Callable[..., Result]

# Every PASAR_* variable of the calling environment is unset for the command, then the test's own are set.
_CLEARED = ("DATABASE_URL", "APP_DATABASE_URL", "ETL_DATABASE_URL", "JWT_SECRET", "REDIS_URL", "PG_BIN_DIR", "HOME")


def _base_env() -> dict[str, str | None]:
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("PASAR_")}
    env.update({f"PASAR_{name}": None for name in _CLEARED})
    return env


@pytest.fixture
def invoke() -> Iterator[Callable[[dict[str, str | None]], Invoke]]:
    """``invoke(env)(*args)``: runs ``pasar *args`` with fresh settings read from exactly ``env``."""

    def bind(env: dict[str, str | None]) -> Invoke:
        def run(*args: str) -> Result:
            get_settings.cache_clear()
            try:
                return CliRunner().invoke(main, list(args), env={**_base_env(), **env})
            finally:
                get_settings.cache_clear()  # settings read under the command's env must not leak

        return run

    yield bind
    get_settings.cache_clear()


def assert_clean_exit(result: Result, code: int) -> None:
    """Exited with ``code`` through click or sys.exit, never through an unhandled exception."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def json_output(result: Result, code: int = 0) -> dict[str, Any]:
    assert_clean_exit(result, code)
    document: dict[str, Any] = json.loads(result.stdout)  # all of stdout: a script parses it whole
    return document


# Against the session's database ----------------------------------------------------------------------------


@pytest.fixture
def pasar(invoke: Callable[[dict[str, str | None]], Invoke], settings: Settings, tmp_path: Path) -> Invoke:
    assert settings.database_url and settings.app_database_url and settings.etl_database_url and settings.jwt_secret
    return invoke(
        {
            "PASAR_HOME": str(tmp_path / "home"),
            "PASAR_DATABASE_URL": settings.database_url.get_secret_value(),
            "PASAR_APP_DATABASE_URL": settings.app_database_url.get_secret_value(),
            "PASAR_ETL_DATABASE_URL": settings.etl_database_url.get_secret_value(),
            "PASAR_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        }
    )


def test_tenant_create_prints_working_credentials(pasar: Invoke, client: TestClient) -> None:
    name = f"Acme {uuid4().hex[:8]}"
    made = json_output(pasar("tenant", "create", name, "--plan", "professional", "--json"))
    assert {"tenant_id", "slug", "admin_user", "admin_password", "api_key"} <= made.keys()
    assert made["slug"] == name.lower().replace(" ", "-")
    assert made["admin_user"] == "admin"

    me = client.get("/v1/me", headers={"X-API-Key": made["api_key"]})
    assert me.status_code == 200, me.text
    assert me.json()["tenant"]["id"] == made["tenant_id"]
    assert me.json()["tenant"]["plan"] == "professional"

    token = client.post(
        "/v1/auth/token", json={"username": "admin", "password": made["admin_password"], "tenant": made["slug"]}
    )
    assert token.status_code == 200, token.text


def test_tenant_create_twice_fails_cleanly(pasar: Invoke) -> None:
    name = f"Acme {uuid4().hex[:8]}"
    json_output(pasar("tenant", "create", name, "--json"))
    again = pasar("tenant", "create", name, "--json")
    assert_clean_exit(again, 1)
    assert "exists" in again.output
    assert again.stdout == "", "nothing a script could mistake for a result"


def test_tenant_create_rejects_an_unknown_plan(pasar: Invoke) -> None:
    result = pasar("tenant", "create", f"Acme {uuid4().hex[:8]}", "--plan", "platinum", "--json")
    assert_clean_exit(result, 2)
    assert "Invalid value for '--plan'" in result.output


def test_operator_create_prints_a_working_key(pasar: Invoke, client: TestClient) -> None:
    made = json_output(pasar("operator", "create", f"ops-{uuid4().hex[:8]}", "--json"))
    assert set(made) == {"operator_id", "api_key"}
    tenants = client.get("/v1/admin/tenants", headers={"X-API-Key": made["api_key"]})
    assert tenants.status_code == 200, tenants.text


def test_db_migrate_is_idempotent(pasar: Invoke) -> None:
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    assert head is not None and head >= "0001"
    assert json_output(pasar("db", "migrate", "--json")) == {"revision": head}
    assert json_output(pasar("db", "migrate", "--json")) == {"revision": head}


def test_db_url_is_the_owner_url(pasar: Invoke, settings: Settings) -> None:
    assert settings.database_url is not None
    assert json_output(pasar("db", "url", "--json")) == {"url": settings.database_url.get_secret_value()}


def test_db_start_refuses_an_external_database(pasar: Invoke) -> None:
    result = pasar("db", "start", "--json")
    assert_clean_exit(result, 1)
    assert "PASAR_DATABASE_URL is set" in result.output


# Embedded mode ---------------------------------------------------------------------------------------------


def _bin_dir_or_none() -> Path | None:
    try:
        return find_bin_dir()
    except EmbeddedPostgresError:
        return None


needs_pg = pytest.mark.skipif(_bin_dir_or_none() is None, reason="PostgreSQL server binaries not installed")


@pytest.fixture
def embedded_home() -> Iterator[Path]:
    """A PASAR_HOME of its own whose cluster is stopped at the end, whatever the test did.

    Outside pytest's tmp tree: every pytest session that starts resets /tmp/pytest-of-<user> to 0700, which
    would lock the `postgres` server user out of a cluster under it while another session runs.
    """
    base = Path(tempfile.mkdtemp(prefix="pasar-cli-test-"))
    let_server_user_through(base)
    home = base / "home"
    try:
        yield home
    finally:
        if (home / "pg").exists():
            EmbeddedCluster(home).stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def embedded(invoke: Callable[[dict[str, str | None]], Invoke], embedded_home: Path) -> Invoke:
    return invoke({"PASAR_HOME": str(embedded_home)})


@needs_pg
def test_embedded_db_lifecycle(embedded: Invoke) -> None:
    before = json_output(embedded("db", "status", "--json"), code=3)
    assert before["running"] is False

    started = json_output(embedded("db", "start", "--json"))
    assert started["running"] is True
    assert isinstance(started["port"], int)
    assert isinstance(started["pid"], int)
    assert json_output(embedded("db", "status", "--json"))["running"] is True

    url = json_output(embedded("db", "url", "--json"))["url"]
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute("select current_database(), inet_server_port()").fetchone()
    assert row == ("pasar", started["port"])

    assert json_output(embedded("db", "stop", "--json"))["running"] is False
    after = embedded("db", "status", "--json")
    assert json_output(after, code=3)["running"] is False
    assert_clean_exit(embedded("db", "status"), 3)


def _embedded_settings(home: Path) -> Settings:
    return Settings(
        home=home,
        env="test",
        database_url=None,
        app_database_url=None,
        etl_database_url=None,
        jwt_secret=None,
        redis_url=None,
        pg_bin_dir=None,
    )


def _assert_demo_credentials_work(home: Path, document: dict[str, Any]) -> None:
    with TestClient(create_app(_embedded_settings(home))) as api:
        for entry in document["tenants"]:
            me = api.get("/v1/me", headers={"X-API-Key": entry["api_key"]})
            assert me.status_code == 200, me.text
            assert me.json()["tenant"]["id"] == entry["tenant_id"]
            login = api.post(
                "/v1/auth/token",
                json={"username": entry["username"], "password": entry["password"], "tenant": entry["slug"]},
            )
            assert login.status_code == 200, login.text
        operator = api.get("/v1/admin/tenants", headers={"X-API-Key": document["operator_api_key"]})
        assert operator.status_code == 200, operator.text
        listed = {tenant["id"] for tenant in operator.json()["items"]}
        assert {entry["tenant_id"] for entry in document["tenants"]} <= listed


def _keys(document: dict[str, Any]) -> list[str]:
    return [entry["api_key"] for entry in document["tenants"]] + [document["operator_api_key"]]


@needs_pg
def test_demo_writes_reuses_and_recredentials(embedded: Invoke, embedded_home: Path) -> None:
    first = json_output(embedded("demo", "--no-serve", "--no-train", "--json"))
    assert len(first["tenants"]) == 2
    assert len({entry["tenant_id"] for entry in first["tenants"]}) == 2
    for entry in first["tenants"]:
        assert {"slug", "tenant_id", "username", "password", "api_key"} <= entry.keys()
        assert entry["username"] and entry["password"] and entry["api_key"]
    assert first["operator_api_key"]

    demo_file = embedded_home / "demo.json"
    assert stat.S_IMODE(demo_file.stat().st_mode) == 0o600
    assert json.loads(demo_file.read_text()) == first
    _assert_demo_credentials_work(embedded_home, first)

    second = json_output(embedded("demo", "--no-serve", "--no-train", "--json"))
    assert _keys(second) == _keys(first), "a second run reuses the credentials that still work"
    reused = ("tenants", "operator_api_key", "api_url", "market")  # the bot's trading summary differs per run
    assert {key: second[key] for key in reused} == {key: first[key] for key in reused}

    demo_file.unlink()
    third = json_output(embedded("demo", "--no-serve", "--no-train", "--json"))
    assert [entry["tenant_id"] for entry in third["tenants"]] == [entry["tenant_id"] for entry in first["tenants"]]
    assert set(_keys(third)).isdisjoint(_keys(first)), "lost keys cannot be shown again: new ones are issued"
    assert stat.S_IMODE(demo_file.stat().st_mode) == 0o600
    _assert_demo_credentials_work(embedded_home, third)


def test_db_start_without_server_binaries_says_how_to_install(
    invoke: Callable[[dict[str, str | None]], Invoke], tmp_path: Path
) -> None:
    empty = tmp_path / "no-binaries"
    empty.mkdir()
    run = invoke({"PASAR_HOME": str(tmp_path / "home"), "PASAR_PG_BIN_DIR": str(empty)})
    result = run("db", "start", "--json")
    assert_clean_exit(result, 1)
    assert "apt-get install postgresql" in result.output
    assert result.stdout == ""
