"""Revoking analyst logins (``pasar tenant analyst-logout``): a revoked login can no longer connect, its open
sessions end, and the tenant's other logins are untouched until they are revoked too."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from pasar.db.urls import DatabaseUrls
from tests.analytics.conftest import Invoke
from tests.conftest import TenantFixture


def new_login(pasar_cli: Invoke, tenant: str) -> dict[str, Any]:
    result = pasar_cli("tenant", "analyst-login", tenant, "--json")
    assert result.exit_code == 0, result.output
    login: dict[str, Any] = json.loads(result.output)
    return login


def logout(pasar_cli: Invoke, *args: str) -> dict[str, Any]:
    result = pasar_cli("tenant", "analyst-logout", *args, "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.output)
    return document


def connects(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError:
        return False
    return True


def registered(urls: DatabaseUrls, role: str) -> tuple[bool, bool]:
    """(the login is in tenancy.analyst_logins, the role exists)."""
    with psycopg.connect(urls.owner) as conn:
        row = conn.execute(
            "select exists (select 1 from tenancy.analyst_logins where role_name = %(r)s), "
            "exists (select 1 from pg_roles where rolname = %(r)s)",
            {"r": role},
        ).fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1])


def test_a_revoked_analyst_login_can_no_longer_connect(
    tenant_a: TenantFixture, pasar_cli: Invoke, urls: DatabaseUrls
) -> None:
    first, second = new_login(pasar_cli, tenant_a.id), new_login(pasar_cli, tenant_a.id)
    assert connects(first["url"]) and connects(second["url"])
    with psycopg.connect(first["url"], autocommit=True) as open_session:
        revoked = logout(pasar_cli, tenant_a.made.tenant.slug, "--login", first["role"])
        assert revoked == {
            "tenant_id": tenant_a.id, "tenant_slug": tenant_a.made.tenant.slug, "revoked": [first["role"]],
            "sessions_ended": 1,
        }  # fmt: skip
        with pytest.raises(psycopg.OperationalError):
            open_session.execute("select 1")  # its session was ended
    assert not connects(first["url"])
    assert registered(urls, first["role"]) == (False, False)
    assert connects(second["url"]), "only the named login is revoked"

    # Without --login: every remaining login of the tenant; then there is none left to revoke.
    assert logout(pasar_cli, tenant_a.id)["revoked"] == [second["role"]]
    assert not connects(second["url"])
    assert registered(urls, second["role"]) == (False, False)
    assert logout(pasar_cli, tenant_a.id)["revoked"] == []


def test_analyst_logout_of_an_unknown_login_or_tenant_fails_cleanly(
    tenant_a: TenantFixture, tenant_b: TenantFixture, pasar_cli: Invoke
) -> None:
    other = new_login(pasar_cli, tenant_b.id)
    result = pasar_cli("tenant", "analyst-logout", tenant_a.id, "--login", other["role"])
    assert result.exit_code == 1 and "no analyst login" in result.output, "another tenant's login is not A's"
    assert connects(other["url"])
    result = pasar_cli("tenant", "analyst-logout", "no-such-tenant")
    assert result.exit_code == 1 and "no tenant" in result.output
