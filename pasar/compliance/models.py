"""Typed rows and value objects of compliance: surveillance alerts and their review lifecycle, reports."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

from pasar.errors import InvalidInput


class AlertStatus(StrEnum):
    open = "open"
    investigating = "investigating"
    escalated = "escalated"
    closed = "closed"


class AlertType(StrEnum):
    wash_trade = "wash_trade"
    spoofing = "spoofing"
    layering = "layering"
    marking_the_close = "marking_the_close"
    unusual_activity = "unusual_activity"


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


# The lifecycle: open → investigating → escalated → closed. An alert may be closed at any stage (a false positive
# needs no escalation); closed is final: a reopened case is a new alert, not a rewritten one.
TRANSITIONS: dict[AlertStatus, frozenset[AlertStatus]] = {
    AlertStatus.open: frozenset({AlertStatus.investigating, AlertStatus.closed}),
    AlertStatus.investigating: frozenset({AlertStatus.escalated, AlertStatus.closed}),
    AlertStatus.escalated: frozenset({AlertStatus.closed}),
    AlertStatus.closed: frozenset(),
}


def can_transition(current: AlertStatus, target: AlertStatus) -> bool:
    return target in TRANSITIONS[current]


_PERIOD = re.compile(r"^(?P<year>[0-9]{4})-(?P<month>0[1-9]|1[0-2])$")


@dataclass(frozen=True, order=True)
class Period:
    """A reporting month, ``YYYY-MM`` (WIB months, as the dbt reports count them)."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _PERIOD.match(text.strip())
        if match is None:
            raise InvalidInput("a period is a month written YYYY-MM, e.g. 2026-03", code="invalid_period")
        return cls(int(match["year"]), int(match["month"]))

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def next_first_day(self) -> date:
        return date(self.year + self.month // 12, self.month % 12 + 1, 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


# The report's tables: the CSV file each becomes, in the order the HTML shows them.
REPORT_TABLES: tuple[tuple[str, str], ...] = (
    ("activity", "Activity by instrument and user"),
    ("alerts", "Surveillance alerts"),
    ("risk_denials", "Pre-trade risk denials by reason"),
    ("limit_events", "Limit breaches and kill-switch events"),
    ("best_execution", "Best execution"),
    ("order_audit_trail", "Order audit trail (model, signal, AI usage)"),
    ("daily_pnl", "Daily P&L"),
)


@dataclass
class ReportData:
    """Everything one tenant's report for one period shows, read under that tenant's row-level security."""

    tenant_id: str
    tenant_slug: str
    tenant_name: str
    period: Period
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    source_counts: dict[str, int] = field(default_factory=dict)

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.tables.get(table, [])


@dataclass(frozen=True)
class ReportFile:
    name: str
    bytes: int
    sha256: str
    media_type: str

    def document(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "sha256": self.sha256, "media_type": self.media_type}


@dataclass(frozen=True)
class RenderedReport:
    directory: Path
    files: tuple[ReportFile, ...]
    checksum: str
    summary: dict[str, Any]
