"""Rules of trading: orders through the pre-trade risk engine to the paper venue, fills into positions and the
double-entry cash ledger, the kill switch, deposits and withdrawals, the portfolio.

Every function runs inside the caller's tenant transaction and never commits. Placing, amending and matching
lock the tenant's account row first, so one tenant's orders are decided one at a time (cash reservations and
the order rate stay exact) while tenants never wait on each other. State changes are audited and appended to
``outbox``: the stream publishes them after the commit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import orjson
import psycopg.errors

from pasar.audit import repository as audit
from pasar.db.pool import Conn
from pasar.errors import Conflict, InvalidInput, NotFound
from pasar.market import exchange
from pasar.market import repository as market
from pasar.market.frames import Timeframe
from pasar.tenancy.models import Principal, TenantConfig
from pasar.trading import ledger
from pasar.trading import repository as repo
from pasar.trading.broker import Broker, Execution, PaperBroker
from pasar.trading.fees import Costs, FeeModel, SlippageModel, trade_value
from pasar.trading.matching import BarView, OpenOrder
from pasar.trading.models import (
    CLOSED_STATUSES,
    InstrumentInfo,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    OrderType,
    RiskReason,
    Side,
    TimeInForce,
    TradingState,
    json_text,
    rupiah,
)
from pasar.trading.order_rate import OrderRateWindow
from pasar.trading.positions import FillEffect, Position, fill_effect, market_value, unrealized_pnl
from pasar.trading.risk import ApprovedOrder, RiskContext, RiskDecision, RiskLimits, approve, check_order
from pasar.trading.state_machine import IllegalTransition, transition

ORDERS_SCOPE = "POST /v1/orders"
ACCOUNT_CURRENCY = "IDR"
VENUE_TIMEZONE = ZoneInfo("Asia/Jakarta")
FEES = FeeModel()
MAX_BARS_PER_MATCH = 500


class AmendmentDenied(InvalidInput):
    """The risk engine denied an amendment: the order is unchanged, the denial is audited. The API answers 422
    *and commits* (so the audit event stays), unlike other errors, which roll the request back."""


@dataclass
class Outbox:
    """Events for the live stream, published only after the transaction commits."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        self.events.append({"type": kind, "data": payload})


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(json_text(row))  # type: ignore[no-any-return]


def render(document: dict[str, Any]) -> str:
    """The one serialization of an order answer: sent, stored for replays, and replayed as is."""
    return json_text(document)


def order_document(order: dict[str, Any]) -> dict[str, Any]:
    """An order as the API shows it (and as an idempotent replay stores it)."""
    keys = ("id", "client_order_id", "user_id", "symbol", "side", "type", "time_in_force", "quantity",
            "limit_price", "stop_price", "status", "filled_quantity", "average_price", "reserved_cash",
            "reject_reason", "reject_message", "created_at", "updated_at")  # fmt: skip
    return _jsonable({key: order[key] for key in keys})


def _request_hash(request: OrderRequest) -> str:
    canonical = json.dumps(asdict(request), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _limits(config: TenantConfig) -> RiskLimits:
    trading = config.trading
    return RiskLimits(
        max_order_value=trading.max_order_value,
        max_position_value=config.max_position_size,
        max_gross_exposure=trading.max_gross_exposure,
        max_orders_per_minute=trading.max_orders_per_minute,
        price_collar=trading.price_collar,
        reference_max_age=timedelta(seconds=trading.reference_max_age_seconds),
        stop_loss_threshold=config.stop_loss_threshold,
        enforce_session=trading.venue_clock == "wall",
    )


def _instrument_info(row: market.InstrumentRow) -> InstrumentInfo:
    return InstrumentInfo(
        symbol=row.symbol,
        lot_size=row.lot_size,
        tick_rule=row.tick_rule,
        currency=row.currency,
        calendar=row.calendar,
        is_tradable=row.is_tradable,
        allows_short=row.allows_short,
        price_precision=row.price_precision,
    )


def _bar_end(bar: dict[str, Any]) -> datetime:
    end: datetime = bar["ts"] + timedelta(seconds=Timeframe(bar["timeframe"]).seconds)
    return end


@dataclass
class _Book:
    """The tenant's state an order is decided against (the account row is locked while it is used)."""

    tenant_id: UUID
    account: dict[str, Any]
    config: TenantConfig
    today: date
    now: datetime  # the transaction's timestamp (what the rows' created_at and updated_at hold)
    equity: int
    gross_exposure: int
    reserved: int  # cash reserved by the open orders when the book was read
    order_rate: OrderRateWindow  # the orders of the minute ending at the transaction's second
    instrument: market.InstrumentRow | None  # the instrument the order is about, if any
    positions: dict[int, dict[str, Any]] = field(default_factory=dict)  # by instrument id, kept current by fills
    bars: dict[int, dict[str, Any]] = field(default_factory=dict)  # the latest bars of the holdings (and the order's)

    def quantity(self, instrument_id: int) -> Decimal:
        position = self.positions.get(instrument_id)
        return Decimal(0) if position is None else Decimal(position["quantity"])

    @property
    def bar(self) -> dict[str, Any] | None:
        """The latest bar of the order's instrument."""
        return None if self.instrument is None else self.bars.get(self.instrument.id)

    @property
    def trading_state(self) -> TradingState:
        if self.account["kill_switch"]:
            return TradingState.halted
        if self.account["loss_limited_on"] == self.today:
            return TradingState.reducing
        return TradingState.normal


async def _positions(conn: Conn, tenant_id: UUID) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    positions = await repo.list_positions(conn, tenant_id)
    marks = await repo.latest_closes(conn, [p["instrument_id"] for p in positions]) if positions else {}
    return positions, marks


async def _open_book(
    conn: Conn, principal: Principal, *, symbol: str | None = None, claim: tuple[str, str] | None = None
) -> tuple[_Book, bool | None]:
    """Claim the Idempotency-Key ``claim`` (key, request hash) if given, lock the account and gather the book:
    positions marked at the latest bars, the risk counters, and the instrument ``symbol`` with its latest bar.
    Returns the book and whether the key was claimed (None: no key)."""
    assert principal.tenant_id is not None
    tenant_id = principal.tenant_id
    rows = await repo.open_book(
        conn,
        tenant_id,
        symbol=symbol,
        claim=None if claim is None else (ORDERS_SCOPE, *claim),
    )
    account, positions, bars = rows.account, rows.positions, rows.bars
    held = [p for p in positions.values() if p["quantity"] != 0]  # a flat position is worth 0
    values = [
        market_value(Position(p["quantity"], p["avg_cost"]), bars[p["instrument_id"]]["close"])
        for p in held
        if p["instrument_id"] in bars
    ]
    equity = account["cash"] + sum(values)
    today = datetime.now(VENUE_TIMEZONE).date()
    if account["day"] != today and rows.claimed is not False:  # a new trading day: its P&L is measured from here
        await repo.update_account(conn, tenant_id, {"day": today, "day_start_equity": equity})
        account = {**account, "day": today, "day_start_equity": equity}
    book = _Book(
        tenant_id,
        account,
        rows.config,
        today,
        rows.now,
        equity,
        sum(abs(v) for v in values),
        rows.reserved,
        OrderRateWindow.of_account(account).at(rows.now),
        rows.instrument,
        positions,
        bars,
    )
    return book, rows.claimed


def _risk_context(book: _Book, *, exclude: int = 0) -> RiskContext:
    instrument, bar = book.instrument, book.bar
    now = datetime.now(UTC)
    market_clock = book.config.trading.venue_clock == "market"
    session_open = True
    if instrument is not None and not market_clock:
        session_open = exchange.calendar(instrument.calendar).is_open(now)
    return RiskContext(
        instrument=None if instrument is None else _instrument_info(instrument),
        account_currency=book.account["currency"],
        reference_price=None if bar is None else bar["close"],
        reference_ts=None if bar is None else _bar_end(bar),
        previous_close=None,
        # The paper venue's clock: 'market' replays the stored bars, so their latest close is current.
        now=_bar_end(bar) if (market_clock and bar is not None) else now,
        position_quantity=Decimal(0) if instrument is None else book.quantity(instrument.id),
        gross_exposure=book.gross_exposure,
        cash_available=book.account["cash"] - (book.reserved - exclude),
        orders_last_minute=book.order_rate.orders,
        day_pnl=book.equity - book.account["day_start_equity"],
        day_start_equity=book.account["day_start_equity"],
        trading_state=book.trading_state,
        session_open=session_open,
    )


def _venue_cash_check(
    request: OrderRequest, decision: RiskDecision, context: RiskContext, config: TenantConfig
) -> RiskDecision:
    """A market or stop buy is valued by the risk engine at the reference price, but the paper venue charges the
    slipped price (a stop: from its stop price at least). Reserve what the venue will charge, or deny the order
    for insufficient cash, so an accepted order never spends cash the account does not have."""
    if not decision.accepted or request.side is not Side.buy or request.type not in (OrderType.market, OrderType.stop):
        return decision
    assert context.reference_price is not None and context.instrument is not None
    base = max(context.reference_price, request.stop_price or context.reference_price)
    price = SlippageModel(bps=config.trading.slippage_bps).apply(base, Side.buy, context.instrument.tick_rule)
    needed = FEES.buy_reserve(trade_value(request.quantity, price))
    if needed <= decision.reserve_cash:
        return decision
    if needed > context.cash_available:
        return RiskDecision.deny(
            RiskReason.insufficient_cash,
            f"the order needs {needed:,} (value at the paper venue's price {price} with slippage, and commission), "
            f"available cash is {context.cash_available:,}",
            price,
        )
    return replace(decision, reserve_cash=needed)


# Orders -----------------------------------------------------------------------------------------------------


async def place_order(
    conn: Conn, principal: Principal, request: OrderRequest, *, idempotency_key: str | None, outbox: Outbox
) -> tuple[int, str]:
    """(HTTP status, rendered order document). A denied order is stored as rejected with its reason and
    answered 201 like any created order; the same Idempotency-Key and body replay the stored answer, byte for
    byte; another body is a 409.

    The order is decided and matched in memory, then written once in its final state with its fill, position,
    ledger entry and audit events, all in one round trip (a pipeline)."""
    assert principal.tenant_id is not None
    tenant_id = principal.tenant_id
    request_hash = None if idempotency_key is None else _request_hash(request)
    claim = None if idempotency_key is None or request_hash is None else (idempotency_key, request_hash)
    book, claimed = await _open_book(conn, principal, symbol=request.symbol.upper(), claim=claim)
    if claimed is False:
        assert idempotency_key is not None
        stored = await repo.get_idempotency_key(conn, tenant_id, ORDERS_SCOPE, idempotency_key)
        assert stored is not None
        if stored["request_hash"] != request_hash:
            raise Conflict("this Idempotency-Key was used with another request body", code="idempotency_mismatch")
        return int(stored["response_status"]), str(stored["response_body"])
    instrument, bar = book.instrument, book.bar
    context = _risk_context(book)
    decision = _venue_cash_check(
        request, check_order(request, context, _limits(book.config), FEES), context, book.config
    )
    order = _new_order(principal, request, book, decision)
    fill: _FillPlan | None = None
    ioc_remainder_of: str | None = None  # the status an immediate-or-cancel order's remainder is cancelled from
    if decision.accepted and instrument is not None and bar is not None:
        approved = approve(decision, request, order_id=order["id"], instrument=context.instrument)
        order, fill = _match_new_order(book, order, approved, instrument, bar)
        if order["status"] not in CLOSED_STATUSES and order["time_in_force"] == TimeInForce.ioc:
            ioc_remainder_of = order["status"]
            order = {**order, "status": _closing(order, OrderEvent.cancel).value, "reserved_cash": 0}
    events = []
    loss_limited_on = None
    if decision.reason is RiskReason.daily_loss_limit and book.account["loss_limited_on"] != book.today:
        loss_limited_on = book.today
        events.append(
            repo.AuditEvent(
                "risk.daily_loss_limit",
                "account",
                tenant_id,
                {"day_pnl": context.day_pnl, "day_start_equity": context.day_start_equity},
            )
        )
    status = OrderStatus.accepted if decision.accepted else OrderStatus.rejected
    events.append(
        _transition_event(
            order["id"], OrderStatus.new.value, status.value,
            {"reason": order["reject_reason"], "message": decision.message, "symbol": order["symbol"],
             "side": order["side"], "quantity": str(request.quantity)},
        )
    )  # fmt: skip
    fill_rows = None
    if fill is not None:
        assert instrument is not None
        fill_rows = _fill_rows(book, instrument, fill, outbox)
        events.append(_fill_event(fill))
    if ioc_remainder_of is not None:
        events.append(
            _transition_event(
                order["id"], ioc_remainder_of, order["status"], {"reason": "immediate-or-cancel remainder"}
            )
        )
    # The answer is the order as written (the row holds exactly these values), so it is stored in the same statement.
    document = order_document(order)
    body = render(document)
    try:
        await repo.record_order(
            conn,
            principal,
            order,
            fill=fill_rows,
            events=events,
            loss_limited_on=loss_limited_on,
            order_rate=book.order_rate.counting_one(),
            answer=None if idempotency_key is None else (ORDERS_SCOPE, idempotency_key, 201, body),
        )
    except psycopg.errors.UniqueViolation as exc:  # a duplicate client_order_id is the caller's mistake
        raise Conflict(f"client_order_id {order['client_order_id']!r} exists already", code="duplicate_order") from exc
    outbox.add("order", document)
    return 201, body


def _new_order(principal: Principal, request: OrderRequest, book: _Book, decision: RiskDecision) -> dict[str, Any]:
    """The row of a new order as the risk engine decided it (written once it is matched)."""
    status = transition(OrderStatus.new, OrderEvent.accept if decision.accepted else OrderEvent.reject)
    return {
        "tenant_id": principal.tenant_id,
        "id": uuid4(),
        "client_order_id": request.client_order_id or uuid4().hex,
        "user_id": principal.subject_id,
        "instrument_id": None if book.instrument is None else book.instrument.id,
        "symbol": request.symbol.upper(),
        "side": request.side.value,
        "type": request.type.value,
        "time_in_force": request.time_in_force.value,
        "quantity": request.quantity,
        "limit_price": request.limit_price,
        "stop_price": request.stop_price,
        "status": status.value,
        "filled_quantity": Decimal(0),
        "average_price": None,
        "reserved_cash": decision.reserve_cash if decision.accepted else 0,
        "stop_triggered": False,
        "matched_until": None,
        "reject_reason": None if decision.reason is None else decision.reason.value,
        "reject_message": None if decision.accepted else decision.message,
        "created_at": book.now,
        "updated_at": book.now,
    }


def _match_new_order(
    book: _Book,
    order: dict[str, Any],
    approved: ApprovedOrder,
    instrument: market.InstrumentRow,
    bar: dict[str, Any],
) -> tuple[dict[str, Any], _FillPlan | None]:
    """A new order, sent to the venue with the latest bar: the order as it then stands, and its fill if any."""
    execution = _broker(book).submit(approved, _bar_view(bar))
    order = {**order, "matched_until": bar["ts"]}
    if execution is not None and execution.triggered:
        order["stop_triggered"] = True
    if execution is None or execution.quantity <= 0:
        return order, None
    if _exceeds_reservation(order, execution.quantity, execution.price):
        quantity = _affordable_quantity(book, instrument, execution.quantity, execution.price, book.reserved)
        if quantity <= 0:
            return order, None
        execution = replace(execution, quantity=quantity)
    fill = _plan_fill(book, order, instrument, execution, bar)
    return {**order, **fill.order_changes}, fill


def _closing(order: dict[str, Any], event: OrderEvent) -> OrderStatus:
    try:
        return transition(OrderStatus(order["status"]), event)
    except IllegalTransition as exc:
        raise Conflict(f"the order is {order['status']}: it cannot be {event.value}ed", code="order_closed") from exc


def _transition_event(order_id: UUID, was: str, now: str, details: dict[str, Any]) -> repo.AuditEvent:
    return repo.AuditEvent(f"order.{now}", "order", order_id, {"from": was, "to": now, **details})


async def _close_order(
    conn: Conn, principal: Principal, order: dict[str, Any], event: OrderEvent, why: str
) -> dict[str, Any]:
    status = _closing(order, event)
    assert principal.tenant_id is not None
    audited = _transition_event(order["id"], order["status"], status.value, {"reason": why})
    return await repo.update_order_with_event(
        conn, principal, order["id"], {"status": status.value, "reserved_cash": 0}, audited
    )


async def get_order(conn: Conn, principal: Principal, order_id: UUID) -> dict[str, Any]:
    assert principal.tenant_id is not None
    order = await repo.get_order(conn, principal.tenant_id, order_id)
    if order is None:
        raise NotFound("order not found")
    return order_document(order)


async def list_orders(
    conn: Conn,
    principal: Principal,
    *,
    status: OrderStatus | None,
    symbol: str | None,
    before: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    assert principal.tenant_id is not None
    rows = await repo.list_orders(
        conn,
        principal.tenant_id,
        status=None if status is None else status.value,
        symbol=None if symbol is None else symbol.upper(),
        before=before,
        limit=limit,
    )
    return [order_document(row) for row in rows]


async def cancel_order(conn: Conn, principal: Principal, order_id: UUID, *, outbox: Outbox) -> dict[str, Any]:
    """Cancels pass whatever the trading state (a halted tenant may always reduce its risk)."""
    assert principal.tenant_id is not None
    order = await repo.lock_account_and_order(conn, principal.tenant_id, order_id)
    if order is None:
        raise NotFound("order not found")
    updated = await _close_order(conn, principal, order, OrderEvent.cancel, "cancelled by the client")
    outbox.add("order", order_document(updated))
    return order_document(updated)


async def amend_order(
    conn: Conn,
    principal: Principal,
    order_id: UUID,
    *,
    quantity: Decimal | None,
    limit_price: Decimal | None,
    stop_price: Decimal | None,
    outbox: Outbox,
) -> dict[str, Any]:
    """A new quantity or price passes the risk engine like a new order; a denied amendment changes nothing."""
    assert principal.tenant_id is not None
    unlocked = await repo.get_order(conn, principal.tenant_id, order_id)
    if unlocked is None:
        raise NotFound("order not found")
    book, _ = await _open_book(conn, principal, symbol=unlocked["symbol"])  # the account lock, then the order's
    order = await repo.get_order(conn, principal.tenant_id, order_id, lock=True)
    assert order is not None
    try:
        transition(OrderStatus(order["status"]), OrderEvent.amend)
    except IllegalTransition as exc:
        raise Conflict(f"the order is {order['status']}: it cannot be amended", code="order_closed") from exc
    new_quantity = order["quantity"] if quantity is None else quantity
    if new_quantity <= order["filled_quantity"]:
        raise InvalidInput("the new quantity must exceed what is already filled", code="invalid_quantity")
    if (limit_price is not None and order["limit_price"] is None) or (
        stop_price is not None and order["stop_price"] is None
    ):
        raise InvalidInput("only a price the order type has can be amended", code="invalid_price")
    remaining = OrderRequest(
        symbol=order["symbol"],
        side=Side(order["side"]),
        type=OrderType(order["type"]),
        quantity=new_quantity - order["filled_quantity"],
        limit_price=limit_price if limit_price is not None else order["limit_price"],
        stop_price=stop_price if stop_price is not None else order["stop_price"],
        time_in_force=TimeInForce(order["time_in_force"]),
        client_order_id=order["client_order_id"],
    )
    context = _risk_context(book, exclude=order["reserved_cash"])
    decision = _venue_cash_check(
        remaining, check_order(remaining, context, _limits(book.config), FEES), context, book.config
    )
    if not decision.accepted:
        await audit.record(
            conn,
            principal,
            action="order.amend_rejected",
            target_type="order",
            target_id=order_id,
            details={"reason": str(decision.reason), "message": decision.message},
        )
        assert decision.reason is not None
        raise AmendmentDenied(decision.message, code=decision.reason.value, details={"order_id": str(order_id)})
    updated = await repo.update_order(
        conn,
        principal.tenant_id,
        order_id,
        {
            "quantity": new_quantity,
            "limit_price": remaining.limit_price,
            "stop_price": remaining.stop_price,
            "reserved_cash": decision.reserve_cash,
        },
    )
    await audit.record(
        conn,
        principal,
        action="order.amended",
        target_type="order",
        target_id=order_id,
        # The terms after and before; _jsonable writes decimals as text and an absent price as null.
        details=_jsonable(
            {
                "quantity": new_quantity,
                "limit_price": remaining.limit_price,
                "stop_price": remaining.stop_price,
                "previous": {key: order[key] for key in ("quantity", "limit_price", "stop_price")},
            }
        ),
    )
    outbox.add("order", order_document(updated))
    return order_document(updated)


# The paper venue --------------------------------------------------------------------------------------------


def _broker(book: _Book) -> Broker:
    """The venue the tenant's orders go to: the paper venue, with the tenant's participation and slippage."""
    trading = book.config.trading
    return PaperBroker(participation=trading.participation, slippage=SlippageModel(bps=trading.slippage_bps))


def _bar_view(bar: dict[str, Any]) -> BarView:
    return BarView(
        ts=bar["ts"], open=bar["open"], high=bar["high"], low=bar["low"], close=bar["close"], volume=bar["volume"]
    )


def _open_order(order: dict[str, Any]) -> OpenOrder:
    """A resting order as the venue sees it."""
    return OpenOrder(
        side=Side(order["side"]),
        type=OrderType(order["type"]),
        remaining=order["quantity"] - order["filled_quantity"],
        limit_price=order["limit_price"],
        stop_price=order["stop_price"],
        triggered=order["stop_triggered"],
    )


async def _match_order(
    conn: Conn,
    principal: Principal,
    book: _Book,
    order: dict[str, Any],
    instrument: market.InstrumentRow,
    bars: list[dict[str, Any]],
    outbox: Outbox,
) -> dict[str, Any]:
    """Match a resting order against bars, oldest first: fills, expiry of day orders, the bars it has seen."""
    assert principal.tenant_id is not None
    local_day = (order["matched_until"] or bars[0]["ts"]).astimezone(VENUE_TIMEZONE).date()
    broker, lot_size, tick_rule = _broker(book), instrument.lot_size, instrument.tick_rule
    for bar in bars:
        if OrderStatus(order["status"]) in CLOSED_STATUSES:
            break
        if order["time_in_force"] == TimeInForce.day and (bar["ts"].astimezone(VENUE_TIMEZONE).date() > local_day):
            return await _close_order(conn, principal, order, OrderEvent.expire, "day order: the session ended")
        execution = broker.match(
            order["id"], _open_order(order), _bar_view(bar), lot_size=lot_size, tick_rule=tick_rule
        )
        changes: dict[str, Any] = {"matched_until": bar["ts"]}
        if execution is not None and execution.triggered and not order["stop_triggered"]:
            changes["stop_triggered"] = True
        if execution is not None and execution.quantity > 0:  # the fill writes these changes with its own
            order = await _fill(conn, principal, book, order, instrument, execution, bar, outbox, changes)
        else:
            order = await repo.update_order(conn, principal.tenant_id, order["id"], changes)
    return order


def _exceeds_reservation(order: dict[str, Any], quantity: Decimal, price: Decimal) -> bool:
    """A buy whose price moved past what the order reserved."""
    return order["side"] == Side.buy and FEES.buy_reserve(trade_value(quantity, price)) > int(order["reserved_cash"])


def _affordable_quantity(
    book: _Book, instrument: market.InstrumentRow, quantity: Decimal, price: Decimal, reserved_by_others: int
) -> Decimal:
    """Spend at most the cash no other open order has reserved (in whole lots), never more than the account holds."""
    spendable = book.account["cash"] - reserved_by_others
    unit = price * instrument.lot_size * (1 + FEES.buy_commission)
    lots = min(quantity // instrument.lot_size, max(spendable, 0) // unit + 1)  # then down to what fits
    while lots > 0 and FEES.buy_reserve(trade_value(lots * instrument.lot_size, price)) > spendable:
        lots -= 1
    return Decimal(lots * instrument.lot_size)


@dataclass(frozen=True)
class _FillPlan:
    """One fill of an order, worked out before anything is written."""

    row: dict[str, Any]  # the trading.fills row
    effect: FillEffect
    costs: Costs
    status: OrderStatus  # the order's status after the fill
    was: str  # ... and before it
    order_changes: dict[str, Any]


def _plan_fill(
    book: _Book, order: dict[str, Any], instrument: market.InstrumentRow, execution: Execution, bar: dict[str, Any]
) -> _FillPlan:
    side, quantity, price = Side(order["side"]), execution.quantity, execution.price
    held = book.positions.get(instrument.id)  # the account lock keeps the book current for this transaction
    before = Position() if held is None else Position(held["quantity"], held["avg_cost"], held["realized_pnl"])
    effect = fill_effect(before, side, quantity, price)
    costs = FEES.costs(side, effect.value)
    filled = order["filled_quantity"] + quantity
    average = ((order["average_price"] or Decimal(0)) * order["filled_quantity"] + price * quantity) / filled
    status = transition(
        OrderStatus(order["status"]), OrderEvent.fill if filled == order["quantity"] else OrderEvent.partial_fill
    )
    reserve = (
        0
        if status is OrderStatus.filled
        else order["reserved_cash"] * (order["quantity"] - filled) // order["quantity"]
    )
    row = {
        "tenant_id": book.tenant_id,
        "order_id": order["id"],
        "execution_id": execution.execution_id,  # the venue's: fills are idempotent by it
        "instrument_id": instrument.id,
        "side": side.value,
        "quantity": quantity,
        "price": price,
        "value": effect.value,
        "commission": costs.commission,
        "tax": costs.tax,
        "realized_pnl": effect.realized,
        "executed_at": _bar_end(bar),
    }
    changes = {
        "status": status.value,
        "filled_quantity": filled,
        "average_price": average.quantize(Decimal(1).scaleb(-instrument.price_precision - 4)),
        "reserved_cash": int(reserve),
    }
    return _FillPlan(row, effect, costs, status, order["status"], changes)


def _fill_rows(book: _Book, instrument: market.InstrumentRow, fill: _FillPlan, outbox: Outbox) -> repo.FillRows:
    """Everything a fill moves but its order and audit trail: the position, the ledger entry and the cash. The book
    follows it, and the stream hears of the fill and the position."""
    side, row, effect, costs = Side(fill.row["side"]), fill.row, fill.effect, fill.costs
    after = effect.position
    position = {"quantity": after.quantity, "avg_cost": after.avg_cost, "realized_pnl": after.realized_pnl}
    book.positions[instrument.id] = {"instrument_id": instrument.id, **position}
    cash = book.account["cash"] + FEES.cash_delta(side, effect.value)
    book.account = {**book.account, "cash": cash}
    outbox.add(
        "fill",
        {
            "order_id": str(row["order_id"]),
            "execution_id": row["execution_id"],
            "symbol": instrument.symbol,
            "side": side.value,
            "quantity": str(row["quantity"]),
            "price": str(row["price"]),
            "commission": costs.commission,
            "tax": costs.tax,
        },
    )
    outbox.add(
        "position",
        {
            "symbol": instrument.symbol,
            "quantity": str(after.quantity),
            "avg_cost": str(after.avg_cost),
            "realized_pnl": after.realized_pnl,
        },
    )
    entry = ledger.fill(side, effect.value, costs, effect.cost_basis_released, effect.realized)
    return repo.FillRows(row, position, entry, cash)


def _fill_event(fill: _FillPlan) -> repo.AuditEvent:
    row = fill.row
    return _transition_event(
        row["order_id"],
        fill.was,
        fill.status.value,
        {"execution_id": row["execution_id"], "quantity": str(row["quantity"]), "price": str(row["price"])},
    )


async def _book_fill(
    conn: Conn, principal: Principal, book: _Book, instrument: market.InstrumentRow, fill: _FillPlan, outbox: Outbox
) -> None:
    """A resting order's fill: the position, the ledger and the cash, the audit trail (the fill row is in)."""
    rows = _fill_rows(book, instrument, fill, outbox)
    await repo.upsert_position(conn, book.tenant_id, instrument.id, rows.position)
    await repo.insert_entry(conn, book.tenant_id, rows.entry, reference=fill.row["execution_id"])
    await repo.update_account(conn, book.tenant_id, {"cash": rows.cash})
    event = _fill_event(fill)
    await audit.record(
        conn, principal, action=event.action, target_type=event.target_type, target_id=event.target_id,
        details=event.details,
    )  # fmt: skip


async def _fill(
    conn: Conn,
    principal: Principal,
    book: _Book,
    order: dict[str, Any],
    instrument: market.InstrumentRow,
    execution: Execution,
    bar: dict[str, Any],
    outbox: Outbox,
    changes: dict[str, Any],
) -> dict[str, Any]:
    """Book one execution of a resting ``order`` (and write ``changes``, the matching state of this bar, with it)."""
    tenant_id = book.tenant_id
    if _exceeds_reservation(order, execution.quantity, execution.price):
        reserved_by_others = await repo.reserved_cash(conn, tenant_id) - order["reserved_cash"]
        quantity = _affordable_quantity(book, instrument, execution.quantity, execution.price, reserved_by_others)
        if quantity <= 0:
            return await repo.update_order(conn, tenant_id, order["id"], changes)
        execution = replace(execution, quantity=quantity)
    fill = _plan_fill(book, order, instrument, execution, bar)
    if not await repo.insert_fill(conn, fill.row):
        return await repo.update_order(conn, tenant_id, order["id"], changes)  # this execution was recorded already
    await _book_fill(conn, principal, book, instrument, fill, outbox)
    return await repo.update_order(conn, tenant_id, order["id"], {**changes, **fill.order_changes})


async def run_matching(conn: Conn, principal: Principal, *, outbox: Outbox) -> int:
    """Match the tenant's resting orders against the bars that arrived since each was last matched; returns the
    number of fills. Run by the paper venue's loop (and the demo bot) — a live venue reports fills instead."""
    assert principal.tenant_id is not None
    book, _ = await _open_book(conn, principal)
    seen = len(outbox.events)
    for order in await repo.open_orders(conn, principal.tenant_id):
        instrument = await market.get_instrument(conn, order["symbol"])
        bar = await repo.latest_bar(conn, instrument.id) if instrument else None
        if instrument is None or bar is None:
            continue
        since = order["matched_until"] or order["created_at"]
        bars = await repo.bars_after(conn, instrument.id, bar["timeframe"], since, MAX_BARS_PER_MATCH)
        if not bars:
            continue
        updated = await _match_order(
            conn, principal, book, order, instrument, [{**b, "timeframe": bar["timeframe"]} for b in bars], outbox
        )
        if (updated["status"], updated["filled_quantity"]) != (order["status"], order["filled_quantity"]):
            outbox.add("order", order_document(updated))
    return sum(1 for event in outbox.events[seen:] if event["type"] == "fill")


# Kill switch ------------------------------------------------------------------------------------------------


async def set_kill_switch(
    conn: Conn, principal: Principal, *, enabled: bool, reason: str, outbox: Outbox
) -> dict[str, Any]:
    """Halted: only cancels pass, and every open order is cancelled now. The state lives in the database, so
    it survives restarts."""
    assert principal.tenant_id is not None
    account = await repo.lock_account(conn, principal.tenant_id)
    await repo.update_account(conn, principal.tenant_id, {"kill_switch": enabled, "kill_switch_reason": reason})
    await audit.record(
        conn,
        principal,
        action="risk.kill_switch_" + ("on" if enabled else "off"),
        target_type="account",
        target_id=principal.tenant_id,
        details={"reason": reason, "was": account["kill_switch"]},
    )
    cancelled = 0
    if enabled:
        for order in await repo.open_orders(conn, principal.tenant_id):
            updated = await _close_order(conn, principal, order, OrderEvent.cancel, "kill switch: " + reason)
            outbox.add("order", order_document(updated))
            cancelled += 1
    outbox.add("risk", {"kill_switch": enabled, "reason": reason})
    return {"enabled": enabled, "reason": reason, "cancelled_orders": cancelled}


# Cash -------------------------------------------------------------------------------------------------------


async def move_cash(conn: Conn, principal: Principal, *, amount: int, currency: str, deposit: bool) -> dict[str, Any]:
    assert principal.tenant_id is not None
    account = await repo.lock_account(conn, principal.tenant_id)
    if currency != account["currency"]:
        raise InvalidInput(f"this account holds {account['currency']}, not {currency}", code="currency_not_supported")
    if amount <= 0:
        raise InvalidInput("amount must be a positive whole number of rupiah", code="invalid_amount")
    if not deposit:
        available = account["cash"] - await repo.reserved_cash(conn, principal.tenant_id)
        if amount > available:
            raise InvalidInput(
                f"withdrawal of {amount:,} exceeds the available cash {available:,}", code="insufficient_cash"
            )
    entry = ledger.deposit(amount) if deposit else ledger.withdrawal(amount)
    entry_id = await repo.insert_entry(conn, principal.tenant_id, entry, reference=None)
    cash = account["cash"] + (amount if deposit else -amount)
    await repo.update_account(conn, principal.tenant_id, {"cash": cash})
    await audit.record(
        conn,
        principal,
        action="cash." + ("deposit" if deposit else "withdrawal"),
        target_type="ledger_entry",
        target_id=entry_id,
        details={"amount": amount, "currency": currency},
    )
    return {"entry_id": str(entry_id), "kind": entry.kind, "amount": amount, "currency": currency, "cash": cash}


async def list_ledger(conn: Conn, principal: Principal, *, before: datetime | None, limit: int) -> list[dict[str, Any]]:
    assert principal.tenant_id is not None
    return [_jsonable(row) for row in await repo.list_ledger(conn, principal.tenant_id, before=before, limit=limit)]


# Positions, fills, portfolio --------------------------------------------------------------------------------


async def list_fills(
    conn: Conn, principal: Principal, *, order_id: UUID | None, before: datetime | None, limit: int
) -> list[dict[str, Any]]:
    assert principal.tenant_id is not None
    rows = await repo.list_fills(conn, principal.tenant_id, order_id=order_id, before=before, limit=limit)
    return [_jsonable(row) for row in rows]


async def list_positions(conn: Conn, principal: Principal) -> list[dict[str, Any]]:
    assert principal.tenant_id is not None
    positions, marks = await _positions(conn, principal.tenant_id)
    documents = []
    for row in positions:
        position = Position(row["quantity"], row["avg_cost"], row["realized_pnl"])
        mark = marks.get(row["instrument_id"])
        value = None if mark is None else market_value(position, mark["close"])
        documents.append(
            _jsonable(
                {
                    "symbol": row["symbol"],
                    "quantity": row["quantity"],
                    "avg_cost": row["avg_cost"],
                    "realized_pnl": row["realized_pnl"],
                    "mark_price": None if mark is None else mark["close"],
                    "mark_time": None if mark is None else mark["ts"],
                    "market_value": value,
                    "unrealized_pnl": None if mark is None else unrealized_pnl(position, mark["close"]),
                }
            )
        )
    return documents


async def portfolio(conn: Conn, principal: Principal) -> dict[str, Any]:
    assert principal.tenant_id is not None
    tenant_id = principal.tenant_id
    account = await repo.get_account(conn, tenant_id) or {
        "cash": 0,
        "day_start_equity": 0,
        "kill_switch": False,
        "loss_limited_on": None,
        "currency": ACCOUNT_CURRENCY,
    }
    positions = await list_positions(conn, principal)
    market_values = [p["market_value"] or 0 for p in positions]
    equity = account["cash"] + sum(market_values)
    balances = await repo.ledger_balances(conn, tenant_id)
    contributed = -balances.get("capital", 0)  # deposits minus withdrawals (capital is credited)
    history = await portfolio_history(conn, principal, days=90)
    peak = max([point["equity"] for point in history] + [equity])
    today = datetime.now(VENUE_TIMEZONE).date()
    state = (
        TradingState.halted
        if account["kill_switch"]
        else TradingState.reducing
        if account["loss_limited_on"] == today
        else TradingState.normal
    )
    return {
        "currency": account["currency"],
        "cash": account["cash"],
        "reserved_cash": await repo.reserved_cash(conn, tenant_id),
        "market_value": sum(market_values),
        "equity": equity,
        "gross_exposure": sum(abs(v) for v in market_values),
        "net_exposure": sum(market_values),
        "day_pnl": equity - account["day_start_equity"] if account["day_start_equity"] else 0,
        "realized_pnl": -balances.get("realized_pnl", 0),
        "fees": balances.get("fees", 0),
        "taxes": balances.get("taxes", 0),
        "contributed": contributed,
        "return_pct": float(round(Decimal(equity - contributed) / contributed * 100, 4)) if contributed else 0.0,
        "drawdown_pct": float(round(Decimal(peak - equity) / peak * 100, 4)) if peak > 0 else 0.0,
        "trading_state": state.value,
        "positions": positions,
    }


async def portfolio_history(conn: Conn, principal: Principal, *, days: int) -> list[dict[str, Any]]:
    assert principal.tenant_id is not None
    rows = await repo.equity_history(conn, principal.tenant_id, timezone=VENUE_TIMEZONE.key, days=days)
    history = []
    for row in rows:
        value = rupiah(Decimal(row["market_value"]))  # one rounding, so cash + market_value == equity
        history.append(
            {"day": row["day"].isoformat(), "cash": int(row["cash"]), "market_value": value,
             "equity": int(row["cash"]) + value}
        )  # fmt: skip
    return history
