"""The trading API against a real PostgreSQL: orders through the pre-trade risk engine to the paper venue, fees in
the double-entry ledger, idempotency, tenant isolation, reconciliation and the kill switch.

Every test lists its own instruments (fresh 4-letter IDX codes: IDR, lot 100, idx_equity ticks, IDX calendar) with
1-minute bars, mostly from March 2032 (a few tests need wall-clock times on purpose), so no test sees another's
prices. The paper venue's clock is 'market' by default, so the latest stored bar of an instrument is "now" for it;
loading a newer bar moves time on for that symbol only.

Figures are worked out by hand: at a price of 1000 the IDX tick is 5, the exchange band ±25% (750-1250), the
tenant's collar ±10% (900-1100), and the default slippage of 5 bps moves a buy at 1000 up one tick to 1005 and a
sell down to 995.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import polars as pl
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from api.app import create_app
from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from pasar.market import exchange
from pasar.market import service as market_service
from pasar.trading import service as trading_service
from pasar.trading.bot import Intent, decide, run_demo_trading
from pasar.trading.broker import Execution
from pasar.trading.matching import BarView, OpenOrder
from pasar.trading.models import OrderType, Side
from pasar.trading.risk import ApprovedOrder

T0 = datetime(2032, 3, 1, 2, 0, tzinfo=UTC)  # Monday 1 March 2032, 09:00 WIB
MINUTE = timedelta(minutes=1)
Bar = tuple[datetime, float, float, float, float, float]  # ts, open, high, low, close, volume


# Market data ------------------------------------------------------------------------------------------------


def fresh_symbol(urls: DatabaseUrls) -> str:
    """A 4-letter code no instrument has yet: it becomes an IDX equity when its first bar is loaded."""
    with psycopg.connect(urls.owner, autocommit=True) as conn:
        while True:
            symbol = "".join(random.choices(string.ascii_uppercase, k=4))
            if exchange.reference_instrument(symbol) is not None:
                continue
            if conn.execute("select 1 from market.instruments where symbol = %s", [symbol]).fetchone() is None:
                return symbol


def load_bars(urls: DatabaseUrls, symbol: str, bars: list[Bar]) -> None:
    frame = pl.DataFrame(
        {
            "symbol": [symbol] * len(bars),
            "timeframe": ["1m"] * len(bars),
            "ts": [bar[0] for bar in bars],
            "open": [float(bar[1]) for bar in bars],
            "high": [float(bar[2]) for bar in bars],
            "low": [float(bar[3]) for bar in bars],
            "close": [float(bar[4]) for bar in bars],
            "volume": [float(bar[5]) for bar in bars],
            "adjusted": [False] * len(bars),
        }
    )
    with psycopg.connect(urls.etl, autocommit=True) as conn:
        market_service.load_frame(conn, frame, source="test-trading")


def listed(urls: DatabaseUrls, close: float = 1000, volume: float = 1_000_000, ts: datetime = T0) -> str:
    """A new instrument whose one (latest) bar closes at ``close``."""
    symbol = fresh_symbol(urls)
    load_bars(urls, symbol, [(ts, close, close + 10, close - 10, close, volume)])
    return symbol


def add_instrument(urls: DatabaseUrls, *, calendar: str = "IDX", currency: str = "IDR") -> str:
    """An instrument with no bars at all (reference data only), inserted as the database owner."""
    symbol = fresh_symbol(urls)
    with psycopg.connect(urls.owner, autocommit=True) as conn:
        conn.execute(
            "insert into market.instruments (symbol, name, exchange, asset_class, currency, lot_size, "
            "price_precision, tick_rule, calendar, allows_short, origin) "
            "values (%s, %s, 'IDX', 'equity', %s, 100, 0, 'idx_equity', %s, false, 'test')",
            [symbol, symbol, currency, calendar],
        )
    return symbol


@pytest.fixture(scope="module")
def reference_data(urls: DatabaseUrls) -> None:
    with psycopg.connect(urls.etl, autocommit=True) as conn:
        market_service.sync_reference_data(conn)


# Tenants, the API -------------------------------------------------------------------------------------------


def configure(urls: DatabaseUrls, tenant_id: str, *, trading: dict[str, Any] | None = None, **top: Any) -> None:
    """Change a tenant's config as the owner (before the tenant's first request)."""
    with psycopg.connect(urls.owner, autocommit=True) as conn:
        conn.execute(
            "update tenancy.tenants set config = jsonb_set(config || %s, '{trading}', (config -> 'trading') || %s) "
            "where id = %s",
            [Jsonb(top), Jsonb(trading or {}), tenant_id],
        )


def headers_with(tenant: Any, key: str | None = None) -> dict[str, str]:
    return {**tenant.headers, **({"Idempotency-Key": key} if key else {})}


def place(client: TestClient, tenant: Any, *, key: str | None = None, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/orders", json=body, headers=headers_with(tenant, key))
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def buy(client: TestClient, tenant: Any, symbol: str, quantity: int, **extra: Any) -> dict[str, Any]:
    return place(client, tenant, symbol=symbol, side="buy", quantity=quantity, **extra)


def sell(client: TestClient, tenant: Any, symbol: str, quantity: int, **extra: Any) -> dict[str, Any]:
    return place(client, tenant, symbol=symbol, side="sell", quantity=quantity, **extra)


def deposit(client: TestClient, tenant: Any, amount: int) -> dict[str, Any]:
    response = client.post("/v1/cash/deposits", json={"amount": amount, "currency": "IDR"}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def get(client: TestClient, tenant: Any, path: str, **params: Any) -> Any:
    response = client.get(path, headers=tenant.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def match(client: TestClient, tenant: Any) -> int:
    response = client.post("/v1/paper/match", headers=tenant.headers)
    assert response.status_code == 200, response.text
    fills: int = response.json()["fills"]
    return fills


def order_by_id(client: TestClient, tenant: Any, order_id: str) -> dict[str, Any]:
    document: dict[str, Any] = get(client, tenant, f"/v1/orders/{order_id}")
    return document


def new_user_headers(client: TestClient, admin: Any, role: str) -> dict[str, str]:
    """A user of ``role`` in the admin's tenant, and the headers of an API key of theirs."""
    response = client.post(
        "/v1/users", json={"username": f"{role}-{uuid4().hex[:8]}", "role": role}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    key = client.post("/v1/api-keys", json={"name": role, "user_id": response.json()["id"]}, headers=admin.headers)
    assert key.status_code == 201, key.text
    return {"X-API-Key": key.json()["secret"]}


@pytest.fixture
def owner(urls: DatabaseUrls) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(urls.owner, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def audit_actions(owner: psycopg.Connection[dict[str, Any]], tenant_id: str, target_id: str) -> list[dict[str, Any]]:
    return owner.execute(
        "select action, actor_type, actor_id, details from audit.events where tenant_id = %s and target_id = %s "
        "order by occurred_at, id",
        [tenant_id, target_id],
    ).fetchall()


def count_orders(owner: psycopg.Connection[dict[str, Any]], tenant_id: str) -> int:
    row = owner.execute("select count(*) as n from trading.orders where tenant_id = %s", [tenant_id]).fetchone()
    assert row is not None
    return int(row["n"])


# Money, computed independently of the engine ----------------------------------------------------------------


def rupiah(amount: Decimal) -> int:
    return int(amount.to_integral_value(rounding=ROUND_HALF_UP))


def value_of(quantity: int, price: int | Decimal) -> int:
    return rupiah(Decimal(quantity) * Decimal(price))


def commission(value: int) -> int:
    return rupiah(Decimal(value) * Decimal("0.0015"))


def sell_tax(value: int) -> int:
    return rupiah(Decimal(value) * Decimal("0.001"))


def buy_cash(quantity: int, price: int) -> int:
    value = value_of(quantity, price)
    return value + commission(value)


def sell_cash(quantity: int, price: int) -> int:
    value = value_of(quantity, price)
    return value - commission(value) - sell_tax(value)


# Orders on the paper venue ----------------------------------------------------------------------------------


def test_market_orders_fill_at_the_latest_close_slipped_onto_the_tick_grid_with_idx_fees(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any
) -> None:
    symbol = listed(urls, close=1000)
    deposit(client, tenant_a, 10_000_000)

    bought = buy(client, tenant_a, symbol, 1000)
    assert bought["status"] == "filled", bought
    assert Decimal(bought["average_price"]) == 1005  # 1000 x 1.0005 = 1000.5, rounded up to the tick of 5
    assert bought["reserved_cash"] == 0 and bought["reject_reason"] is None
    (fill,) = get(client, tenant_a, "/v1/fills", order_id=bought["id"])["items"]
    assert (fill["quantity"], fill["price"]) == ("1000", "1005")
    assert (fill["value"], fill["commission"], fill["tax"]) == (1_005_000, 1508, 0)  # 0.15% of 1,005,000 = 1507.5

    sold = sell(client, tenant_a, symbol, 1000)
    assert sold["status"] == "filled"
    assert Decimal(sold["average_price"]) == 995  # 999.5 rounded down: a sell gets less
    (fill,) = get(client, tenant_a, "/v1/fills", order_id=sold["id"])["items"]
    assert (fill["value"], fill["commission"], fill["tax"]) == (995_000, 1493, 995)  # + 0.1% sell tax
    assert fill["realized_pnl"] == 995_000 - 1_005_000

    portfolio = get(client, tenant_a, "/v1/portfolio")
    assert portfolio["cash"] == 10_000_000 - 1_006_508 + (995_000 - 1493 - 995)
    assert (portfolio["fees"], portfolio["taxes"], portfolio["realized_pnl"]) == (1508 + 1493, 995, -10_000)
    assert portfolio["reserved_cash"] == 0
    entries = get(client, tenant_a, "/v1/cash/ledger")["items"]
    fills = [entry for entry in entries if entry["kind"] == "fill"]
    assert len(fills) == 2
    buy_entry = next(entry for entry in fills if entry["reference"].startswith(f"paper:{bought['id']}"))
    assert {line["account"]: line["amount"] for line in buy_entry["lines"]} == {
        "cash": -1_006_508,
        "fees": 1508,
        "securities": 1_005_000,
    }
    (position,) = get(client, tenant_a, "/v1/positions")["items"]
    assert position["symbol"] == symbol and Decimal(position["quantity"]) == 0


class LiveVenueStandIn:
    """Where a live venue plugs in: it takes each order it is sent and reports no execution at once (a live venue's
    come later, as execution reports), and it matches on its own side."""

    venue = "live"

    def __init__(self) -> None:
        self.submitted: list[ApprovedOrder] = []

    def submit(self, order: ApprovedOrder, bar: BarView) -> Execution | None:
        self.submitted.append(order)
        return None

    def match(
        self, order_id: UUID, order: OpenOrder, bar: BarView, *, lot_size: int, tick_rule: str
    ) -> Execution | None:
        return None


def test_another_venue_plugs_in_behind_the_risk_engine_and_is_sent_only_what_it_accepted(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    venue = LiveVenueStandIn()
    monkeypatch.setattr(trading_service, "_broker", lambda book: venue)
    symbol = listed(urls, close=1000)
    deposit(client, tenant_a, 10_000_000)

    accepted = buy(client, tenant_a, symbol, 1000)
    rejected = buy(client, tenant_a, symbol, 150)  # not a whole lot: denied, never sent
    assert (accepted["status"], accepted["reject_reason"]) == ("accepted", None)
    assert accepted["reserved_cash"] > 0  # resting at the venue, its cash reserved
    assert (rejected["status"], rejected["reject_reason"]) == ("rejected", "lot_size")
    assert [str(order.order_id) for order in venue.submitted] == [accepted["id"]]
    assert venue.submitted[0].reserve_cash == accepted["reserved_cash"]
    assert get(client, tenant_a, "/v1/fills", order_id=accepted["id"])["items"] == []
    assert match(client, tenant_a) == 0  # the venue matches on its side and reports its executions


def test_a_corrected_latest_bar_is_the_price_of_the_next_order(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any
) -> None:
    symbol = listed(urls, close=1000)
    deposit(client, tenant_a, 5_000_000)
    assert Decimal(buy(client, tenant_a, symbol, 100)["average_price"]) == 1005
    load_bars(urls, symbol, [(T0, 1100, 1110, 1090, 1100, 1_000_000)])  # the same bar time, other prices
    assert Decimal(buy(client, tenant_a, symbol, 100)["average_price"]) == 1105  # 1100 x 1.0005 -> tick up


def test_limit_order_away_from_the_market_rests_then_fills_when_a_newer_bar_trades_through(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any
) -> None:
    symbol = listed(urls, close=1000)  # low 990
    deposit(client, tenant_a, 5_000_000)
    order = buy(client, tenant_a, symbol, 1000, type="limit", limit_price="950", time_in_force="gtc")
    assert order["status"] == "accepted"
    assert order["reserved_cash"] == buy_cash(1000, 950)  # cash is reserved at acceptance
    assert get(client, tenant_a, "/v1/portfolio")["reserved_cash"] == buy_cash(1000, 950)
    assert match(client, tenant_a) == 0  # no newer bar: nothing happens

    load_bars(urls, symbol, [(T0 + MINUTE, 960, 965, 940, 945, 1_000_000)])
    assert match(client, tenant_a) == 1
    filled = order_by_id(client, tenant_a, order["id"])
    assert filled["status"] == "filled" and filled["reserved_cash"] == 0
    assert Decimal(filled["average_price"]) == 950  # opened above the limit: filled at the limit, never worse
    assert get(client, tenant_a, "/v1/portfolio")["cash"] == 5_000_000 - buy_cash(1000, 950)
    assert match(client, tenant_a) == 0  # fills are not repeated


def test_stop_order_triggers_when_a_bar_trades_through_the_stop(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any
) -> None:
    symbol = listed(urls, close=1000)  # high 1010
    deposit(client, tenant_a, 5_000_000)
    stop = buy(client, tenant_a, symbol, 500, type="stop", stop_price="1050", time_in_force="gtc")
    assert stop["status"] == "accepted"
    load_bars(urls, symbol, [(T0 + MINUTE, 1000, 1040, 995, 1035, 1_000_000)])  # not through 1050
    assert match(client, tenant_a) == 0
    assert order_by_id(client, tenant_a, stop["id"])["status"] == "accepted"
    load_bars(urls, symbol, [(T0 + 2 * MINUTE, 1035, 1060, 1030, 1055, 1_000_000)])
    assert match(client, tenant_a) == 1
    done = order_by_id(client, tenant_a, stop["id"])
    assert done["status"] == "filled"
    assert Decimal(done["average_price"]) == 1060  # a market order from the trigger: 1055 x 1.0005 -> tick up


def test_partial_fill_by_volume_participation_then_the_rest_on_the_next_bar(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any
) -> None:
    symbol = listed(urls, close=1000, volume=6_000)  # 10% of 6,000 = 600 = 6 lots
    deposit(client, tenant_a, 5_000_000)
    order = buy(client, tenant_a, symbol, 1000, time_in_force="gtc")
    assert order["status"] == "partially_filled"
    assert Decimal(order["filled_quantity"]) == 600
    reserved = order["reserved_cash"]
    assert 0 < reserved < buy_cash(1000, 1000)  # the unfilled share of the reservation stays reserved

    load_bars(urls, symbol, [(T0 + MINUTE, 1000, 1010, 995, 1000, 50_000)])
    assert match(client, tenant_a) == 1
    done = order_by_id(client, tenant_a, order["id"])
    assert done["status"] == "filled" and Decimal(done["filled_quantity"]) == 1000 and done["reserved_cash"] == 0
    fills = get(client, tenant_a, "/v1/fills", order_id=order["id"])["items"]
    assert sorted(Decimal(fill["quantity"]) for fill in fills) == [400, 600]
    (position,) = get(client, tenant_a, "/v1/positions")["items"]
    assert Decimal(position["quantity"]) == 1000


def test_ioc_remainder_is_cancelled_and_its_reservation_released(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any
) -> None:
    symbol = listed(urls, close=1000, volume=3_000)
    deposit(client, tenant_a, 5_000_000)
    order = buy(client, tenant_a, symbol, 1000, time_in_force="ioc")
    assert order["status"] == "cancelled"
    assert Decimal(order["filled_quantity"]) == 300 and order["reserved_cash"] == 0
    assert get(client, tenant_a, "/v1/portfolio")["reserved_cash"] == 0
    load_bars(urls, symbol, [(T0 + MINUTE, 1000, 1010, 995, 1000, 1_000_000)])
    assert match(client, tenant_a) == 0  # nothing of it rests


def test_day_order_expires_on_the_next_local_day(client: TestClient, urls: DatabaseUrls, tenant_a: Any) -> None:
    close_of_day = datetime(2032, 3, 1, 8, 49, tzinfo=UTC)  # 15:49 WIB
    symbol = listed(urls, close=1000, ts=close_of_day)
    deposit(client, tenant_a, 5_000_000)
    day = buy(client, tenant_a, symbol, 100, type="limit", limit_price="950")  # time in force: day
    gtc = buy(client, tenant_a, symbol, 100, type="limit", limit_price="950", time_in_force="gtc")
    assert day["status"] == gtc["status"] == "accepted"
    # 23:59 WIB is still Monday there: the day order rests on.
    load_bars(urls, symbol, [(datetime(2032, 3, 1, 16, 59, tzinfo=UTC), 1000, 1005, 995, 1000, 1_000_000)])
    assert match(client, tenant_a) == 0
    assert order_by_id(client, tenant_a, day["id"])["status"] == "accepted"
    # 00:00 WIB Tuesday (still 1 March in UTC): the next local day, the day order expires before it can fill.
    load_bars(urls, symbol, [(datetime(2032, 3, 1, 17, 0, tzinfo=UTC), 1000, 1005, 995, 1000, 1_000_000)])
    assert match(client, tenant_a) == 0
    expired = order_by_id(client, tenant_a, day["id"])
    assert expired["status"] == "expired" and expired["reserved_cash"] == 0
    assert order_by_id(client, tenant_a, gtc["id"])["status"] == "accepted"
    assert get(client, tenant_a, "/v1/portfolio")["reserved_cash"] == buy_cash(100, 950)


def test_amend_price_and_quantity_goes_through_risk_and_moves_the_reservation(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[dict[str, Any]]
) -> None:
    symbol = listed(urls, close=1000)
    deposit(client, tenant_a, 3_000_000)
    order = buy(client, tenant_a, symbol, 1000, type="limit", limit_price="950", time_in_force="gtc")

    response = client.patch(f"/v1/orders/{order['id']}", json={"limit_price": "960"}, headers=tenant_a.headers)
    assert response.status_code == 200, response.text
    assert Decimal(response.json()["limit_price"]) == 960
    assert response.json()["reserved_cash"] == buy_cash(1000, 960)

    response = client.patch(f"/v1/orders/{order['id']}", json={"quantity": 2000}, headers=tenant_a.headers)
    assert response.status_code == 200, response.text
    amended = response.json()
    assert Decimal(amended["quantity"]) == 2000 and amended["reserved_cash"] == buy_cash(2000, 960)
    assert amended["id"] == order["id"] and amended["status"] == "accepted"
    events = audit_actions(owner, tenant_a.id, order["id"])
    assert [event["action"] for event in events] == ["order.accepted", "order.amended", "order.amended"]
    # Each amendment records the terms before and after; a price the order does not have is null, not "None".
    assert events[1]["details"] == {
        "quantity": "1000",
        "limit_price": "960",
        "stop_price": None,
        "previous": {"quantity": "1000", "limit_price": "950", "stop_price": None},
    }
    assert events[2]["details"]["quantity"] == "2000" and events[2]["details"]["previous"]["quantity"] == "1000"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"quantity": 5000}, "insufficient_cash"),  # 5,000 x 960 > the 3,000,000 deposited
        ({"limit_price": "1200"}, "price_collar"),  # outside 900-1100
        ({"limit_price": "953"}, "tick_size"),
        ({"quantity": 150}, "lot_size"),
    ],
)
def test_a_denied_amendment_changes_nothing_and_answers_422_with_the_reason(
    client: TestClient,
    urls: DatabaseUrls,
    tenant_a: Any,
    owner: psycopg.Connection[dict[str, Any]],
    change: dict[str, Any],
    reason: str,
) -> None:
    symbol = listed(urls, close=1000)
    deposit(client, tenant_a, 3_000_000)
    order = buy(client, tenant_a, symbol, 1000, type="limit", limit_price="960", time_in_force="gtc")
    response = client.patch(f"/v1/orders/{order['id']}", json=change, headers=tenant_a.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == reason and error["message"]
    assert order_by_id(client, tenant_a, order["id"]) == order  # the very same document: nothing changed
    assert get(client, tenant_a, "/v1/portfolio")["reserved_cash"] == order["reserved_cash"]
    denial = audit_actions(owner, tenant_a.id, order["id"])[-1]
    assert denial["action"] == "order.amend_rejected" and denial["details"]["reason"] == reason


def test_an_amendment_that_changes_nothing_is_refused_at_the_edge(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[dict[str, Any]]
) -> None:
    symbol = listed(urls, close=1000)
    deposit(client, tenant_a, 3_000_000)
    order = buy(client, tenant_a, symbol, 1000, type="limit", limit_price="960", time_in_force="gtc")
    for empty in ({}, {"quantity": None, "limit_price": None}):
        response = client.patch(f"/v1/orders/{order['id']}", json=empty, headers=tenant_a.headers)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert "at least one of quantity, limit_price and stop_price" in error["details"][0]["msg"]
    assert order_by_id(client, tenant_a, order["id"]) == order
    assert [event["action"] for event in audit_actions(owner, tenant_a.id, order["id"])] == ["order.accepted"]


def test_cancel_releases_the_reserved_cash_and_a_filled_order_cannot_be_cancelled(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[dict[str, Any]]
) -> None:
    symbol = listed(urls, close=1000)
    deposit(client, tenant_a, 3_000_000)
    resting = buy(client, tenant_a, symbol, 1000, type="limit", limit_price="950", time_in_force="gtc")
    assert get(client, tenant_a, "/v1/portfolio")["reserved_cash"] == resting["reserved_cash"] > 0

    response = client.delete(f"/v1/orders/{resting['id']}", headers=tenant_a.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled" and response.json()["reserved_cash"] == 0
    assert get(client, tenant_a, "/v1/portfolio")["reserved_cash"] == 0
    again = client.delete(f"/v1/orders/{resting['id']}", headers=tenant_a.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "order_closed"
    cancel = audit_actions(owner, tenant_a.id, resting["id"])[-1]
    assert cancel["action"] == "order.cancelled" and cancel["details"]["from"] == "accepted"

    filled = buy(client, tenant_a, symbol, 100)
    assert filled["status"] == "filled"
    response = client.delete(f"/v1/orders/{filled['id']}", headers=tenant_a.headers)
    assert response.status_code == 409 and response.json()["error"]["code"] == "order_closed"
    response = client.patch(f"/v1/orders/{filled['id']}", json={"quantity": 200}, headers=tenant_a.headers)
    assert response.status_code == 409 and response.json()["error"]["code"] == "order_closed"
    assert order_by_id(client, tenant_a, filled["id"])["status"] == "filled"
    missing = client.delete(f"/v1/orders/{uuid4()}", headers=tenant_a.headers)
    assert missing.status_code == 404


def test_a_market_buy_is_reserved_at_the_venues_slipped_price(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any
) -> None:
    """Valued at the reference (1000) the order fits the cash; at the venue's slipped price (1005) it does not:
    it is denied up front instead of failing when it fills."""
    symbol = listed(urls, close=1000)
    deposit(client, tenant_a, buy_cash(1000, 1000))
    order = buy(client, tenant_a, symbol, 1000)
    assert (order["status"], order["reject_reason"]) == ("rejected", "insufficient_cash")
    assert "1005" in order["reject_message"]
    deposit(client, tenant_a, buy_cash(1000, 1005) - buy_cash(1000, 1000))
    assert buy(client, tenant_a, symbol, 1000)["status"] == "filled"
    assert get(client, tenant_a, "/v1/portfolio")["cash"] == 0


def test_a_fill_never_spends_more_than_the_cash_when_the_price_runs_past_the_reservation(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any
) -> None:
    symbol = listed(urls, close=1000)
    deposit(client, tenant_a, buy_cash(1000, 1055))  # the stop reserves at 1050, slipped to 1055
    stop = buy(client, tenant_a, symbol, 1000, type="stop", stop_price="1050", time_in_force="gtc")
    assert stop["status"] == "accepted" and stop["reserved_cash"] == buy_cash(1000, 1055)
    load_bars(urls, symbol, [(T0 + MINUTE, 1000, 1100, 1000, 1100, 1_000_000)])  # gaps through: fills at 1105
    assert match(client, tenant_a) == 1
    partial = order_by_id(client, tenant_a, stop["id"])
    assert partial["status"] == "partially_filled" and Decimal(partial["filled_quantity"]) == 900  # what the cash buys
    assert get(client, tenant_a, "/v1/portfolio")["cash"] == buy_cash(1000, 1055) - buy_cash(900, 1105) >= 0


# One test per risk reason code: 201, status rejected, the code, a message, an audit event, no fill --------------


def assert_rejected(
    client: TestClient, owner: psycopg.Connection[dict[str, Any]], tenant: Any, reason: str, **body: Any
) -> dict[str, Any]:
    order = place(client, tenant, **body)
    assert (order["status"], order["reject_reason"]) == ("rejected", reason), order
    assert order["reject_message"] and order["reserved_cash"] == 0 and Decimal(order["filled_quantity"]) == 0
    assert order_by_id(client, tenant, order["id"]) == order
    (event,) = audit_actions(owner, tenant.id, order["id"])
    assert event["action"] == "order.rejected"
    assert event["details"]["reason"] == reason and event["details"]["message"] == order["reject_message"]
    assert get(client, tenant, "/v1/fills", order_id=order["id"])["items"] == []  # nothing reached the venue
    return order


def test_reject_instrument_unknown(client: TestClient, tenant_a: Any, owner: psycopg.Connection[Any]) -> None:
    assert_rejected(client, owner, tenant_a, "instrument_unknown", symbol="NOSUCH9", side="buy", quantity=100)


def test_reject_instrument_not_tradable(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any]
) -> None:
    symbol = listed(urls)
    owner.execute("update market.instruments set is_tradable = false where symbol = %s", [symbol])
    assert_rejected(client, owner, tenant_a, "instrument_not_tradable", symbol=symbol, side="buy", quantity=100)


def test_reject_currency_not_supported(
    client: TestClient, tenant_a: Any, owner: psycopg.Connection[Any], reference_data: None
) -> None:
    order = assert_rejected(client, owner, tenant_a, "currency_not_supported", symbol="GOOG", side="buy", quantity=1)
    assert "USD" in order["reject_message"]


def test_reject_lot_size(client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any]) -> None:
    assert_rejected(client, owner, tenant_a, "lot_size", symbol=listed(urls), side="buy", quantity=150)


def test_reject_tick_size(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any]
) -> None:
    body = {"symbol": listed(urls), "side": "buy", "quantity": 100, "type": "limit", "limit_price": "1002"}
    assert_rejected(client, owner, tenant_a, "tick_size", **body)


def test_reject_price_band(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any]
) -> None:
    body = {"symbol": listed(urls), "side": "buy", "quantity": 100, "type": "limit", "limit_price": "1300"}
    assert "750-1250" in assert_rejected(client, owner, tenant_a, "price_band", **body)["reject_message"]


def test_reject_price_collar(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any]
) -> None:
    body = {"symbol": listed(urls), "side": "sell", "quantity": 100, "type": "limit", "limit_price": "1150"}
    assert "900-1100" in assert_rejected(client, owner, tenant_a, "price_collar", **body)["reject_message"]


def test_reject_reference_price_missing(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any]
) -> None:
    symbol = add_instrument(urls)  # listed, never traded: no bar
    assert_rejected(client, owner, tenant_a, "reference_price_missing", symbol=symbol, side="buy", quantity=100)


def test_reject_reference_price_stale(
    client: TestClient, urls: DatabaseUrls, make_tenant: Any, owner: psycopg.Connection[Any]
) -> None:
    tenant = make_tenant()
    configure(urls, tenant.id, trading={"venue_clock": "wall", "reference_max_age_seconds": 60})
    a_month_ago = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=30)
    order = assert_rejected(
        client, owner, tenant, "reference_price_stale", symbol=listed(urls, ts=a_month_ago), side="buy", quantity=100
    )
    assert "0:01:00" in order["reject_message"]


def test_reject_session_closed_on_the_wall_clock(
    client: TestClient, urls: DatabaseUrls, make_tenant: Any, owner: psycopg.Connection[Any]
) -> None:
    """IDX (02:00-08:50 UTC) and XNAS (from 13:30 UTC) never trade at the same time: at any moment at least one of
    two otherwise equal instruments is closed, so the test is deterministic whatever the hour."""
    tenant = make_tenant()
    configure(urls, tenant.id, trading={"venue_clock": "wall", "reference_max_age_seconds": 3600})
    deposit(client, tenant, 10_000_000)
    this_minute = datetime.now(UTC).replace(second=0, microsecond=0)
    closed_seen = undecided = 0
    for calendar in ("IDX", "XNAS"):
        symbol = add_instrument(urls, calendar=calendar)
        load_bars(urls, symbol, [(this_minute, 1000, 1010, 990, 1000, 1_000_000)])  # fresh on the wall clock
        open_before = exchange.calendar(calendar).is_open(datetime.now(UTC))
        order = place(client, tenant, symbol=symbol, side="buy", quantity=100)
        if open_before != exchange.calendar(calendar).is_open(datetime.now(UTC)):
            undecided += 1  # the session opened or closed during the request: either answer is right
            continue
        if open_before:
            assert order["status"] == "filled", order
        else:
            closed_seen += 1
            assert (order["status"], order["reject_reason"]) == ("rejected", "session_closed"), order
            assert calendar in order["reject_message"]
            (event,) = audit_actions(owner, tenant.id, order["id"])
            assert event["details"]["reason"] == "session_closed"
    assert closed_seen + undecided >= 1  # at least one of the two exchanges was closed


def test_the_market_clock_trades_whatever_the_wall_clock_says(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any
) -> None:
    """The default paper clock replays the stored bars: a Saturday bar, or one from years ago, is 'now'."""
    deposit(client, tenant_a, 10_000_000)
    saturday = datetime(2032, 3, 6, 4, 0, tzinfo=UTC)
    assert buy(client, tenant_a, listed(urls, ts=saturday), 100)["status"] == "filled"
    assert buy(client, tenant_a, listed(urls, ts=datetime(2020, 6, 1, 3, 0, tzinfo=UTC)), 100)["status"] == "filled"


def test_reject_max_order_value(
    client: TestClient, urls: DatabaseUrls, make_tenant: Any, owner: psycopg.Connection[Any]
) -> None:
    tenant = make_tenant()
    configure(urls, tenant.id, trading={"max_order_value": 1_000_000})
    deposit(client, tenant, 10_000_000)
    symbol = listed(urls)
    order = assert_rejected(client, owner, tenant, "max_order_value", symbol=symbol, side="buy", quantity=1100)
    assert "1,100,000" in order["reject_message"] and "1,000,000" in order["reject_message"]
    assert buy(client, tenant, symbol, 1000)["status"] == "filled"  # exactly at the limit (valued at 1000)


def test_reject_max_position(
    client: TestClient, urls: DatabaseUrls, make_tenant: Any, owner: psycopg.Connection[Any]
) -> None:
    tenant = make_tenant()
    configure(urls, tenant.id, max_position_size=1_500_000)
    deposit(client, tenant, 10_000_000)
    symbol = listed(urls)
    assert buy(client, tenant, symbol, 1000)["status"] == "filled"
    assert_rejected(client, owner, tenant, "max_position", symbol=symbol, side="buy", quantity=600)  # 1,600 held
    assert sell(client, tenant, symbol, 500)["status"] == "filled"  # reducing is always allowed


def test_reject_gross_exposure(
    client: TestClient, urls: DatabaseUrls, make_tenant: Any, owner: psycopg.Connection[Any]
) -> None:
    tenant = make_tenant()
    configure(urls, tenant.id, trading={"max_gross_exposure": 2_000_000})
    deposit(client, tenant, 10_000_000)
    first, second = listed(urls), listed(urls)
    assert buy(client, tenant, first, 1500)["status"] == "filled"  # exposure 1,500,000 at the mark of 1000
    order = assert_rejected(client, owner, tenant, "gross_exposure", symbol=second, side="buy", quantity=600)
    assert "1,500,000" in order["reject_message"]


def test_reject_insufficient_cash(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any]
) -> None:
    symbol = listed(urls)
    assert_rejected(client, owner, tenant_a, "insufficient_cash", symbol=symbol, side="buy", quantity=100)
    deposit(client, tenant_a, 1_000_000)
    resting = buy(client, tenant_a, symbol, 1000, type="limit", limit_price="950")  # reserves 951,425
    assert resting["status"] == "accepted"
    assert_rejected(client, owner, tenant_a, "insufficient_cash", symbol=symbol, side="buy", quantity=100)


def test_reject_insufficient_position_on_idx(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any]
) -> None:
    symbol = listed(urls)
    assert_rejected(client, owner, tenant_a, "insufficient_position", symbol=symbol, side="sell", quantity=100)
    deposit(client, tenant_a, 1_000_000)
    assert buy(client, tenant_a, symbol, 300)["status"] == "filled"
    assert_rejected(client, owner, tenant_a, "insufficient_position", symbol=symbol, side="sell", quantity=400)
    assert sell(client, tenant_a, symbol, 300)["status"] == "filled"


def test_reject_order_rate(
    client: TestClient, urls: DatabaseUrls, make_tenant: Any, owner: psycopg.Connection[Any]
) -> None:
    tenant = make_tenant()
    configure(urls, tenant.id, trading={"max_orders_per_minute": 3})
    symbol = listed(urls)
    for _ in range(3):  # rejected ones count too: every submission is an order
        assert place(client, tenant, symbol=symbol, side="buy", quantity=100)["reject_reason"] == "insufficient_cash"
    order = assert_rejected(client, owner, tenant, "order_rate", symbol=symbol, side="buy", quantity=100)
    assert "3 orders in the last minute" in order["reject_message"]

    # A minute later the window is empty again: the account's window moved back by 60 s stands for the wait.
    owner.execute(
        "update trading.accounts set order_rate_second = order_rate_second - 60 where tenant_id = %s", [tenant.id]
    )
    assert place(client, tenant, symbol=symbol, side="buy", quantity=100)["reject_reason"] == "insufficient_cash"


def test_reject_daily_loss_limit_then_reducing_only(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any]
) -> None:
    symbol = listed(urls, close=1000)
    deposit(client, tenant_a, 10_000_000)  # the day starts at equity 10,000,000; the limit is 1.5% of it
    assert buy(client, tenant_a, symbol, 9000)["status"] == "filled"
    load_bars(urls, symbol, [(T0 + MINUTE, 1000, 1000, 900, 900, 1_000_000)])  # marked down 10%: -958,568
    assert get(client, tenant_a, "/v1/portfolio")["day_pnl"] == -958_568

    order = assert_rejected(client, owner, tenant_a, "daily_loss_limit", symbol=symbol, side="buy", quantity=100)
    assert "-958,568" in order["reject_message"]
    assert get(client, tenant_a, "/v1/portfolio")["trading_state"] == "reducing"
    (event,) = owner.execute(
        "select details from audit.events where tenant_id = %s and action = 'risk.daily_loss_limit'", [tenant_a.id]
    ).fetchall()
    assert event["details"]["day_pnl"] == -958_568
    # Reducing-only: a sell that brings the position towards flat passes; one that would go beyond it does not.
    assert_rejected(client, owner, tenant_a, "daily_loss_limit", symbol=symbol, side="sell", quantity=10_000)
    reducing = sell(client, tenant_a, symbol, 4000)
    assert reducing["status"] == "filled", reducing
    assert_rejected(client, owner, tenant_a, "daily_loss_limit", symbol=listed(urls), side="buy", quantity=100)


def test_reject_kill_switch(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any]
) -> None:
    response = client.post("/v1/risk/kill-switch", json={"enabled": True, "reason": "test"}, headers=tenant_a.headers)
    assert response.status_code == 200, response.text
    assert_rejected(client, owner, tenant_a, "kill_switch", symbol=listed(urls), side="buy", quantity=100)
    assert_rejected(client, owner, tenant_a, "kill_switch", symbol="NOSUCH9", side="buy", quantity=100)  # first


@pytest.mark.parametrize(
    "body",
    [
        {"type": "market", "limit_price": "1000"},  # a market order takes no price
        {"type": "limit"},  # a limit order needs one
        {"type": "stop_limit", "limit_price": "1000"},  # ... and a stop limit a stop price too
        {"type": "stop", "stop_price": "1050", "time_in_force": "ioc"},  # ioc is for market and limit orders
    ],
)
def test_reject_invalid_price(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any], body: dict[str, Any]
) -> None:
    """Well-formed but meaningless price fields are the risk engine's: stored as rejected with invalid_price."""
    order = assert_rejected(
        client, owner, tenant_a, "invalid_price", symbol=listed(urls), side="buy", quantity=100, **body
    )
    assert any(word in order["reject_message"] for word in ("price", "ioc"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quantity", 0),
        ("quantity", -100),
        ("quantity", "NaN"),
        ("quantity", "Infinity"),
        ("quantity", "0.000000001"),
        ("limit_price", "0"),
        ("limit_price", "-5"),
        ("limit_price", "NaN"),
    ],
)
def test_invalid_quantity_or_price_is_a_validation_error_and_stores_nothing(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any], field: str, value: Any
) -> None:
    """A quantity or price that is not a positive finite number never gets to the risk engine: 422, the field
    named, no order stored (the engine's invalid_quantity code backs this up for callers of the service)."""
    body = {"symbol": listed(urls), "side": "buy", "quantity": 100, "type": "limit", "limit_price": "1000"}
    response = client.post("/v1/orders", json={**body, field: value}, headers=tenant_a.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(detail["loc"][-1] == field or field in detail["loc"] for detail in error["details"]), error
    assert count_orders(owner, tenant_a.id) == 0


# Idempotency ------------------------------------------------------------------------------------------------


def fills_of(owner: psycopg.Connection[dict[str, Any]], tenant_id: str) -> list[dict[str, Any]]:
    return owner.execute("select * from trading.fills where tenant_id = %s", [tenant_id]).fetchall()


def test_idempotent_replay_returns_the_same_bytes_and_executes_once(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[dict[str, Any]]
) -> None:
    symbol = listed(urls)
    deposit(client, tenant_a, 5_000_000)
    body = {"symbol": symbol, "side": "buy", "quantity": 1000}
    first = client.post("/v1/orders", json=body, headers=headers_with(tenant_a, "K-replay"))
    second = client.post("/v1/orders", json=body, headers=headers_with(tenant_a, "K-replay"))
    assert first.status_code == second.status_code == 201
    assert first.content == second.content  # byte-identical
    assert first.json()["status"] == "filled"
    assert count_orders(owner, tenant_a.id) == 1 and len(fills_of(owner, tenant_a.id)) == 1
    assert get(client, tenant_a, "/v1/portfolio")["cash"] == 5_000_000 - buy_cash(1000, 1005)
    # A rejected order replays the same way.
    rejected = {"symbol": symbol, "side": "buy", "quantity": 150}
    answers = [client.post("/v1/orders", json=rejected, headers=headers_with(tenant_a, "K-bad")) for _ in range(2)]
    assert answers[0].content == answers[1].content and answers[0].json()["reject_reason"] == "lot_size"
    assert count_orders(owner, tenant_a.id) == 2


def test_idempotency_key_with_another_body_is_409_and_executes_nothing(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[dict[str, Any]]
) -> None:
    symbol = listed(urls)
    deposit(client, tenant_a, 5_000_000)
    body = {"symbol": symbol, "side": "buy", "quantity": 100}
    first = client.post("/v1/orders", json=body, headers=headers_with(tenant_a, "K-mismatch"))
    assert first.status_code == 201
    cash = get(client, tenant_a, "/v1/portfolio")["cash"]
    for changed in ({**body, "quantity": 200}, {**body, "side": "sell"}, {**body, "client_order_id": "other"}):
        response = client.post("/v1/orders", json=changed, headers=headers_with(tenant_a, "K-mismatch"))
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "idempotency_mismatch"
    assert count_orders(owner, tenant_a.id) == 1 and len(fills_of(owner, tenant_a.id)) == 1
    assert get(client, tenant_a, "/v1/portfolio")["cash"] == cash
    again = client.post("/v1/orders", json=body, headers=headers_with(tenant_a, "K-mismatch"))
    assert again.content == first.content


def test_twenty_concurrent_duplicates_execute_exactly_once(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[dict[str, Any]]
) -> None:
    symbol = listed(urls)
    deposit(client, tenant_a, 5_000_000)
    body = {"symbol": symbol, "side": "buy", "quantity": 1000}

    def submit(_: int) -> tuple[int, bytes]:
        response = client.post("/v1/orders", json=body, headers=headers_with(tenant_a, "K-concurrent"))
        return response.status_code, response.content

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(submit, range(20)))
    created = [content for status, content in answers if status == 201]
    assert all(status in (201, 409) for status, _ in answers), answers
    assert len(created) >= 1 and len(set(created)) == 1  # every answer is that one order
    assert count_orders(owner, tenant_a.id) == 1 and len(fills_of(owner, tenant_a.id)) == 1
    assert get(client, tenant_a, "/v1/portfolio")["cash"] == 5_000_000 - buy_cash(1000, 1005)


def test_idempotency_keys_are_scoped_to_the_tenant(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, tenant_b: Any, owner: psycopg.Connection[dict[str, Any]]
) -> None:
    symbol = listed(urls)
    for tenant in (tenant_a, tenant_b):
        deposit(client, tenant, 5_000_000)
    body = {"symbol": symbol, "side": "buy", "quantity": 100}
    a = client.post("/v1/orders", json=body, headers=headers_with(tenant_a, "K-shared"))
    b = client.post("/v1/orders", json=body, headers=headers_with(tenant_b, "K-shared"))
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"] and b.json()["user_id"] == tenant_b.admin_id
    assert count_orders(owner, tenant_a.id) == count_orders(owner, tenant_b.id) == 1
    # B's different body under the same key value is B's own business, not a mismatch with A's.
    other = client.post("/v1/orders", json={**body, "quantity": 200}, headers=headers_with(tenant_b, "K-shared-2"))
    assert other.status_code == 201
    assert client.post("/v1/orders", json=body, headers=headers_with(tenant_a, "K-shared-2")).status_code == 201


# Tenant isolation -------------------------------------------------------------------------------------------


def test_another_tenant_sees_none_of_the_orders_fills_positions_or_ledger(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, tenant_b: Any
) -> None:
    symbol = listed(urls)
    deposit(client, tenant_a, 5_000_000)
    resting = buy(client, tenant_a, symbol, 1000, type="limit", limit_price="950", time_in_force="gtc")
    filled = buy(client, tenant_a, symbol, 100)
    for order in (resting, filled):
        path = f"/v1/orders/{order['id']}"
        assert client.get(path, headers=tenant_b.headers).status_code == 404
        assert client.delete(path, headers=tenant_b.headers).status_code == 404
        assert client.patch(path, json={"quantity": 200}, headers=tenant_b.headers).status_code == 404
        assert client.get("/v1/fills", params={"order_id": order["id"]}, headers=tenant_b.headers).json() == {
            "items": []
        }
    assert order_by_id(client, tenant_a, resting["id"]) == resting  # untouched by B's attempts
    assert get(client, tenant_b, "/v1/orders")["items"] == []
    for path in ("/v1/fills", "/v1/positions", "/v1/cash/ledger"):
        assert get(client, tenant_b, path)["items"] == [], path
        assert get(client, tenant_a, path)["items"], path
    portfolio = get(client, tenant_b, "/v1/portfolio")
    assert (portfolio["cash"], portfolio["reserved_cash"], portfolio["positions"]) == (0, 0, [])
    assert all(point["equity"] == 0 for point in get(client, tenant_b, "/v1/portfolio/history")["items"])
    assert match(client, tenant_b) == 0
    # B's kill switch halts B only.
    client.post("/v1/risk/kill-switch", json={"enabled": True, "reason": "b only"}, headers=tenant_b.headers)
    assert order_by_id(client, tenant_a, resting["id"])["status"] == "accepted"
    assert buy(client, tenant_a, symbol, 100)["status"] == "filled"


# Ledger and reconciliation ----------------------------------------------------------------------------------


def test_ledger_balances_and_cash_and_positions_reconcile_to_the_rupiah(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[dict[str, Any]]
) -> None:
    thin = listed(urls, close=1000, volume=5_000)  # 500 a bar: partial fills
    liquid = listed(urls, close=2500)  # tick 10
    deposit(client, tenant_a, 20_000_000)
    deposit(client, tenant_a, 7_000_000)
    response = client.post(
        "/v1/cash/withdrawals", json={"amount": 2_000_000, "currency": "IDR"}, headers=tenant_a.headers
    )
    assert response.status_code == 201, response.text
    buy(client, tenant_a, thin, 1200, time_in_force="gtc")  # 500 now, the rest on later bars
    buy(client, tenant_a, liquid, 3000)
    sell(client, tenant_a, liquid, 1100)
    load_bars(
        urls, thin, [(T0 + MINUTE, 1000, 1020, 1000, 1015, 5_000), (T0 + 2 * MINUTE, 1015, 1020, 990, 995, 9_000)]
    )
    assert match(client, tenant_a) == 2
    sell(client, tenant_a, thin, 700)  # a partial sell: 900 is offered by the bar of 9,000
    load_bars(urls, liquid, [(T0 + MINUTE, 2500, 2600, 2490, 2590, 1_000_000)])
    buy(client, tenant_a, liquid, 500, type="limit", limit_price="2560", time_in_force="ioc")  # touches: fills

    fills = get(client, tenant_a, "/v1/fills", limit=1000)["items"]
    assert len(fills) == 7
    for fill in fills:  # every fill's costs are the IDX fees of its value
        value = value_of(int(Decimal(fill["quantity"])), Decimal(fill["price"]))
        assert fill["value"] == value
        assert fill["commission"] == commission(value)
        assert fill["tax"] == (sell_tax(value) if fill["side"] == "sell" else 0)
    # position = signed sum of fills, per symbol
    signed: dict[str, Decimal] = {}
    for fill in fills:
        signed[fill["symbol"]] = signed.get(fill["symbol"], Decimal(0)) + Decimal(fill["quantity"]) * (
            1 if fill["side"] == "buy" else -1
        )
    positions = {p["symbol"]: p for p in get(client, tenant_a, "/v1/positions")["items"]}
    assert {symbol: Decimal(p["quantity"]) for symbol, p in positions.items()} == signed
    assert signed == {thin: 500, liquid: 2400}
    # cash = deposits - withdrawals - Σ buys (value + commission) + Σ sells (value - commission - tax)
    expected_cash = 27_000_000 - 2_000_000
    for fill in fills:
        if fill["side"] == "buy":
            expected_cash -= fill["value"] + fill["commission"]
        else:
            expected_cash += fill["value"] - fill["commission"] - fill["tax"]
    portfolio = get(client, tenant_a, "/v1/portfolio")
    assert portfolio["cash"] == expected_cash
    # every entry balances; the cash account of the ledger is the cash
    entries = get(client, tenant_a, "/v1/cash/ledger", limit=1000)["items"]
    assert sorted(entry["kind"] for entry in entries) == ["deposit", "deposit", *["fill"] * 7, "withdrawal"]
    assert all(sum(line["amount"] for line in entry["lines"]) == 0 for entry in entries)
    balances: dict[str, int] = {}
    for entry in entries:
        for line in entry["lines"]:
            balances[line["account"]] = balances.get(line["account"], 0) + line["amount"]
    assert balances["cash"] == expected_cash and -balances["capital"] == 25_000_000
    assert balances["fees"] == sum(fill["commission"] for fill in fills) == portfolio["fees"]
    assert balances["taxes"] == sum(fill["tax"] for fill in fills) == portfolio["taxes"]
    # cash + market value = contributions - fees - taxes + realized + unrealized
    unrealized = sum(p["unrealized_pnl"] for p in positions.values())
    assert portfolio["equity"] == portfolio["cash"] + portfolio["market_value"]
    assert portfolio["equity"] == (
        25_000_000 - portfolio["fees"] - portfolio["taxes"] + portfolio["realized_pnl"] + unrealized
    )
    assert balances["securities"] == sum(
        rupiah(Decimal(p["quantity"]) * Decimal(p["avg_cost"])) for p in positions.values()
    )
    # the database agrees with the API
    (row,) = owner.execute(
        "select count(*) as unbalanced from (select entry_id from trading.ledger_lines where tenant_id = %s "
        "group by entry_id having sum(amount) <> 0) u",
        [tenant_a.id],
    ).fetchall()
    assert row["unbalanced"] == 0


def test_portfolio_history_marks_each_day_at_its_last_close(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any
) -> None:
    """Holdings bought today, priced at closes from 10 and 200 days ago (the newest bars there are): today's
    point of the daily equity curve is cash plus those closes, the days before hold nothing yet."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    recent, old = fresh_symbol(urls), fresh_symbol(urls)
    ten_days_ago = now - timedelta(days=10)
    load_bars(
        urls,
        recent,
        [(ten_days_ago, 1000, 1010, 990, 1000, 1_000_000), (ten_days_ago + MINUTE, 1000, 1015, 995, 1010, 1_000_000)],
    )
    load_bars(urls, old, [(now - timedelta(days=200), 2000, 2020, 1990, 2000, 1_000_000)])
    deposit(client, tenant_a, 5_000_000)
    assert buy(client, tenant_a, recent, 100)["status"] == buy(client, tenant_a, old, 100)["status"] == "filled"

    portfolio = get(client, tenant_a, "/v1/portfolio")
    assert portfolio["market_value"] == 100 * 1010 + 100 * 2000
    history = get(client, tenant_a, "/v1/portfolio/history", days=30)["items"]
    assert len(history) == 30
    *before, today = history
    assert all(point == {"day": point["day"], "cash": 0, "market_value": 0, "equity": 0} for point in before)
    assert today["day"] == datetime.now(ZoneInfo("Asia/Jakarta")).date().isoformat()
    assert (today["cash"], today["market_value"]) == (portfolio["cash"], 301_000)
    assert today["equity"] == portfolio["equity"] == 5_000_000 - buy_cash(100, 1015) - buy_cash(100, 2010) + 301_000


def test_cash_movements_are_checked_and_the_ledger_is_append_only(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[dict[str, Any]]
) -> None:
    deposit(client, tenant_a, 1_000_000)
    resting = buy(client, tenant_a, listed(urls), 500, type="limit", limit_price="950")  # reserves 475,713
    available = 1_000_000 - resting["reserved_cash"]

    def withdraw(amount: int, currency: str = "IDR") -> Any:
        return client.post(
            "/v1/cash/withdrawals", json={"amount": amount, "currency": currency}, headers=tenant_a.headers
        )

    too_much = withdraw(available + 1)
    assert too_much.status_code == 422 and too_much.json()["error"]["code"] == "insufficient_cash"
    usd = client.post("/v1/cash/deposits", json={"amount": 100, "currency": "USD"}, headers=tenant_a.headers)
    assert usd.status_code == 422 and usd.json()["error"]["code"] == "currency_not_supported"
    for amount in (0, -5, 1.5):
        bad = client.post("/v1/cash/deposits", json={"amount": amount}, headers=tenant_a.headers)
        assert bad.status_code == 422, bad.text
    assert withdraw(available).status_code == 201
    portfolio = get(client, tenant_a, "/v1/portfolio")
    assert portfolio["cash"] == portfolio["reserved_cash"] == resting["reserved_cash"]
    assert [entry["kind"] for entry in get(client, tenant_a, "/v1/cash/ledger")["items"]] == ["withdrawal", "deposit"]

    for statement in (
        "update trading.ledger_lines set amount = amount + 1 where tenant_id = %s",
        "delete from trading.ledger_lines where tenant_id = %s",
        "update trading.ledger_entries set kind = 'gift' where tenant_id = %s",
        "delete from trading.ledger_entries where tenant_id = %s",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            owner.execute(statement, [tenant_a.id])
    with owner.transaction(force_rollback=True):  # an unbalanced entry cannot commit
        entry = owner.execute(
            "insert into trading.ledger_entries (tenant_id, kind) values (%s, 'gift') returning id", [tenant_a.id]
        ).fetchone()
        assert entry is not None
        owner.execute(
            "insert into trading.ledger_lines (tenant_id, entry_id, line_no, account, amount) "
            "values (%s, %s, 0, 'cash', 1)",
            [tenant_a.id, entry["id"]],
        )
        with pytest.raises(psycopg.errors.CheckViolation, match="does not balance"):
            owner.execute("set constraints all immediate")


def test_cash_endpoints_are_for_the_tenant_admin(client: TestClient, tenant_a: Any) -> None:
    trader = new_user_headers(client, tenant_a, "trader")
    analyst = new_user_headers(client, tenant_a, "analyst")
    for headers in (trader, analyst):
        assert client.post("/v1/cash/deposits", json={"amount": 1}, headers=headers).status_code == 403
        assert client.get("/v1/cash/ledger", headers=headers).status_code == 200
    assert (
        client.post("/v1/orders", json={"symbol": "X", "side": "buy", "quantity": 1}, headers=analyst).status_code
        == 403
    )


# Kill switch ------------------------------------------------------------------------------------------------


def test_kill_switch_roles_cancellation_rejection_audit_and_restart(
    client: TestClient,
    settings: Settings,
    urls: DatabaseUrls,
    tenant_a: Any,
    owner: psycopg.Connection[dict[str, Any]],
) -> None:
    symbol = listed(urls)
    deposit(client, tenant_a, 5_000_000)
    resting = buy(client, tenant_a, symbol, 1000, type="limit", limit_price="950", time_in_force="gtc")
    on = {"enabled": True, "reason": "runaway bot"}
    for role in ("trader", "analyst"):
        denied = client.post("/v1/risk/kill-switch", json=on, headers=new_user_headers(client, tenant_a, role))
        assert denied.status_code == 403, denied.text
    assert get(client, tenant_a, "/v1/portfolio")["trading_state"] == "normal"

    compliance = new_user_headers(client, tenant_a, "compliance")
    response = client.post("/v1/risk/kill-switch", json=on, headers=compliance)
    assert response.status_code == 200, response.text
    assert response.json() == {"enabled": True, "reason": "runaway bot", "cancelled_orders": 1}
    cancelled = order_by_id(client, tenant_a, resting["id"])
    assert cancelled["status"] == "cancelled" and cancelled["reserved_cash"] == 0
    assert audit_actions(owner, tenant_a.id, resting["id"])[-1]["details"]["reason"] == "kill switch: runaway bot"
    (toggle,) = owner.execute(
        "select actor_type, details from audit.events where tenant_id = %s and action = 'risk.kill_switch_on'",
        [tenant_a.id],
    ).fetchall()
    assert toggle["actor_type"] == "api_key" and toggle["details"] == {"reason": "runaway bot", "was": False}
    portfolio = get(client, tenant_a, "/v1/portfolio")
    assert (portfolio["trading_state"], portfolio["reserved_cash"]) == ("halted", 0)
    assert buy(client, tenant_a, symbol, 100)["reject_reason"] == "kill_switch"
    assert sell(client, tenant_a, symbol, 100)["reject_reason"] == "kill_switch"

    with TestClient(create_app(settings)) as restarted:  # a new API process on the same database
        assert buy(restarted, tenant_a, symbol, 100)["reject_reason"] == "kill_switch"
        assert get(restarted, tenant_a, "/v1/portfolio")["trading_state"] == "halted"
        off = restarted.post(
            "/v1/risk/kill-switch", json={"enabled": False, "reason": "fixed"}, headers=tenant_a.headers
        )
        assert off.status_code == 200 and off.json()["cancelled_orders"] == 0
    assert buy(client, tenant_a, symbol, 100)["status"] == "filled"
    actions = owner.execute(
        "select action from audit.events where tenant_id = %s and action like 'risk.kill_switch%%' "
        "order by occurred_at",
        [tenant_a.id],
    ).fetchall()
    assert [row["action"] for row in actions] == ["risk.kill_switch_on", "risk.kill_switch_off"]


def test_while_halted_cancels_pass_and_amendments_are_denied(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[dict[str, Any]]
) -> None:
    """An order still open while the tenant is halted (the switch set directly on the account, as an operator
    would): it can be cancelled, not amended."""
    deposit(client, tenant_a, 5_000_000)
    resting = buy(client, tenant_a, listed(urls), 1000, type="limit", limit_price="950", time_in_force="gtc")
    owner.execute("update trading.accounts set kill_switch = true where tenant_id = %s", [tenant_a.id])
    amend = client.patch(f"/v1/orders/{resting['id']}", json={"limit_price": "955"}, headers=tenant_a.headers)
    assert amend.status_code == 422 and amend.json()["error"]["code"] == "kill_switch"
    assert order_by_id(client, tenant_a, resting["id"]) == resting
    cancel = client.delete(f"/v1/orders/{resting['id']}", headers=tenant_a.headers)
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"


# The demo bot -----------------------------------------------------------------------------------------------


def test_bot_rules() -> None:
    rising = [Decimal(1000 + 10 * i) for i in range(30)]
    falling = rising[::-1]
    size = Decimal(77 * 100)  # 10,000,000 / (1290 x 100) lots
    assert decide(rising, Decimal(0), lot_size=100, tick_rule="idx_equity") == [
        Intent(Side.buy, OrderType.market, size)
    ]
    assert decide(rising, size, lot_size=100, tick_rule="idx_equity") == [
        Intent(Side.buy, OrderType.market, size),
        Intent(Side.sell, OrderType.limit, size, Decimal(1300)),  # 1290 x 1.005 = 1296.45, up to the tick
    ]
    held = Decimal(500)
    assert decide(falling, held, lot_size=100, tick_rule="idx_equity") == [
        Intent(Side.sell, OrderType.market, held),
        Intent(Side.buy, OrderType.limit, Decimal(100 * 100), Decimal(995)),  # 1000 x 0.995
    ]
    assert decide(rising[:10], Decimal(0), lot_size=100, tick_rule="idx_equity") == []


def test_demo_bot_trades_through_the_service_and_deposits_once(
    client: TestClient, settings: Settings, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any]
) -> None:
    symbol = fresh_symbol(urls)
    load_bars(
        urls,
        symbol,
        [(T0 + i * MINUTE, c - 5, c + 5, c - 10, c, 1_000_000) for i, c in enumerate(range(1000, 1300, 10))],
    )
    first = run_demo_trading(settings, urls, [tenant_a.id], rounds=2, symbols=[symbol])
    (report,) = first["tenants"]
    assert report["deposited"] == 1_000_000_000 and report["rounds"] == 2
    assert report["orders"] == {"filled": 2, "accepted": 1} and report["fills"] == 0
    slug = get(client, tenant_a, "/v1/me")["tenant"]["slug"]
    second = run_demo_trading(settings, urls, [slug], rounds=1, symbols=[symbol])  # by slug this time
    (report,) = second["tenants"]
    assert report["deposited"] == 0 and report["cancelled"] == 1  # last round's resting limit sell
    (position,) = get(client, tenant_a, "/v1/positions")["items"]
    assert Decimal(position["quantity"]) == 3 * 7700  # the trend target: three order sizes
    orders = get(client, tenant_a, "/v1/orders")["items"]
    assert {order["user_id"] for order in orders} == {tenant_a.admin_id}
    assert all(order["client_order_id"].startswith("bot-") for order in orders)
    kinds = [entry["kind"] for entry in get(client, tenant_a, "/v1/cash/ledger")["items"]]
    assert kinds.count("deposit") == 1
    portfolio = get(client, tenant_a, "/v1/portfolio")
    assert portfolio["cash"] + portfolio["market_value"] == portfolio["equity"] > 0


def test_a_duplicate_client_order_id_answers_409_and_writes_nothing(
    client: TestClient, urls: DatabaseUrls, tenant_a: Any, owner: psycopg.Connection[Any]
) -> None:
    symbol = listed(urls, close=1000)
    deposit(client, tenant_a, 5_000_000)
    first = buy(client, tenant_a, symbol, 100, client_order_id="dup-1")
    assert first["status"] == "filled"
    orders, cash = count_orders(owner, tenant_a.id), get(client, tenant_a, "/v1/portfolio")["cash"]
    again = client.post(
        "/v1/orders",
        json={"symbol": symbol, "side": "buy", "quantity": 100, "client_order_id": "dup-1"},
        headers=headers_with(tenant_a, "K-dup-2"),
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "duplicate_order"
    assert count_orders(owner, tenant_a.id) == orders and get(client, tenant_a, "/v1/portfolio")["cash"] == cash
    ioc = buy(client, tenant_a, listed(urls, close=1000, volume=3_000), 1000, time_in_force="ioc")
    actions = sorted(event["action"] for event in audit_actions(owner, tenant_a.id, ioc["id"]))
    assert actions == ["order.accepted", "order.cancelled", "order.partially_filled"]  # one transaction, one time
