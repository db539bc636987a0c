"""Rules of the analytics API: which marts a role may read, which filters apply, and the paging."""

from __future__ import annotations

import base64
import binascii
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg.errors

from pasar.analytics import repository
from pasar.analytics.models import MARTS, MartSpec
from pasar.db.pool import Conn
from pasar.errors import Forbidden, InvalidInput, NotFound
from pasar.tenancy.models import Principal

MAX_OFFSET = 1_000_000


def mart_spec(principal: Principal, mart: str) -> MartSpec:
    spec = MARTS.get(mart)
    if spec is None:
        raise NotFound(f"no mart {mart!r}; available: {', '.join(sorted(MARTS))}", code="unknown_mart")
    if principal.role not in spec.readers:
        raise Forbidden(f"the mart {mart} is for the roles {', '.join(sorted(r.value for r in spec.readers))}")
    return spec


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, number = text.partition(":")
        offset = int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("the cursor is not valid", code="invalid_cursor") from exc
    if kind != "o" or not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput("the cursor is not valid", code="invalid_cursor")
    return offset


def _jsonable(value: Any) -> Any:
    """Exact JSON: decimals as strings (never floats), times in ISO form."""
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


async def read_mart(
    conn: Conn,
    principal: Principal,
    mart: str,
    *,
    filters: dict[str, Any],
    since: date | None,
    until: date | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """One page of a mart for the principal's tenant: ``{"mart", "items", "next_cursor"}``."""
    spec = mart_spec(principal, mart)
    given = {name: value for name, value in filters.items() if value is not None}
    unknown = sorted(set(given) - set(spec.filters))
    if unknown:
        raise InvalidInput(
            f"{mart} cannot be filtered by {', '.join(unknown)}; it takes {', '.join(spec.filters) or 'no filters'}",
            code="invalid_filter",
        )
    if (since is not None or until is not None) and spec.date_column is None:
        raise InvalidInput(f"{mart} has no date to filter by since/until", code="invalid_filter")
    assert principal.tenant_id is not None
    offset = decode_cursor(cursor)
    try:
        async with conn.transaction():  # a savepoint: a mart not built yet must not poison the transaction
            rows = await repository.select_mart(
                conn, spec, principal.tenant_id, filters=given, since=since, until=until, limit=limit + 1, offset=offset
            )
    except psycopg.errors.UndefinedTable as exc:
        raise NotFound(f"the mart {mart} has not been built yet (run dbt)", code="mart_not_built") from exc
    more = len(rows) > limit
    items = [{key: _jsonable(value) for key, value in row.items()} for row in rows[:limit]]
    return {"mart": mart, "items": items, "next_cursor": encode_cursor(offset + limit) if more else None}
