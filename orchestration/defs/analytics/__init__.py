"""Analytics: the dbt project (marts and compliance reports), its docs, the per-tenant monthly reports; their jobs,
schedules and the sensor that keeps the report partitions in step with the tenants."""

from datetime import timedelta
from typing import Any

import dagster as dg

from orchestration import partitions
from orchestration.defs.analytics.assets import (
    REPORT_TENANTS,
    analytics_dbt_assets,
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

analytics_daily_job = dg.define_asset_job(
    "analytics_daily_job",
    selection=dg.AssetSelection.assets(analytics_dbt_assets),
    partitions_def=partitions.synthetic_daily,
    description="One IDX day: every mart and compliance model in one dbt build (the day's window as vars start/end; "
    "the incremental models' tests read the rows the build wrote, the others' every row; unit tests left to CI).",
)
dbt_docs_job = dg.define_asset_job(
    "dbt_docs_job",
    selection=dg.AssetSelection.assets(dbt_docs),
    description="dbt docs generate (the docs change with the project, not with the day's data).",
)
compliance_report_job = dg.define_asset_job(
    "compliance_report_job",
    selection=dg.AssetSelection.assets(compliance_report_inputs, compliance_report),
    description="One tenant's monthly compliance report; its inputs' blocking check gates the rendering.",
)

# 17:30 WIB, after the synthetic day is loaded at 17:00: the day's marts, in one dbt process.
analytics_daily_schedule = dg.build_schedule_from_partitioned_job(
    analytics_daily_job, name="analytics_daily_schedule", hour_of_day=17, minute_of_hour=30
)
dbt_docs_schedule = dg.ScheduleDefinition(
    name="dbt_docs_weekly_schedule",
    job=dbt_docs_job,
    cron_schedule="0 6 * * 0",
    execution_timezone=partitions.IDX_TIMEZONE,
)


@dg.schedule(
    name="compliance_monthly_schedule",
    job=compliance_report_job,
    cron_schedule="0 6 1 * *",
    execution_timezone=partitions.IDX_TIMEZONE,
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
    dbt_docs,
    compliance_report_inputs,
    compliance_report,
]
jobs = [analytics_daily_job, dbt_docs_job, compliance_report_job]
schedules = [analytics_daily_schedule, dbt_docs_schedule, compliance_monthly_schedule]
sensors = [report_tenants_sensor]

__all__ = ["assets", "jobs", "resources", "schedules", "sensors"]
