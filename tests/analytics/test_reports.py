"""Compliance reports: rendered by the CLI from the marts under the tenant's RLS (HTML with charts and the CSV
files), registered, served to the compliance role of that tenant only; inputs that fail their checks refuse it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
from fastapi.testclient import TestClient

from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from tests.analytics.conftest import Invoke, World
from tests.analytics.seed import DAY, PERIOD, instrument_id
from tests.conftest import MakeTenant


def generate(pasar_cli: Invoke, tenant: str, period: str = PERIOD, *extra: str) -> dict[str, Any]:
    result = pasar_cli("reports", "generate", "--tenant", tenant, "--period", period, "--json", *extra)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.output)
    return document


def b_fingerprints(world: World, urls: DatabaseUrls) -> set[str]:
    """Everything that would betray tenant B: its id, slug, name, users, symbol and order ids."""
    with psycopg.connect(urls.owner) as conn:
        orders = [
            str(row[0]) for row in conn.execute("select id from trading.orders where tenant_id = %s", [world.b.id])
        ]
        users = [  # ids, and usernames unique to B (every tenant has an "admin")
            str(value)
            for row in conn.execute("select id, username from tenancy.users where tenant_id = %s", [world.b.id])
            for value in row
            if value != "admin"
        ]
    tenant = world.b.made.tenant
    return {world.b.id, tenant.slug, tenant.name, world.normal_symbol, *orders, *users}


def test_the_report_renders_html_with_charts_and_csv_files_of_its_tenant_only(
    world: World, pasar_cli: Invoke, settings: Settings, urls: DatabaseUrls
) -> None:
    report = generate(pasar_cli, world.a.made.tenant.slug)
    directory = Path(report["directory"])
    assert directory == Path(settings.home) / "reports" / world.a.made.tenant.slug / PERIOD
    names = {entry["name"] for entry in report["files"]}
    assert names == {
        "report.html", "activity.csv", "alerts.csv", "risk_denials.csv", "limit_events.csv", "best_execution.csv",
        "order_audit_trail.csv", "daily_pnl.csv",
    }  # fmt: skip
    assert {path.name for path in directory.iterdir()} == names
    page = (directory / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert world.seeded.spoof_order in page and "marking_the_close" in page
    alerts = list(csv.DictReader(io.StringIO((directory / "alerts.csv").read_text())))
    assert {row["alert_type"] for row in alerts} == {
        "wash_trade", "spoofing", "layering", "marking_the_close", "unusual_activity",
    }  # fmt: skip
    assert all(json.loads(row["evidence"])["thresholds"] for row in alerts)
    trail = (directory / "order_audit_trail.csv").read_text()
    assert "champion-7" in trail
    assert report["summary"]["alerts"] == 5 and report["summary"]["risk_denials"] == 1
    assert report["summary"]["input_problems"] == []

    # Nothing of tenant B anywhere in A's report, and every row is A's.
    leaks = b_fingerprints(world, urls)
    for path in directory.iterdir():
        text = path.read_text()
        assert not [mark for mark in leaks if mark in text], path.name
        if path.suffix == ".csv":
            assert {row["tenant_id"] for row in csv.DictReader(io.StringIO(text))} <= {world.a.id}, path.name

    # Rendering again replaces the files and keeps the registry row.
    again = generate(pasar_cli, world.a.id)
    assert again["id"] == report["id"]
    assert {entry["name"] for entry in again["files"]} == names


def test_report_endpoints_serve_the_compliance_role_of_that_tenant_only(
    client: TestClient, world: World, pasar_cli: Invoke
) -> None:
    report = generate(pasar_cli, world.a.id)
    officer = world.headers("a", "compliance")
    listed = client.get("/v1/compliance/reports", headers=officer)
    assert listed.status_code == 200, listed.text
    assert [item["id"] for item in listed.json()["items"]] == [report["id"]]
    detail = client.get(f"/v1/compliance/reports/{report['id']}", headers=officer)
    assert detail.status_code == 200 and detail.json()["checksum"] == report["checksum"]
    page = client.get(f"/v1/compliance/reports/{report['id']}/files/report.html", headers=officer)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Compliance report" in page.text
    csv_file = client.get(f"/v1/compliance/reports/{report['id']}/files/alerts.csv", headers=officer)
    assert csv_file.status_code == 200 and csv_file.text.startswith("alert_id,")

    paths = [
        "/v1/compliance/reports",
        f"/v1/compliance/reports/{report['id']}",
        f"/v1/compliance/reports/{report['id']}/files/report.html",
    ]
    for role in ("admin", "analyst", "trader"):
        for path in paths:
            assert client.get(path, headers=world.headers("a", role)).status_code == 403, (role, path)
    b_officer = world.headers("b", "compliance")
    assert client.get("/v1/compliance/reports", headers=b_officer).json()["items"] == []
    for path in paths[1:]:
        response = client.get(path, headers=b_officer)
        assert response.status_code == 404, (path, response.text)
    for bad in ("../../secrets.json", "report.pdf", "%2e%2e%2freport.html", "REPORT.html"):
        response = client.get(f"/v1/compliance/reports/{report['id']}/files/{bad}", headers=officer)
        assert response.status_code in (404, 422), (bad, response.text)
    assert client.get(f"/v1/compliance/reports/{report['id']}/files/other.csv", headers=officer).status_code == 404
    assert client.get("/v1/compliance/reports/not-a-uuid", headers=officer).status_code == 422
    assert client.get(f"/v1/compliance/reports/{uuid4()}", headers=officer).status_code == 404
    assert client.get("/v1/compliance/reports", headers=officer, params={"period": "33-1"}).status_code == 422


def test_inputs_that_fail_their_checks_refuse_the_report(
    world: World, pasar_cli: Invoke, make_tenant: MakeTenant, urls: DatabaseUrls
) -> None:
    """An order the marts have not seen yet (no build since): the activity would be incomplete."""
    tenant = make_tenant()
    with psycopg.connect(urls.owner) as conn:
        conn.execute(
            "insert into trading.orders (tenant_id, client_order_id, user_id, instrument_id, symbol, side, type, "
            "time_in_force, quantity, limit_price, status, created_at) "
            "values (%s, 'late', %s, %s, %s, 'buy', 'limit', 'day', 100, 900, 'accepted', %s)",
            [tenant.id, tenant.admin_id, instrument_id(conn, world.seeded.symbol), world.seeded.symbol,
             f"{DAY.isoformat()}T04:00:00+00:00"],
        )  # fmt: skip
    refused = pasar_cli("reports", "generate", "--tenant", tenant.id, "--period", PERIOD)
    assert refused.exit_code == 1
    assert "orders: the source holds 1 for the period, the marts 0" in refused.output
    forced = generate(pasar_cli, tenant.id, PERIOD, "--force")
    assert forced["summary"]["input_problems"] == [
        "orders: the source holds 1 for the period, the marts 0 (stale build)"
    ]


def test_bad_periods_and_unknown_tenants_fail_cleanly(world: World, pasar_cli: Invoke) -> None:
    for period in ("2033-13", "2033-3", "March"):
        result = pasar_cli("reports", "generate", "--tenant", world.a.id, "--period", period)
        assert result.exit_code == 1 and "invalid_period" in result.output, result.output
    result = pasar_cli("reports", "generate", "--tenant", "nobody", "--period", PERIOD)
    assert result.exit_code == 1 and "no tenant" in result.output
    # A month without activity still renders (empty tables, no charts of nothing).
    quiet = generate(pasar_cli, world.b.id, "2031-01")
    assert quiet["summary"]["orders"] == 0 and quiet["summary"]["alerts"] == 0
