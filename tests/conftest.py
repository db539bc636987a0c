"""Session fixtures: a real PostgreSQL (the server at PASAR_TEST_DATABASE_URL, else an ephemeral embedded
cluster) with a fresh, migrated database for the session; a real redis-server on loopback; API clients."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pydantic import SecretStr

from api.app import create_app
from pasar.config import Settings
from pasar.db.embedded import EmbeddedCluster
from pasar.db.migrate import migrate
from pasar.db.pool import Database, tenant_transaction
from pasar.db.urls import DatabaseUrls, database_urls
from pasar.tenancy import service as tenancy
from pasar.tenancy.models import Plan, Principal, ProvisionedTenant

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def let_server_user_through(path: Path) -> None:
    """pytest's tmp dirs are 0700 root; as root the server runs as `postgres` and must pass through them."""
    if os.geteuid() != 0:
        return
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH and directory.stat().st_uid == 0:
            directory.chmod(stat.S_IMODE(mode) | 0o011)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def server_owner_url() -> Iterator[str]:
    """An owner (superuser) URL to a server where test databases can be created."""
    configured = os.environ.get("PASAR_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    home = Path(tempfile.mkdtemp(prefix="pasar-test-pg-"))
    let_server_user_through(home)
    cluster = EmbeddedCluster(home / "home")
    cluster.start()
    try:
        yield cluster.owner_url("postgres")
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def pasar_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pasar-home")


@pytest.fixture(scope="session")
def settings(server_owner_url: str, pasar_home: Path) -> Iterator[Settings]:
    """Settings of a fresh database, migrated, dropped at the end of the session."""
    name = f"pasar_test_{uuid4().hex[:12]}"
    with psycopg.connect(server_owner_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    owner = make_conninfo(server_owner_url, dbname=name)
    app_password, etl_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    made = Settings(
        home=pasar_home,
        env="test",
        database_url=owner,
        app_database_url=make_conninfo(owner, user="pasar_app", password=app_password),
        etl_database_url=make_conninfo(owner, user="pasar_etl", password=etl_password),
        jwt_secret=secrets.token_urlsafe(32),
        db_pool_max_size=8,
    )
    migrate(database_urls(made))
    try:
        yield made
    finally:
        with psycopg.connect(server_owner_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def urls(settings: Settings) -> DatabaseUrls:
    return database_urls(settings)


@pytest.fixture
def app_conn(urls: DatabaseUrls) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A raw autocommit connection as pasar_app, as the API's pool makes them."""
    with psycopg.connect(urls.app, autocommit=True) as conn:
        yield conn


@dataclass(frozen=True)
class RedisServer:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run `make test` (it installs it) or `apt-get install redis-server`")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("redis-server did not start")
    try:
        yield RedisServer(url=f"redis://127.0.0.1:{port}/0", process=process)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    """The API in process, with in-process rate limits."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def redis_client(settings: Settings, redis_server: RedisServer) -> Iterator[TestClient]:
    """The API in process, with rate limits in the real Redis."""
    with TestClient(create_app(settings.model_copy(update={"redis_url": SecretStr(redis_server.url)}))) as test_client:
        yield test_client


async def _provision(settings: Settings, name: str, plan: Plan) -> ProvisionedTenant:
    database = Database(database_urls(settings).app, min_size=1, max_size=1)
    await database.open()
    try:
        principal = Principal.system(uuid4())
        async with tenant_transaction(principal, database=database) as conn:
            return await tenancy.provision_tenant(conn, principal, name=name, plan=plan)
    finally:
        await database.close()


@dataclass(frozen=True)
class TenantFixture:
    made: ProvisionedTenant

    @property
    def id(self) -> str:
        return str(self.made.tenant.id)

    @property
    def key(self) -> str:
        return self.made.api_key.secret

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    @property
    def admin_id(self) -> str:
        return str(self.made.admin_user.id)


MakeTenant = Callable[..., "TenantFixture"]


@pytest.fixture
def make_tenant(settings: Settings) -> MakeTenant:
    def make(plan: Plan = Plan.enterprise, name: str | None = None) -> TenantFixture:
        made = asyncio.run(_provision(settings, name or f"Tenant {uuid4().hex[:10]}", plan))
        return TenantFixture(made)

    return make


@pytest.fixture
def tenant_a(make_tenant: MakeTenant) -> TenantFixture:
    return make_tenant()


@pytest.fixture
def tenant_b(make_tenant: MakeTenant) -> TenantFixture:
    return make_tenant()
