"""The dbt project as Dagster assets, its docs, and the compliance reports.

* ``analytics_dbt_assets``: every dbt model (dbt tests are their asset checks), built with ``dbt build`` as
  pasar_etl in one dbt invocation. ``fct_bars_daily`` (dbt tag ``partitioned_daily``) is partitioned by IDX day,
  every other model is not: a run of a day (the daily job) builds the selected models in one ``dbt build`` with the
  partition's window in dbt's environment (:func:`pasar.analytics.dbt.window_env`) and without the unit tests; a run
  without a partition is a plain ``dbt build`` of its selection.
* Lineage: dbt sources name their Dagster asset in ``meta.dagster.asset_key`` (dbt_project/models/staging/
  _sources.yml): market instruments are the ``instruments`` asset; ``market/bars`` (below) is the bars table the
  three ingestion assets write; the trading, usage, audit and tenancy tables the API writes are external assets.
* ``dbt_docs``: ``dbt docs generate`` (``pasar.analytics.dbt.serve_docs`` serves the result).
* ``compliance_report_inputs`` → ``compliance_report``, partitioned by tenant × month: the inputs asset reads the
  tenant's compliance marts under its RLS and carries a *blocking* check; when the inputs fail it, the report of
  that partition is not rendered.

The manifest is parsed at import: ``dbt parse`` runs once when dbt_project/target/manifest.json is missing or
older than a file of the project (a few seconds, no database needed).
"""

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets

from orchestration import partitions
from orchestration.defs.analytics import resources as analytics_resources
from orchestration.defs.market.assets import bundled_bars, landing_bars, synthetic_bars
from orchestration.resources import PasarDatabase
from pasar.analytics import dbt
from pasar.compliance import service as compliance
from pasar.compliance.models import Period, ReportData
from pasar.db.pool import Conn
from pasar.tenancy.models import Principal

GROUP = "analytics"
COMPLIANCE_GROUP = "compliance"
RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)
DAILY_TAG = "partitioned_daily"  # the dbt tag of models built one partition window at a time


def _manifest_is_stale(manifest: Path) -> bool:
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = (
        path
        for folder in ("models", "macros", "tests")
        for path in (dbt.PROJECT_DIR / folder).rglob("*")
        if path.suffix in (".sql", ".yml", ".md")
    )
    project_files = [dbt.PROJECT_DIR / "dbt_project.yml", dbt.PROJECT_DIR / "profiles.yml", *sources]
    return any(path.stat().st_mtime > built for path in project_files)


def load_manifest() -> Path:
    """dbt_project/target/manifest.json, parsed again (``dbt parse``) when the project changed since."""
    return dbt.ensure_manifest(refresh=_manifest_is_stale(dbt.manifest_path()))


MANIFEST = load_manifest()


# Partitions of the reports (here rather than in orchestration/partitions.py, which belongs to ingestion):
# tenants are dynamic (the report_tenants sensor adds each new tenant's slug), months are WIB months.
REPORT_TENANTS = "report_tenants"
report_tenants = dg.DynamicPartitionsDefinition(name=REPORT_TENANTS)
report_months = dg.MonthlyPartitionsDefinition(start_date="2026-01-01", timezone=partitions.IDX_TIMEZONE, end_offset=0)
tenant_months = dg.MultiPartitionsDefinition({"tenant": report_tenants, "month": report_months})


class PasarDbtTranslator(DagsterDbtTranslator):
    """Groups by the project's folders: compliance reports in ``compliance``, every other model in ``analytics``;
    the models tagged ``partitioned_daily`` are partitioned by IDX day."""

    def get_partitions_def(self, dbt_resource_props: Mapping[str, Any]) -> dg.PartitionsDefinition[Any] | None:
        return partitions.synthetic_daily if DAILY_TAG in dbt_resource_props.get("tags", []) else None

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = list(dbt_resource_props.get("fqn", []))
        if dbt_resource_props.get("resource_type") == "model" and fqn[1:3] == ["marts", "compliance"]:
            return COMPLIANCE_GROUP
        if dbt_resource_props.get("resource_type") == "model":
            return GROUP
        return super().get_group_name(dbt_resource_props)


TRANSLATOR = PasarDbtTranslator(DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True))


# The tables upstream of the dbt sources ------------------------------------------------------------------------

market_bars = dg.AssetSpec(
    ["market", "bars"],
    deps=[bundled_bars, synthetic_bars, landing_bars],
    group_name="market",
    kinds={"postgres"},
    description="market.bars and market.bar_series: every bar the ingestion assets load (bundled, synthetic, "
    "landing). The dbt sources market.bars and market.bar_series.",
)
platform_tables = [
    dg.AssetSpec(
        key,
        group_name="platform_tables",
        kinds={"postgres"},
        description=f"{description} Written by the API, not by Dagster; read by dbt as a source.",
    )
    for key, description in (
        (["trading", "orders"], "trading.orders: every order, with the risk engine's decision."),
        (["trading", "fills"], "trading.fills: executions at the paper venue."),
        (["trading", "accounts"], "trading.accounts: one paper account per tenant (kill switch, loss limit)."),
        (["trading", "positions"], "trading.positions: current positions (average cost)."),
        (["trading", "ledger"], "trading.ledger_entries and ledger_lines: the double-entry cash ledger."),
        (["usage", "events"], "usage.events: metered API, AI and order usage."),
        (["audit", "events"], "audit.events: the append-only audit log."),
        (["tenancy", "tenants"], "tenancy.tenants: tenants and their configuration."),
        (["tenancy", "users"], "tenancy.users: users of each tenant."),
    )
]


# dbt -----------------------------------------------------------------------------------------------------------


@dbt_assets(
    manifest=MANIFEST,
    dagster_dbt_translator=TRANSLATOR,
    name="analytics_dbt_assets",
    retry_policy=RETRY,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def analytics_dbt_assets(
    context: dg.AssetExecutionContext, dbt_cli: analytics_resources.PasarDbtCli, database: PasarDatabase
) -> Iterator[Any]:
    """One ``dbt build`` of the selected models with their tests (asset checks): with a partition (one day, or a
    backfill's range in one run), the daily build of that window; without, every row tested and the unit tests."""
    if context.has_partition_key or context.has_partition_key_range:
        window = context.partition_time_window
        args, env = list(dbt.DAILY_BUILD_ARGS), dbt.window_env(window.start, window.end)
    else:
        args, env = ["build"], {}
    yield from dbt_cli.build(args, context=context, conninfo=database.conninfo(), env=env)


class DocsConfig(dg.Config):
    """Where ``dbt docs generate`` writes (default: dbt_project/target, which ``serve_docs`` serves)."""

    target_path: str | None = None


@dg.asset(
    group_name=GROUP,
    deps=[analytics_dbt_assets],
    retry_policy=RETRY,
    kinds={"dbt"},
    description="The dbt docs site (dbt docs generate): every model, column, test and source with lineage; "
    "`make demo` serves it.",
)
def dbt_docs(config: DocsConfig, database: PasarDatabase) -> dg.MaterializeResult[None]:
    target = Path(config.target_path) if config.target_path else dbt.DEFAULT_TARGET_PATH
    dbt.run_dbt_with(
        ["docs", "generate"], dbt.dbt_env_for(database.conninfo()), target_path=target, check=True, timeout=900
    )
    catalog = json.loads((target / "catalog.json").read_text())
    return dg.MaterializeResult(
        metadata={
            "index": dg.MetadataValue.path(str(target / "index.html")),
            "catalog_nodes": dg.MetadataValue.int(len(catalog.get("nodes", {}))),
            "catalog_sources": dg.MetadataValue.int(len(catalog.get("sources", {}))),
        }
    )


# Compliance reports --------------------------------------------------------------------------------------------

REPORT_INPUTS = [
    dg.AssetKey(name)
    for name in (
        "rpt_activity_summary",
        "rpt_risk_denials",
        "rpt_limit_events",
        "rpt_surveillance_alerts",
        "rpt_best_execution",
        "rpt_order_audit_trail",
        "fct_pnl_daily",
    )
]
INPUTS_RECONCILE = "inputs_reconcile"


def _partition(context: dg.AssetExecutionContext) -> tuple[str, Period]:
    key = context.partition_key
    assert isinstance(key, dg.MultiPartitionKey)
    dimensions = key.keys_by_dimension
    month = dimensions["month"]  # "YYYY-MM-01"
    return dimensions["tenant"], Period.parse(month[:7])


def _tenant_id(database: PasarDatabase, slug: str) -> UUID:
    from pasar.analytics.logins import resolve_tenant

    with database.connect() as conn:
        tenant_id, _ = resolve_tenant(conn, slug)
    return tenant_id


@dg.asset(
    group_name=COMPLIANCE_GROUP,
    partitions_def=tenant_months,
    deps=REPORT_INPUTS,
    retry_policy=RETRY,
    kinds={"postgres"},
    check_specs=[
        dg.AssetCheckSpec(
            INPUTS_RECONCILE,
            asset="compliance_report_inputs",
            blocking=True,
            description="Every row read is the tenant's; the marts hold every order and fill the source holds for "
            "the month (a dbt build ran since the last trade); every alert has evidence. Blocks the report.",
        )
    ],
    description="The tenant's compliance marts for one month, read as pasar_app under the tenant's RLS, with "
    "their row counts; a failed check blocks the month's report.",
)
def compliance_report_inputs(
    context: dg.AssetExecutionContext, database: PasarDatabase, app_database: analytics_resources.PasarAppDatabase
) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
    slug, period = _partition(context)

    async def collect(conn: Conn, principal: Principal) -> ReportData:
        return await compliance.collect_report_data(conn, principal, period=period)

    data = app_database.in_tenant(_tenant_id(database, slug), collect)
    problems = compliance.check_report_inputs(data)
    yield dg.MaterializeResult(
        metadata={
            "tenant": dg.MetadataValue.text(slug),
            "period": dg.MetadataValue.text(str(period)),
            **{f"{table}_rows": dg.MetadataValue.int(len(rows)) for table, rows in data.tables.items()},
            "source_counts": dg.MetadataValue.json(data.source_counts),
        }
    )
    yield dg.AssetCheckResult(
        check_name=INPUTS_RECONCILE,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "problems": dg.MetadataValue.json(problems),
            "source_counts": dg.MetadataValue.json(data.source_counts),
        },
    )


@dg.asset(
    group_name=COMPLIANCE_GROUP,
    partitions_def=tenant_months,
    deps=[compliance_report_inputs],
    retry_policy=RETRY,
    kinds={"html", "csv"},
    description="The tenant's compliance report for one month: PASAR_HOME/reports/<tenant>/<YYYY-MM>/report.html "
    "(charts) and one CSV file per table, registered for GET /v1/compliance/reports.",
)
def compliance_report(
    context: dg.AssetExecutionContext, database: PasarDatabase, app_database: analytics_resources.PasarAppDatabase
) -> dg.MaterializeResult[None]:
    slug, period = _partition(context)

    async def render(conn: Conn, principal: Principal) -> dict[str, Any]:
        return await compliance.generate_report(
            conn, principal, period=period, home=database.home_path, generated_by="dagster"
        )

    report = app_database.in_tenant(_tenant_id(database, slug), render)
    return dg.MaterializeResult(
        metadata={
            "report_id": dg.MetadataValue.text(str(report["id"])),
            "path": dg.MetadataValue.path(str(Path(report["directory"]) / "report.html")),
            "checksum": dg.MetadataValue.text(str(report["checksum"])),
            "files": dg.MetadataValue.json([entry["name"] for entry in report["files"]]),
            "summary": dg.MetadataValue.json(report["summary"]),
        }
    )
