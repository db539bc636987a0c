"""The one Dagster ``defs`` of Pasar (``dagster dev -w workspace.yaml``, ``dagster asset materialize -m
orchestration.definitions``)."""

from __future__ import annotations

import os

import dagster as dg

from orchestration.defs import analytics, domains, ml
from orchestration.defs.ml.resources import MLflowStore
from orchestration.resources import PasarDatabase
from pasar.config import get_settings


def database_resource() -> PasarDatabase:
    """pasar_etl from PASAR_ETL_DATABASE_URL (read by Dagster at run time) when configured, else the embedded
    cluster under PASAR_HOME."""
    settings = get_settings()
    if settings.etl_database_url is not None:
        return PasarDatabase(etl_database_url=dg.EnvVar("PASAR_ETL_DATABASE_URL"), home=str(settings.home))
    return PasarDatabase(home=str(settings.home))


def mlflow_resource() -> MLflowStore:
    """The MLflow store of the settings: PASAR_MLFLOW_TRACKING_URI (or MLFLOW_TRACKING_URI, read by Dagster at run
    time) when set, else the embedded sqlite store under PASAR_HOME."""
    settings = get_settings()
    uri: str | dg.EnvVar | None = None
    for name in ("PASAR_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        if os.environ.get(name):
            uri = dg.EnvVar(name)
            break
    return MLflowStore(tracking_uri=uri, home=str(settings.home), model_name=settings.signal_model_name)


all_domains = [*domains, ml, analytics]

defs = dg.Definitions(
    assets=[asset for domain in all_domains for asset in domain.assets],
    jobs=[job for domain in all_domains for job in domain.jobs],
    schedules=[schedule for domain in all_domains for schedule in domain.schedules],
    sensors=[sensor for domain in all_domains for sensor in domain.sensors],
    resources={"database": database_resource(), "mlflow_store": mlflow_resource(), **analytics.resources()},
)
