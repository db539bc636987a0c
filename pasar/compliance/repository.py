"""All SQL of compliance.

Every function runs as pasar_app in a tenant transaction (``pasar.db.pool.tenant_transaction``): the API's request,
or the report's tenant for the CLI and Dagster. Row-level security scopes every row to the tenant; the explicit
tenant filters are defence in depth.
"""

from __future__ import annotations

from datetime import date
from typing import Any, LiteralString
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pasar.db.pool import Conn

ALERTS = sql.Identifier("analytics", "rpt_surveillance_alerts")

# An alert with its review state: the latest revision in compliance.alert_reviews, 'open' when it has none.
_ALERTS_SELECT = sql.SQL(
    """
    select a.alert_id, a.alert_type, a.severity, a.detected_at, a.period, a.instrument_id, a.symbol, a.user_id,
           a.order_count, a.evidence,
           coalesce(r.status, 'open') as status, coalesce(r.revision, 0) as revision,
           r.note as last_note, r.actor_type as last_actor_type, r.actor_id as last_actor_id,
           r.reviewed_at as last_reviewed_at, a.tenant_id
    from {alerts} as a
    left join lateral (
        select status, revision, note, actor_type, actor_id, reviewed_at
        from compliance.alert_reviews as r
        where r.tenant_id = a.tenant_id and r.alert_id = a.alert_id
        order by r.revision desc
        limit 1
    ) as r on true
    where a.tenant_id = %(tenant_id)s
    """
).format(alerts=ALERTS)


def _alert_filters(
    *, alert_id: str | None = None, period: str | None = None, alert_type: str | None = None,
    severity: str | None = None, status: str | None = None,
) -> sql.Composable:  # fmt: skip
    clauses: list[sql.Composable] = []
    if alert_id is not None:
        clauses.append(sql.SQL("a.alert_id = %(alert_id)s"))
    if period is not None:
        clauses.append(sql.SQL("a.period = %(period)s"))
    if alert_type is not None:
        clauses.append(sql.SQL("a.alert_type = %(alert_type)s"))
    if severity is not None:
        clauses.append(sql.SQL("a.severity = %(severity)s"))
    if status is not None:
        clauses.append(sql.SQL("coalesce(r.status, 'open') = %(status)s"))
    return sql.SQL("").join(sql.SQL(" and ") + clause for clause in clauses)


# Alerts and their reviews (API, async) ----------------------------------------------------------------------


async def list_alerts(
    conn: Conn,
    tenant_id: UUID,
    *,
    period: str | None,
    alert_type: str | None,
    severity: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    query = sql.SQL(
        "{select} {filters} order by a.detected_at desc, a.alert_id limit %(limit)s offset %(offset)s"
    ).format(
        select=_ALERTS_SELECT,
        filters=_alert_filters(period=period, alert_type=alert_type, severity=severity, status=status),
    )
    params = {
        "tenant_id": tenant_id, "period": period, "alert_type": alert_type, "severity": severity, "status": status,
        "limit": limit, "offset": offset,
    }  # fmt: skip
    cur = await conn.execute(query, params)
    return await cur.fetchall()


async def get_alert(conn: Conn, tenant_id: UUID, alert_id: str) -> dict[str, Any] | None:
    query = sql.SQL("{select} {filters}").format(select=_ALERTS_SELECT, filters=_alert_filters(alert_id=alert_id))
    cur = await conn.execute(query, {"tenant_id": tenant_id, "alert_id": alert_id})
    return await cur.fetchone()


async def list_reviews(conn: Conn, tenant_id: UUID, alert_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "select revision, previous_status, status, note, actor_type, actor_id, request_id, reviewed_at "
        "from compliance.alert_reviews where tenant_id = %s and alert_id = %s order by revision",
        [tenant_id, alert_id],
    )
    return await cur.fetchall()


async def insert_review(conn: Conn, row: dict[str, Any]) -> dict[str, Any]:
    """Append one revision; a concurrent review of the same revision raises UniqueViolation (primary key)."""
    cur = await conn.execute(
        "insert into compliance.alert_reviews (tenant_id, alert_id, revision, status, previous_status, note, "
        "actor_type, actor_id, request_id) values (%(tenant_id)s, %(alert_id)s, %(revision)s, %(status)s, "
        "%(previous_status)s, %(note)s, %(actor_type)s, %(actor_id)s, %(request_id)s) returning *",
        row,
    )
    inserted = await cur.fetchone()
    assert inserted is not None
    return inserted


# Report registry (API, async) --------------------------------------------------------------------------------

_REPORT_COLUMNS = "id, period, path, files, checksum, summary, generated_by, created_at"


async def list_reports(
    conn: Conn, tenant_id: UUID, *, period: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        sql.SQL(
            "select {columns} from compliance.reports where tenant_id = %(tenant_id)s {period} "
            "order by period desc, created_at desc limit %(limit)s offset %(offset)s"
        ).format(
            columns=sql.SQL(_REPORT_COLUMNS),
            period=sql.SQL("and period = %(period)s") if period is not None else sql.SQL(""),
        ),
        {"tenant_id": tenant_id, "period": period, "limit": limit, "offset": offset},
    )
    return await cur.fetchall()


async def get_report(conn: Conn, tenant_id: UUID, report_id: UUID) -> dict[str, Any] | None:
    cur = await conn.execute(
        sql.SQL("select {columns} from compliance.reports where tenant_id = %s and id = %s").format(
            columns=sql.SQL(_REPORT_COLUMNS)
        ),
        [tenant_id, report_id],
    )
    return await cur.fetchone()


# Report extraction (CLI and Dagster, in a tenant transaction) ------------------------------------------------


async def _fetch(conn: Conn, query: sql.Composed | LiteralString, params: Any) -> list[dict[str, Any]]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()


async def tenant_row(conn: Conn, tenant_id: UUID) -> dict[str, Any] | None:
    rows = await _fetch(conn, "select id, slug, name from tenancy.tenants where id = %s", [tenant_id])
    return rows[0] if rows else None


def tenants_for_reports(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every tenant (slug, id), for the report partitions: on a pasar_etl connection, which sees every tenant."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select id, slug from tenancy.tenants order by slug")
        return cur.fetchall()


async def missing_relations(conn: Conn, names: list[str]) -> list[str]:
    rows = await _fetch(
        conn,
        "select name from unnest(%s::text[]) as name where to_regclass('analytics.' || quote_ident(name)) is null",
        [names],
    )
    return [str(row["name"]) for row in rows]


# One query per report table: the tenant's rows of the period (user names joined for readability).
_REPORT_QUERIES: dict[str, LiteralString] = {
    "activity": """
        select a.period, a.symbol, coalesce(u.username, a.user_id::text) as username, a.orders, a.filled_orders,
               a.rejected_orders, a.cancelled_orders, a.expired_orders, a.open_orders, a.fills, a.bought_quantity,
               a.sold_quantity, a.currency, a.notional, a.commission, a.tax, a.tenant_id
        from analytics.rpt_activity_summary a
        left join analytics.dim_users u on u.tenant_id = a.tenant_id and u.user_id = a.user_id
        where a.tenant_id = %(tenant_id)s and a.period = %(period)s
        order by a.notional desc, a.symbol, username
    """,
    "risk_denials": """
        select period, reject_reason, denials, rejected_orders, rejected_amendments, users,
               array_to_string(symbols, ' ') as symbols, first_denied_at, last_denied_at, tenant_id
        from analytics.rpt_risk_denials
        where tenant_id = %(tenant_id)s and period = %(period)s
        order by denials desc, reject_reason
    """,
    "limit_events": """
        select occurred_at, event_type, actor_type, actor_id, reason, details::text as details, request_id, tenant_id
        from analytics.rpt_limit_events
        where tenant_id = %(tenant_id)s and period = %(period)s
        order by occurred_at, event_id
    """,
    "best_execution": """
        select b.order_id, b.symbol, coalesce(u.username, b.user_id::text) as username, b.side, b.order_type,
               b.is_aggressive, b.filled_quantity, b.average_fill_price, b.arrival_price, b.execution_bar_vwap,
               b.day_vwap, b.slippage_vs_arrival_bps, b.slippage_vs_vwap_bps, b.slippage_vs_day_vwap_bps,
               b.slippage_cost, b.costs, b.costs_bps, b.is_outlier, b.first_executed_at, b.tenant_id
        from analytics.rpt_best_execution b
        left join analytics.dim_users u on u.tenant_id = b.tenant_id and u.user_id = b.user_id
        where b.tenant_id = %(tenant_id)s and b.period = %(period)s
        order by b.first_executed_at, b.order_id
    """,
    "order_audit_trail": """
        select t.order_id, t.client_order_id, coalesce(u.username, t.user_id::text) as username, t.symbol, t.side,
               t.order_type, t.quantity, t.status, t.reject_reason, t.created_at, t.closed_at, t.event_count,
               t.model_version, t.signal, t.ai_requests, t.ai_tokens, t.ai_cost,
               array_to_string(t.request_ids, ' ') as request_ids, t.events::text as events, t.tenant_id
        from analytics.rpt_order_audit_trail t
        left join analytics.dim_users u on u.tenant_id = t.tenant_id and u.user_id = t.user_id
        where t.tenant_id = %(tenant_id)s and t.period = %(period)s
        order by t.created_at, t.order_id
    """,
    "daily_pnl": """
        select pnl_date, currency, realized_pnl, unrealized_pnl, unrealized_pnl_change, commission, tax, net_pnl,
               market_value, open_positions, fills, tenant_id
        from analytics.fct_pnl_daily
        where tenant_id = %(tenant_id)s and pnl_date >= %(first_day)s and pnl_date < %(next_first_day)s
        order by pnl_date, currency
    """,
}


async def report_table(
    conn: Conn, table: str, tenant_id: UUID, *, period: str, first_day: date, next_first_day: date
) -> list[dict[str, Any]]:
    params = {"tenant_id": tenant_id, "period": period, "first_day": first_day, "next_first_day": next_first_day}
    if table == "alerts":
        query = sql.SQL("{select} {filters} order by a.detected_at, a.alert_id").format(
            select=_ALERTS_SELECT, filters=_alert_filters(period=period)
        )
        return await _fetch(conn, query, params)
    return await _fetch(conn, _REPORT_QUERIES[table], params)


async def source_counts(
    conn: Conn, tenant_id: UUID, *, first_day: date, next_first_day: date, timezone: str
) -> dict[str, int]:
    """Orders and fills of the period in the source tables and in the marts: they must agree (the marts are built
    from everything the source held at the last build)."""
    rows = await _fetch(
        conn,
        """
        with bounds as (
            select (%(first_day)s::timestamp at time zone %(tz)s) as lo, (%(next)s::timestamp at time zone %(tz)s) as hi
        )
        select
            (select count(*) from trading.orders o, bounds
             where o.tenant_id = %(tenant_id)s and o.created_at >= lo and o.created_at < hi) as source_orders,
            (select count(*) from analytics.fct_orders o, bounds
             where o.tenant_id = %(tenant_id)s and o.created_at >= lo and o.created_at < hi) as mart_orders,
            (select count(*) from trading.fills f, bounds
             where f.tenant_id = %(tenant_id)s and f.executed_at >= lo and f.executed_at < hi) as source_fills,
            (select count(*) from analytics.fct_fills f, bounds
             where f.tenant_id = %(tenant_id)s and f.executed_at >= lo and f.executed_at < hi) as mart_fills
        """,
        {"tenant_id": tenant_id, "first_day": first_day, "next": next_first_day, "tz": timezone},
    )
    return {key: int(value) for key, value in rows[0].items()}


async def upsert_report(conn: Conn, row: dict[str, Any]) -> dict[str, Any]:
    """Register a rendered report; a re-render of the same tenant and period replaces the row (keeping its id)."""
    rows = await _fetch(
        conn,
        """
        insert into compliance.reports (tenant_id, period, path, files, checksum, summary, generated_by)
        values (%(tenant_id)s, %(period)s, %(path)s, %(files)s, %(checksum)s, %(summary)s, %(generated_by)s)
        on conflict (tenant_id, period) do update set
            path = excluded.path, files = excluded.files, checksum = excluded.checksum, summary = excluded.summary,
            generated_by = excluded.generated_by, created_at = now()
        returning id, period, path, files, checksum, summary, generated_by, created_at
        """,
        {**row, "files": Jsonb(row["files"]), "summary": Jsonb(row["summary"])},
    )
    return rows[0]
