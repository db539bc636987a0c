"""The compliance and analytics API over the built marts: alerts with evidence and their audited lifecycle, marts
paged and filtered under RLS, and who may read what (403 for other roles, 404 across tenants, 422 on bad input)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from pasar.analytics.models import MARTS
from pasar.db.urls import DatabaseUrls
from tests.analytics.conftest import World


def alerts(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/compliance/alerts", headers=headers, params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def alert_of_type(client: TestClient, world: World, alert_type: str) -> dict[str, Any]:
    [alert] = alerts(client, world.headers("a", "compliance"), type=alert_type)
    return alert


# Alerts --------------------------------------------------------------------------------------------------------


def test_compliance_lists_its_tenants_alerts_with_evidence_and_status(client: TestClient, world: World) -> None:
    listed = alerts(client, world.headers("a", "compliance"), period="2033-03")
    assert {alert["alert_type"] for alert in listed} == {
        "wash_trade", "spoofing", "layering", "marking_the_close", "unusual_activity",
    }  # fmt: skip
    for alert in listed:
        assert alert["evidence"]["thresholds"], alert
        assert alert["severity"] in ("low", "medium", "high")
    assert alerts(client, world.headers("a", "admin"), type="spoofing", severity="high")[0]["evidence"]["order_id"] == (
        world.seeded.spoof_order
    )
    assert alerts(client, world.headers("b", "compliance")) == []
    assert alerts(client, world.headers("a", "compliance"), period="2033-04") == []
    # Paging: two pages of 3 and 2, no overlap.
    first = client.get("/v1/compliance/alerts", headers=world.headers("a", "compliance"), params={"limit": 3}).json()
    second = client.get(
        "/v1/compliance/alerts",
        headers=world.headers("a", "compliance"),
        params={"limit": 3, "cursor": first["next_cursor"]},
    ).json()
    assert len(first["items"]) == 3 and len(second["items"]) == 2 and second["next_cursor"] is None
    assert not {a["alert_id"] for a in first["items"]} & {a["alert_id"] for a in second["items"]}


def test_alert_lifecycle_is_enforced_recorded_and_audited(client: TestClient, world: World, urls: DatabaseUrls) -> None:
    alert = alert_of_type(client, world, "wash_trade")
    assert alert["status"] == "open" and alert["revision"] == 0
    path = f"/v1/compliance/alerts/{alert['alert_id']}"
    officer = world.headers("a", "compliance")

    for status, note in (("investigating", "pulling the order book"), ("escalated", "same user both sides")):
        response = client.patch(path, json={"status": status, "note": note}, headers=officer)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status and response.json()["last_note"] == note
    # Skipping back or re-opening is refused with the lifecycle's reason.
    refused = client.patch(path, json={"status": "investigating", "note": "again"}, headers=officer)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "invalid_transition"
    closed = client.patch(
        path, json={"status": "closed", "note": "reported to the regulator"}, headers=world.headers("a", "admin")
    )
    assert closed.status_code == 200, closed.text
    final = client.get(path, headers=officer).json()
    assert final["status"] == "closed" and final["revision"] == 3
    assert [(r["previous_status"], r["status"]) for r in final["reviews"]] == [
        ("open", "investigating"), ("investigating", "escalated"), ("escalated", "closed"),
    ]  # fmt: skip
    assert final["reviews"][-1]["actor_type"] == "api_key" or final["reviews"][-1]["actor_type"] == "user"
    assert client.patch(path, json={"status": "closed", "note": "twice"}, headers=officer).status_code == 409
    assert alerts(client, officer, status="closed")[0]["alert_id"] == alert["alert_id"]
    with psycopg.connect(urls.owner, row_factory=dict_row) as conn:
        audited = conn.execute(
            "select details from audit.events where tenant_id = %s and target_type = 'alert' and target_id = %s "
            "and action = 'compliance.alert_reviewed' order by occurred_at",
            [world.a.id, alert["alert_id"]],
        ).fetchall()
    assert [(row["details"]["from"], row["details"]["to"]) for row in audited] == [
        ("open", "investigating"), ("investigating", "escalated"), ("escalated", "closed"),
    ]  # fmt: skip


def test_alerts_refuse_other_roles_other_tenants_and_bad_input(client: TestClient, world: World) -> None:
    alert = alert_of_type(client, world, "layering")
    path = f"/v1/compliance/alerts/{alert['alert_id']}"
    body = {"status": "investigating", "note": "looking"}
    for role in ("trader", "analyst"):
        assert client.get("/v1/compliance/alerts", headers=world.headers("a", role)).status_code == 403
        assert client.patch(path, json=body, headers=world.headers("a", role)).status_code == 403
    # Tenant B's officer cannot see or touch A's alert: it does not exist for B.
    assert client.get(path, headers=world.headers("b", "compliance")).status_code == 404
    assert client.patch(path, json=body, headers=world.headers("b", "compliance")).status_code == 404
    assert client.get(path).status_code == 401
    officer = world.headers("a", "compliance")
    for bad in (
        {"status": "resolved", "note": "x"},
        {"status": "investigating", "note": ""},
        {"status": "investigating"},
        {"status": "investigating", "note": "x", "alert_type": "spoofing"},
        {"status": "investigating", "note": "x" * 4001},
    ):
        response = client.patch(path, json=bad, headers=officer)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    for params in ({"period": "2033-13"}, {"type": "insider"}, {"limit": 0}, {"cursor": "%%%"}, {"cursor": "eDox"}):
        response = client.get("/v1/compliance/alerts", headers=officer, params=params)
        assert response.status_code == 422, (params, response.text)
    assert client.get("/v1/compliance/alerts/not-an-alert", headers=officer).status_code == 422
    assert client.get("/v1/compliance/alerts/wash_trade:" + "0" * 32, headers=officer).status_code == 404


# Analytics marts -----------------------------------------------------------------------------------------------


def mart(client: TestClient, headers: dict[str, str], name: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/v1/analytics/{name}", headers=headers, params=params)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def test_analysts_read_their_tenants_marts_paged_and_filtered(client: TestClient, world: World) -> None:
    analyst_a, analyst_b = world.headers("a", "analyst"), world.headers("b", "analyst")
    b_orders = mart(client, analyst_b, "fct_orders")["items"]
    assert len(b_orders) == 3 and {order["tenant_id"] for order in b_orders} == {world.b.id}
    assert isinstance(b_orders[0]["quantity"], str), "decimals travel as exact strings"
    a_pages, cursor = [], None
    while True:
        page = mart(client, analyst_a, "fct_orders", limit=10, **({"cursor": cursor} if cursor else {}))
        a_pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    a_orders = [order for page in a_pages for order in page]
    assert len(a_orders) == 28 and len({order["order_id"] for order in a_orders}) == 28
    assert {order["tenant_id"] for order in a_orders} == {world.a.id}
    filtered = mart(client, analyst_a, "fct_orders", symbol=world.seeded.layering_symbol, status="cancelled")["items"]
    assert len(filtered) == 12
    dated = mart(client, analyst_a, "fct_orders", since="2033-03-07", until="2033-03-08")["items"]
    assert len(dated) == 18
    assert mart(client, analyst_a, "dim_tenants")["items"][0]["tenant_id"] == world.a.id
    users = mart(client, analyst_a, "dim_users")["items"]
    assert users and all("password_hash" not in user for user in users)
    assert (
        mart(client, analyst_a, "dim_instruments", symbol=world.normal_symbol)["items"][0]["symbol"]
        == world.normal_symbol
    )
    positions = mart(client, analyst_b, "fct_positions_daily")["items"]
    assert {p["symbol"] for p in positions} == {world.normal_symbol}
    listed = client.get("/v1/analytics", headers=analyst_a).json()["items"]
    assert "fct_orders" in {m["mart"] for m in listed} and not any(m["mart"].startswith("rpt_") for m in listed)


def test_marts_refuse_unknown_marts_other_roles_and_bad_filters(client: TestClient, world: World) -> None:
    analyst = world.headers("a", "analyst")
    assert client.get("/v1/analytics/stg_trading__orders", headers=analyst).status_code == 404
    assert client.get("/v1/analytics/int_orders_joined_to_fills", headers=analyst).status_code == 404
    assert client.get("/v1/analytics/pg_class", headers=analyst).status_code == 404
    assert client.get("/v1/analytics/fct_orders", headers=world.headers("a", "trader")).status_code == 403
    assert client.get("/v1/analytics/rpt_surveillance_alerts", headers=analyst).status_code == 403
    compliance_view = mart(client, world.headers("a", "compliance"), "rpt_surveillance_alerts", alert_type="spoofing")
    assert len(compliance_view["items"]) == 1
    assert mart(client, world.headers("b", "compliance"), "rpt_surveillance_alerts")["items"] == []
    for name, params in (
        ("fct_orders", {"kind": "order"}),  # a filter this mart does not take
        ("dim_tenants", {"since": "2033-01-01"}),
        ("fct_orders", {"user_id": "not-a-uuid"}),
        ("fct_orders", {"limit": 100_000}),
        ("fct_orders", {"cursor": "garbage!"}),
        ("fct_orders", {"since": "yesterday"}),
        ("fct_orders", {"side": "short"}),
        ("fct_orders", {"symbol": "x" * 65}),
        ("Fct-Orders", {}),
    ):
        response = client.get(f"/v1/analytics/{name}", headers=analyst, params=params)
        assert response.status_code == 422, (name, params, response.text)
        assert "error" in response.json()


@pytest.mark.parametrize("role", ["analyst", "admin", "compliance"])
def test_no_tenant_sees_another_tenants_rows_in_any_mart(client: TestClient, world: World, role: str) -> None:
    for name, spec in MARTS.items():
        if spec.shared:
            continue
        for tenant, other in (("a", world.b.id), ("b", world.a.id)):
            response = client.get(f"/v1/analytics/{name}", headers=world.headers(tenant, role), params={"limit": 1000})
            if role == "analyst" and name.startswith("rpt_"):
                assert response.status_code == 403
                continue
            assert response.status_code == 200, (name, response.text)
            assert all(row["tenant_id"] != other for row in response.json()["items"]), name
