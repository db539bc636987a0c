"""Typed rows and value objects of tenancy."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Role(StrEnum):
    admin = "admin"
    trader = "trader"
    analyst = "analyst"
    compliance = "compliance"


class Scope(StrEnum):
    read = "read"
    write = "write"
    admin = "admin"


ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.admin: frozenset({Scope.read, Scope.write, Scope.admin}),
    Role.trader: frozenset({Scope.read, Scope.write}),
    Role.analyst: frozenset({Scope.read}),
    Role.compliance: frozenset({Scope.read}),
}


class Plan(StrEnum):
    basic = "basic"
    professional = "professional"
    enterprise = "enterprise"


class TenantStatus(StrEnum):
    active = "active"
    suspended = "suspended"


_RATE = re.compile(r"^(?P<count>[1-9][0-9]{0,8})/(?P<unit>second|minute|hour|day)$")
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3_600, "day": 86_400}


def _valid_rate(value: str) -> str:
    if not _RATE.match(value):
        raise ValueError("a rate is '<count>/<second|minute|hour|day>', e.g. '1000/hour'")
    return value


RateSpec = Annotated[str, AfterValidator(_valid_rate)]


def parse_rate(spec: str) -> tuple[int, int]:
    """'1000/hour' → (1000, 3600): a count per window in seconds."""
    match = _RATE.match(spec)
    if match is None:
        raise ValueError(f"bad rate {spec!r}")
    return int(match["count"]), _UNIT_SECONDS[match["unit"]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quotas(_Strict):
    daily_requests: int = Field(ge=0)
    monthly_budget: int = Field(ge=0, description="AI spend per month, whole rupiah")


class RateLimits(_Strict):
    api_requests: RateSpec = Field(description="All API requests of the tenant")
    api_key_requests: RateSpec = Field(description="Requests of any one API key or user token")
    ai_requests: RateSpec


class Features(_Strict):
    advanced_analytics: bool = False
    custom_indicators: bool = False
    white_label: bool = False
    priority_support: bool = False


class TradingLimits(_Strict):
    """Pre-trade limits and the paper venue's behaviour (beside the seed's max_position_size and stop loss)."""

    max_order_value: int = Field(gt=0, description="Largest single order, whole rupiah")
    max_gross_exposure: int = Field(gt=0, description="Σ |position value| after the order, whole rupiah")
    max_orders_per_minute: int = Field(gt=0)
    price_collar: Decimal = Field(default=Decimal("0.10"), gt=0, lt=1, description="Band around the reference")
    reference_max_age_seconds: int = Field(default=900, gt=0, description="Older reference prices are stale")
    venue_clock: Literal["market", "wall"] = Field(
        default="market",
        description="Paper venue time: 'market' replays the stored bars (a demo at night still trades), "
        "'wall' is the real clock with sessions and staleness enforced as on a live venue",
    )
    participation: Decimal = Field(default=Decimal("0.10"), gt=0, le=1, description="Share of a bar's volume")
    slippage_bps: Decimal = Field(default=Decimal("5"), ge=0, le=1_000)


def _trading_limits(order: int, gross: int, rate: int) -> TradingLimits:
    return TradingLimits(max_order_value=order, max_gross_exposure=gross, max_orders_per_minute=rate)


class TenantConfig(_Strict):
    """The seed's tenant YAML: trading limits, quotas, rate limits and features of one tenant."""

    risk_profile: Literal["conservative", "moderate", "aggressive"]
    max_position_size: int = Field(gt=0, description="Largest position value, whole rupiah")
    stop_loss_threshold: Decimal = Field(gt=0, lt=1, description="Daily loss, as a fraction of equity")
    quotas: Quotas
    rate_limits: RateLimits
    features: Features
    trading: TradingLimits = Field(default_factory=lambda: _trading_limits(50_000_000, 200_000_000, 30))


PLAN_DEFAULTS: dict[Plan, TenantConfig] = {
    Plan.basic: TenantConfig(
        risk_profile="conservative",
        max_position_size=100_000_000,
        stop_loss_threshold=Decimal("0.02"),
        quotas=Quotas(daily_requests=10_000, monthly_budget=500_000),
        rate_limits=RateLimits(api_requests="600/minute", api_key_requests="300/minute", ai_requests="60/hour"),
        features=Features(),
        trading=_trading_limits(50_000_000, 200_000_000, 30),
    ),
    Plan.professional: TenantConfig(
        risk_profile="moderate",
        max_position_size=500_000_000,
        stop_loss_threshold=Decimal("0.02"),
        quotas=Quotas(daily_requests=100_000, monthly_budget=5_000_000),
        rate_limits=RateLimits(api_requests="6000/minute", api_key_requests="3000/minute", ai_requests="500/hour"),
        features=Features(advanced_analytics=True, custom_indicators=True),
        trading=_trading_limits(250_000_000, 1_000_000_000, 120),
    ),
    Plan.enterprise: TenantConfig(
        risk_profile="aggressive",
        max_position_size=1_000_000_000,
        stop_loss_threshold=Decimal("0.015"),
        quotas=Quotas(daily_requests=10_000_000, monthly_budget=50_000_000),
        rate_limits=RateLimits(api_requests="200000/minute", api_key_requests="100000/minute", ai_requests="5000/hour"),
        features=Features(advanced_analytics=True, custom_indicators=True, white_label=True, priority_support=True),
        trading=_trading_limits(1_000_000_000, 5_000_000_000, 100_000),
    ),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling, resolved once per request from a token or an API key (never from a header or body)."""

    kind: Literal["user", "operator", "system"]
    subject_id: UUID
    tenant_id: UUID | None
    role: Role | None
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    api_key_id: UUID | None = None

    @classmethod
    def system(cls, tenant_id: UUID) -> Principal:
        """The platform itself acting inside one tenant (CLI provisioning, demo bots)."""
        return cls(
            kind="system",
            subject_id=tenant_id,
            tenant_id=tenant_id,
            role=Role.admin,
            scopes=ROLE_SCOPES[Role.admin],
        )

    @property
    def actor_type(self) -> str:
        if self.kind == "user" and self.api_key_id is not None:
            return "api_key"
        return self.kind

    @property
    def actor_id(self) -> str:
        return str(self.api_key_id if self.actor_type == "api_key" else self.subject_id)


class Row(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class Tenant(Row):
    id: UUID
    slug: str
    name: str
    plan: Plan
    status: TenantStatus
    created_at: datetime


class TenantWithConfig(Tenant):
    config: TenantConfig


class User(Row):
    id: UUID
    tenant_id: UUID
    username: str
    display_name: str
    role: Role
    is_active: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class ApiKey(Row):
    id: UUID
    tenant_id: UUID
    user_id: UUID
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class IssuedApiKey(Row):
    api_key: ApiKey
    secret: str = Field(description="The full key. Shown once; only its hash is stored.")


class TokenPair(Row):
    access_token: str
    refresh_token: str | None
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class ProvisionedTenant(Row):
    tenant: TenantWithConfig
    admin_user: User
    admin_password: str
    api_key: IssuedApiKey


def config_document(config: TenantConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")
