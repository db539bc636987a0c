"""Users of the caller's tenant (admin role)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from pydantic import Field

from api.deps import CurrentPrincipal, TenantConn, require
from api.schemas import ERROR_RESPONSES, Body, Page
from pasar.tenancy import service as tenancy
from pasar.tenancy.models import Role, Scope, User

router = APIRouter(prefix="/v1/users", tags=["users"], responses=ERROR_RESPONSES)
AdminRead = Depends(require(Role.admin, scope=Scope.read))
AdminWrite = Depends(require(Role.admin, scope=Scope.admin))


class UserCreate(Body):
    username: str = Field(pattern=r"^[A-Za-z0-9._@+-]{1,120}$")
    display_name: str = Field(default="", max_length=200)
    role: Role
    password: str | None = Field(default=None, max_length=1024, description="None: the user signs in by API key")


class UserUpdate(Body):
    display_name: str | None = Field(default=None, max_length=200)
    role: Role | None = None
    is_active: bool | None = None
    password: str | None = Field(default=None, max_length=1024)


@router.get("", response_model=Page[User], dependencies=[AdminRead])
async def list_users(
    principal: CurrentPrincipal,
    conn: TenantConn,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: UUID | None = None,
) -> Page[User]:
    users = await tenancy.list_users(conn, principal, limit=limit, after=after)
    return Page(items=users, next_cursor=str(users[-1].id) if len(users) == limit else None)


@router.post("", response_model=User, status_code=201, dependencies=[AdminWrite])
async def create_user(body: UserCreate, principal: CurrentPrincipal, conn: TenantConn) -> User:
    return await tenancy.create_user(
        conn,
        principal,
        username=body.username,
        display_name=body.display_name,
        role=body.role,
        password=body.password,
    )


@router.get("/{user_id}", response_model=User, dependencies=[AdminRead])
async def get_user(user_id: UUID, principal: CurrentPrincipal, conn: TenantConn) -> User:
    return await tenancy.get_user(conn, principal, user_id)


@router.patch("/{user_id}", response_model=User, dependencies=[AdminWrite])
async def update_user(user_id: UUID, body: UserUpdate, principal: CurrentPrincipal, conn: TenantConn) -> User:
    return await tenancy.update_user(
        conn,
        principal,
        user_id,
        display_name=body.display_name,
        role=body.role,
        is_active=body.is_active,
        password=body.password,
    )


@router.delete("/{user_id}", status_code=204, response_class=Response, dependencies=[AdminWrite])
async def deactivate_user(user_id: UUID, principal: CurrentPrincipal, conn: TenantConn) -> None:
    """Deactivates the user (kept for the audit trail) and revokes its keys and sessions."""
    await tenancy.deactivate_user(conn, principal, user_id)
