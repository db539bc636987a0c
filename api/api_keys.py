"""API keys of the caller's tenant (admin role). A key's secret is shown once, at creation."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Response
from pydantic import AwareDatetime, Field

from api.deps import CurrentPrincipal, TenantConn, require
from api.schemas import ERROR_RESPONSES, Body, Page
from pasar.tenancy import service as tenancy
from pasar.tenancy.models import ApiKey, IssuedApiKey, Role, Scope

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"], responses=ERROR_RESPONSES)
AdminRead = Depends(require(Role.admin, scope=Scope.read))
AdminWrite = Depends(require(Role.admin, scope=Scope.admin))


class ApiKeyCreate(Body):
    name: str = Field(min_length=1, max_length=100)
    user_id: UUID | None = Field(default=None, description="Whose key; the caller by default")
    scopes: list[Scope] | None = Field(default=None, description="At most the user's role allows; all by default")
    expires_at: AwareDatetime | None = Field(default=None, description="With a time zone; at most 10 years ahead")


@router.get("", response_model=Page[ApiKey], dependencies=[AdminRead])
async def list_api_keys(principal: CurrentPrincipal, conn: TenantConn) -> Page[ApiKey]:
    return Page(items=await tenancy.list_api_keys(conn, principal))


@router.post("", response_model=IssuedApiKey, status_code=201, dependencies=[AdminWrite])
async def create_api_key(body: ApiKeyCreate, principal: CurrentPrincipal, conn: TenantConn) -> IssuedApiKey:
    return await tenancy.create_api_key(
        conn,
        principal,
        name=body.name,
        user_id=body.user_id,
        scopes=None if body.scopes is None else frozenset(body.scopes),
        expires_at=body.expires_at,
    )


@router.delete("/{key_id}", status_code=204, response_class=Response, dependencies=[AdminWrite])
async def revoke_api_key(key_id: UUID, principal: CurrentPrincipal, conn: TenantConn) -> None:
    await tenancy.revoke_api_key(conn, principal, key_id)
