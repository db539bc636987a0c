"""Market endpoints: instruments, and bars of any timeframe against hand-computed buckets; usage recording."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import psycopg
import pytest
from fastapi.testclient import TestClient

from pasar.db.urls import DatabaseUrls
from pasar.market import service

SYMBOL = "ZZHB"  # an IDX-style code: Asia/Jakarta buckets
START = datetime(2031, 7, 7, 2, 0, tzinfo=UTC)  # 09:00 WIB, a Monday
# Ten 1-minute bars: (open, high, low, close, volume)
BARS = [
    (100, 102, 99, 101, 1000),
    (101, 103, 100, 102, 2000),
    (102, 104, 101, 103, 1500),
    (103, 105, 98, 99, 500),
    (99, 100, 97, 98, 700),
    (98, 110, 98, 109, 3000),
    (109, 109, 105, 106, 100),
    (106, 107, 104, 105, 200),
    (105, 106, 103, 104, 300),
    (104, 108, 104, 107, 400),
]


@pytest.fixture(scope="module")
def bars_loaded(urls: DatabaseUrls) -> None:
    frame = pl.DataFrame(
        {
            "symbol": [SYMBOL] * len(BARS),
            "timeframe": ["1m"] * len(BARS),
            "ts": [START + timedelta(minutes=i) for i in range(len(BARS))],
            "open": [float(b[0]) for b in BARS],
            "high": [float(b[1]) for b in BARS],
            "low": [float(b[2]) for b in BARS],
            "close": [float(b[3]) for b in BARS],
            "volume": [float(b[4]) for b in BARS],
            "adjusted": [False] * len(BARS),
        }
    )
    with psycopg.connect(urls.etl, autocommit=True) as conn:
        service.sync_reference_data(conn)
        service.load_frame(conn, frame, source="test")


def _bars(client: TestClient, headers: dict[str, str], **params: Any) -> Any:
    response = client.get("/v1/market/bars", params={"symbol": SYMBOL, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _expected(chunk: list[tuple[int, int, int, int, int]]) -> dict[str, str]:
    return {
        "open": str(chunk[0][0]),
        "high": str(max(b[1] for b in chunk)),
        "low": str(min(b[2] for b in chunk)),
        "close": str(chunk[-1][3]),
        "volume": str(sum(b[4] for b in chunk)),
    }


def test_stored_bars_come_back_as_stored(client: TestClient, tenant_a, bars_loaded: None) -> None:
    body = _bars(client, tenant_a.headers, timeframe="1m", start=START.isoformat())
    assert body["built_from"] == "1m"
    assert [bar["ts"] for bar in body["bars"]][:2] == ["2031-07-07T02:00:00Z", "2031-07-07T02:01:00Z"]
    assert {k: body["bars"][3][k] for k in ("open", "high", "low", "close", "volume")} == _expected([BARS[3]])


def test_five_minute_buckets_match_a_hand_computation(client: TestClient, tenant_a, bars_loaded: None) -> None:
    body = _bars(client, tenant_a.headers, timeframe="5m", start=START.isoformat())
    assert body["built_from"] == "1m"
    assert [bar["ts"] for bar in body["bars"]] == ["2031-07-07T02:00:00Z", "2031-07-07T02:05:00Z"]
    for bar, chunk in zip(body["bars"], (BARS[:5], BARS[5:]), strict=True):
        assert {k: bar[k] for k in ("open", "high", "low", "close", "volume")} == _expected(chunk)


def test_daily_bucket_starts_at_local_midnight(client: TestClient, tenant_a, bars_loaded: None) -> None:
    body = _bars(client, tenant_a.headers, timeframe="1d", start="2031-07-07T05:00:00+07:00")
    assert [bar["ts"] for bar in body["bars"]] == ["2031-07-06T17:00:00Z"]  # 2031-07-07 00:00 WIB
    assert {k: body["bars"][0][k] for k in ("open", "high", "low", "close", "volume")} == _expected(BARS)


def test_pages_follow_the_cursor_without_gaps_or_repeats(client: TestClient, tenant_a, bars_loaded: None) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"timeframe": "1m", "start": START.isoformat(), "limit": 3}
    while True:
        body = _bars(client, tenant_a.headers, **params)
        seen += [bar["ts"] for bar in body["bars"]]
        if body["next_cursor"] is None:
            break
        params = {"timeframe": "1m", "limit": 3, "cursor": body["next_cursor"]}
    assert len(seen) == len(BARS) == len(set(seen))
    five = _bars(client, tenant_a.headers, timeframe="5m", start=START.isoformat(), limit=1)
    second = _bars(client, tenant_a.headers, timeframe="5m", limit=1, cursor=five["next_cursor"])
    assert second["bars"][0]["ts"] == "2031-07-07T02:05:00Z"


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"timeframe": "1m", "start": "2031-07-08T00:00:00Z", "end": "2031-07-07T00:00:00Z"}, 422),
        ({"timeframe": "1m", "start": "2031-07-07T00:00:00"}, 422),  # no time zone
        ({"timeframe": "2m"}, 422),
        ({"timeframe": "1m", "limit": 10_001}, 422),
        ({"timeframe": "1m", "limit": 0}, 422),
        ({"timeframe": "1m", "cursor": "not-a-cursor"}, 422),
        ({"timeframe": "1m", "symbol": "NOPE"}, 404),
        ({"timeframe": "1m", "symbol": "BAD SYMBOL!"}, 422),
    ],
)
def test_bad_bar_queries_get_a_clear_error(
    client: TestClient, tenant_a, bars_loaded: None, params: dict[str, Any], status: int
) -> None:
    response = client.get("/v1/market/bars", params={"symbol": SYMBOL, **params}, headers=tenant_a.headers)
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"code", "message", "details"}


def test_instruments_need_a_caller_and_list_the_reference_data(client: TestClient, tenant_a, bars_loaded: None) -> None:
    assert client.get("/v1/market/instruments").status_code == 401
    items = client.get("/v1/market/instruments", headers=tenant_a.headers).json()["items"]
    by_symbol = {item["symbol"]: item for item in items}
    assert by_symbol["BBCA"]["lot_size"] == 100
    assert by_symbol["BBCA"]["tick_rule"] == "idx_equity"
    assert by_symbol["EURUSD"]["price_precision"] == 5
    fx = client.get("/v1/market/instruments", params={"asset_class": "fx"}, headers=tenant_a.headers).json()
    assert {item["asset_class"] for item in fx["items"]} == {"fx"}


def test_every_request_is_recorded_once_in_usage(client: TestClient, tenant_a, urls: DatabaseUrls) -> None:
    """200 concurrent requests → 200 usage events for the tenant: none lost, none duplicated."""

    def call(_: int) -> str:
        response = client.get("/v1/me", headers=tenant_a.headers)
        assert response.status_code == 200
        return response.headers["x-request-id"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        request_ids = set(pool.map(call, range(200)))
    assert len(request_ids) == 200
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    client.portal.call(runtime.usage.flush)  # type: ignore[union-attr]
    with psycopg.connect(urls.owner) as conn:
        keys = [
            row[0]
            for row in conn.execute(
                "select idempotency_key from usage.events where tenant_id = %s and kind = 'api_request'",
                [tenant_a.id],
            ).fetchall()
        ]
    recorded = [key for key in keys if key in request_ids]
    assert len(recorded) == len(set(recorded)) == 200
