"""Seeded trading patterns for the analytics tests, written as the database owner with exact times and prices.

One trading day, Monday 7 March 2033 (IDX: 09:00-12:00 and 13:30-15:50 WIB = 02:00-05:00 and 06:30-08:50 UTC),
far from every other test's data. ``seed_suspicious`` gives one tenant one instance of every surveillance pattern
(wash trade, spoofing, layering, marking the close, unusual activity against five quiet days), plus a risk denial,
kill-switch events and AI usage behind an order. Fills and positions are consistent with the average-cost method,
so the reconciliation tests of the dbt project hold.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import polars as pl
import psycopg
from psycopg.types.json import Jsonb

from pasar.db.urls import DatabaseUrls
from pasar.market import exchange
from pasar.market import service as market_service

DAY = date(2033, 3, 7)
PERIOD = "2033-03"
MORNING = datetime(2033, 3, 7, 2, 0, tzinfo=UTC)  # 09:00 WIB
AFTERNOON = datetime(2033, 3, 7, 6, 30, tzinfo=UTC)  # 13:30 WIB
CLOSE = datetime(2033, 3, 7, 8, 50, tzinfo=UTC)  # 15:50 WIB
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


def fresh_symbol(conn: psycopg.Connection[Any]) -> str:
    """A 4-letter code no instrument has yet (it becomes an IDX equity when its first bar is loaded)."""
    while True:
        symbol = "".join(random.choices(string.ascii_uppercase, k=4))
        if exchange.reference_instrument(symbol) is not None:
            continue
        if conn.execute("select 1 from market.instruments where symbol = %s", [symbol]).fetchone() is None:
            return symbol


def session_bars(symbol: str, *, closing_closes: list[int], volume: int = 10_000, price: int = 1000) -> pl.DataFrame:
    """1-minute bars of the whole IDX day at a flat ``price``; the last len(closing_closes) bars close at those."""
    starts = [MORNING + i * MINUTE for i in range(180)] + [AFTERNOON + i * MINUTE for i in range(140)]
    closes = [price] * (len(starts) - len(closing_closes)) + closing_closes
    opens = [price, *closes[:-1]]
    return pl.DataFrame(
        {
            "symbol": [symbol] * len(starts),
            "timeframe": ["1m"] * len(starts),
            "ts": starts,
            "open": [float(o) for o in opens],
            "high": [float(max(o, c) + 5) for o, c in zip(opens, closes, strict=True)],
            "low": [float(min(o, c) - 5) for o, c in zip(opens, closes, strict=True)],
            "close": [float(c) for c in closes],
            "volume": [float(volume)] * len(starts),
            "adjusted": [False] * len(starts),
        }
    )


def load(urls: DatabaseUrls, frame: pl.DataFrame) -> None:
    with psycopg.connect(urls.etl, autocommit=True) as conn:
        market_service.load_frame(conn, frame, source="test-analytics")


@dataclass
class Seeded:
    tenant_id: str
    user_id: str
    symbol: str
    layering_symbol: str
    wash_orders: tuple[str, str] = ("", "")
    spoof_order: str = ""
    closing_order: str = ""
    layering_orders: list[str] = field(default_factory=list)
    rejected_order: str = ""


class _Writer:
    def __init__(self, conn: psycopg.Connection[Any], tenant_id: str, user_id: str) -> None:
        self.conn = conn
        self.tenant_id = tenant_id
        self.user_id = user_id

    def event(self, at: datetime, action: str, target_type: str, target_id: str, **details: Any) -> None:
        self.conn.execute(
            "insert into audit.events (tenant_id, occurred_at, actor_type, actor_id, action, target_type, target_id, "
            "details, request_id) values (%s, %s, 'user', %s, %s, %s, %s, %s, %s)",
            [self.tenant_id, at, self.user_id, action, target_type, target_id, Jsonb(details), f"req-{target_id}"],
        )

    def order(
        self,
        *,
        instrument_id: int,
        symbol: str,
        side: str,
        quantity: int,
        at: datetime,
        status: str,
        order_type: str = "limit",
        limit_price: int | None = 1000,
        filled: int = 0,
        average: Decimal | None = None,
        closed_at: datetime | None = None,
        reject_reason: str | None = None,
        accepted_details: dict[str, Any] | None = None,
    ) -> str:
        order_id = str(uuid4())
        self.conn.execute(
            "insert into trading.orders (tenant_id, id, client_order_id, user_id, instrument_id, symbol, side, type, "
            "time_in_force, quantity, limit_price, status, filled_quantity, average_price, reject_reason, "
            "created_at, updated_at) values (%s, %s, %s, %s, %s, %s, %s, %s, 'day', %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                self.tenant_id, order_id, uuid4().hex, self.user_id, instrument_id, symbol, side, order_type,
                quantity, limit_price, status, filled, average, reject_reason, at, closed_at or at,
            ],
        )  # fmt: skip
        if status == "rejected":
            self.event(at, "order.rejected", "order", order_id, reason=reject_reason, symbol=symbol, side=side)
            return order_id
        self.event(at, "order.accepted", "order", order_id, symbol=symbol, side=side, **(accepted_details or {}))
        if status in ("cancelled", "expired", "filled") and closed_at is not None:
            self.event(closed_at, f"order.{status}", "order", order_id, reason="seeded")
        return order_id

    def fill(
        self,
        order_id: str,
        *,
        instrument_id: int,
        side: str,
        quantity: int,
        price: int,
        at: datetime,
        realized: int = 0,
    ) -> None:
        value = quantity * price
        commission = value * 15 // 10_000
        tax = value // 1_000 if side == "sell" else 0
        self.conn.execute(
            "insert into trading.fills (tenant_id, order_id, execution_id, instrument_id, side, quantity, price, "
            "value, commission, tax, realized_pnl, executed_at, created_at) "
            "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                self.tenant_id, order_id, f"seed:{order_id}:{at.isoformat()}", instrument_id, side, quantity, price,
                value, commission, tax, realized, at, at,
            ],
        )  # fmt: skip


def instrument_id(conn: psycopg.Connection[Any], symbol: str) -> int:
    row = conn.execute("select id from market.instruments where symbol = %s", [symbol]).fetchone()
    assert row is not None
    return int(row[0])


def seed_suspicious(urls: DatabaseUrls, tenant_id: str, user_id: str) -> Seeded:
    """Every surveillance pattern, once, for ``tenant_id`` (see the module docstring for the times)."""
    with psycopg.connect(urls.owner, autocommit=True) as conn:
        symbol, layering_symbol = fresh_symbol(conn), fresh_symbol(conn)
    # SEED: flat at 1000 on 10,000 shares a minute; the last ten minutes climb to 1010 (+100 bps).
    load(urls, session_bars(symbol, closing_closes=[1001 + i for i in range(10)]))
    load(urls, session_bars(layering_symbol, closing_closes=[], volume=50_000, price=900))
    seeded = Seeded(tenant_id, user_id, symbol, layering_symbol)
    with psycopg.connect(urls.owner) as conn, conn.transaction():
        writer = _Writer(conn, tenant_id, user_id)
        seed_id, layering_id = instrument_id(conn, symbol), instrument_id(conn, layering_symbol)

        # Five quiet days before: two small day orders each, expired unfilled.
        for back in range(7, 2, -1):
            quiet = datetime.combine(DAY - timedelta(days=back), datetime.min.time(), tzinfo=UTC) + timedelta(hours=3)
            for k in range(2):
                writer.order(
                    instrument_id=seed_id, symbol=symbol, side="buy", quantity=100, limit_price=900,
                    at=quiet + k * MINUTE, status="expired", closed_at=quiet + timedelta(hours=6),
                )  # fmt: skip

        # Wash trade: buy 100 at 10:00:00 WIB, sell 100 at 10:00:30, both at 1000, one user.
        wash_at = MORNING + timedelta(hours=1)
        buy = writer.order(
            instrument_id=seed_id, symbol=symbol, side="buy", quantity=100, at=wash_at - SECOND, status="filled",
            filled=100, average=Decimal(1000), closed_at=wash_at,
        )  # fmt: skip
        writer.fill(buy, instrument_id=seed_id, side="buy", quantity=100, price=1000, at=wash_at)
        sell = writer.order(
            instrument_id=seed_id, symbol=symbol, side="sell", quantity=100, at=wash_at + 29 * SECOND,
            status="filled", filled=100, average=Decimal(1000), closed_at=wash_at + 30 * SECOND,
        )  # fmt: skip
        writer.fill(sell, instrument_id=seed_id, side="sell", quantity=100, price=1000, at=wash_at + 30 * SECOND)
        seeded.wash_orders = (buy, sell)

        # Spoofing: a 1,000,000-share sell at 1100 (1.1 billion) cancelled after 10 s; a real buy meanwhile.
        spoof_at = MORNING + timedelta(hours=2)
        seeded.spoof_order = writer.order(
            instrument_id=seed_id, symbol=symbol, side="sell", quantity=1_000_000, limit_price=1100, at=spoof_at,
            status="cancelled", closed_at=spoof_at + 10 * SECOND,
        )  # fmt: skip
        opposite = writer.order(
            instrument_id=seed_id, symbol=symbol, side="buy", quantity=100, order_type="market", limit_price=None,
            at=spoof_at + 4 * SECOND, status="filled", filled=100, average=Decimal(1000),
            closed_at=spoof_at + 5 * SECOND,
        )  # fmt: skip
        writer.fill(opposite, instrument_id=seed_id, side="buy", quantity=100, price=1000, at=spoof_at + 5 * SECOND)

        # Layering: twelve small bids on another instrument, each cancelled after 20 s, nothing filled there.
        for k in range(12):
            at = AFTERNOON + k * 2 * MINUTE
            seeded.layering_orders.append(
                writer.order(
                    instrument_id=layering_id,
                    symbol=layering_symbol,
                    side="buy",
                    quantity=100,
                    limit_price=890,
                    at=at,
                    status="cancelled",
                    closed_at=at + 20 * SECOND,
                )
            )

        # A pre-trade risk denial and the kill switch on and off.
        seeded.rejected_order = writer.order(
            instrument_id=seed_id, symbol=symbol, side="buy", quantity=5_000_000, at=AFTERNOON + timedelta(minutes=30),
            status="rejected", reject_reason="max_order_value",
        )  # fmt: skip
        writer.event(AFTERNOON + timedelta(minutes=40), "risk.kill_switch_on", "account", tenant_id, reason="seeded")
        writer.event(AFTERNOON + timedelta(minutes=45), "risk.kill_switch_off", "account", tenant_id, reason="seeded")

        # Marking the close: a 20,000-share market buy at 15:44:30 WIB, filled at 1005 at 15:45, 20% of the last
        # ten minutes' volume, as the close climbs 100 bps; a model decided it, with AI help.
        closing_at = CLOSE - timedelta(minutes=5, seconds=30)
        seeded.closing_order = writer.order(
            instrument_id=seed_id, symbol=symbol, side="buy", quantity=20_000, order_type="market", limit_price=None,
            at=closing_at, status="filled", filled=20_000, average=Decimal(1005), closed_at=closing_at + 30 * SECOND,
            accepted_details={"model_version": "champion-7", "signal": "buy"},
        )  # fmt: skip
        writer.fill(
            seeded.closing_order, instrument_id=seed_id, side="buy", quantity=20_000, price=1005,
            at=closing_at + 30 * SECOND,
        )  # fmt: skip
        conn.execute(
            "insert into usage.events (tenant_id, ts, idempotency_key, kind, quantity, cost, currency, details) "
            "values (%s, %s, %s, 'ai_tokens', 1200, 350, 'IDR', %s)",
            [
                tenant_id, closing_at - MINUTE, f"ai-{seeded.closing_order}",
                Jsonb({"provider": "local", "model": "pasar-analyst", "order_id": seeded.closing_order}),
            ],
        )  # fmt: skip

        # The position the fills leave: 100 + 100 + 20,000 bought, 100 sold at cost (no realized P&L).
        quantity = 20_100
        basis = 100 * 1000 + 100 * 1000 + 20_000 * 1005 - 100 * 1000
        conn.execute(
            "insert into trading.positions (tenant_id, instrument_id, quantity, avg_cost, realized_pnl) "
            "values (%s, %s, %s, %s, 0)",
            [tenant_id, seed_id, quantity, Decimal(basis) / quantity],
        )
    return seeded


def tenant_user(urls: DatabaseUrls, tenant_id: str) -> UUID:
    with psycopg.connect(urls.owner) as conn:
        row = conn.execute(
            "select id from tenancy.users where tenant_id = %s and role = 'admin' order by created_at limit 1",
            [tenant_id],
        ).fetchone()
    assert row is not None
    return UUID(str(row[0]))


def trade_normally(client: Any, headers: dict[str, str], urls: DatabaseUrls) -> str:
    """Ordinary trading through the API on a fresh instrument: a deposit, two buys at the close of 7 March 2033,
    then a sell the next day. Nothing here is suspicious; returns the symbol."""
    with psycopg.connect(urls.owner, autocommit=True) as conn:
        symbol = fresh_symbol(conn)
    load(urls, session_bars(symbol, closing_closes=[], volume=1_000_000))
    response = client.post("/v1/cash/deposits", json={"amount": 50_000_000, "currency": "IDR"}, headers=headers)
    assert response.status_code == 201, response.text
    for body in (
        {"symbol": symbol, "side": "buy", "quantity": "100"},
        {"symbol": symbol, "side": "buy", "quantity": "200", "type": "limit", "limit_price": "1010"},
    ):
        response = client.post("/v1/orders", json=body, headers=headers)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "filled", response.text
    next_day = session_bars(symbol, closing_closes=[], volume=1_000_000).with_columns(pl.col("ts") + timedelta(days=1))
    load(urls, next_day)
    response = client.post("/v1/orders", json={"symbol": symbol, "side": "sell", "quantity": "300"}, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "filled", response.text
    return symbol
