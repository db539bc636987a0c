"""Typed usage events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID


class UsageKind(StrEnum):
    api_request = "api_request"
    ai_tokens = "ai_tokens"
    order = "order"
    report = "report"


@dataclass(frozen=True)
class UsageEvent:
    tenant_id: UUID
    kind: UsageKind
    quantity: int
    ts: datetime
    idempotency_key: str  # the same key counts once (a request id, an order id, …)
    cost: int = 0  # whole rupiah
    details: dict[str, Any] = field(default_factory=dict)
