"""Analytics: the dbt marts of the caller's tenant, paged and filtered (allow-listed marts only), read as pasar_app
under row-level security. Analysts, admins and compliance officers; the compliance reports (rpt_*) are for admins
and compliance officers."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from api.deps import CurrentPrincipal, TenantConn, require
from api.schemas import ERROR_RESPONSES
from pasar.analytics import service as analytics
from pasar.analytics.models import MARTS
from pasar.tenancy.models import Role, Scope

router = APIRouter(prefix="/v1/analytics", tags=["analytics"], responses=ERROR_RESPONSES)
Readers = Depends(require(Role.analyst, Role.admin, Role.compliance, scope=Scope.read))

Text = Annotated[str | None, Query(min_length=1, max_length=64)]


class MartPage(BaseModel):
    mart: str
    items: list[dict[str, Any]]
    next_cursor: str | None


@router.get("", dependencies=[Readers])
async def list_marts(principal: CurrentPrincipal) -> dict[str, list[dict[str, Any]]]:
    """The marts this caller may read, with their filters."""
    return {
        "items": [
            {"mart": spec.name, "filters": list(spec.filters), "date_column": spec.date_column, "shared": spec.shared}
            for spec in MARTS.values()
            if principal.role in spec.readers
        ]
    }


@router.get("/{mart}", response_model=MartPage, dependencies=[Readers])
async def read_mart(
    mart: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z_]+$")],
    principal: CurrentPrincipal,
    conn: TenantConn,
    since: Annotated[date | None, Query(description="Rows on or after this date (the mart's date column)")] = None,
    until: Annotated[date | None, Query(description="Rows before this date")] = None,
    symbol: Text = None,
    instrument_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
    user_id: UUID | None = None,
    order_id: UUID | None = None,
    status: Text = None,
    side: Literal["buy", "sell"] | None = None,
    kind: Text = None,
    provider: Text = None,
    model: Text = None,
    role: Text = None,
    period: Annotated[str | None, Query(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")] = None,
    alert_type: Text = None,
    severity: Text = None,
    reject_reason: Text = None,
    event_type: Text = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")] = None,
    asset_class: Text = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    """One page of a mart; each mart takes some of the filters (GET /v1/analytics lists them). Money is in
    currency units; decimals are strings."""
    filters: dict[str, Any] = {
        "symbol": symbol, "instrument_id": instrument_id, "user_id": user_id, "order_id": order_id,
        "status": status, "side": side, "kind": kind, "provider": provider, "model": model, "role": role,
        "period": period, "alert_type": alert_type, "severity": severity, "reject_reason": reject_reason,
        "event_type": event_type, "currency": currency, "asset_class": asset_class,
    }  # fmt: skip
    return await analytics.read_mart(
        conn, principal, mart, filters=filters, since=since, until=until, limit=limit, cursor=cursor
    )
