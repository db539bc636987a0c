"""The marts the API serves: an allow-list, with each mart's order, date column, filters and readers."""

from __future__ import annotations

from dataclasses import dataclass

from pasar.tenancy.models import Role

READERS = frozenset({Role.admin, Role.analyst, Role.compliance})
COMPLIANCE_READERS = frozenset({Role.admin, Role.compliance})

# Filters the API accepts (each mart takes a subset): name -> SQL type of the parameter.
FILTER_TYPES: dict[str, str] = {
    "symbol": "text",
    "instrument_id": "integer",
    "user_id": "uuid",
    "order_id": "uuid",
    "status": "text",
    "side": "text",
    "kind": "text",
    "provider": "text",
    "model": "text",
    "role": "text",
    "period": "text",
    "alert_type": "text",
    "severity": "text",
    "reject_reason": "text",
    "event_type": "text",
    "currency": "text",
    "asset_class": "text",
}


@dataclass(frozen=True)
class MartSpec:
    name: str
    order_by: tuple[str, ...]  # a unique order: the pages never overlap
    date_column: str | None = None  # `since`/`until` filter this column (inclusive, exclusive)
    filters: tuple[str, ...] = ()
    shared: bool = False  # market data: no tenant_id
    readers: frozenset[Role] = READERS


MARTS: dict[str, MartSpec] = {
    spec.name: spec
    for spec in (
        MartSpec("fct_orders", ("created_at", "order_id"), "created_at", ("symbol", "status", "side", "user_id")),
        MartSpec("fct_fills", ("executed_at", "fill_id"), "executed_at", ("symbol", "side", "user_id", "order_id")),
        MartSpec(
            "fct_positions_daily",
            ("position_date", "instrument_id"),
            "position_date",
            ("symbol", "instrument_id"),
        ),
        MartSpec("fct_pnl_daily", ("pnl_date", "currency"), "pnl_date", ("currency",)),
        MartSpec("fct_usage_daily", ("usage_date", "kind", "currency"), "usage_date", ("kind", "currency")),
        MartSpec(
            "fct_ai_cost_daily",
            ("usage_date", "provider", "model", "currency"),
            "usage_date",
            ("provider", "model", "currency"),
        ),
        MartSpec("dim_tenants", ("tenant_id",)),
        MartSpec("dim_users", ("username", "user_id"), None, ("role",)),
        MartSpec("dim_instruments", ("symbol",), None, ("symbol", "asset_class"), shared=True),
        MartSpec("fct_bars_daily", ("instrument_id", "trading_date"), "trading_date", ("instrument_id",), shared=True),
        MartSpec(
            "rpt_activity_summary",
            ("period", "symbol", "user_id"),
            None,
            ("period", "symbol", "user_id"),
            readers=COMPLIANCE_READERS,
        ),
        MartSpec(
            "rpt_risk_denials",
            ("period", "reject_reason"),
            None,
            ("period", "reject_reason"),
            readers=COMPLIANCE_READERS,
        ),
        MartSpec(
            "rpt_limit_events",
            ("occurred_at", "event_id"),
            "occurred_at",
            ("period", "event_type"),
            readers=COMPLIANCE_READERS,
        ),
        MartSpec(
            "rpt_surveillance_alerts",
            ("detected_at", "alert_id"),
            "detected_at",
            ("period", "alert_type", "severity", "symbol"),
            readers=COMPLIANCE_READERS,
        ),
        MartSpec(
            "rpt_best_execution",
            ("first_executed_at", "order_id"),
            "first_executed_at",
            ("period", "symbol", "user_id"),
            readers=COMPLIANCE_READERS,
        ),
        MartSpec(
            "rpt_order_audit_trail",
            ("created_at", "order_id"),
            "created_at",
            ("period", "symbol", "order_id", "user_id"),
            readers=COMPLIANCE_READERS,
        ),
    )
}
