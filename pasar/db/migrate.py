"""Schema migrations (Alembic, raw SQL) and the login passwords of the roles they create."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql

from pasar.db.urls import APP_ROLE, ETL_ROLE, DatabaseUrls

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(owner_conninfo: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    config.attributes["owner_conninfo"] = owner_conninfo
    return config


def migrate(urls: DatabaseUrls, revision: str = "head") -> None:
    command.upgrade(alembic_config(urls.owner), revision)
    _set_login_passwords(urls)


def current_revision(urls: DatabaseUrls) -> str | None:
    with psycopg.connect(urls.owner) as conn:
        exists = conn.execute("select to_regclass('public.alembic_version') is not null").fetchone()
        if not exists or not exists[0]:
            return None
        row = conn.execute("select version_num from public.alembic_version").fetchone()
        return None if row is None else str(row[0])


def _set_login_passwords(urls: DatabaseUrls) -> None:
    """The migrations create the roles without a password; the deployment's URLs carry them."""
    with psycopg.connect(urls.owner, autocommit=True) as conn:
        for role in (APP_ROLE, ETL_ROLE):
            password = urls.password_of(role)
            if password is None:
                continue
            conn.execute(
                sql.SQL("alter role {} with login password {}").format(sql.Identifier(role), sql.Literal(password))
            )
