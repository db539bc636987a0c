"""Rules of tenancy: provisioning, authentication, users, API keys and the operator plane.

Services take ``(conn, principal, …)`` and never commit: the caller (API request, CLI command) owns the
transaction. Authentication is the one exception that takes the ``Database``: it runs before a tenant is
known and may need two transactions (the cross-tenant lookup, then the tenant's own writes).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg.errors
from psycopg import AsyncCursor
from psycopg.rows import DictRow

from pasar.audit import repository as audit
from pasar.db.pool import Conn, Database, tenant_transaction
from pasar.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized
from pasar.ratelimit import Limit, RateLimiter
from pasar.tenancy import repository
from pasar.tenancy.credentials import (
    DUMMY_PASSWORD_HASH,
    OPERATOR_KEY_PREFIX,
    TENANT_KEY_PREFIX,
    TokenIssuer,
    generate_key,
    hash_password,
    scopes_for,
    split_key,
    verify_password,
)
from pasar.tenancy.models import (
    PLAN_DEFAULTS,
    ROLE_SCOPES,
    ApiKey,
    IssuedApiKey,
    Plan,
    Principal,
    ProvisionedTenant,
    Role,
    Scope,
    Tenant,
    TenantConfig,
    TenantStatus,
    TenantWithConfig,
    TokenPair,
    User,
)

MIN_PASSWORD_LENGTH = 10
MAX_KEY_LIFETIME = timedelta(days=3653)
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63]
    if not _SLUG_RE.match(slug):
        raise InvalidInput(f"cannot make a tenant slug from {name!r}: use letters, digits and dashes")
    return slug


# Provisioning -----------------------------------------------------------------------------------------------


async def provision_tenant(
    conn: Conn, principal: Principal, *, name: str, plan: Plan, admin_username: str = "admin"
) -> ProvisionedTenant:
    """Creates the tenant of a system principal, with an admin user and a first API key for that admin."""
    assert principal.kind == "system" and principal.tenant_id is not None
    slug = slugify(name)
    try:
        tenant = await repository.insert_tenant(
            conn, tenant_id=principal.tenant_id, slug=slug, name=name, plan=plan.value, config=PLAN_DEFAULTS[plan]
        )
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"a tenant named {slug!r} exists already", code="tenant_exists") from exc
    password = secrets.token_urlsafe(15)
    admin = await repository.insert_user(
        conn,
        tenant_id=tenant.id,
        username=admin_username,
        display_name=f"{name} admin",
        role=Role.admin.value,
        password_hash=await asyncio.to_thread(hash_password, password),
    )
    key = await _issue_api_key(conn, principal, user=admin, name="initial admin key", scopes=None, expires_at=None)
    await audit.record(
        conn,
        principal,
        action="tenant.created",
        target_type="tenant",
        target_id=tenant.id,
        details={"plan": plan.value, "slug": slug},
    )
    return ProvisionedTenant(tenant=tenant, admin_user=admin, admin_password=password, api_key=key)


async def create_operator(conn: Conn, *, name: str) -> tuple[UUID, str]:
    """A platform operator and its key (shown once). Runs on the owner's connection, from the CLI only."""
    key = generate_key(OPERATOR_KEY_PREFIX)
    try:
        operator_id = await repository.insert_operator(conn, name=name, prefix=key.prefix, key_hash=key.key_hash)
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"an operator named {name!r} exists already", code="operator_exists") from exc
    return operator_id, key.secret


# Authentication ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginPolicy:
    max_failures_per_user: int
    max_failures_per_address: int
    window_seconds: int

    def limits(self, user_key: str, address: str) -> list[Limit]:
        return [
            Limit(f"login:user:{user_key}", self.max_failures_per_user, self.window_seconds),
            Limit(f"login:addr:{address}", self.max_failures_per_address, self.window_seconds),
        ]


@dataclass(frozen=True)
class Authenticator:
    database: Database
    issuer: TokenIssuer
    limiter: RateLimiter
    login_policy: LoginPolicy

    async def principal_from_key(self, secret: str) -> Principal:
        """The principal behind an API key: a tenant user's key, or an operator's."""
        prefix, key_hash = split_key(secret)
        async with self.database.untenanted_transaction() as conn:
            if prefix.startswith(OPERATOR_KEY_PREFIX):
                operator = await repository.auth_operator_key(conn, prefix, key_hash)
                if operator is None:
                    raise Unauthorized("invalid API key", code="invalid_api_key")
                return Principal(kind="operator", subject_id=operator["operator_id"], tenant_id=None, role=None)
            row = await repository.auth_api_key(conn, prefix, key_hash)
        if row is None:
            raise Unauthorized("invalid API key", code="invalid_api_key")
        if row["revoked_at"] is not None:
            raise Unauthorized("API key revoked", code="api_key_revoked")
        if row["expires_at"] is not None and row["expires_at"] <= datetime.now(UTC):
            raise Unauthorized("API key expired", code="api_key_expired")
        if not row["user_active"]:
            raise Unauthorized("the key's user is deactivated", code="user_inactive")
        if row["tenant_status"] != TenantStatus.active:
            raise Forbidden("tenant suspended", code="tenant_suspended")
        role = Role(row["role"])
        return Principal(
            kind="user",
            subject_id=row["user_id"],
            tenant_id=row["tenant_id"],
            role=role,
            scopes=frozenset(Scope(s) for s in row["scopes"]) & ROLE_SCOPES[role],
            api_key_id=row["api_key_id"],
        )

    async def exchange_api_key(self, secret: str) -> TokenPair:
        principal = await self.principal_from_key(secret)
        if principal.kind == "operator":
            return TokenPair(
                access_token=self.issuer.access_token(principal),
                refresh_token=None,
                expires_in=self.issuer.access_ttl,
            )
        async with tenant_transaction(principal, database=self.database) as conn:
            return await self._issue_pair(conn, principal, family_id=uuid4())

    async def login(self, *, username: str, password: str, tenant_slug: str | None, address: str) -> TokenPair:
        async with self.database.untenanted_transaction() as conn:
            candidates = await repository.auth_login_candidates(conn, username, tenant_slug)
        if len(candidates) > 1:
            # Decided before any password check: an unqualified name costs one hash at most, and failures
            # are counted per tenant's user, so nobody can lock out every tenant's "admin" at once.
            raise Unauthorized("this username exists in several tenants: give the tenant", code="tenant_required")
        candidate = candidates[0] if candidates else None
        user_key = f"{candidate['tenant_id']}:{username}" if candidate else f"unknown:{username.lower()}"
        limits = self.login_policy.limits(user_key, address)
        wait = await self.limiter.acquire(limits, dry_run=True)
        if wait > 0:
            raise RateLimited("too many failed logins; try again later", retry_after=wait)
        password_hash = candidate["password_hash"] if candidate else DUMMY_PASSWORD_HASH  # same cost either way
        verified = await asyncio.to_thread(verify_password, password_hash, password)
        if candidate is None or not verified or not candidate["user_active"]:
            await self.limiter.acquire(limits)  # only failures count against the throttle
            raise Unauthorized("invalid username or password", code="invalid_credentials")
        match = candidate
        if match["tenant_status"] != TenantStatus.active:
            raise Forbidden("tenant suspended", code="tenant_suspended")
        role = Role(match["role"])
        principal = Principal(
            kind="user", subject_id=match["user_id"], tenant_id=match["tenant_id"], role=role, scopes=ROLE_SCOPES[role]
        )
        async with tenant_transaction(principal, database=self.database) as conn:
            await repository.touch_last_login(conn, match["tenant_id"], match["user_id"])
            return await self._issue_pair(conn, principal, family_id=uuid4())

    async def refresh(self, refresh_token: str) -> TokenPair:
        tenant_id, user_id, token_id = self.issuer.refresh_claims(refresh_token)
        lookup = Principal(kind="user", subject_id=user_id, tenant_id=tenant_id, role=None)
        reused = False
        async with tenant_transaction(lookup, database=self.database) as conn:
            token = await repository.use_refresh_token(conn, tenant_id, token_id)
            if token is None or token["user_id"] != user_id:
                raise Unauthorized("invalid refresh token", code="invalid_token")
            if not token["first_use"]:
                # A used refresh token came back: it may be stolen. Revoke its whole family, and commit that.
                await repository.revoke_refresh_tokens(conn, tenant_id, family_id=token["family_id"])
                reused = True
            elif token["revoked_at"] is not None or token["expires_at"] <= token["now"]:
                raise Unauthorized("refresh token revoked or expired", code="invalid_token")
            else:
                principal = await self._current_principal(conn, tenant_id, user_id, token["api_key_id"])
                return await self._issue_pair(conn, principal, family_id=token["family_id"])
        assert reused
        raise Unauthorized("refresh token reused; the session is revoked", code="refresh_token_reused")

    async def _current_principal(
        self, conn: Conn, tenant_id: UUID, user_id: UUID, api_key_id: UUID | None
    ) -> Principal:
        state = await repository.principal_state(conn, tenant_id=tenant_id, user_id=user_id, api_key_id=api_key_id)
        _check_state(state, api_key_id=api_key_id)
        assert state is not None
        role = Role(state["role"])
        scopes = ROLE_SCOPES[role]
        if api_key_id is not None:
            key = await repository.get_api_key(conn, tenant_id, api_key_id)
            assert key is not None
            scopes = scopes & frozenset(key.scopes)
        return Principal(
            kind="user", subject_id=user_id, tenant_id=tenant_id, role=role, scopes=scopes, api_key_id=api_key_id
        )

    async def _issue_pair(self, conn: Conn, principal: Principal, *, family_id: UUID) -> TokenPair:
        assert principal.tenant_id is not None
        token_id = uuid4()
        await repository.insert_refresh_token(
            conn,
            tenant_id=principal.tenant_id,
            token_id=token_id,
            family_id=family_id,
            user_id=principal.subject_id,
            api_key_id=principal.api_key_id,
            expires_at=datetime.now(UTC) + timedelta(seconds=self.issuer.refresh_ttl),
        )
        return TokenPair(
            access_token=self.issuer.access_token(principal),
            refresh_token=self.issuer.refresh_token(principal, token_id),
            expires_in=self.issuer.access_ttl,
        )


def _check_state(state: dict[str, Any] | None, *, api_key_id: UUID | None) -> None:
    if state is None:
        raise Unauthorized("unknown tenant", code="invalid_token")
    if state["tenant_status"] != TenantStatus.active:
        raise Forbidden("tenant suspended", code="tenant_suspended")
    if not state["user_active"]:
        raise Unauthorized("user deactivated", code="user_inactive")
    if api_key_id is not None and not state["key_valid"]:
        raise Unauthorized("API key revoked or expired", code="api_key_revoked")


class PrincipalCheck:
    """The request's re-check of its principal, inside the request's own tenant transaction: the tenant is active,
    the user too, the key unrevoked and unexpired, and the role the token carries is still the user's (a changed
    role needs a new token). An ``Opening`` of ``tenant_transaction``: its query rides in the round trip that
    opens the transaction."""

    def __init__(self, principal: Principal) -> None:
        if principal.kind != "user" or principal.tenant_id is None:
            raise Forbidden("this is for tenant users", code="tenant_principal_required")
        self.principal = principal
        self._state: AsyncCursor[DictRow] | None = None

    async def send(self, conn: Conn) -> None:
        principal = self.principal
        assert principal.tenant_id is not None
        self._state = await repository.send_principal_state(
            conn, tenant_id=principal.tenant_id, user_id=principal.subject_id, api_key_id=principal.api_key_id
        )

    async def check(self) -> None:
        assert self._state is not None, "send() first"
        state = await self._state.fetchone()
        _check_state(state, api_key_id=self.principal.api_key_id)
        assert state is not None
        if self.principal.role is None or state["role"] != self.principal.role.value:
            raise Unauthorized("the user's role changed: get a new token", code="token_stale")


async def tenant_config(conn: Conn, principal: Principal) -> TenantConfig:
    tenant = await _own_tenant(conn, principal)
    return tenant.config


async def _own_tenant(conn: Conn, principal: Principal) -> TenantWithConfig:
    assert principal.tenant_id is not None
    tenant = await repository.get_tenant(conn, principal.tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    return tenant


# The caller -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Me:
    principal: Principal
    user: User | None
    tenant: TenantWithConfig | None


async def me(conn: Conn, principal: Principal) -> Me:
    if principal.kind != "user":
        return Me(principal=principal, user=None, tenant=None)
    assert principal.tenant_id is not None
    rows = await repository.get_user_and_tenant(conn, principal.tenant_id, principal.subject_id)
    if rows is None:
        raise NotFound("user not found")
    user, tenant = rows
    return Me(principal=principal, user=user, tenant=tenant)


# Users ------------------------------------------------------------------------------------------------------


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"a password has at least {MIN_PASSWORD_LENGTH} characters", code="weak_password")


async def list_users(conn: Conn, principal: Principal, *, limit: int, after: UUID | None) -> list[User]:
    assert principal.tenant_id is not None
    return await repository.list_users(conn, principal.tenant_id, limit=limit, after=after)


async def get_user(conn: Conn, principal: Principal, user_id: UUID) -> User:
    assert principal.tenant_id is not None
    user = await repository.get_user(conn, principal.tenant_id, user_id)
    if user is None:
        raise NotFound("user not found")
    return user


async def create_user(
    conn: Conn, principal: Principal, *, username: str, display_name: str, role: Role, password: str | None
) -> User:
    assert principal.tenant_id is not None
    if password is not None:
        _check_password(password)
    try:
        async with conn.transaction():  # a savepoint: a duplicate name must not poison the request's transaction
            user = await repository.insert_user(
                conn,
                tenant_id=principal.tenant_id,
                username=username,
                display_name=display_name,
                role=role.value,
                password_hash=None if password is None else await asyncio.to_thread(hash_password, password),
            )
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"username {username!r} is taken in this tenant", code="username_taken") from exc
    await audit.record(
        conn,
        principal,
        action="user.created",
        target_type="user",
        target_id=user.id,
        details={"username": username, "role": role.value},
    )
    return user


async def update_user(
    conn: Conn,
    principal: Principal,
    user_id: UUID,
    *,
    display_name: str | None = None,
    role: Role | None = None,
    is_active: bool | None = None,
    password: str | None = None,
) -> User:
    assert principal.tenant_id is not None
    current = await get_user(conn, principal, user_id)
    if user_id == principal.subject_id and ((role is not None and role != current.role) or is_active is False):
        raise Conflict("you cannot change your own role or deactivate yourself", code="self_change")
    changes: dict[str, Any] = {}
    if display_name is not None:
        changes["display_name"] = display_name
    if role is not None:
        changes["role"] = role.value
    if is_active is not None:
        changes["is_active"] = is_active
    if password is not None:
        _check_password(password)
        changes["password_hash"] = await asyncio.to_thread(hash_password, password)
    if not changes:
        return current
    updated = await repository.update_user(conn, principal.tenant_id, user_id, changes)
    if updated is None:
        raise NotFound("user not found")
    if is_active is False or password is not None:
        await repository.revoke_refresh_tokens(conn, principal.tenant_id, user_id=user_id)
    if is_active is False:
        await repository.revoke_api_keys(conn, principal.tenant_id, key_id=None, user_id=user_id)
    logged = {key: value for key, value in changes.items() if key != "password_hash"}
    if password is not None:
        logged["password_changed"] = True
    await audit.record(conn, principal, action="user.updated", target_type="user", target_id=user_id, details=logged)
    return updated


async def deactivate_user(conn: Conn, principal: Principal, user_id: UUID) -> User:
    return await update_user(conn, principal, user_id, is_active=False)


# API keys ---------------------------------------------------------------------------------------------------


async def _issue_api_key(
    conn: Conn,
    principal: Principal,
    *,
    user: User,
    name: str,
    scopes: frozenset[Scope] | None,
    expires_at: datetime | None,
) -> IssuedApiKey:
    key = generate_key(TENANT_KEY_PREFIX)
    granted = scopes_for(user.role, scopes)
    if not granted:
        raise InvalidInput(f"none of these scopes is allowed for the role {user.role.value}", code="bad_scopes")
    api_key = await repository.insert_api_key(
        conn,
        tenant_id=user.tenant_id,
        user_id=user.id,
        name=name,
        prefix=key.prefix,
        key_hash=key.key_hash,
        scopes=sorted(scope.value for scope in granted),
        expires_at=expires_at,
    )
    await audit.record(
        conn,
        principal,
        action="api_key.created",
        target_type="api_key",
        target_id=api_key.id,
        details={"user_id": str(user.id), "scopes": api_key.scopes, "prefix": api_key.prefix},
    )
    return IssuedApiKey(api_key=api_key, secret=key.secret)


async def create_api_key(
    conn: Conn,
    principal: Principal,
    *,
    name: str,
    user_id: UUID | None,
    scopes: frozenset[Scope] | None,
    expires_at: datetime | None,
) -> IssuedApiKey:
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidInput("expires_at needs a time zone", code="bad_expiry")
        if expires_at <= datetime.now(UTC):
            raise InvalidInput("expires_at must be in the future", code="bad_expiry")
        if expires_at > datetime.now(UTC) + MAX_KEY_LIFETIME:
            raise InvalidInput("expires_at is at most 10 years ahead", code="bad_expiry")
    user = await get_user(conn, principal, user_id or principal.subject_id)
    if not user.is_active:
        raise Conflict("the user is deactivated", code="user_inactive")
    return await _issue_api_key(conn, principal, user=user, name=name, scopes=scopes, expires_at=expires_at)


async def list_api_keys(conn: Conn, principal: Principal) -> list[ApiKey]:
    assert principal.tenant_id is not None
    return await repository.list_api_keys(conn, principal.tenant_id, user_id=None)


async def revoke_api_key(conn: Conn, principal: Principal, key_id: UUID) -> None:
    assert principal.tenant_id is not None
    if await repository.get_api_key(conn, principal.tenant_id, key_id) is None:
        raise NotFound("API key not found")
    await repository.revoke_api_keys(conn, principal.tenant_id, key_id=key_id, user_id=None)
    await repository.revoke_refresh_tokens(conn, principal.tenant_id, api_key_id=key_id)
    await audit.record(conn, principal, action="api_key.revoked", target_type="api_key", target_id=key_id)


# The operator plane -----------------------------------------------------------------------------------------


async def operator_list_tenants(conn: Conn, principal: Principal) -> list[Tenant]:
    assert principal.kind == "operator"
    try:
        return await repository.operator_list_tenants(conn, principal.subject_id)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise Unauthorized("operator key revoked", code="operator_revoked") from exc


async def operator_set_tenant_status(
    conn: Conn, principal: Principal, tenant_id: UUID, *, status: TenantStatus, reason: str, request_id: str | None
) -> Tenant:
    assert principal.kind == "operator"
    try:
        tenant = await repository.operator_set_tenant_status(
            conn, principal.subject_id, tenant_id, status.value, reason, request_id
        )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise Unauthorized("operator key revoked", code="operator_revoked") from exc
    if tenant is None:
        raise NotFound("tenant not found")
    return tenant
