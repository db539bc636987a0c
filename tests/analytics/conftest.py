"""One analytics world per session: tenant A with every surveillance pattern seeded, tenant B trading normally
through the API, and one ``dbt build`` over them (about 20-30 s on the 2-core machine) shared by every test here."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from psycopg import sql

from pasar.analytics import dbt
from pasar.cli import main
from pasar.config import Settings, get_settings
from pasar.db.urls import DatabaseUrls
from pasar.tenancy.models import Plan
from tests.analytics import seed
from tests.conftest import TenantFixture, _provision

DBT_TIMEOUT_S = 600


@dataclass
class World:
    a: TenantFixture
    b: TenantFixture
    seeded: seed.Seeded
    normal_symbol: str
    target_path: Path
    build: Any  # the CompletedProcess of the first dbt build
    build_seconds: float
    users: dict[tuple[str, str], dict[str, str]]  # (tenant "a"/"b", role) -> headers

    def headers(self, tenant: str, role: str) -> dict[str, str]:
        return self.users[(tenant, role)]


def new_user_headers(client: TestClient, admin: TenantFixture, role: str) -> dict[str, str]:
    """A user of ``role`` in the admin's tenant, and the headers of an API key of theirs."""
    response = client.post(
        "/v1/users", json={"username": f"{role}-{uuid4().hex[:8]}", "role": role}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    key = client.post("/v1/api-keys", json={"name": role, "user_id": response.json()["id"]}, headers=admin.headers)
    assert key.status_code == 201, key.text
    return {"X-API-Key": key.json()["secret"]}


def run_dbt(args: list[str], settings: Settings, target_path: Path) -> Any:
    result = dbt.run_dbt(args, settings, target_path=target_path, timeout=DBT_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return result


def run_results(target_path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((target_path / "run_results.json").read_text())
    return document


@pytest.fixture(scope="session")
def world(
    settings: Settings, urls: DatabaseUrls, client: TestClient, tmp_path_factory: pytest.TempPathFactory
) -> World:
    a = TenantFixture(asyncio.run(_provision(settings, f"Analytics A {uuid4().hex[:6]}", Plan.enterprise)))
    b = TenantFixture(asyncio.run(_provision(settings, f"Analytics B {uuid4().hex[:6]}", Plan.enterprise)))
    seeded = seed.seed_suspicious(urls, a.id, a.admin_id)
    normal_symbol = seed.trade_normally(client, b.headers, urls)
    users = {
        (name, role): new_user_headers(client, tenant, role)
        for name, tenant in (("a", a), ("b", b))
        for role in ("compliance", "analyst", "trader")
    }
    for name, tenant in (("a", a), ("b", b)):
        users[(name, "admin")] = tenant.headers
    target_path = tmp_path_factory.mktemp("dbt-target")
    started = time.monotonic()
    build = run_dbt(["build"], settings, target_path)
    return World(a, b, seeded, normal_symbol, target_path, build, time.monotonic() - started, users)


@pytest.fixture(scope="session", autouse=True)
def drop_analyst_logins(urls: DatabaseUrls) -> Iterator[None]:
    """Analyst logins are cluster-wide roles: drop the session's when it ends (the database goes with the session;
    a server given by PASAR_TEST_DATABASE_URL would otherwise collect them)."""
    yield
    with psycopg.connect(urls.owner, autocommit=True) as conn:
        for (role,) in conn.execute("select role_name from tenancy.analyst_logins").fetchall():
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


def cli_env(settings: Settings) -> dict[str, str | None]:
    """The environment of a ``pasar`` command against the session's database (every other PASAR_* unset)."""
    assert settings.database_url and settings.app_database_url and settings.etl_database_url
    assert settings.jwt_secret is not None
    return {
        "PASAR_HOME": str(settings.home),
        "PASAR_ENV": "test",
        "PASAR_DATABASE_URL": settings.database_url.get_secret_value(),
        "PASAR_APP_DATABASE_URL": settings.app_database_url.get_secret_value(),
        "PASAR_ETL_DATABASE_URL": settings.etl_database_url.get_secret_value(),
        "PASAR_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "PASAR_REDIS_URL": None,
        "PASAR_PG_BIN_DIR": None,
    }


Invoke = Callable[..., Result]


@pytest.fixture
def pasar_cli(settings: Settings) -> Invoke:
    """``pasar_cli(*args)``: the ``pasar`` command in process against the session's database."""

    def run(*args: str) -> Result:
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(main, list(args), env=cli_env(settings))
        finally:
            get_settings.cache_clear()

    return run
