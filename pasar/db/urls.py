"""Connection strings of the three database roles, from settings or from the embedded cluster."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pasar.config import Settings
from pasar.secrets import ConfigurationError, embedded_secrets

APP_ROLE = "pasar_app"
ETL_ROLE = "pasar_etl"


@dataclass(frozen=True)
class DatabaseUrls:
    owner: str  # runs migrations and owns the schema
    app: str  # serves requests: no superuser, no BYPASSRLS, owns nothing
    etl: str  # ingestion and dbt across tenants (BYPASSRLS); never serves a request

    def password_of(self, role: str) -> str | None:
        conninfo = self.app if role == APP_ROLE else self.etl
        password = conninfo_to_dict(conninfo).get("password")
        return None if password is None else str(password)


def database_urls(settings: Settings) -> DatabaseUrls:
    """The three connection strings; starts the embedded cluster when no server is configured."""
    if settings.database_url is not None:
        if settings.app_database_url is None or settings.etl_database_url is None:
            raise ConfigurationError(
                "PASAR_APP_DATABASE_URL and PASAR_ETL_DATABASE_URL must be set when PASAR_DATABASE_URL is set "
                "(connection URLs of the pasar_app and pasar_etl roles)."
            )
        return DatabaseUrls(
            owner=settings.database_url.get_secret_value(),
            app=settings.app_database_url.get_secret_value(),
            etl=settings.etl_database_url.get_secret_value(),
        )
    from pasar.db.embedded import EmbeddedCluster

    cluster = EmbeddedCluster(settings.home, bin_dir=settings.pg_bin_dir)
    cluster.start()
    cluster.ensure_database(settings.database_name)
    owner = cluster.owner_url(settings.database_name)
    secrets = embedded_secrets(settings.home)
    return DatabaseUrls(
        owner=owner,
        app=make_conninfo(owner, user=APP_ROLE, password=secrets.app_db_password),
        etl=make_conninfo(owner, user=ETL_ROLE, password=secrets.etl_db_password),
    )
