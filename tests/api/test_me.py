"""GET /v1/me: the caller, by API key and by token."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_me_by_api_key_and_by_token(client: TestClient, tenant_a) -> None:
    by_key = client.get("/v1/me", headers=tenant_a.headers)
    assert by_key.status_code == 200, by_key.text
    assert by_key.json()["tenant"]["id"] == tenant_a.id
    assert by_key.json()["user"]["username"] == "admin"

    token = client.post("/v1/auth/token", json={"api_key": tenant_a.key}).json()["access_token"]
    by_token = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert by_token.status_code == 200
    assert by_token.json()["user"] == by_key.json()["user"]
