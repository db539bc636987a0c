"""The analytics assets in Dagster, in process against the session's database: the definitions and their lineage
from the ingestion assets, dbt tests as asset checks, the partitioned daily bars, the docs, the report partitions
sensor and schedule, and the compliance report gated by the blocking check on its inputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import dagster as dg
import polars as pl
import psycopg
import pytest

from orchestration.definitions import defs
from orchestration.defs.analytics import compliance_monthly_schedule, report_tenants_sensor
from orchestration.defs.analytics.assets import (
    REPORT_TENANTS,
    analytics_dbt_assets,
    compliance_report,
    compliance_report_inputs,
    dbt_docs,
)
from orchestration.defs.analytics.resources import PasarAppDatabase, dbt_resource
from orchestration.resources import PasarDatabase
from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from tests.analytics import seed
from tests.analytics.conftest import World
from tests.conftest import MakeTenant

FEBRUARY = datetime(2026, 2, 2, tzinfo=UTC)  # a Monday: partition 2026-02-02 (WIB), report month 2026-02


@pytest.fixture
def resources(settings: Settings, tmp_path: Path) -> dict[str, Any]:
    assert settings.etl_database_url is not None and settings.app_database_url is not None
    return {
        "database": PasarDatabase(
            etl_database_url=settings.etl_database_url.get_secret_value(), home=str(settings.home)
        ),
        "app_database": PasarAppDatabase(app_database_url=settings.app_database_url.get_secret_value()),
        "dbt_cli": dbt_resource(target_root=tmp_path / "dbt"),
    }


def test_definitions_give_dbt_assets_lineage_checks_groups_and_schedules() -> None:
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()

    def parents(key: str | list[str]) -> set[str]:
        return {parent.to_user_string() for parent in graph.get(dg.AssetKey(key)).parent_keys}

    assert parents("stg_market__bars") == {"market/bars"}
    assert parents(["market", "bars"]) == {"bundled_bars", "synthetic_bars", "landing_bars"}
    assert parents("stg_market__instruments") == {"instruments"}
    assert parents("stg_trading__orders") == {"trading/orders"}
    assert parents("compliance_report") == {"compliance_report_inputs"}
    assert {"rpt_surveillance_alerts", "rpt_activity_summary"} <= parents("compliance_report_inputs")
    orders = defs.resolve_assets_def("fct_orders")
    checks = {spec.name for spec in orders.check_specs if spec.asset_key == dg.AssetKey("fct_orders")}
    assert "unique_combination_of_columns_fct_orders_tenant_id__order_id" in checks
    assert all(spec.blocking for spec in orders.check_specs), "dbt tests of severity error block downstream"
    inputs = defs.resolve_assets_def("compliance_report_inputs")
    [gate] = inputs.check_specs
    assert gate.name == "inputs_reconcile" and gate.blocking
    assert orders.group_names_by_key[dg.AssetKey("fct_orders")] == "analytics"
    rpt = defs.resolve_assets_def("rpt_surveillance_alerts")
    assert rpt.group_names_by_key[dg.AssetKey("rpt_surveillance_alerts")] == "compliance"
    # One multi-asset (one dbt process per run): fct_bars_daily by IDX day, the other models unpartitioned.
    assert defs.resolve_assets_def("fct_bars_daily") is defs.resolve_assets_def("fct_orders")
    assert orders.specs_by_key[dg.AssetKey("fct_bars_daily")].partitions_def is not None
    assert orders.specs_by_key[dg.AssetKey("fct_orders")].partitions_def is None
    schedules = {schedule.name for schedule in defs.get_repository_def().schedule_defs}
    assert {"analytics_daily_schedule", "dbt_docs_weekly_schedule", "compliance_monthly_schedule"} <= schedules
    jobs = {job.name: job for job in defs.resolve_all_job_defs()}
    assert {"analytics_daily_job", "dbt_docs_job", "compliance_report_job"} <= set(jobs)
    assert jobs["analytics_daily_job"].partitions_def is not None


def _seed_february(urls: DatabaseUrls, tenant_id: str, user_id: str) -> tuple[str, list[str]]:
    """One filled buy of a fresh IDX stock on 2 February 2026 (plus its position); returns (symbol, order ids)."""
    with psycopg.connect(urls.owner, autocommit=True) as conn:
        symbol = seed.fresh_symbol(conn)
    shift = datetime.combine(seed.DAY, datetime.min.time(), tzinfo=UTC) - FEBRUARY
    seed.load(urls, seed.session_bars(symbol, closing_closes=[]).with_columns(pl.col("ts") - shift))
    with psycopg.connect(urls.owner) as conn, conn.transaction():
        writer = seed._Writer(conn, tenant_id, user_id)
        instrument = seed.instrument_id(conn, symbol)
        at = seed.MORNING - shift + seed.MINUTE * 30
        order = writer.order(
            instrument_id=instrument, symbol=symbol, side="buy", quantity=100, at=at, status="filled", filled=100,
            average=Decimal(1000), closed_at=at + seed.MINUTE,
        )  # fmt: skip
        writer.fill(order, instrument_id=instrument, side="buy", quantity=100, price=1000, at=at + seed.MINUTE)
        conn.execute(
            "insert into trading.positions (tenant_id, instrument_id, quantity, avg_cost, realized_pnl) "
            "values (%s, %s, 100, 1000, 0)",
            [tenant_id, instrument],
        )
    return symbol, [order]


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def test_the_report_is_blocked_until_a_dbt_build_makes_its_inputs_reconcile(
    world: World, settings: Settings, urls: DatabaseUrls, make_tenant: MakeTenant, resources: dict[str, Any]
) -> None:
    tenant = make_tenant()
    slug = tenant.made.tenant.slug
    symbol, _ = _seed_february(urls, tenant.id, tenant.admin_id)
    with dg.instance_for_test() as instance:
        _report_lifecycle(world, settings, urls, resources, instance, tenant.id, slug, symbol)


def _report_lifecycle(
    world: World,
    settings: Settings,
    urls: DatabaseUrls,
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    tenant_id: str,
    slug: str,
    symbol: str,
) -> None:

    # The sensor adds the new tenant's report partition; the monthly schedule asks for last month's reports.
    with dg.build_sensor_context(instance=instance, resources={"database": resources["database"]}) as context:
        sensed = report_tenants_sensor(context)
    assert isinstance(sensed, dg.SensorResult)
    [request] = sensed.dynamic_partitions_requests or []
    assert slug in request.partition_keys
    instance.add_dynamic_partitions(REPORT_TENANTS, [slug])
    schedule_context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    )
    runs = compliance_monthly_schedule(schedule_context)
    assert isinstance(runs, list)
    assert dg.MultiPartitionKey({"tenant": slug, "month": "2026-02-01"}) in [run.partition_key for run in runs]

    partition = dg.MultiPartitionKey({"tenant": slug, "month": "2026-02-01"})
    report_assets = [compliance_report_inputs, compliance_report]

    # Before any build has seen the tenant's February: the inputs fail their blocking check, no report.
    blocked = dg.materialize(
        report_assets, partition_key=partition, resources=resources, instance=instance, raise_on_error=False
    )
    gate = _checks(blocked)["inputs_reconcile"]
    assert not gate.passed
    problems = gate.metadata["problems"].value
    assert isinstance(problems, list)
    assert "orders: the source holds 1 for the period, the marts 0 (stale build)" in problems
    assert blocked.asset_materializations_for_node("compliance_report") == []
    report_dir = Path(settings.home) / "reports" / slug / "2026-02"
    assert not report_dir.exists()

    # The daily job's run of that day: every mart in one dbt build, the day's window as vars start/end, the dbt
    # tests as asset checks.
    built = dg.materialize([analytics_dbt_assets], partition_key="2026-02-02", resources=resources, instance=instance)
    assert built.success
    materialized = {
        event.asset_key.to_user_string() for event in built.get_asset_materialization_events() if event.asset_key
    }
    assert {"fct_orders", "rpt_surveillance_alerts", "dim_users"} <= materialized
    evaluations = built.get_asset_check_evaluations()
    assert len(evaluations) > 100 and all(evaluation.passed for evaluation in evaluations)
    with psycopg.connect(urls.etl) as conn:
        day = conn.execute(
            "select d.close_price, d.bar_count from analytics.fct_bars_daily d "
            "join analytics.dim_instruments i using (instrument_id) where i.symbol = %s",
            [symbol],
        ).fetchall()
    assert day == [(Decimal(1000), 320)]

    # Now the inputs reconcile and the report is rendered and registered.
    rendered = dg.materialize(report_assets, partition_key=partition, resources=resources, instance=instance)
    assert _checks(rendered)["inputs_reconcile"].passed
    [materialization] = rendered.asset_materializations_for_node("compliance_report")
    assert (report_dir / "report.html").exists() and (report_dir / "activity.csv").exists()
    assert symbol in (report_dir / "activity.csv").read_text()
    assert world.seeded.symbol not in (report_dir / "report.html").read_text()
    assert json.loads(json.dumps(materialization.metadata["summary"].value))["orders"] == 1


def test_dbt_docs_asset_generates_the_docs_site(resources: dict[str, Any], tmp_path: Path, world: World) -> None:
    target = tmp_path / f"docs-{uuid4().hex[:6]}"
    result = dg.materialize(
        [dbt_docs],
        resources={"database": resources["database"]},
        run_config={"ops": {"dbt_docs": {"config": {"target_path": str(target)}}}},
    )
    assert result.success
    assert (target / "index.html").exists() and (target / "catalog.json").exists()
    [materialization] = result.asset_materializations_for_node("dbt_docs")
    assert int(materialization.metadata["catalog_nodes"].value) >= 38  # type: ignore[arg-type]
