"""Authentication: token exchange, the JWT attack set, revocation, suspension, refresh rotation, login throttling.

Every failure is checked twice: the HTTP status, and the stable code of the error envelope.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx2
import jwt
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.app import create_app
from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from pasar.tenancy import service as tenancy
from pasar.tenancy.models import Plan
from tests.conftest import TenantFixture, _provision

# Helpers ----------------------------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx2.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body


def exchange(client: TestClient, api_key: str) -> dict[str, Any]:
    response = client.post("/v1/auth/token", json={"api_key": api_key})
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


def login(client: TestClient, username: str, password: str, tenant: str | None = None) -> httpx2.Response:
    body = {"username": username, "password": password}
    if tenant is not None:
        body["tenant"] = tenant
    return client.post("/v1/auth/token", json=body)


def refresh(client: TestClient, refresh_token: str) -> httpx2.Response:
    return client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})


def create_user(client: TestClient, tenant, *, role: str) -> tuple[str, str, str]:
    """(id, username, password) of a new user of ``tenant``, made by its admin."""
    username = f"user-{uuid4().hex[:10]}"
    password = f"pw-{uuid4().hex}"
    response = client.post(
        "/v1/users", headers=tenant.headers, json={"username": username, "role": role, "password": password}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"], username, password


def create_api_key(client: TestClient, tenant, **fields: Any) -> tuple[str, str]:
    """(id, secret) of a new API key of ``tenant``, made by its admin."""
    response = client.post("/v1/api-keys", headers=tenant.headers, json={"name": f"key-{uuid4().hex[:8]}", **fields})
    assert response.status_code == 201, response.text
    issued = response.json()
    return issued["api_key"]["id"], issued["secret"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unverified_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def hs_sign(secret: str, header: dict[str, Any], claims: dict[str, Any], digest: Any = hashlib.sha256) -> str:
    """A JWT signed by hand with HMAC, whatever its header claims the algorithm is."""
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


# Fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def operator_key(urls: DatabaseUrls) -> str:
    """A platform operator's key, made as the CLI makes it: on the owner's connection."""

    async def make() -> str:
        async with await psycopg.AsyncConnection.connect(urls.owner, row_factory=dict_row) as conn:
            _, secret = await tenancy.create_operator(conn, name=f"test-operator-{uuid4().hex[:10]}")
            await conn.commit()
        return secret

    return asyncio.run(make())


@contextmanager
def dedicated_client(settings: Settings, **overrides: Any) -> Iterator[TestClient]:
    """An app of its own: login throttle state that no other test shares (the session's client is shared)."""
    with TestClient(create_app(settings.model_copy(update=overrides))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def shared_tenant(settings: Settings) -> TenantFixture:
    """One tenant for the read-only attack tests (provisioning per test would dominate their run time)."""
    return TenantFixture(asyncio.run(_provision(settings, f"Tenant {uuid4().hex[:10]}", Plan.enterprise)))


@pytest.fixture
def secret(settings: Settings) -> str:
    assert settings.jwt_secret is not None
    return settings.jwt_secret.get_secret_value()


@pytest.fixture
def real_claims(client: TestClient, shared_tenant: TenantFixture) -> dict[str, Any]:
    """The claims of a genuine access token of a tenant admin, to forge variants of."""
    return unverified_claims(exchange(client, shared_tenant.key)["access_token"])


# Token exchange ---------------------------------------------------------------------------------------------


def test_exchange_api_key_for_tokens(client: TestClient, tenant_a) -> None:
    pair = exchange(client, tenant_a.key)
    assert pair["token_type"] == "bearer"
    assert isinstance(pair["expires_in"], int)
    assert pair["expires_in"] > 0
    assert pair["access_token"]
    assert pair["refresh_token"]
    me = client.get("/v1/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["tenant"]["id"] == tenant_a.id


def test_exchange_password_for_tokens(client: TestClient, tenant_a) -> None:
    response = login(client, "admin", tenant_a.made.admin_password, tenant_a.made.tenant.slug)
    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] > 0
    assert pair["refresh_token"]
    me = client.get("/v1/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["tenant"]["id"] == tenant_a.id
    assert me.json()["user"]["id"] == tenant_a.admin_id


def test_exchange_password_without_tenant_for_a_unique_username(client: TestClient, tenant_a) -> None:
    user_id, username, password = create_user(client, tenant_a, role="analyst")
    response = login(client, username, password)
    assert response.status_code == 200, response.text
    me = client.get("/v1/me", headers=bearer(response.json()["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["user"]["id"] == user_id
    assert me.json()["tenant"]["id"] == tenant_a.id


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"api_key": "KEY", "username": "admin", "password": "a-secret-password"}, id="both-grants"),
        pytest.param({}, id="neither"),
        pytest.param({"api_key": "KEY", "role": "admin"}, id="unknown-field"),
        pytest.param({"username": "admin"}, id="username-without-password"),
        pytest.param({"password": "a-secret-password"}, id="password-without-username"),
        pytest.param({"api_key": "KEY", "tenant": "some-tenant"}, id="api-key-with-tenant"),
    ],
)
def test_exchange_rejects_malformed_requests(
    client: TestClient, shared_tenant: TenantFixture, body: dict[str, str]
) -> None:
    body = {name: shared_tenant.key if value == "KEY" else value for name, value in body.items()}
    response = client.post("/v1/auth/token", json=body)
    assert_error(response, 422, "validation_error")
    assert "a-secret-password" not in response.text  # a validation error never echoes the input
    assert shared_tenant.key not in response.text


def test_exchange_unknown_api_key(client: TestClient) -> None:
    response = client.post("/v1/auth/token", json={"api_key": f"psr_000000000000_{uuid4().hex}"})
    assert_error(response, 401, "invalid_api_key")


# The JWT attack set, against GET /v1/me ---------------------------------------------------------------------


def test_forging_harness_control(client: TestClient, secret: str, real_claims: dict[str, Any]) -> None:
    """Re-signing genuine claims with the real secret is accepted: the 401s below are about the attack only."""
    token = jwt.encode(real_claims, secret, algorithm="HS256")
    assert client.get("/v1/me", headers=bearer(token)).status_code == 200
    by_hand = hs_sign(secret, {"alg": "HS256", "typ": "JWT"}, real_claims)
    assert client.get("/v1/me", headers=bearer(by_hand)).status_code == 200


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"], ids=["unsigned", "junk-signature"])
def test_alg_none_is_refused(client: TestClient, real_claims: dict[str, Any], alg: str, signature: str) -> None:
    token = f"{b64url_json({'alg': alg, 'typ': 'JWT'})}.{b64url_json(real_claims)}.{signature}"
    assert_error(client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")


def test_wrong_signing_key_is_refused(client: TestClient, real_claims: dict[str, Any]) -> None:
    token = jwt.encode(real_claims, f"not-the-secret-{uuid4().hex}", algorithm="HS256")
    assert_error(client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize(
    ("header_alg", "digest"),
    [
        pytest.param("RS256", hashlib.sha256, id="RS256-header-HS256-signature"),
        pytest.param("ES256", hashlib.sha256, id="ES256-header-HS256-signature"),
        pytest.param("PS256", hashlib.sha256, id="PS256-header-HS256-signature"),
        pytest.param("HS512", hashlib.sha512, id="HS512-real-secret"),
        pytest.param("HS384", hashlib.sha384, id="HS384-real-secret"),
    ],
)
def test_algorithm_confusion_is_refused(
    client: TestClient, secret: str, real_claims: dict[str, Any], header_alg: str, digest: Any
) -> None:
    token = hs_sign(secret, {"alg": header_alg, "typ": "JWT"}, real_claims, digest)
    assert_error(client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")


def test_expired_token_is_refused(client: TestClient, secret: str, real_claims: dict[str, Any]) -> None:
    now = int(time.time())
    token = jwt.encode({**real_claims, "iat": now - 7200, "exp": now - 3600}, secret, algorithm="HS256")
    assert_error(client.get("/v1/me", headers=bearer(token)), 401, "token_expired")


def test_a_token_verified_before_stops_working_when_it_expires(
    client: TestClient, secret: str, real_claims: dict[str, Any]
) -> None:
    now = int(time.time())
    token = jwt.encode({**real_claims, "iat": now, "exp": now + 2}, secret, algorithm="HS256")
    assert client.get("/v1/me", headers=bearer(token)).status_code == 200  # verified, and kept as verified
    time.sleep(max(0.0, now + 2.05 - time.time()))
    assert_error(client.get("/v1/me", headers=bearer(token)), 401, "token_expired")


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "aud", "iss", "typ"])
def test_token_missing_a_required_claim_is_refused(
    client: TestClient, secret: str, real_claims: dict[str, Any], claim: str
) -> None:
    claims = {name: value for name, value in real_claims.items() if name != claim}
    token = jwt.encode(claims, secret, algorithm="HS256")
    assert_error(client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize(
    "audience",
    [
        pytest.param("other-api", id="other"),
        pytest.param("REFRESH", id="refresh-audience"),
        pytest.param(["other-api"], id="list-without-ours"),
        pytest.param("", id="empty"),
    ],
)
def test_wrong_audience_is_refused(
    client: TestClient, settings: Settings, secret: str, real_claims: dict[str, Any], audience: Any
) -> None:
    if audience == "REFRESH":
        audience = f"{settings.jwt_audience}:refresh"
    token = jwt.encode({**real_claims, "aud": audience}, secret, algorithm="HS256")
    assert_error(client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize("issuer", ["evil", "", "PASAR"])
def test_wrong_issuer_is_refused(client: TestClient, secret: str, real_claims: dict[str, Any], issuer: str) -> None:
    token = jwt.encode({**real_claims, "iss": issuer}, secret, algorithm="HS256")
    assert_error(client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")


def test_refresh_token_is_not_an_access_token(client: TestClient, shared_tenant: TenantFixture) -> None:
    pair = exchange(client, shared_tenant.key)
    assert_error(client.get("/v1/me", headers=bearer(pair["refresh_token"])), 401, "invalid_token")


def test_access_typed_as_refresh_is_refused(client: TestClient, secret: str, real_claims: dict[str, Any]) -> None:
    token = jwt.encode({**real_claims, "typ": "refresh"}, secret, algorithm="HS256")
    assert_error(client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")


def test_access_token_is_not_a_refresh_token(client: TestClient, shared_tenant: TenantFixture) -> None:
    pair = exchange(client, shared_tenant.key)
    assert_error(refresh(client, pair["access_token"]), 401, "invalid_token")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "....", "x" * 3000])
def test_garbage_token_is_refused(client: TestClient, token: str) -> None:
    assert_error(client.get("/v1/me", headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer ", id="bearer-empty"),
        pytest.param("Bearer", id="bearer-alone"),
        pytest.param("Basic YWRtaW46cGFzc3dvcmQ=", id="basic"),
        pytest.param("Token TOKEN", id="token-scheme"),
        pytest.param("TOKEN", id="no-scheme"),
    ],
)
def test_missing_or_non_bearer_credentials_are_refused(
    client: TestClient, shared_tenant: TenantFixture, authorization: str
) -> None:
    access_token = exchange(client, shared_tenant.key)["access_token"]
    response = client.get("/v1/me", headers={"Authorization": authorization.replace("TOKEN", access_token)})
    assert_error(response, 401, "unauthorized")
    assert response.headers.get("WWW-Authenticate") == "Bearer"


def test_no_credentials_at_all(client: TestClient) -> None:
    assert_error(client.get("/v1/me"), 401, "unauthorized")


# The tenant comes from the credential only ------------------------------------------------------------------


@pytest.mark.parametrize("header", ["X-Tenant", "X-Tenant-ID"])
@pytest.mark.parametrize("by", ["token", "api-key"])
def test_tenant_header_is_ignored(
    client: TestClient, shared_tenant: TenantFixture, tenant_b, header: str, by: str
) -> None:
    tenant_a = shared_tenant
    credential = bearer(exchange(client, tenant_a.key)["access_token"]) if by == "token" else tenant_a.headers
    response = client.get("/v1/me", headers={**credential, header: tenant_b.id})
    assert response.status_code == 200, response.text
    assert response.json()["tenant"]["id"] == tenant_a.id
    assert response.json()["user"]["tenant_id"] == tenant_a.id


# Revoked and expired API keys -------------------------------------------------------------------------------


def test_revoked_api_key_stops_everything(client: TestClient, tenant_a) -> None:
    key_id, key = create_api_key(client, tenant_a)
    assert client.get("/v1/me", headers={"X-API-Key": key}).status_code == 200
    pair = exchange(client, key)
    assert client.get("/v1/me", headers=bearer(pair["access_token"])).status_code == 200

    revoked = client.delete(f"/v1/api-keys/{key_id}", headers=tenant_a.headers)
    assert revoked.status_code == 204, revoked.text

    assert_error(client.get("/v1/me", headers={"X-API-Key": key}), 401, "api_key_revoked")
    assert_error(client.post("/v1/auth/token", json={"api_key": key}), 401, "api_key_revoked")
    assert_error(refresh(client, pair["refresh_token"]), 401, "invalid_token")
    # The access token is still within its lifetime: the per-request check refuses it.
    assert_error(client.get("/v1/me", headers=bearer(pair["access_token"])), 401, "api_key_revoked")
    # The admin's own key is untouched.
    assert client.get("/v1/me", headers=tenant_a.headers).status_code == 200


def test_expired_api_key_stops_working(client: TestClient, tenant_a) -> None:
    lifetime = 2.0
    expires_at = datetime.now(UTC) + timedelta(seconds=lifetime)
    _, key = create_api_key(client, tenant_a, expires_at=expires_at.isoformat())
    pair = exchange(client, key)
    assert client.get("/v1/me", headers={"X-API-Key": key}).status_code == 200

    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.5)

    assert_error(client.get("/v1/me", headers={"X-API-Key": key}), 401, "api_key_expired")
    assert_error(client.post("/v1/auth/token", json={"api_key": key}), 401, "api_key_expired")
    assert_error(client.get("/v1/me", headers=bearer(pair["access_token"])), 401, "api_key_revoked")
    assert_error(refresh(client, pair["refresh_token"]), 401, "api_key_revoked")


def test_api_key_expiry_must_be_in_the_future(client: TestClient, tenant_a) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = client.post("/v1/api-keys", headers=tenant_a.headers, json={"name": "stale", "expires_at": past})
    assert_error(response, 422, "bad_expiry")


# Suspension and the operator plane --------------------------------------------------------------------------


def test_suspended_tenant_is_locked_out_until_resumed(
    client: TestClient, tenant_a, tenant_b, operator_key: str
) -> None:
    operator = {"X-API-Key": operator_key}
    pair = exchange(client, tenant_a.key)

    suspended = client.post(
        f"/v1/admin/tenants/{tenant_a.id}/suspend", headers=operator, json={"reason": "unpaid invoice"}
    )
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["id"] == tenant_a.id
    assert suspended.json()["status"] == "suspended"

    assert_error(client.get("/v1/me", headers=tenant_a.headers), 403, "tenant_suspended")
    assert_error(client.post("/v1/auth/token", json={"api_key": tenant_a.key}), 403, "tenant_suspended")
    assert_error(client.get("/v1/me", headers=bearer(pair["access_token"])), 403, "tenant_suspended")
    assert_error(refresh(client, pair["refresh_token"]), 403, "tenant_suspended")
    password_login = login(client, "admin", tenant_a.made.admin_password, tenant_a.made.tenant.slug)
    assert_error(password_login, 403, "tenant_suspended")

    other = client.get("/v1/me", headers=tenant_b.headers)
    assert other.status_code == 200, other.text
    assert other.json()["tenant"]["status"] == "active"

    resumed = client.post(f"/v1/admin/tenants/{tenant_a.id}/resume", headers=operator, json={"reason": "paid"})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "active"

    assert client.get("/v1/me", headers=tenant_a.headers).status_code == 200
    assert client.get("/v1/me", headers=bearer(pair["access_token"])).status_code == 200
    rotated = refresh(client, pair["refresh_token"])  # refused while suspended, so still unused
    assert rotated.status_code == 200, rotated.text
    assert client.get("/v1/me", headers=bearer(rotated.json()["access_token"])).status_code == 200


def test_suspension_needs_a_reason(client: TestClient, tenant_a, operator_key: str) -> None:
    response = client.post(f"/v1/admin/tenants/{tenant_a.id}/suspend", headers={"X-API-Key": operator_key}, json={})
    assert_error(response, 422, "validation_error")
    assert client.get("/v1/me", headers=tenant_a.headers).status_code == 200


@pytest.mark.parametrize("by", ["api-key", "token"])
def test_tenant_admin_cannot_use_the_operator_plane(client: TestClient, tenant_a, tenant_b, by: str) -> None:
    headers = tenant_a.headers if by == "api-key" else bearer(exchange(client, tenant_a.key)["access_token"])
    assert_error(client.get("/v1/admin/tenants", headers=headers), 403, "operator_required")
    suspend = client.post(f"/v1/admin/tenants/{tenant_b.id}/suspend", headers=headers, json={"reason": "hostile"})
    assert_error(suspend, 403, "operator_required")
    assert client.get("/v1/me", headers=tenant_b.headers).status_code == 200


def test_operator_is_not_a_tenant_user(client: TestClient, operator_key: str) -> None:
    assert_error(client.get("/v1/me", headers={"X-API-Key": operator_key}), 403, "tenant_principal_required")


def test_operator_key_exchanged_for_a_token(client: TestClient, tenant_a, operator_key: str) -> None:
    pair = exchange(client, operator_key)
    assert pair["token_type"] == "bearer"
    assert pair["refresh_token"] is None
    listed = client.get("/v1/admin/tenants", headers=bearer(pair["access_token"]))
    assert listed.status_code == 200, listed.text
    assert tenant_a.id in {tenant["id"] for tenant in listed.json()["items"]}
    assert_error(client.get("/v1/me", headers=bearer(pair["access_token"])), 403, "tenant_principal_required")


def test_unknown_operator_key_is_refused(client: TestClient) -> None:
    response = client.get("/v1/admin/tenants", headers={"X-API-Key": f"pso_000000000000_{uuid4().hex}"})
    assert_error(response, 401, "invalid_api_key")


# Refresh rotation -------------------------------------------------------------------------------------------


def test_refresh_rotates_and_detects_reuse(client: TestClient, tenant_a) -> None:
    first = exchange(client, tenant_a.key)

    rotated = refresh(client, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["token_type"] == "bearer"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    me = client.get("/v1/me", headers=bearer(second["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["tenant"]["id"] == tenant_a.id

    assert_error(refresh(client, first["refresh_token"]), 401, "refresh_token_reused")
    # The whole family is revoked: the rotated token is dead too, and stays dead.
    assert_error(refresh(client, second["refresh_token"]), 401, "invalid_token")
    assert_error(refresh(client, first["refresh_token"]), 401, "refresh_token_reused")


def test_refresh_with_forged_token_id_is_refused(client: TestClient, shared_tenant: TenantFixture, secret: str) -> None:
    claims = unverified_claims(exchange(client, shared_tenant.key)["refresh_token"])
    forged = jwt.encode({**claims, "jti": str(uuid4())}, secret, algorithm="HS256")
    assert_error(refresh(client, forged), 401, "invalid_token")


def test_refresh_rejects_unknown_fields(client: TestClient, shared_tenant: TenantFixture) -> None:
    pair = exchange(client, shared_tenant.key)
    response = client.post(
        "/v1/auth/refresh", json={"refresh_token": pair["refresh_token"], "tenant": shared_tenant.id}
    )
    assert_error(response, 422, "validation_error")


# Login throttling -------------------------------------------------------------------------------------------


ADDRESS_BUDGET = 4  # low, to keep the test short (each failure costs an argon2 check); the mechanism is the same


@pytest.fixture
def own_client(settings: Settings) -> Iterator[TestClient]:
    with dedicated_client(settings) as test_client:
        yield test_client


@pytest.fixture
def low_address_budget_client(settings: Settings) -> Iterator[TestClient]:
    with dedicated_client(settings, login_max_failures_per_address=ADDRESS_BUDGET) as test_client:
        yield test_client


def test_login_throttle_per_user(own_client: TestClient, settings: Settings, tenant_a) -> None:
    client, slug = own_client, tenant_a.made.tenant.slug
    for _ in range(settings.login_max_failures_per_user):
        assert_error(login(client, "admin", f"wrong-{uuid4().hex}", slug), 401, "invalid_credentials")

    throttled = login(client, "admin", tenant_a.made.admin_password, slug)  # even the right password
    assert_error(throttled, 429, "rate_limited")
    retry_after = throttled.headers.get("Retry-After")
    assert retry_after is not None
    assert int(retry_after) >= 1

    # Another user at the same address is not locked out.
    _, username, password = create_user(client, tenant_a, role="trader")
    other = login(client, username, password, slug)
    assert other.status_code == 200, other.text


def test_login_throttle_per_address(low_address_budget_client: TestClient, tenant_a) -> None:
    client = low_address_budget_client  # every request of a TestClient comes from the address "testclient"
    run = uuid4().hex[:10]
    for attempt in range(ADDRESS_BUDGET):  # a new username each time: only the address adds up
        assert_error(login(client, f"nobody-{run}-{attempt}", "wrong-password"), 401, "invalid_credentials")

    throttled = login(client, f"nobody-{run}-last", "wrong-password")
    assert_error(throttled, 429, "rate_limited")
    assert int(throttled.headers["Retry-After"]) >= 1
    # The address is throttled for everyone, right password or not.
    genuine = login(client, "admin", tenant_a.made.admin_password, tenant_a.made.tenant.slug)
    assert_error(genuine, 429, "rate_limited")
    # API keys are not throttled by failed logins.
    assert client.get("/v1/me", headers=tenant_a.headers).status_code == 200


def test_wrong_password_and_unknown_user_look_alike(client: TestClient, shared_tenant: TenantFixture) -> None:
    # A unique username: the session's client shares its throttle, and "admin" is every tenant's admin.
    _, username, _ = create_user(client, shared_tenant, role="analyst")
    slug = shared_tenant.made.tenant.slug
    unknown = login(client, f"ghost-{uuid4().hex[:10]}", "wrong-password", slug)
    wrong = login(client, username, f"wrong-{uuid4().hex}", slug)
    assert_error(unknown, 401, "invalid_credentials")
    assert_error(wrong, 401, "invalid_credentials")
    assert unknown.json()["error"]["message"] == wrong.json()["error"]["message"]


# Users: ambiguity, deactivation, role changes ---------------------------------------------------------------


def test_ambiguous_username_needs_the_tenant(client: TestClient, tenant_a, tenant_b) -> None:
    username = f"dup-{uuid4().hex[:10]}"
    password = f"shared-{uuid4().hex}"
    for tenant in (tenant_a, tenant_b):
        made = client.post(
            "/v1/users", headers=tenant.headers, json={"username": username, "role": "trader", "password": password}
        )
        assert made.status_code == 201, made.text

    assert_error(login(client, username, password), 401, "tenant_required")

    for tenant in (tenant_a, tenant_b):
        response = login(client, username, password, tenant.made.tenant.slug)
        assert response.status_code == 200, response.text
        me = client.get("/v1/me", headers=bearer(response.json()["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json()["tenant"]["id"] == tenant.id
        assert me.json()["user"]["username"] == username


def test_deactivated_user_is_locked_out(client: TestClient, tenant_a) -> None:
    user_id, username, password = create_user(client, tenant_a, role="trader")
    response = login(client, username, password, tenant_a.made.tenant.slug)
    assert response.status_code == 200, response.text
    pair = response.json()
    _, key = create_api_key(client, tenant_a, user_id=user_id)
    assert client.get("/v1/me", headers=bearer(pair["access_token"])).status_code == 200

    patched = client.patch(f"/v1/users/{user_id}", headers=tenant_a.headers, json={"is_active": False})
    assert patched.status_code == 200, patched.text
    assert patched.json()["is_active"] is False

    assert_error(client.get("/v1/me", headers=bearer(pair["access_token"])), 401, "user_inactive")
    assert_error(refresh(client, pair["refresh_token"]), 401, "invalid_token")
    assert_error(client.get("/v1/me", headers={"X-API-Key": key}), 401, "api_key_revoked")


def test_role_change_makes_old_tokens_stale(client: TestClient, tenant_a) -> None:
    user_id, username, password = create_user(client, tenant_a, role="trader")
    response = login(client, username, password, tenant_a.made.tenant.slug)
    assert response.status_code == 200, response.text
    pair = response.json()
    me = client.get("/v1/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["role"] == "trader"

    patched = client.patch(f"/v1/users/{user_id}", headers=tenant_a.headers, json={"role": "analyst"})
    assert patched.status_code == 200, patched.text

    assert_error(client.get("/v1/me", headers=bearer(pair["access_token"])), 401, "token_stale")
    # A refresh gives a token with the current role.
    rotated = refresh(client, pair["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    fresh = client.get("/v1/me", headers=bearer(rotated.json()["access_token"]))
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["role"] == "analyst"
    assert fresh.json()["scopes"] == ["read"]
