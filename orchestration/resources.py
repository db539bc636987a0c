"""The database resource of the Dagster layer: connections as pasar_etl, the role that runs ingestion."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg

from pasar.config import Settings
from pasar.db.migrate import migrate
from pasar.db.urls import database_urls

_embedded_lock = threading.Lock()
_embedded_etl: dict[str, str] = {}  # home -> pasar_etl conninfo, once the cluster is started and migrated


def _embedded_conninfo(home: str) -> str:
    """The pasar_etl conninfo of the embedded cluster under ``home``: started and migrated once per process."""
    with _embedded_lock:
        if home not in _embedded_etl:
            urls = database_urls(Settings(home=Path(home)))
            migrate(urls)
            _embedded_etl[home] = urls.etl
        return _embedded_etl[home]


class PasarDatabase(dg.ConfigurableResource):  # type: ignore[type-arg]  # the resource is its own value
    """PostgreSQL as pasar_etl (BYPASSRLS; ingestion and rollups across tenants).

    ``etl_database_url`` unset: the embedded cluster under ``home`` is started (and migrated) on first use, so a
    fresh machine works with no configuration. ``home`` is also PASAR_HOME for the landing folder.
    """

    etl_database_url: str | None = None
    home: str = ".pasar"

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    def conninfo(self) -> str:
        return self.etl_database_url or _embedded_conninfo(self.home)

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit connection: each ``conn.transaction()`` of the service is a real transaction, and the
        connection is closed when the block ends (a failed load has already rolled back by then)."""
        with psycopg.connect(self.conninfo(), autocommit=True, application_name="pasar-dagster") as conn:
            yield conn
