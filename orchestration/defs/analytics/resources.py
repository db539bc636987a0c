"""Resources of the analytics layer: dbt (offline, as pasar_etl) and the pasar_app role for reading reports."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import dagster as dg
from dagster_dbt import DbtCliInvocation, DbtCliResource
from packaging import version

from pasar.analytics import dbt
from pasar.config import Settings, get_settings
from pasar.db.pool import Conn, Database, tenant_transaction
from pasar.db.urls import database_urls
from pasar.tenancy.models import Principal

R = TypeVar("R")
PARTIAL_PARSE = "partial_parse.msgpack"

_environ_lock = threading.Lock()


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in os.environ for the block: dagster-dbt hands the process environment to dbt (and reads the
    profile in process), so the connection variables must be there while a dbt invocation starts."""
    with _environ_lock:
        saved = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


class PasarDbtCli(DbtCliResource):
    """dbt for Dagster: the project in dbt_project/, the dbt beside this interpreter, never the network.

    dagster-dbt learns the dbt version by running ``dbt --version``, which asks PyPI for the latest release; the
    version of the installed dbt-core is read here instead. Invocations take the pasar_etl connection string and
    pass it to dbt as the ``PASAR_DBT_*`` variables profiles.yml reads."""

    target_root: str | None = None  # where invocations write their artifacts (default: dbt_project/target/<run>)

    @cached_property
    def _cli_version(self) -> version.Version:
        from dbt.version import __version__ as installed

        return version.parse(installed)

    def invoke(
        self,
        args: Sequence[str],
        *,
        context: dg.AssetExecutionContext | None,
        conninfo: str,
        env: Mapping[str, str] | None = None,
    ) -> DbtCliInvocation:
        """``dbt <args>`` as the role of ``conninfo``, with ``env`` (e.g. the partition window) in dbt's environment."""
        target = Path(self.target_root) / f"dbt-{uuid4().hex[:12]}" if self.target_root else None
        with _environ({**dbt.dbt_env_for(conninfo), **dbt.OFFLINE_ENV, **(env or {})}):
            return self.cli(list(args), context=context, target_path=target)

    def build(
        self,
        args: Sequence[str],
        *,
        context: dg.AssetExecutionContext,
        conninfo: str,
        env: Mapping[str, str] | None = None,
    ) -> Iterator[Any]:
        """The events of ``dbt <args>`` (see :meth:`invoke`); once it succeeded, its partial parse becomes the one
        every invocation starts from. dagster-dbt copies dbt_project/target/partial_parse.msgpack into each
        invocation's target; the one ``dbt parse`` wrote at import holds the parse-only profile, which dbt sees as a
        changed profile (a full parse, seconds, on every run) until a real invocation's replaces it."""
        invocation = self.invoke(args, context=context, conninfo=conninfo, env=env)
        yield from invocation.stream()
        _keep_partial_parse(invocation.target_path)


def _keep_partial_parse(target: Path) -> None:
    source = target / PARTIAL_PARSE
    if not source.exists():
        return
    destination = dbt.DEFAULT_TARGET_PATH / PARTIAL_PARSE
    staged = destination.with_name(f"{PARTIAL_PARSE}.{uuid4().hex[:8]}")
    shutil.copyfile(source, staged)
    os.replace(staged, destination)  # atomic: a concurrent invocation copies the old file or the new, never half


def dbt_resource(target_root: Path | None = None) -> PasarDbtCli:
    return PasarDbtCli(
        project_dir=os.fspath(dbt.PROJECT_DIR),
        profiles_dir=os.fspath(dbt.PROJECT_DIR),
        dbt_executable=os.fspath(dbt.dbt_executable()),
        target_root=None if target_root is None else os.fspath(target_root),
    )


_embedded_lock = threading.Lock()
_embedded_app: dict[str, str] = {}


class PasarAppDatabase(dg.ConfigurableResource):  # type: ignore[type-arg]  # the resource is its own value
    """PostgreSQL as pasar_app (row-level security applies): compliance reports read a tenant's marts through it,
    in a transaction scoped to that tenant, so a report can hold nothing of another tenant.

    ``app_database_url`` unset: the embedded cluster under ``home`` (started on first use)."""

    app_database_url: str | None = None
    home: str = ".pasar"

    def conninfo(self) -> str:
        if self.app_database_url:
            return self.app_database_url
        with _embedded_lock:
            if self.home not in _embedded_app:
                _embedded_app[self.home] = database_urls(Settings(home=Path(self.home))).app
            return _embedded_app[self.home]

    def in_tenant(self, tenant_id: UUID, work: Callable[[Conn, Principal], Awaitable[R]]) -> R:
        """Run ``work(conn, principal)`` in one tenant transaction of ``tenant_id`` (committed when it returns) —
        the platform's one code path that sets the tenant, ``tenant_transaction``."""

        async def run() -> R:
            database = Database(self.conninfo(), min_size=1, max_size=1)
            await database.open()
            try:
                principal = Principal.system(tenant_id)
                async with tenant_transaction(principal, database=database) as conn:
                    return await work(conn, principal)
            finally:
                await database.close()

        return asyncio.run(run())


def app_database_resource() -> PasarAppDatabase:
    """pasar_app from PASAR_APP_DATABASE_URL (read by Dagster at run time) when configured, else embedded."""
    settings = get_settings()
    if settings.app_database_url is not None:
        return PasarAppDatabase(app_database_url=dg.EnvVar("PASAR_APP_DATABASE_URL"), home=str(settings.home))
    return PasarAppDatabase(home=str(settings.home))
