"""The dbt project on demo-like data: the build passes (models, data tests, unit tests); every surveillance rule
flags its seeded pattern and stays silent on normal trading; money and positions reconcile; row-level security and
grants survive rebuilds (acceptance test A7); an analyst login sees only its own tenant."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pasar.analytics import dbt
from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from tests.analytics import seed
from tests.analytics.conftest import DBT_TIMEOUT_S, Invoke, World, run_dbt, run_results
from tests.conftest import MakeTenant

TENANT_MARTS = {
    "fct_orders", "fct_fills", "fct_positions_daily", "fct_pnl_daily", "fct_usage_daily", "fct_ai_cost_daily",
    "dim_tenants", "dim_users",
}  # fmt: skip
COMPLIANCE_MARTS = {
    "rpt_activity_summary", "rpt_risk_denials", "rpt_limit_events", "rpt_surveillance_alerts", "rpt_best_execution",
    "rpt_order_audit_trail",
}  # fmt: skip
SHARED_MARTS = {"dim_instruments", "fct_bars_daily"}
RULES = {"wash_trade", "spoofing", "layering", "marking_the_close", "unusual_activity"}


@pytest.fixture
def etl(urls: DatabaseUrls) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(urls.etl, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def alerts_of(etl: psycopg.Connection[dict[str, Any]], tenant_id: str) -> dict[str, dict[str, Any]]:
    rows = etl.execute(
        "select * from analytics.rpt_surveillance_alerts where tenant_id = %s order by alert_type", [tenant_id]
    ).fetchall()
    by_type: dict[str, dict[str, Any]] = {}
    for row in rows:
        assert row["alert_type"] not in by_type, f"two {row['alert_type']} alerts: {rows}"
        by_type[row["alert_type"]] = row
    return by_type


# The build -----------------------------------------------------------------------------------------------------


def test_dbt_build_passes_with_models_data_tests_and_unit_tests(world: World) -> None:
    results = run_results(world.target_path)["results"]
    statuses = {result["status"] for result in results}
    assert statuses <= {"success", "pass"}, [r for r in results if r["status"] not in ("success", "pass")]
    kinds = {
        kind: sum(1 for r in results if r["unique_id"].startswith(kind + "."))
        for kind in ("model", "test", "unit_test")
    }
    assert kinds["model"] >= 38
    assert kinds["test"] >= 150
    assert kinds["unit_test"] >= 10
    print(f"dbt build: {kinds} in {world.build_seconds:.1f} s")


def test_dbt_runs_offline_with_the_etl_role(settings: Settings, urls: DatabaseUrls) -> None:
    env = dbt.subprocess_env(
        dbt.dbt_env(settings), base={"PATH": "/usr/bin", "PASAR_JWT_SECRET": "x", "PASAR_HOME": "h"}
    )
    assert env["DBT_SEND_ANONYMOUS_USAGE_STATS"] == "false"
    assert env["DBT_VERSION_CHECK"] == "false"
    assert env["PASAR_DBT_USER"] == "pasar_etl"
    assert "PASAR_JWT_SECRET" not in env and env["PASAR_HOME"] == "h"
    assert dbt.dbt_executable().parent == Path(sys.executable).parent
    with pytest.raises(ValueError, match="lacks"):
        dbt.dbt_env_for("port=5432")


# Surveillance --------------------------------------------------------------------------------------------------


def test_every_surveillance_rule_flags_its_seeded_pattern(
    world: World, etl: psycopg.Connection[dict[str, Any]]
) -> None:
    alerts = alerts_of(etl, world.a.id)
    assert set(alerts) == RULES
    assert all(alert["period"] == "2033-03" for alert in alerts.values())

    wash = alerts["wash_trade"]
    assert wash["severity"] == "high" and wash["symbol"] == world.seeded.symbol
    assert {wash["evidence"]["buy_order_id"], wash["evidence"]["sell_order_id"]} == set(world.seeded.wash_orders)
    assert wash["evidence"]["min_seconds_apart"] == 30

    spoof = alerts["spoofing"]
    assert spoof["severity"] == "high", "a real buy executed while the spoof rested"
    assert spoof["evidence"]["order_id"] == world.seeded.spoof_order
    assert spoof["evidence"]["lifetime_seconds"] == 10 and spoof["evidence"]["opposite_fills"] == 1

    layering = alerts["layering"]
    assert layering["symbol"] == world.seeded.layering_symbol and layering["order_count"] == 12
    assert set(layering["evidence"]["cancelled_order_ids"]) == set(world.seeded.layering_orders)

    closing = alerts["marking_the_close"]
    assert closing["evidence"]["order_ids"] == [world.seeded.closing_order]
    assert Decimal(str(closing["evidence"]["participation"])) == Decimal("0.2")
    assert Decimal(str(closing["evidence"]["directional_move_bps"])) == Decimal(100)

    unusual = alerts["unusual_activity"]
    assert unusual["evidence"]["history_days"] == 5 and unusual["evidence"]["mean_orders"] == 2
    assert unusual["order_count"] == 18

    # Every alert carries the thresholds it was judged by, and its id survives a rebuild (checked below).
    assert all("thresholds" in alert["evidence"] for alert in alerts.values())


def test_normal_trading_raises_no_alert(world: World, etl: psycopg.Connection[dict[str, Any]]) -> None:
    assert alerts_of(etl, world.b.id) == {}
    orders = etl.execute(
        "select count(*) as n, bool_and(arrival_price is not null) as priced from analytics.fct_orders "
        "where tenant_id = %s",
        [world.b.id],
    ).fetchone()
    assert orders == {"n": 3, "priced": True}


def test_money_positions_pnl_and_the_audit_trail_reconcile(
    world: World, etl: psycopg.Connection[dict[str, Any]]
) -> None:
    position = etl.execute(
        "select quantity, cost_basis, avg_cost, market_value, unrealized_pnl, currency "
        "from analytics.fct_positions_daily where tenant_id = %s and symbol = %s order by position_date desc limit 1",
        [world.a.id, world.seeded.symbol],
    ).fetchone()
    basis = 100 * 1000 + 100 * 1000 + 20_000 * 1005 - 100 * 1000
    assert position == {
        "quantity": Decimal(20_100),
        "cost_basis": Decimal(basis),
        "avg_cost": round(Decimal(basis) / 20_100, 8),
        "market_value": Decimal(20_100 * 1010),
        "unrealized_pnl": Decimal(20_100 * 1010 - basis),
        "currency": "IDR",
    }
    # B bought 300 and sold them the next day: flat, and its P&L days add up to realized P&L less costs.
    pnl = etl.execute(
        "select sum(net_pnl) as net, sum(realized_pnl - commission - tax) as realized_net from analytics.fct_pnl_daily "
        "where tenant_id = %s",
        [world.b.id],
    ).fetchone()
    assert pnl is not None and pnl["net"] == pnl["realized_net"]
    trail = etl.execute(
        "select model_version, signal, ai_requests, ai_tokens, ai_cost, event_count "
        "from analytics.rpt_order_audit_trail where tenant_id = %s and order_id = %s",
        [world.a.id, world.seeded.closing_order],
    ).fetchone()
    assert trail == {
        "model_version": "champion-7", "signal": "buy", "ai_requests": 1, "ai_tokens": Decimal(1200),
        "ai_cost": Decimal(350), "event_count": 2,
    }  # fmt: skip
    denials = etl.execute(
        "select reject_reason, denials from analytics.rpt_risk_denials where tenant_id = %s", [world.a.id]
    ).fetchall()
    assert denials == [{"reject_reason": "max_order_value", "denials": 1}]
    events = etl.execute(
        "select event_type from analytics.rpt_limit_events where tenant_id = %s order by occurred_at", [world.a.id]
    ).fetchall()
    assert [row["event_type"] for row in events] == ["kill_switch_on", "kill_switch_off"]


# Row-level security across rebuilds (A2 on the analytics schema, A7) -------------------------------------------


def analytics_catalog(owner: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    rows = owner.execute(
        """
        select c.relname as name, c.relkind as kind, c.relrowsecurity as rls, c.relforcerowsecurity as forced,
               (select count(*) from pg_policy p where p.polrelid = c.oid) as policies,
               exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id'
                       and a.attnum > 0 and not a.attisdropped) as has_tenant,
               coalesce((select lower(option_value) in ('true', 'on', '1') from pg_options_to_table(c.reloptions)
                         where option_name = 'security_invoker'), false) as invoker,
               has_table_privilege('pasar_app', c.oid, 'SELECT') as app_reads,
               has_table_privilege('pasar_analyst', c.oid, 'SELECT') as analyst_reads,
               has_table_privilege('pasar_app', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE') as app_writes,
               c.relowner = 'pasar_etl'::regrole as owned_by_etl
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'analytics' and c.relkind in ('r', 'p', 'v', 'm')
        """
    ).fetchall()
    return {row["name"]: row for row in rows}


def catalog_gaps(catalog: dict[str, dict[str, Any]]) -> list[str]:
    gaps = []
    for name, row in catalog.items():
        if row["kind"] in ("r", "p") and row["has_tenant"] and not (row["rls"] and row["forced"] and row["policies"]):
            gaps.append(f"{name}: tenant table without forced RLS and a policy")
        if row["kind"] == "v" and not row["invoker"]:
            gaps.append(f"{name}: view without security_invoker")
        if row["kind"] == "m" and row["app_reads"]:
            gaps.append(f"{name}: materialized view readable by pasar_app")
        if row["app_writes"]:
            gaps.append(f"{name}: pasar_app may write")
        if not row["owned_by_etl"]:
            gaps.append(f"{name}: not owned by pasar_etl")
        exposed = name in TENANT_MARTS | COMPLIANCE_MARTS | SHARED_MARTS
        if exposed != bool(row["app_reads"]):
            gaps.append(f"{name}: pasar_app {'cannot' if exposed else 'can'} read it")
        if (name in TENANT_MARTS | SHARED_MARTS) != bool(row["analyst_reads"]):
            gaps.append(f"{name}: analyst grant wrong")
    return gaps


def tenant_view(app_url: str, tenant_id: str, other_id: str) -> dict[str, Any]:
    """What pasar_app sees of every exposed tenant mart with ``tenant_id`` set: row counts, that nothing belongs to
    another tenant, and that asking for ``other_id``'s rows explicitly returns nothing."""
    seen: dict[str, Any] = {}
    with psycopg.connect(app_url) as conn:
        conn.execute("select set_config('app.tenant_id', %s, true)", [tenant_id])
        for mart in sorted(TENANT_MARTS | COMPLIANCE_MARTS):
            table = sql.Identifier("analytics", mart)
            count, foreign = conn.execute(
                sql.SQL("select count(*), count(*) filter (where tenant_id <> %s) from {}").format(table),
                [tenant_id],
            ).fetchone() or (None, None)
            (explicit,) = conn.execute(
                sql.SQL("select count(*) from {} where tenant_id = %s").format(table), [other_id]
            ).fetchone() or (None,)
            seen[mart] = (count, foreign, explicit)
        conn.rollback()
        # No tenant set: nothing at all (fails closed).
        for mart in sorted(TENANT_MARTS | COMPLIANCE_MARTS):
            (count,) = conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier("analytics", mart))
            ).fetchone() or (None,)
            assert count == 0, f"{mart} shows {count} rows with no tenant set"
    return seen


def snapshot(etl: psycopg.Connection[dict[str, Any]], tenant_id: str) -> dict[str, Any]:
    alerts = etl.execute(
        "select alert_id, alert_type, severity, evidence from analytics.rpt_surveillance_alerts where tenant_id = %s "
        "order by alert_id",
        [tenant_id],
    ).fetchall()
    totals = etl.execute(
        "select (select count(*) from analytics.fct_orders where tenant_id = %(t)s) as orders, "
        "(select count(*) from analytics.fct_fills where tenant_id = %(t)s) as fills, "
        "(select count(*) from analytics.fct_bars_daily) as bar_days, "
        "(select sum(value) from analytics.fct_fills where tenant_id = %(t)s) as value",
        {"t": tenant_id},
    ).fetchone()
    return {"alerts": json.dumps(alerts, default=str, sort_keys=True), "totals": totals}


def test_rls_and_grants_survive_two_builds_and_a_full_refresh(
    world: World, settings: Settings, urls: DatabaseUrls, etl: psycopg.Connection[dict[str, Any]]
) -> None:
    with psycopg.connect(urls.owner, autocommit=True, row_factory=dict_row) as owner:
        before_catalog = analytics_catalog(owner)
    assert catalog_gaps(before_catalog) == []
    assert set(before_catalog) >= TENANT_MARTS | COMPLIANCE_MARTS | SHARED_MARTS
    before = (tenant_view(urls.app, world.a.id, world.b.id), tenant_view(urls.app, world.b.id, world.a.id))
    before_data = snapshot(etl, world.a.id)
    assert before[0]["fct_orders"][0] > 0 and before[1]["fct_orders"][0] == 3
    assert all(foreign == 0 and explicit == 0 for side in before for (_, foreign, explicit) in side.values())

    for args in (["build", "--exclude", "test_type:unit"], ["build", "--full-refresh", "--exclude", "test_type:unit"]):
        run_dbt(args, settings, world.target_path)
        with psycopg.connect(urls.owner, autocommit=True, row_factory=dict_row) as owner:
            catalog = analytics_catalog(owner)
        assert catalog_gaps(catalog) == [], args
        assert set(catalog) == set(before_catalog), args
        after = (tenant_view(urls.app, world.a.id, world.b.id), tenant_view(urls.app, world.b.id, world.a.id))
        assert after == before, args
        assert snapshot(etl, world.a.id) == before_data, args


# Incremental models ---------------------------------------------------------------------------------------------

# The incremental models and what reads them: after incremental builds they hold what a full refresh computes.
INCREMENTAL_MODELS = (
    "int_order_events_pivoted_to_orders", "int_orders_joined_to_fills", "fct_orders", "fct_fills",
    "fct_bars_daily", "rpt_best_execution", "rpt_order_audit_trail", "rpt_activity_summary",
    "rpt_surveillance_alerts", "fct_positions_daily",
)  # fmt: skip


def fingerprints(etl: psycopg.Connection[dict[str, Any]]) -> dict[str, Any]:
    """Row count and an order-independent hash of every row (built_at, the build's own clock, left out)."""
    prints = {}
    for model in INCREMENTAL_MODELS:
        prints[model] = etl.execute(
            sql.SQL(
                "select count(*) as n, sum(hashtextextended((to_jsonb(t) - 'built_at')::text, 0)) as h from {} as t"
            ).format(sql.Identifier("analytics", model))
        ).fetchone()
    return prints


def test_incremental_builds_pick_up_new_changed_and_late_rows_like_a_full_refresh(
    world: World,
    settings: Settings,
    urls: DatabaseUrls,
    etl: psycopg.Connection[dict[str, Any]],
    make_tenant: MakeTenant,
) -> None:
    tenant = make_tenant()
    with psycopg.connect(urls.owner, autocommit=True) as conn:
        symbol = seed.fresh_symbol(conn)
    seed.load(urls, seed.session_bars(symbol, closing_closes=[]))
    with psycopg.connect(urls.owner) as conn, conn.transaction():
        writer = seed._Writer(conn, tenant.id, tenant.admin_id)
        instrument = seed.instrument_id(conn, symbol)
        resting = writer.order(
            instrument_id=instrument, symbol=symbol, side="buy", quantity=100, limit_price=900, at=seed.MORNING,
            status="accepted",
        )  # fmt: skip
        filled = writer.order(
            instrument_id=instrument, symbol=symbol, side="buy", quantity=100, at=seed.MORNING + seed.MINUTE,
            status="filled", filled=100, average=Decimal(1000), closed_at=seed.MORNING + 2 * seed.MINUTE,
        )  # fmt: skip
        writer.fill(
            filled, instrument_id=instrument, side="buy", quantity=100, price=1000, at=seed.MORNING + 2 * seed.MINUTE
        )
        conn.execute(
            "insert into trading.positions (tenant_id, instrument_id, quantity, avg_cost, realized_pnl) "
            "values (%s, %s, 100, 1000, 0)",
            [tenant.id, instrument],
        )
    run_dbt(["build", "--exclude", "test_type:unit"], settings, world.target_path)
    first = etl.execute("select status from analytics.fct_orders where order_id = %s", [resting]).fetchone()
    assert first == {"status": "accepted"}

    # Then: the resting order is cancelled, the filled one gets a rejected amendment (an event, no order change) and
    # AI usage naming it, and an order from days before everything stored arrives late, filled.
    cancelled_at = seed.MORNING + 10 * seed.MINUTE
    late_at = seed.MORNING - timedelta(days=3)
    with psycopg.connect(urls.owner) as conn, conn.transaction():
        writer = seed._Writer(conn, tenant.id, tenant.admin_id)
        conn.execute(
            "update trading.orders set status = 'cancelled', updated_at = %s where tenant_id = %s and id = %s",
            [cancelled_at, tenant.id, resting],
        )
        writer.event(cancelled_at, "order.cancelled", "order", resting, reason="user")
        writer.event(cancelled_at, "order.amend_rejected", "order", filled, reason="max_order_value")
        conn.execute(
            "insert into usage.events (tenant_id, ts, idempotency_key, kind, quantity, cost, currency, details) "
            "values (%s, %s, %s, 'ai_tokens', 500, 120, 'IDR', %s)",
            [tenant.id, seed.MORNING, f"ai-{filled}", Jsonb({"order_id": filled})],
        )
        late = writer.order(
            instrument_id=instrument, symbol=symbol, side="buy", quantity=100, at=late_at, status="filled",
            filled=100, average=Decimal(950), closed_at=late_at + seed.MINUTE,
        )  # fmt: skip
        writer.fill(late, instrument_id=instrument, side="buy", quantity=100, price=950, at=late_at + seed.MINUTE)
        conn.execute(
            "update trading.positions set quantity = 200, avg_cost = 975 where tenant_id = %s and instrument_id = %s",
            [tenant.id, instrument],
        )
    run_dbt(["build", "--exclude", "test_type:unit"], settings, world.target_path)
    incremental = fingerprints(etl)
    orders = etl.execute(
        "select o.order_id::text, o.status, a.ai_requests, a.event_count from analytics.fct_orders o "
        "join analytics.rpt_order_audit_trail a using (tenant_id, order_id) where o.tenant_id = %s",
        [tenant.id],
    ).fetchall()
    assert {row["order_id"]: (row["status"], row["ai_requests"], row["event_count"]) for row in orders} == {
        resting: ("cancelled", 0, 2),
        filled: ("filled", 1, 3),
        late: ("filled", 0, 2),
    }

    run_dbt(["build", "--full-refresh", "--exclude", "test_type:unit"], settings, world.target_path)
    assert fingerprints(etl) == incremental


def test_the_daily_build_tests_the_rows_it_wrote_and_every_other_build_every_row(
    world: World, settings: Settings
) -> None:
    """Dagster's daily build passes its window: the data tests of an incremental model read the rows with the
    newest built_at (those that build wrote); a view's tests, and every test of a build without a window, read
    every row."""
    day = datetime(2026, 2, 2, tzinfo=ZoneInfo("Asia/Jakarta"))
    for env, scoped in ((dbt.window_env(day, day + timedelta(days=1)), True), ({}, False)):
        result = dbt.run_dbt(
            ["compile", "--select", "fct_orders", "stg_trading__orders"],
            settings,
            target_path=world.target_path,
            env=env,
            timeout=DBT_TIMEOUT_S,
        )
        assert result.returncode == 0, result.stdout[-4000:]
        nodes = json.loads((world.target_path / "manifest.json").read_text())["nodes"].values()
        tests: dict[tuple[str, str], list[str]] = {}
        for node in nodes:
            if node["resource_type"] == "test" and node.get("compiled_code") and node.get("test_metadata"):
                key = (node["attached_node"].rsplit(".", 1)[-1], node["test_metadata"]["name"])
                tests.setdefault(key, []).append(node["compiled_code"])
        for name in ("unique_combination_of_columns", "relationships_in_tenant", "not_null", "expression_is_true"):
            assert all(("max(built_at)" in code) is scoped for code in tests[("fct_orders", name)]), (name, env)
        assert not any("built_at" in code for code in tests[("stg_trading__orders", "unique_combination_of_columns")])


def test_an_analyst_login_sees_only_its_own_tenant_whatever_it_sets(world: World, pasar_cli: Invoke) -> None:
    result = pasar_cli("tenant", "analyst-login", world.a.made.tenant.slug, "--json")
    assert result.exit_code == 0, result.output
    login = json.loads(result.output)
    assert login["tenant_id"] == world.a.id and login["role"].startswith("analyst_")
    with psycopg.connect(login["url"], autocommit=True) as conn:
        (mine,) = conn.execute("select count(*) from analytics.fct_orders").fetchone() or (0,)
        assert mine > 0
        assert conn.execute("select count(distinct tenant_id) from analytics.fct_orders").fetchone() == (1,)
        for attempt in (
            "set app.tenant_id = '{b}'",
            "select set_config('app.tenant_id', '{b}', false)",
            "reset app.tenant_id",
        ):
            conn.execute(attempt.format(b=world.b.id))  # type: ignore[arg-type]  # a literal test statement
            assert conn.execute("select count(*) from analytics.fct_orders").fetchone() == (mine,), attempt
            assert conn.execute(
                "select count(*) from analytics.fct_orders where tenant_id = %s", [world.b.id]
            ).fetchone() == (0,)
            assert conn.execute("select count(*) from analytics.dim_tenants").fetchone() == (1,)
        # Shared market data is readable; the compliance reports, staging views and raw tables are not.
        assert (conn.execute("select count(*) from analytics.dim_instruments").fetchone() or (0,))[0] > 0
        for forbidden in (
            "select 1 from analytics.rpt_surveillance_alerts",
            "select 1 from analytics.stg_trading__orders",
            "select 1 from analytics.int_orders_joined_to_fills",
            "select 1 from trading.orders",
            "select 1 from tenancy.users",
            "set role pasar_app",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(forbidden)  # type: ignore[arg-type]
        # Read-only: no writes, even where a grant would allow them.
        with pytest.raises(psycopg.errors.DatabaseError):
            conn.execute("create table analytics.mine (x int)")
    # Another login of tenant B sees B only.
    result = pasar_cli("tenant", "analyst-login", world.b.id, "--json")
    assert result.exit_code == 0, result.output
    with psycopg.connect(json.loads(result.output)["url"]) as conn:
        assert conn.execute("select count(*), min(tenant_id::text) from analytics.fct_orders").fetchone() == (
            3,
            world.b.id,
        )


def test_pasar_analytics_build_runs_dbt_as_the_etl_role(world: World, pasar_cli: Invoke) -> None:
    result = pasar_cli("analytics", "build", "--select", "stg_tenancy__tenants", "--json")
    assert result.exit_code == 0, result.output
    assert "PASS=" in json.loads(result.output)["summary"]


def test_analyst_login_of_an_unknown_tenant_fails_cleanly(pasar_cli: Invoke) -> None:
    result = pasar_cli("tenant", "analyst-login", "no-such-tenant")
    assert result.exit_code == 1 and "no tenant" in result.output
