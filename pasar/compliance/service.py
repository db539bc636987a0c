"""Rules of compliance: the review lifecycle of surveillance alerts, and the per-tenant, per-period reports.

The alerts come from the dbt mart ``analytics.rpt_surveillance_alerts`` (rebuilt with stable ids); their review
state is an append-only history in ``compliance.alert_reviews``. Every function runs in a tenant transaction as
pasar_app (``pasar.db.pool.tenant_transaction``): the API's request, or — for reports rendered by the CLI and by
Dagster — one opened for the report's tenant, so row-level security guarantees that a report holds nothing of
another tenant. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import psycopg.errors

from pasar.audit import repository as audit
from pasar.compliance import render
from pasar.compliance import repository as repo
from pasar.compliance.models import (
    REPORT_TABLES,
    AlertStatus,
    Period,
    ReportData,
    can_transition,
)
from pasar.db.pool import Conn
from pasar.errors import Conflict, NotFound
from pasar.request_context import current_request_id
from pasar.tenancy.models import Principal

T = TypeVar("T")

REPORTING_TIMEZONE = "Asia/Jakarta"  # the dbt var reporting_timezone: report months are WIB months
REPORT_MARTS = (
    "rpt_activity_summary",
    "rpt_risk_denials",
    "rpt_limit_events",
    "rpt_surveillance_alerts",
    "rpt_best_execution",
    "rpt_order_audit_trail",
    "fct_pnl_daily",
    "fct_orders",
    "fct_fills",
    "dim_users",
)


def _tenant(principal: Principal) -> UUID:
    if principal.tenant_id is None:
        raise NotFound("this principal belongs to no tenant")
    return principal.tenant_id


def reports_root(home: Path) -> Path:
    return Path(home) / "reports"


# Alerts ------------------------------------------------------------------------------------------------------


async def _mart_query(query: Awaitable[T]) -> T:
    """Run a query against the marts; before the first dbt build they do not exist, which is a 404, not a 500."""
    try:
        return await query
    except psycopg.errors.UndefinedTable as exc:
        raise NotFound("the surveillance marts have not been built yet (run dbt)", code="marts_not_built") from exc


async def list_alerts(
    conn: Conn,
    principal: Principal,
    *,
    period: Period | None,
    alert_type: str | None,
    severity: str | None,
    status: AlertStatus | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    tenant_id = _tenant(principal)
    async with conn.transaction():  # a savepoint: a missing mart must not poison the request's transaction
        return await _mart_query(
            repo.list_alerts(
                conn,
                tenant_id,
                period=None if period is None else str(period),
                alert_type=alert_type,
                severity=severity,
                status=None if status is None else status.value,
                limit=limit,
                offset=offset,
            )
        )


async def get_alert(conn: Conn, principal: Principal, alert_id: str) -> dict[str, Any]:
    tenant_id = _tenant(principal)
    async with conn.transaction():
        alert = await _mart_query(repo.get_alert(conn, tenant_id, alert_id))
    if alert is None:
        raise NotFound("alert not found")
    return {**alert, "reviews": await repo.list_reviews(conn, tenant_id, alert_id)}


async def review_alert(
    conn: Conn, principal: Principal, alert_id: str, *, status: AlertStatus, note: str
) -> dict[str, Any]:
    """Move an alert along its lifecycle (open → investigating → escalated → closed; closing is allowed from any
    open state), with a note and who did it; audited. A transition the lifecycle does not allow is a 409, and so
    is a concurrent review of the same alert (the revision is the primary key)."""
    tenant_id = _tenant(principal)
    alert = await get_alert(conn, principal, alert_id)
    current = AlertStatus(alert["status"])
    if not can_transition(current, status):
        raise Conflict(
            f"an alert that is {current.value} cannot become {status.value}",
            code="invalid_transition",
            details={"from": current.value, "to": status.value},
        )
    row = {
        "tenant_id": tenant_id,
        "alert_id": alert_id,
        "revision": int(alert["revision"]) + 1,
        "status": status.value,
        "previous_status": current.value,
        "note": note,
        "actor_type": principal.actor_type,
        "actor_id": principal.actor_id,
        "request_id": current_request_id(),
    }
    try:
        async with conn.transaction():
            review = await repo.insert_review(conn, row)
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("the alert was reviewed concurrently; reload it and retry", code="concurrent_review") from exc
    await audit.record(
        conn,
        principal,
        action="compliance.alert_reviewed",
        target_type="alert",
        target_id=alert_id,
        details={"from": current.value, "to": status.value, "note": note, "alert_type": alert["alert_type"]},
    )
    return {
        **alert,
        "status": review["status"],
        "revision": review["revision"],
        "last_note": review["note"],
        "last_actor_type": review["actor_type"],
        "last_actor_id": review["actor_id"],
        "last_reviewed_at": review["reviewed_at"],
        "reviews": [*alert["reviews"], review],
    }


# Report registry (API) ---------------------------------------------------------------------------------------


async def list_reports(
    conn: Conn, principal: Principal, *, period: Period | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    return await repo.list_reports(
        conn, _tenant(principal), period=None if period is None else str(period), limit=limit, offset=offset
    )


async def get_report(conn: Conn, principal: Principal, report_id: UUID) -> dict[str, Any]:
    report = await repo.get_report(conn, _tenant(principal), report_id)
    if report is None:
        raise NotFound("report not found")
    return report


async def report_file(conn: Conn, principal: Principal, report_id: UUID, name: str, *, home: Path) -> tuple[Path, str]:
    """(path, media type) of one file of a report of the principal's tenant. Only the files the registry lists are
    served, and only from under PASAR_HOME/reports."""
    report = await get_report(conn, principal, report_id)
    listed = {entry["name"]: entry for entry in report["files"]}
    if name not in listed:
        raise NotFound("this report has no such file")
    root = reports_root(home).resolve()
    path = (root / report["path"] / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound("the report's files are missing; render it again")
    return path, str(listed[name]["media_type"])


# Reports (CLI and Dagster, in a tenant transaction) ---------------------------------------------------------


async def collect_report_data(conn: Conn, principal: Principal, *, period: Period) -> ReportData:
    """Everything the tenant's report for ``period`` shows, read from the marts under the tenant's RLS."""
    tenant_id = _tenant(principal)
    tenant = await repo.tenant_row(conn, tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    missing = await repo.missing_relations(conn, list(REPORT_MARTS))
    if missing:
        raise NotFound(
            f"the compliance marts have not been built yet (missing: {', '.join(missing)}); run dbt first",
            code="marts_not_built",
        )
    data = ReportData(str(tenant_id), str(tenant["slug"]), str(tenant["name"]), period)
    for table, _ in REPORT_TABLES:
        data.tables[table] = await repo.report_table(
            conn, table, tenant_id, period=str(period), first_day=period.first_day, next_first_day=period.next_first_day
        )
    data.source_counts = await repo.source_counts(
        conn, tenant_id, first_day=period.first_day, next_first_day=period.next_first_day, timezone=REPORTING_TIMEZONE
    )
    return data


def check_report_inputs(data: ReportData) -> list[str]:
    """What is wrong with a report's inputs (empty when nothing is): every row is the tenant's; the marts hold
    every order and fill the source holds for the period (a build ran since the last trade); every alert has its
    evidence. The Dagster report asset is blocked when this is not empty."""
    problems: list[str] = []
    for table, rows in data.tables.items():
        foreign = sum(1 for row in rows if "tenant_id" in row and str(row["tenant_id"]) != data.tenant_id)
        if foreign:
            problems.append(f"{table}: {foreign} rows of another tenant")
    counts = data.source_counts
    for kind in ("orders", "fills"):
        source, mart = counts.get(f"source_{kind}", 0), counts.get(f"mart_{kind}", 0)
        if source != mart:
            problems.append(f"{kind}: the source holds {source} for the period, the marts {mart} (stale build)")
    bare = [row["alert_id"] for row in data.rows("alerts") if not row.get("evidence")]
    if bare:
        problems.append(f"alerts without evidence: {', '.join(bare[:5])}")
    activity_orders = sum(int(row["orders"]) for row in data.rows("activity"))
    if activity_orders != counts.get("mart_orders", activity_orders):
        problems.append(
            f"activity summary counts {activity_orders} orders, fct_orders {counts.get('mart_orders')} for the period"
        )
    return problems


async def generate_report(
    conn: Conn,
    principal: Principal,
    *,
    period: Period,
    home: Path,
    generated_by: str,
    force: bool = False,
) -> dict[str, Any]:
    """Render the tenant's report for ``period`` under PASAR_HOME/reports/<tenant slug>/<period>/ (report.html and
    one CSV per table) and register it. Inputs that fail :func:`check_report_inputs` refuse the report (409)
    unless ``force``."""
    tenant_id = _tenant(principal)
    data = await collect_report_data(conn, principal, period=period)
    problems = check_report_inputs(data)
    if problems and not force:
        raise Conflict("the report's inputs failed their checks", code="report_inputs_failed", details=problems)
    relative = Path(data.tenant_slug) / str(period)
    rendered = render.write_report(data, reports_root(home) / relative, generated_at=datetime.now(UTC))
    row = await repo.upsert_report(
        conn,
        {
            "tenant_id": tenant_id,
            "period": str(period),
            "path": relative.as_posix(),
            "files": [entry.document() for entry in rendered.files],
            "checksum": rendered.checksum,
            "summary": {**rendered.summary, "input_problems": problems},
            "generated_by": generated_by,
        },
    )
    return {**row, "directory": str(rendered.directory), "tenant_slug": data.tenant_slug}
