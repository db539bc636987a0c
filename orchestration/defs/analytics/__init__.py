"""Analytics: the dbt project (marts and compliance reports), its docs, the per-tenant monthly reports; their jobs,
schedules and the sensor that keeps the report partitions in step with the tenants."""

from datetime import timedelta
from typing import Any

import dagster as dg

from orchestration.defs.analytics.assets import (
    REPORT_TENANTS,
    analytics_dbt_assets,
    bars_daily_dbt_assets,
    compliance_report,
    compliance_report_inputs,
    dbt_docs,
    market_bars,
    platform_tables,
    report_tenants,
)
from orchestration.defs.analytics.resources import app_database_resource, dbt_resource
from orchestration.resources import PasarDatabase
from pasar.compliance import repository as compliance_repository

analytics_job = dg.define_asset_job(
    "analytics_job",
    selection=dg.AssetSelection.assets(analytics_dbt_assets, dbt_docs),
    description="dbt build of every mart and compliance model (tests as checks), then the docs.",
)
bars_daily_job = dg.define_asset_job(
    "bars_daily_job",
    selection=dg.AssetSelection.assets(bars_daily_dbt_assets),
    description="fct_bars_daily for one IDX day (the partition window is dbt's start/end).",
)
compliance_report_job = dg.define_asset_job(
    "compliance_report_job",
    selection=dg.AssetSelection.assets(compliance_report_inputs, compliance_report),
    description="One tenant's monthly compliance report; its inputs' blocking check gates the rendering.",
)

# 17:30 WIB, after the synthetic day is loaded at 17:00: the day's daily bars, then every mart.
bars_daily_schedule = dg.build_schedule_from_partitioned_job(
    bars_daily_job, name="bars_daily_schedule", hour_of_day=17, minute_of_hour=30
)
analytics_schedule = dg.ScheduleDefinition(
    name="analytics_daily_schedule",
    job=analytics_job,
    cron_schedule="45 17 * * *",
    execution_timezone="Asia/Jakarta",
)


@dg.schedule(
    name="compliance_monthly_schedule",
    job=compliance_report_job,
    cron_schedule="0 6 1 * *",
    execution_timezone="Asia/Jakarta",
)
def compliance_monthly_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """On the 1st at 06:00 WIB: last month's report of every tenant (after the night's dbt build)."""
    assert context.scheduled_execution_time is not None
    first = context.scheduled_execution_time.date().replace(day=1)
    month = (first - timedelta(days=1)).replace(day=1)
    tenants = context.instance.get_dynamic_partitions(REPORT_TENANTS)
    return [
        dg.RunRequest(
            run_key=f"{tenant}|{month.isoformat()}",
            partition_key=dg.MultiPartitionKey({"tenant": tenant, "month": month.isoformat()}),
        )
        for tenant in tenants
    ]


@dg.sensor(name="report_tenants_sensor", minimum_interval_seconds=300, job=compliance_report_job)
def report_tenants_sensor(context: dg.SensorEvaluationContext, database: PasarDatabase) -> dg.SensorResult:
    """Adds a report partition for every tenant (by slug) that has none yet."""
    with database.connect() as conn:
        slugs = [str(row["slug"]) for row in compliance_repository.tenants_for_reports(conn)]
    known = set(context.instance.get_dynamic_partitions(REPORT_TENANTS))
    new = [slug for slug in slugs if slug not in known]
    return dg.SensorResult(
        dynamic_partitions_requests=[report_tenants.build_add_request(new)] if new else [],
        skip_reason=None if new else dg.SkipReason("every tenant has its report partitions"),
    )


def resources() -> dict[str, Any]:
    return {"dbt_cli": dbt_resource(), "app_database": app_database_resource()}


assets: list[Any] = [
    market_bars,
    *platform_tables,
    analytics_dbt_assets,
    bars_daily_dbt_assets,
    dbt_docs,
    compliance_report_inputs,
    compliance_report,
]
jobs = [analytics_job, bars_daily_job, compliance_report_job]
schedules = [bars_daily_schedule, analytics_schedule, compliance_monthly_schedule]
sensors = [report_tenants_sensor]

__all__ = ["assets", "jobs", "resources", "schedules", "sensors"]
