"""Compliance: surveillance alerts and their review lifecycle (admin or compliance), and the rendered reports
(the compliance role of the tenant only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from api.deps import CurrentPrincipal, RuntimeDep, TenantConn, require
from api.schemas import ERROR_RESPONSES, Body
from pasar.analytics.service import decode_cursor, encode_cursor
from pasar.compliance import service as compliance
from pasar.compliance.models import AlertStatus, AlertType, Period, Severity
from pasar.tenancy.models import Role, Scope

router = APIRouter(prefix="/v1/compliance", tags=["compliance"], responses=ERROR_RESPONSES)
# The compliance role carries only the read scope; reviewing an alert is its job (like the kill switch).
Reviewers = Depends(require(Role.compliance, Role.admin, scope=Scope.read))
Officers = Depends(require(Role.compliance, scope=Scope.read))

PeriodText = Annotated[str | None, Query(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="A month, YYYY-MM")]
AlertId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[a-z_]+:[0-9a-f]{32}$")]
FileName = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[a-z_]+\.(html|csv)$")]


class Review(BaseModel):
    revision: int
    previous_status: AlertStatus
    status: AlertStatus
    note: str
    actor_type: str
    actor_id: str
    request_id: str | None
    reviewed_at: datetime


class Alert(BaseModel):
    alert_id: str
    alert_type: AlertType
    severity: Severity
    status: AlertStatus
    detected_at: datetime
    period: str
    instrument_id: int | None
    symbol: str | None
    user_id: UUID | None
    order_count: int
    evidence: dict[str, Any] = Field(description="The facts behind the alert, with the thresholds applied")
    revision: int = Field(description="How many reviews the alert has had")
    last_note: str | None
    last_actor_type: str | None
    last_actor_id: str | None
    last_reviewed_at: datetime | None


class AlertDetail(Alert):
    reviews: list[Review]


class AlertList(BaseModel):
    items: list[Alert]
    next_cursor: str | None


class AlertReview(Body):
    status: AlertStatus = Field(description="open → investigating → escalated → closed (closed from any open state)")
    note: str = Field(min_length=1, max_length=4000)


class ReportFileEntry(BaseModel):
    name: str
    bytes: int
    sha256: str
    media_type: str
    url: str


class Report(BaseModel):
    id: UUID
    period: str
    checksum: str
    summary: dict[str, Any]
    generated_by: str
    created_at: datetime
    files: list[ReportFileEntry]


class ReportList(BaseModel):
    items: list[Report]
    next_cursor: str | None


def _report(row: dict[str, Any]) -> Report:
    files = [
        ReportFileEntry(**entry, url=f"/v1/compliance/reports/{row['id']}/files/{entry['name']}")
        for entry in row["files"]
    ]
    return Report(
        id=row["id"],
        period=row["period"],
        checksum=row["checksum"],
        summary=row["summary"],
        generated_by=row["generated_by"],
        created_at=row["created_at"],
        files=files,
    )


def _next(offset: int, limit: int, count: int) -> str | None:
    return encode_cursor(offset + limit) if count > limit else None


@router.get("/alerts", response_model=AlertList, dependencies=[Reviewers])
async def list_alerts(
    principal: CurrentPrincipal,
    conn: TenantConn,
    period: PeriodText = None,
    type: AlertType | None = None,
    severity: Severity | None = None,
    status: AlertStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> AlertList:
    """Surveillance alerts of the tenant (newest first) with their evidence and review status."""
    offset = decode_cursor(cursor)
    rows = await compliance.list_alerts(
        conn,
        principal,
        period=None if period is None else Period.parse(period),
        alert_type=None if type is None else type.value,
        severity=None if severity is None else severity.value,
        status=status,
        limit=limit + 1,
        offset=offset,
    )
    return AlertList(
        items=[Alert.model_validate(row) for row in rows[:limit]], next_cursor=_next(offset, limit, len(rows))
    )


@router.get("/alerts/{alert_id}", response_model=AlertDetail, dependencies=[Reviewers])
async def get_alert(alert_id: AlertId, principal: CurrentPrincipal, conn: TenantConn) -> AlertDetail:
    return AlertDetail.model_validate(await compliance.get_alert(conn, principal, alert_id))


@router.patch("/alerts/{alert_id}", response_model=AlertDetail, dependencies=[Reviewers])
async def review_alert(
    alert_id: AlertId, body: AlertReview, principal: CurrentPrincipal, conn: TenantConn
) -> AlertDetail:
    """Move the alert along its lifecycle with a note; who did it is recorded, and the change is audited. A
    transition the lifecycle forbids, or a concurrent review, answers 409."""
    return AlertDetail.model_validate(
        await compliance.review_alert(conn, principal, alert_id, status=body.status, note=body.note)
    )


@router.get("/reports", response_model=ReportList, dependencies=[Officers])
async def list_reports(
    principal: CurrentPrincipal,
    conn: TenantConn,
    period: PeriodText = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> ReportList:
    """The tenant's rendered compliance reports (newest period first)."""
    offset = decode_cursor(cursor)
    rows = await compliance.list_reports(
        conn, principal, period=None if period is None else Period.parse(period), limit=limit + 1, offset=offset
    )
    return ReportList(items=[_report(row) for row in rows[:limit]], next_cursor=_next(offset, limit, len(rows)))


@router.get("/reports/{report_id}", response_model=Report, dependencies=[Officers])
async def get_report(report_id: UUID, principal: CurrentPrincipal, conn: TenantConn) -> Report:
    """One report: its summary, checksum and files (report.html and one CSV per table)."""
    return _report(await compliance.get_report(conn, principal, report_id))


@router.get(
    "/reports/{report_id}/files/{name}",
    dependencies=[Officers],
    response_class=FileResponse,
    responses={200: {"content": {"text/html": {}, "text/csv": {}}}},
)
async def report_file(
    report_id: UUID, name: FileName, principal: CurrentPrincipal, conn: TenantConn, runtime: RuntimeDep
) -> FileResponse:
    """A file of the report, as listed in it."""
    path, media_type = await compliance.report_file(conn, principal, report_id, name, home=runtime.settings.home)
    return FileResponse(path, media_type=media_type, filename=name)
