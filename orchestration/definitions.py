"""The one Dagster ``defs`` of Pasar (``dagster dev -w workspace.yaml``, ``dagster asset materialize -m
orchestration.definitions``)."""

from __future__ import annotations

import dagster as dg

from orchestration.defs import domains
from orchestration.resources import PasarDatabase
from pasar.config import get_settings


def database_resource() -> PasarDatabase:
    """pasar_etl from PASAR_ETL_DATABASE_URL (read by Dagster at run time) when configured, else the embedded
    cluster under PASAR_HOME."""
    settings = get_settings()
    if settings.etl_database_url is not None:
        return PasarDatabase(etl_database_url=dg.EnvVar("PASAR_ETL_DATABASE_URL"), home=str(settings.home))
    return PasarDatabase(home=str(settings.home))


defs = dg.Definitions(
    assets=[asset for domain in domains for asset in domain.assets],
    jobs=[job for domain in domains for job in domain.jobs],
    schedules=[schedule for domain in domains for schedule in domain.schedules],
    sensors=[sensor for domain in domains for sensor in domain.sensors],
    resources={"database": database_resource()},
)
