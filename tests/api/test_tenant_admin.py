"""Tenant administration over the API: users, API keys, the role matrix, cross-tenant access (BOLA), the operator
plane and the audit trail (acceptance tests E.26 and E.27)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from psycopg.rows import dict_row

from pasar.db.urls import DatabaseUrls
from pasar.tenancy import service as tenancy

USER_FIELDS = {
    "id",
    "tenant_id",
    "username",
    "display_name",
    "role",
    "is_active",
    "created_at",
    "updated_at",
    "last_login_at",
}
API_KEY_FIELDS = {"id", "tenant_id", "user_id", "name", "prefix", "scopes", "created_at", "expires_at", "revoked_at"}
TENANT_FIELDS = {"id", "slug", "name", "plan", "status", "created_at"}
PAGE_FIELDS = {"items", "next_cursor"}
ENVELOPE_FIELDS = {"code", "message", "details"}
STRONG_PASSWORD = "correct horse battery staple"

# Operations anyone may call: probes, metrics and the two token endpoints (the API description and its pages,
# /openapi.json and /docs, are public too; they are not operations of the description itself).
PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/v1/auth/token"),
    ("POST", "/v1/auth/refresh"),
}
TENANT_ADMIN_ROUTES = {
    ("GET", "/v1/users"),
    ("POST", "/v1/users"),
    ("GET", "/v1/users/{user_id}"),
    ("PATCH", "/v1/users/{user_id}"),
    ("DELETE", "/v1/users/{user_id}"),
    ("GET", "/v1/api-keys"),
    ("POST", "/v1/api-keys"),
    ("DELETE", "/v1/api-keys/{key_id}"),
}
OPERATOR_ROUTES = {
    ("GET", "/v1/admin/tenants"),
    ("POST", "/v1/admin/tenants/{tenant_id}/suspend"),
    ("POST", "/v1/admin/tenants/{tenant_id}/resume"),
}


# Helpers ----------------------------------------------------------------------------------------------------


def all_keys(value: Any) -> set[str]:
    """Every object key anywhere in a JSON document."""
    if isinstance(value, dict):
        return set(value).union(*(all_keys(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(all_keys(item) for item in value))
    return set()


def assert_no_secrets(response: Response) -> None:
    """No hash and no password ever leaves the API, in any response."""
    assert response.status_code < 500, response.text
    if response.headers.get("content-type", "").startswith("application/json") and response.content:
        leaked = {key for key in all_keys(response.json()) if "hash" in key.lower() or "password" in key.lower()}
        assert not leaked, f"secret-looking fields in {response.request.url}: {leaked}"


def assert_error(response: Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == ENVELOPE_FIELDS, body
    if code is not None:
        assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    error: dict[str, Any] = body["error"]
    return error


def create_user(client: TestClient, headers: dict[str, str], role: str = "trader", **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/users", headers=headers, json={"username": f"u{uuid4().hex[:12]}", "role": role, **extra}
    )
    assert response.status_code == 201, response.text
    assert_no_secrets(response)
    user: dict[str, Any] = response.json()
    return user


def create_key(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/v1/api-keys", headers=headers, json={"name": f"key {uuid4().hex[:6]}", **body})
    assert response.status_code == 201, response.text
    assert_no_secrets(response)
    issued: dict[str, Any] = response.json()
    return issued


def key_headers(issued: dict[str, Any]) -> dict[str, str]:
    return {"X-API-Key": issued["secret"]}


def concrete(path: str, **values: str) -> str:
    """A route path with its parameters filled in (a fresh UUID for any parameter not given)."""
    return re.sub(r"\{(\w+)\}", lambda match: values.get(match[1], str(uuid4())), path)


def api_routes(client: TestClient, *prefixes: str) -> list[tuple[str, str]]:
    """(method, path template) of every API operation under the prefixes (all of them without prefixes), from the
    OpenAPI description (FastAPI nests included routers, so ``app.routes`` does not list them flat)."""
    paths = client.get("/openapi.json").json()["paths"]
    return sorted(
        (method.upper(), path)
        for path, operations in paths.items()
        if not prefixes or path.startswith(prefixes)
        for method in operations
    )


# A plausible, valid body per write route, so that authorization (not validation) decides the answer.
SAMPLE_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/users"): {"username": "intruder", "role": "admin"},
    ("PATCH", "/v1/users/{user_id}"): {"role": "trader", "display_name": "pwned"},
    ("POST", "/v1/api-keys"): {"name": "escalation"},
    ("POST", "/v1/admin/tenants/{tenant_id}/suspend"): {"reason": "test"},
    ("POST", "/v1/admin/tenants/{tenant_id}/resume"): {"reason": "test"},
}


def call(client: TestClient, method: str, path: str, headers: dict[str, str], **values: str) -> Response:
    body = SAMPLE_BODIES.get((method, path))
    response = client.request(method, concrete(path, **values), headers=headers, json=body)
    assert_no_secrets(response)
    return response


@pytest.fixture(scope="module")
def operator_key(urls: DatabaseUrls) -> str:
    """A platform operator's key, made as the CLI makes it: on the owner's connection."""

    async def make() -> str:
        async with await psycopg.AsyncConnection.connect(urls.owner, row_factory=dict_row) as conn:
            _, secret = await tenancy.create_operator(conn, name=f"operator {uuid4().hex[:8]}")
            await conn.commit()
        return secret

    return asyncio.run(make())


@pytest.fixture
def owner_conn(urls: DatabaseUrls) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(urls.owner, autocommit=True, row_factory=dict_row) as conn:
        yield conn


# Users ------------------------------------------------------------------------------------------------------


def test_create_get_and_list_users(client: TestClient, tenant_a) -> None:
    created = client.post(
        "/v1/users",
        headers=tenant_a.headers,
        json={"username": "siti", "display_name": "Siti", "role": "analyst", "password": STRONG_PASSWORD},
    )
    assert created.status_code == 201, created.text
    assert_no_secrets(created)
    user = created.json()
    assert set(user) == USER_FIELDS
    assert user["username"] == "siti"
    assert user["display_name"] == "Siti"
    assert user["role"] == "analyst"
    assert user["is_active"] is True
    assert user["tenant_id"] == tenant_a.id

    fetched = client.get(f"/v1/users/{user['id']}", headers=tenant_a.headers)
    assert fetched.status_code == 200
    assert fetched.json() == user

    listed = client.get("/v1/users", headers=tenant_a.headers)
    assert listed.status_code == 200
    assert_no_secrets(listed)
    assert set(listed.json()) == PAGE_FIELDS
    assert {item["id"] for item in listed.json()["items"]} == {tenant_a.admin_id, user["id"]}
    assert all(set(item) == USER_FIELDS for item in listed.json()["items"])
    assert listed.json()["next_cursor"] is None


def test_list_users_pages_with_a_cursor(client: TestClient, tenant_a) -> None:
    for _ in range(4):
        create_user(client, tenant_a.headers)
    everyone = client.get("/v1/users", headers=tenant_a.headers, params={"limit": 500}).json()["items"]
    assert len(everyone) == 5

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} if cursor is None else {"limit": 2, "after": cursor}
        page = client.get("/v1/users", headers=tenant_a.headers, params=params)
        assert page.status_code == 200, page.text
        items = page.json()["items"]
        assert len(items) <= 2
        seen.extend(item["id"] for item in items)
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
        assert cursor == items[-1]["id"]
    assert pages == 3
    assert seen == [user["id"] for user in everyone]  # every user once, in a stable order
    assert len(set(seen)) == len(seen)


def test_update_user(client: TestClient, tenant_a) -> None:
    user = create_user(client, tenant_a.headers, role="analyst")

    renamed = client.patch(f"/v1/users/{user['id']}", headers=tenant_a.headers, json={"display_name": "Budi"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["display_name"] == "Budi"

    promoted = client.patch(f"/v1/users/{user['id']}", headers=tenant_a.headers, json={"role": "trader"})
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "trader"
    assert client.get(f"/v1/users/{user['id']}", headers=tenant_a.headers).json()["role"] == "trader"

    new_password = client.patch(f"/v1/users/{user['id']}", headers=tenant_a.headers, json={"password": STRONG_PASSWORD})
    assert new_password.status_code == 200
    assert_no_secrets(new_password)
    login = client.post(
        "/v1/auth/token",
        json={"username": user["username"], "password": STRONG_PASSWORD, "tenant": tenant_a.made.tenant.slug},
    )
    assert login.status_code == 200, login.text

    weak = client.patch(f"/v1/users/{user['id']}", headers=tenant_a.headers, json={"password": "short"})
    assert_error(weak, 422, "weak_password")


def test_delete_deactivates_the_user_and_revokes_its_keys(client: TestClient, tenant_a) -> None:
    user = create_user(client, tenant_a.headers)
    issued = create_key(client, tenant_a.headers, user_id=user["id"])
    assert client.get("/v1/me", headers=key_headers(issued)).status_code == 200

    deleted = client.delete(f"/v1/users/{user['id']}", headers=tenant_a.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""

    after = client.get(f"/v1/users/{user['id']}", headers=tenant_a.headers)
    assert after.status_code == 200
    assert after.json()["is_active"] is False
    assert client.get("/v1/me", headers=key_headers(issued)).status_code == 401
    keys = client.get("/v1/api-keys", headers=tenant_a.headers).json()["items"]
    assert next(key for key in keys if key["id"] == issued["api_key"]["id"])["revoked_at"] is not None


def test_duplicate_username_is_a_conflict(client: TestClient, tenant_a, tenant_b) -> None:
    first = create_user(client, tenant_a.headers)
    again = client.post("/v1/users", headers=tenant_a.headers, json={"username": first["username"], "role": "analyst"})
    assert_error(again, 409, "username_taken")
    # The same name in another tenant is no conflict, and says nothing about tenant A.
    elsewhere = client.post(
        "/v1/users", headers=tenant_b.headers, json={"username": first["username"], "role": "analyst"}
    )
    assert elsewhere.status_code == 201, elsewhere.text


def test_weak_password_is_refused(client: TestClient, tenant_a) -> None:
    weak = client.post(
        "/v1/users", headers=tenant_a.headers, json={"username": "weakling", "role": "trader", "password": "123456789"}
    )
    assert_error(weak, 422, "weak_password")
    names = [user["username"] for user in client.get("/v1/users", headers=tenant_a.headers).json()["items"]]
    assert "weakling" not in names


def test_admin_cannot_demote_or_deactivate_self(client: TestClient, tenant_a) -> None:
    me = f"/v1/users/{tenant_a.admin_id}"
    assert_error(client.patch(me, headers=tenant_a.headers, json={"role": "analyst"}), 409, "self_change")
    assert_error(client.patch(me, headers=tenant_a.headers, json={"is_active": False}), 409, "self_change")
    assert_error(client.delete(me, headers=tenant_a.headers), 409, "self_change")

    still = client.get(me, headers=tenant_a.headers)
    assert still.status_code == 200
    assert still.json()["role"] == "admin"
    assert still.json()["is_active"] is True
    renamed = client.patch(me, headers=tenant_a.headers, json={"display_name": "Boss", "role": "admin"})
    assert renamed.status_code == 200, renamed.text


# API keys ---------------------------------------------------------------------------------------------------


def test_api_key_secret_is_shown_once(client: TestClient, tenant_a) -> None:
    created = client.post("/v1/api-keys", headers=tenant_a.headers, json={"name": "ci"})
    assert created.status_code == 201, created.text
    assert_no_secrets(created)
    body = created.json()
    assert set(body) == {"api_key", "secret"}
    assert set(body["api_key"]) == API_KEY_FIELDS
    assert body["secret"].startswith(body["api_key"]["prefix"] + "_")
    assert body["api_key"]["user_id"] == tenant_a.admin_id
    assert sorted(body["api_key"]["scopes"]) == ["admin", "read", "write"]
    assert body["api_key"]["revoked_at"] is None

    listed = client.get("/v1/api-keys", headers=tenant_a.headers)
    assert listed.status_code == 200
    assert_no_secrets(listed)
    assert set(listed.json()) == PAGE_FIELDS
    assert all(set(item) == API_KEY_FIELDS for item in listed.json()["items"])
    assert body["api_key"] in listed.json()["items"]
    assert body["secret"] not in listed.text
    assert tenant_a.key not in listed.text

    me = client.get("/v1/me", headers=key_headers(body))
    assert me.status_code == 200
    assert me.json()["api_key_id"] == body["api_key"]["id"]
    assert body["secret"] not in me.text


def test_read_only_key_cannot_write(client: TestClient, tenant_a) -> None:
    read_only = create_key(client, tenant_a.headers, scopes=["read"])
    assert read_only["api_key"]["scopes"] == ["read"]
    headers = key_headers(read_only)

    assert client.get("/v1/users", headers=headers).status_code == 200
    assert_error(
        client.post("/v1/users", headers=headers, json={"username": "nope", "role": "trader"}),
        403,
        "insufficient_scope",
    )
    # Nor can it mint itself a broader key, or revoke the admin's.
    assert_error(client.post("/v1/api-keys", headers=headers, json={"name": "wider"}), 403, "insufficient_scope")
    admin_key_id = str(tenant_a.made.api_key.api_key.id)
    assert_error(client.delete(f"/v1/api-keys/{admin_key_id}", headers=headers), 403, "insufficient_scope")
    assert client.get("/v1/me", headers=tenant_a.headers).status_code == 200


def test_key_scopes_never_exceed_the_role(client: TestClient, tenant_a) -> None:
    trader = create_user(client, tenant_a.headers, role="trader")
    default = create_key(client, tenant_a.headers, user_id=trader["id"])
    assert sorted(default["api_key"]["scopes"]) == ["read", "write"]
    narrowed = create_key(client, tenant_a.headers, user_id=trader["id"], scopes=["read", "admin"])
    assert narrowed["api_key"]["scopes"] == ["read"]
    refused = client.post(
        "/v1/api-keys", headers=tenant_a.headers, json={"name": "x", "user_id": trader["id"], "scopes": ["admin"]}
    )
    assert_error(refused, 422, "bad_scopes")


def test_revoke_api_key(client: TestClient, tenant_a) -> None:
    issued = create_key(client, tenant_a.headers)
    assert client.get("/v1/me", headers=key_headers(issued)).status_code == 200

    revoked = client.delete(f"/v1/api-keys/{issued['api_key']['id']}", headers=tenant_a.headers)
    assert revoked.status_code == 204
    assert revoked.content == b""
    assert_error(client.get("/v1/me", headers=key_headers(issued)), 401, "api_key_revoked")
    keys = client.get("/v1/api-keys", headers=tenant_a.headers).json()["items"]
    assert next(key for key in keys if key["id"] == issued["api_key"]["id"])["revoked_at"] is not None


def test_api_key_expiry(client: TestClient, tenant_a) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    assert_error(client.post("/v1/api-keys", headers=tenant_a.headers, json={"name": "old", "expires_at": past}), 422)

    future = datetime.now(UTC) + timedelta(days=1)
    issued = create_key(client, tenant_a.headers, expires_at=future.isoformat())
    assert datetime.fromisoformat(issued["api_key"]["expires_at"]) == future
    assert client.get("/v1/me", headers=key_headers(issued)).status_code == 200


# The role matrix --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["trader", "analyst", "compliance"])
@pytest.mark.parametrize("credential", ["api_key", "token"])
def test_non_admin_roles_are_refused_tenant_administration(
    client: TestClient, tenant_a, role: str, credential: str
) -> None:
    user = create_user(client, tenant_a.headers, role=role)
    issued = create_key(client, tenant_a.headers, user_id=user["id"])
    headers = key_headers(issued)
    if credential == "token":
        token = client.post("/v1/auth/token", json={"api_key": issued["secret"]})
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert client.get("/v1/me", headers=headers).status_code == 200  # the credential itself works

    admin_before = client.get(f"/v1/users/{tenant_a.admin_id}", headers=tenant_a.headers).json()
    admin_key_id = str(tenant_a.made.api_key.api_key.id)
    routes = api_routes(client, "/v1/users", "/v1/api-keys", "/v1/admin")
    assert set(routes) >= TENANT_ADMIN_ROUTES | OPERATOR_ROUTES
    for method, path in routes:
        response = call(client, method, path, headers, user_id=tenant_a.admin_id, key_id=admin_key_id)
        assert_error(response, 403)

    assert client.get(f"/v1/users/{tenant_a.admin_id}", headers=tenant_a.headers).json() == admin_before
    assert client.get("/v1/me", headers=tenant_a.headers).status_code == 200
    names = {item["username"] for item in client.get("/v1/users", headers=tenant_a.headers).json()["items"]}
    assert "intruder" not in names


def test_anonymous_callers_get_401_everywhere_but_public_routes(client: TestClient, tenant_a) -> None:
    routes = api_routes(client)
    assert set(routes) >= PUBLIC_ROUTES | TENANT_ADMIN_ROUTES | OPERATOR_ROUTES
    for method, path in routes:
        response = call(client, method, path, {}, user_id=tenant_a.admin_id)
        if (method, path) in PUBLIC_ROUTES:
            assert response.status_code != 401, (method, path, response.text)
        else:
            assert_error(response, 401)
            assert response.headers.get("www-authenticate") == "Bearer", (method, path)
    for path in ("/docs", "/openapi.json"):
        assert client.get(path).status_code == 200
    assert_error(client.get("/v1/users", headers={"X-API-Key": "psr_nope_nope"}), 401)
    assert_error(client.get("/v1/users", headers={"Authorization": "Bearer not.a.jwt"}), 401)


# Cross-tenant access (BOLA) ---------------------------------------------------------------------------------


def test_other_tenants_objects_are_not_found(client: TestClient, tenant_a, tenant_b) -> None:
    victim = create_user(client, tenant_a.headers, role="trader")
    victim_key = create_key(client, tenant_a.headers, user_id=victim["id"])
    admin_key_id = str(tenant_a.made.api_key.api_key.id)
    users_before = client.get("/v1/users", headers=tenant_a.headers).json()
    keys_before = client.get("/v1/api-keys", headers=tenant_a.headers).json()

    for user_id in (victim["id"], tenant_a.admin_id):
        url = f"/v1/users/{user_id}"
        assert_error(client.get(url, headers=tenant_b.headers), 404, "not_found")
        assert_error(
            client.patch(url, headers=tenant_b.headers, json={"display_name": "pwned", "role": "analyst"}),
            404,
            "not_found",
        )
        assert_error(client.patch(url, headers=tenant_b.headers, json={"password": STRONG_PASSWORD}), 404, "not_found")
        assert_error(client.delete(url, headers=tenant_b.headers), 404, "not_found")
    for key_id in (victim_key["api_key"]["id"], admin_key_id):
        assert_error(client.delete(f"/v1/api-keys/{key_id}", headers=tenant_b.headers), 404, "not_found")
    # Nor can B mint a key for A's user.
    assert_error(
        client.post("/v1/api-keys", headers=tenant_b.headers, json={"name": "x", "user_id": victim["id"]}),
        404,
        "not_found",
    )

    # A's rows are unchanged, and its keys still work.
    assert client.get("/v1/users", headers=tenant_a.headers).json() == users_before
    assert client.get("/v1/api-keys", headers=tenant_a.headers).json() == keys_before
    assert client.get("/v1/me", headers=key_headers(victim_key)).status_code == 200
    assert client.get("/v1/me", headers=tenant_a.headers).status_code == 200

    # B's lists never show A's rows.
    a_ids = {user["id"] for user in users_before["items"]} | {key["id"] for key in keys_before["items"]}
    b_users = client.get("/v1/users", headers=tenant_b.headers, params={"limit": 500}).json()["items"]
    b_keys = client.get("/v1/api-keys", headers=tenant_b.headers).json()["items"]
    assert b_users
    assert b_keys
    assert not a_ids & {row["id"] for row in b_users + b_keys}
    assert {row["tenant_id"] for row in b_users + b_keys} == {tenant_b.id}
    # Not even through a cursor that points into A's id range.
    after = client.get("/v1/users", headers=tenant_b.headers, params={"after": str(victim["id"])}).json()["items"]
    assert {row["tenant_id"] for row in after} <= {tenant_b.id}


# The operator plane -----------------------------------------------------------------------------------------


def test_operator_lists_tenants(client: TestClient, operator_key: str, tenant_a, tenant_b) -> None:
    listed = client.get("/v1/admin/tenants", headers={"X-API-Key": operator_key})
    assert listed.status_code == 200, listed.text
    assert_no_secrets(listed)
    assert all(set(item) == TENANT_FIELDS for item in listed.json()["items"])
    assert {tenant_a.id, tenant_b.id} <= {item["id"] for item in listed.json()["items"]}
    # An operator is not a tenant user.
    assert_error(client.get("/v1/users", headers={"X-API-Key": operator_key}), 403)


def test_operator_suspends_and_resumes_a_tenant(
    client: TestClient, operator_key: str, make_tenant, tenant_b, owner_conn: psycopg.Connection[dict[str, Any]]
) -> None:
    tenant = make_tenant()
    operator = {"X-API-Key": operator_key}

    suspended = client.post(f"/v1/admin/tenants/{tenant.id}/suspend", headers=operator, json={"reason": "unpaid"})
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended"
    assert_error(client.get("/v1/me", headers=tenant.headers), 403, "tenant_suspended")
    assert client.get("/v1/me", headers=tenant_b.headers).status_code == 200

    events = owner_conn.execute(
        "select tenant_id, actor_type, action, details, request_id from audit.events "
        "where target_type = 'tenant' and target_id = %s and action = 'tenant.suspended'",
        [tenant.id],
    ).fetchall()
    assert len(events) == 1
    assert str(events[0]["tenant_id"]) == tenant.id
    assert events[0]["actor_type"] == "operator"
    assert events[0]["details"] == {"reason": "unpaid"}
    assert events[0]["request_id"] == suspended.headers["x-request-id"]

    resumed = client.post(f"/v1/admin/tenants/{tenant.id}/resume", headers=operator, json={"reason": "paid"})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "active"
    assert client.get("/v1/me", headers=tenant.headers).status_code == 200


def test_operator_unknown_tenant_is_not_found(client: TestClient, operator_key: str) -> None:
    operator = {"X-API-Key": operator_key}
    for action in ("suspend", "resume"):
        response = client.post(f"/v1/admin/tenants/{uuid4()}/{action}", headers=operator, json={"reason": "x"})
        assert_error(response, 404, "not_found")


def test_tenant_admin_is_refused_the_operator_plane(client: TestClient, tenant_a, tenant_b) -> None:
    routes = api_routes(client, "/v1/admin")
    assert set(routes) >= OPERATOR_ROUTES
    for method, path in routes:
        assert_error(call(client, method, path, tenant_a.headers, tenant_id=tenant_b.id), 403)
    assert client.get("/v1/me", headers=tenant_b.headers).status_code == 200  # not suspended by A


# Audit ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given_request_id", [None, "req-create-user.1"])
def test_user_creation_is_audited(
    client: TestClient, tenant_a, owner_conn: psycopg.Connection[dict[str, Any]], given_request_id: str | None
) -> None:
    headers = dict(tenant_a.headers)
    if given_request_id is not None:
        headers["X-Request-ID"] = given_request_id
    created = client.post("/v1/users", headers=headers, json={"username": "audited", "role": "analyst"})
    assert created.status_code == 201, created.text
    request_id = created.headers["x-request-id"]
    if given_request_id is not None:
        assert request_id == given_request_id

    events = owner_conn.execute(
        "select tenant_id, actor_type, actor_id, target_type, details, request_id from audit.events "
        "where action = 'user.created' and target_id = %s",
        [created.json()["id"]],
    ).fetchall()
    assert len(events) == 1
    event = events[0]
    assert str(event["tenant_id"]) == tenant_a.id
    assert event["actor_type"] == "api_key"
    assert event["actor_id"] == str(tenant_a.made.api_key.api_key.id)
    assert event["target_type"] == "user"
    assert event["details"] == {"username": "audited", "role": "analyst"}
    assert event["request_id"] == request_id
