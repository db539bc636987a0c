"""The embedded demo: two tenants with an admin user and an API key each, and an operator.

What it makes is written to ``PASAR_HOME/demo.json`` (mode 0600); a second run reuses it, and re-issues only
credentials that no longer work (a key is stored hashed, so a lost one cannot be shown again).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.rows import dict_row

from pasar.config import Settings
from pasar.db.pool import Database, tenant_transaction
from pasar.db.urls import DatabaseUrls
from pasar.errors import DomainError
from pasar.market import service as market
from pasar.ratelimit import MemoryRateLimiter
from pasar.secrets import jwt_secret
from pasar.tenancy import repository
from pasar.tenancy import service as tenancy
from pasar.tenancy.credentials import TokenIssuer
from pasar.tenancy.models import Plan, Principal

DEMO_TENANTS = (("Demo Alpha", Plan.professional), ("Demo Beta", Plan.basic))
DEMO_OPERATOR = "demo-operator"
DEMO_SYNTHETIC_SYMBOLS = 30
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _authenticator(settings: Settings, database: Database) -> tenancy.Authenticator:
    issuer = TokenIssuer(jwt_secret(settings), settings.jwt_issuer, settings.jwt_audience, 60, 60)
    return tenancy.Authenticator(database, issuer, MemoryRateLimiter(), tenancy.LoginPolicy(1_000, 1_000, 1))


async def _works(authenticator: tenancy.Authenticator, api_key: str | None) -> bool:
    if not api_key:
        return False
    try:
        await authenticator.principal_from_key(api_key)
    except DomainError:
        return False
    return True


async def _tenant_id_by_slug(urls: DatabaseUrls, slug: str) -> UUID | None:
    # The owner of the embedded cluster is its superuser, so it sees every tenant.
    async with await psycopg.AsyncConnection.connect(urls.owner, row_factory=dict_row) as conn:
        return await repository.tenant_id_by_slug(conn, slug)


async def _recredential(database: Database, tenant_id: UUID, slug: str) -> dict[str, Any]:
    """The tenant exists but its demo credentials were lost: a new admin password and a new key."""
    principal = Principal.system(tenant_id)
    password = secrets.token_urlsafe(15)
    async with tenant_transaction(principal, database=database) as conn:
        admin = await repository.get_user_by_username(conn, tenant_id, "admin")
        if admin is None:
            raise RuntimeError(f"demo tenant {slug} has no admin user")
        await tenancy.update_user(conn, principal, admin.id, password=password)
        key = await tenancy.create_api_key(
            conn, principal, name="demo key", user_id=admin.id, scopes=None, expires_at=None
        )
    return {"slug": slug, "tenant_id": str(tenant_id), "username": "admin", "password": password, "api_key": key.secret}


async def _ensure_tenant(database: Database, urls: DatabaseUrls, name: str, plan: Plan) -> dict[str, Any]:
    slug = tenancy.slugify(name)
    tenant_id = await _tenant_id_by_slug(urls, slug)
    if tenant_id is not None:
        return await _recredential(database, tenant_id, slug)
    principal = Principal.system(uuid4())
    async with tenant_transaction(principal, database=database) as conn:
        made = await tenancy.provision_tenant(conn, principal, name=name, plan=plan)
    return {
        "slug": made.tenant.slug,
        "tenant_id": str(made.tenant.id),
        "username": made.admin_user.username,
        "password": made.admin_password,
        "api_key": made.api_key.secret,
    }


async def _ensure_operator(urls: DatabaseUrls) -> str:
    async with await psycopg.AsyncConnection.connect(urls.owner, row_factory=dict_row) as conn:
        try:
            _, secret = await tenancy.create_operator(conn, name=DEMO_OPERATOR)
        except DomainError:
            await conn.rollback()
            _, secret = await tenancy.create_operator(conn, name=f"{DEMO_OPERATOR}-{uuid4().hex[:8]}")
        await conn.commit()
        return secret


async def ensure_demo(
    settings: Settings, urls: DatabaseUrls, database: Database, *, host: str, port: int
) -> dict[str, Any]:
    path = Path(settings.home) / "demo.json"
    previous: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    known = {entry["slug"]: entry for entry in previous.get("tenants", [])}
    authenticator = _authenticator(settings, database)
    tenants = []
    for name, plan in DEMO_TENANTS:
        entry = known.get(tenancy.slugify(name))
        if entry is None or not await _works(authenticator, entry.get("api_key")):
            entry = await _ensure_tenant(database, urls, name, plan)
        tenants.append(entry)
    operator_key = previous.get("operator_api_key")
    if not await _works(authenticator, operator_key):
        operator_key = await _ensure_operator(urls)
    api_url = f"http://{host}:{port}"
    document: dict[str, Any] = {
        "api_url": api_url,
        "docs_url": f"{api_url}/docs",
        "openapi_url": f"{api_url}/openapi.json",
        "tenants": tenants,
        "operator_api_key": operator_key,
    }
    return document


def write_document(settings: Settings, document: dict[str, Any]) -> None:
    path = Path(settings.home) / "demo.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)


def load_market_data(urls: DatabaseUrls, *, synthetic_days: int) -> dict[str, int]:
    """The bundled real data and a synthetic IDX set (idempotent: a second run rewrites nothing)."""
    with psycopg.connect(urls.etl, autocommit=True) as conn:
        market.ingest_bundled(conn)
        market.ingest_synthetic(conn, symbols=DEMO_SYNTHETIC_SYMBOLS, days=synthetic_days, timeframe="1m")
        row = conn.execute("select count(*), count(distinct instrument_id) from market.bars").fetchone()
    assert row is not None
    return {"bars": int(row[0]), "instruments": int(row[1])}


def start_dagster_ui(settings: Settings, *, host: str, port: int) -> subprocess.Popen[bytes]:
    """``dagster dev`` on the workspace, with DAGSTER_HOME under PASAR_HOME (telemetry off, SQLite storage)."""
    dagster_home = Path(settings.home).resolve() / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        shutil.copy(PROJECT_ROOT / "orchestration" / "dagster.yaml", config)
    environment = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PASAR_HOME": str(Path(settings.home).resolve())}
    log = (dagster_home / "dagster-dev.log").open("ab")
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster")),
            "dev",
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
            "-h",
            host,
            "-p",
            str(port),
        ],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
