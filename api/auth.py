"""Authentication endpoints: tokens from an API key or a password, refresh, and the caller."""

from __future__ import annotations

from typing import Self
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, model_validator

from api.deps import CurrentPrincipal, RuntimeDep, TenantConn
from api.schemas import ERROR_RESPONSES, Body
from pasar.tenancy import service as tenancy
from pasar.tenancy.models import Role, Scope, TenantWithConfig, TokenPair, User

router = APIRouter(prefix="/v1", tags=["auth"], responses=ERROR_RESPONSES)


class TokenRequest(Body):
    """Either ``{"api_key"}`` or ``{"username", "password"}`` (with ``tenant`` when the name is ambiguous)."""

    api_key: str | None = Field(default=None, min_length=1, max_length=200)
    username: str | None = Field(default=None, min_length=1, max_length=120)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    tenant: str | None = Field(default=None, min_length=1, max_length=63, description="Tenant slug")

    @model_validator(mode="after")
    def one_grant(self) -> Self:
        by_key = self.api_key is not None
        by_password = self.username is not None or self.password is not None
        if by_key == by_password:
            raise ValueError("give either api_key, or username and password")
        if by_password and (self.username is None or self.password is None):
            raise ValueError("username and password go together")
        if by_key and self.tenant is not None:
            raise ValueError("tenant goes with username and password only")
        return self


class RefreshRequest(Body):
    refresh_token: str = Field(min_length=1, max_length=4096)


class MeResponse(BaseModel):
    kind: str
    subject_id: UUID
    role: Role | None
    scopes: list[Scope]
    api_key_id: UUID | None
    user: User | None
    tenant: TenantWithConfig | None


@router.post("/auth/token", response_model=TokenPair)
async def issue_token(body: TokenRequest, request: Request, runtime: RuntimeDep) -> TokenPair:
    if body.api_key is not None:
        return await runtime.authenticator.exchange_api_key(body.api_key)
    assert body.username is not None and body.password is not None
    address = request.client.host if request.client else "unknown"
    return await runtime.authenticator.login(
        username=body.username, password=body.password, tenant_slug=body.tenant, address=address
    )


@router.post("/auth/refresh", response_model=TokenPair)
async def refresh_token(body: RefreshRequest, runtime: RuntimeDep) -> TokenPair:
    return await runtime.authenticator.refresh(body.refresh_token)


@router.get("/me", response_model=MeResponse)
async def read_me(principal: CurrentPrincipal, conn: TenantConn) -> MeResponse:
    me = await tenancy.me(conn, principal)
    return _me_response(me)


def _me_response(me: tenancy.Me) -> MeResponse:
    principal = me.principal
    return MeResponse(
        kind=principal.kind,
        subject_id=principal.subject_id,
        role=principal.role,
        scopes=sorted(principal.scopes),
        api_key_id=principal.api_key_id,
        user=me.user,
        tenant=me.tenant,
    )
