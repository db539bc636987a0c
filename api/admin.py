"""The operator plane: platform operators list tenants and suspend or resume them."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from pydantic import Field

from api.deps import CurrentPrincipal, OperatorConn
from api.schemas import ERROR_RESPONSES, Body, Page
from pasar.request_context import current_request_id
from pasar.tenancy import service as tenancy
from pasar.tenancy.models import Tenant, TenantStatus

router = APIRouter(prefix="/v1/admin", tags=["operators"], responses=ERROR_RESPONSES)


class StatusChange(Body):
    reason: str = Field(min_length=1, max_length=500)


@router.get("/tenants", response_model=Page[Tenant])
async def list_tenants(principal: CurrentPrincipal, conn: OperatorConn) -> Page[Tenant]:
    return Page(items=await tenancy.operator_list_tenants(conn, principal))


@router.post("/tenants/{tenant_id}/suspend", response_model=Tenant)
async def suspend_tenant(
    tenant_id: UUID, body: StatusChange, principal: CurrentPrincipal, conn: OperatorConn
) -> Tenant:
    """Suspends the tenant: its tokens and keys stop working at once."""
    return await tenancy.operator_set_tenant_status(
        conn, principal, tenant_id, status=TenantStatus.suspended, reason=body.reason, request_id=current_request_id()
    )


@router.post("/tenants/{tenant_id}/resume", response_model=Tenant)
async def resume_tenant(tenant_id: UUID, body: StatusChange, principal: CurrentPrincipal, conn: OperatorConn) -> Tenant:
    return await tenancy.operator_set_tenant_status(
        conn, principal, tenant_id, status=TenantStatus.active, reason=body.reason, request_id=current_request_id()
    )
