"""Trading endpoints: orders (with Idempotency-Key), the kill switch, cash, fills, positions, the portfolio."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from api.deps import CurrentPrincipal, TenantConn, require
from api.errors import error_response
from api.schemas import ERROR_RESPONSES, Body
from pasar.tenancy.models import Role, Scope
from pasar.trading import service as trading
from pasar.trading.models import OrderRequest, OrderStatus, OrderType, Side, TimeInForce

router = APIRouter(prefix="/v1", tags=["trading"], responses=ERROR_RESPONSES)
Read = Depends(require(*Role, scope=Scope.read))
Trade = Depends(require(Role.admin, Role.trader, scope=Scope.write))
Risk = Depends(require(Role.admin, Role.compliance, scope=Scope.read))
Treasury = Depends(require(Role.admin, scope=Scope.admin))

Quantity = Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=8)]
Price = Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=8)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
]


async def outbox(request: Request) -> trading.Outbox:  # async: a plain def would hop to a worker thread
    """Events of this request; the tenant transaction publishes them to the stream once it has committed."""
    if getattr(request.state, "outbox", None) is None:
        request.state.outbox = trading.Outbox()
    box: trading.Outbox = request.state.outbox
    return box


OutboxDep = Annotated[trading.Outbox, Depends(outbox)]


class OrderCreate(Body):
    symbol: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")
    side: Side
    type: OrderType = OrderType.market
    quantity: Quantity
    limit_price: Price | None = None
    stop_price: Price | None = None
    time_in_force: TimeInForce = TimeInForce.day
    client_order_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")


class OrderAmend(Body):
    quantity: Quantity | None = None
    limit_price: Price | None = None
    stop_price: Price | None = None

    @model_validator(mode="after")
    def changes_something(self) -> Self:
        # An empty amendment would still pass the risk engine and be audited as an amendment that changed nothing.
        if self.quantity is None and self.limit_price is None and self.stop_price is None:
            raise ValueError("give at least one of quantity, limit_price and stop_price")
        return self


class Order(BaseModel):
    id: UUID
    client_order_id: str
    user_id: UUID
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    status: OrderStatus
    filled_quantity: Decimal
    average_price: Decimal | None
    reserved_cash: int
    reject_reason: str | None = Field(description="The risk engine's reason code when status is rejected")
    reject_message: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class OrderList(BaseModel):
    items: list[Order]


class KillSwitch(Body):
    enabled: bool
    reason: str = Field(min_length=1, max_length=500)


class CashMovement(Body):
    amount: int = Field(gt=0, le=10**15, description="Whole rupiah")
    currency: str = Field(default="IDR", pattern=r"^[A-Z]{3}$")


@router.post("/orders", status_code=201, response_model=Order, dependencies=[Trade])
async def place_order(
    body: OrderCreate,
    principal: CurrentPrincipal,
    conn: TenantConn,
    box: OutboxDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Every order passes the pre-trade risk engine; a denied one is stored with status ``rejected`` and its
    reason code. The same ``Idempotency-Key`` and body replay the stored answer; another body gets 409."""
    status, document = await trading.place_order(
        conn,
        principal,
        OrderRequest(**body.model_dump()),
        idempotency_key=idempotency_key,
        outbox=box,
    )
    return Response(document, status_code=status, media_type="application/json")


@router.get("/orders", response_model=OrderList, dependencies=[Read])
async def list_orders(
    principal: CurrentPrincipal,
    conn: TenantConn,
    status: OrderStatus | None = None,
    symbol: Annotated[str | None, Query(max_length=32)] = None,
    before: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> dict[str, Any]:
    items = await trading.list_orders(conn, principal, status=status, symbol=symbol, before=before, limit=limit)
    return {"items": items}


@router.get("/orders/{order_id}", response_model=Order, dependencies=[Read])
async def get_order(order_id: UUID, principal: CurrentPrincipal, conn: TenantConn) -> dict[str, Any]:
    return await trading.get_order(conn, principal, order_id)


@router.delete("/orders/{order_id}", response_model=Order, dependencies=[Trade])
async def cancel_order(order_id: UUID, principal: CurrentPrincipal, conn: TenantConn, box: OutboxDep) -> Response:
    # Rendered as a new order's answer is: the document is JSON-ready already, validating it against the response
    # model again would only cost CPU on the order path.
    document = await trading.cancel_order(conn, principal, order_id, outbox=box)
    return Response(trading.render(document), media_type="application/json")


@router.patch("/orders/{order_id}", response_model=Order, dependencies=[Trade])
async def amend_order(
    order_id: UUID, body: OrderAmend, principal: CurrentPrincipal, conn: TenantConn, box: OutboxDep
) -> Any:
    """A new quantity or price passes the risk engine like a new order; a denial answers 422 with the reason code
    and leaves the order as it was (the denial itself is audited)."""
    try:
        return await trading.amend_order(
            conn,
            principal,
            order_id,
            quantity=body.quantity,
            limit_price=body.limit_price,
            stop_price=body.stop_price,
            outbox=box,
        )
    except trading.AmendmentDenied as denied:  # answered here, so the transaction commits the audit event
        return error_response(denied.status_code, denied.code, denied.message, denied.details)


@router.post("/paper/match", dependencies=[Trade])
async def match_resting_orders(principal: CurrentPrincipal, conn: TenantConn, box: OutboxDep) -> dict[str, int]:
    """The paper venue: match resting orders against the bars that arrived since they were last matched."""
    return {"fills": await trading.run_matching(conn, principal, outbox=box)}


@router.post("/risk/kill-switch", dependencies=[Risk])
async def kill_switch(
    body: KillSwitch, principal: CurrentPrincipal, conn: TenantConn, box: OutboxDep
) -> dict[str, Any]:
    """Halt (only cancels pass; open orders are cancelled now) or resume trading. Admin or compliance; audited."""
    return await trading.set_kill_switch(conn, principal, enabled=body.enabled, reason=body.reason, outbox=box)


@router.post("/cash/deposits", status_code=201, dependencies=[Treasury])
async def deposit(body: CashMovement, principal: CurrentPrincipal, conn: TenantConn) -> dict[str, Any]:
    return await trading.move_cash(conn, principal, amount=body.amount, currency=body.currency, deposit=True)


@router.post("/cash/withdrawals", status_code=201, dependencies=[Treasury])
async def withdraw(body: CashMovement, principal: CurrentPrincipal, conn: TenantConn) -> dict[str, Any]:
    return await trading.move_cash(conn, principal, amount=body.amount, currency=body.currency, deposit=False)


@router.get("/cash/ledger", dependencies=[Read])
async def cash_ledger(
    principal: CurrentPrincipal,
    conn: TenantConn,
    before: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> dict[str, Any]:
    """Append-only, double-entry: every entry's lines sum to zero."""
    return {"items": await trading.list_ledger(conn, principal, before=before, limit=limit)}


@router.get("/fills", dependencies=[Read])
async def fills(
    principal: CurrentPrincipal,
    conn: TenantConn,
    order_id: UUID | None = None,
    before: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> dict[str, Any]:
    return {"items": await trading.list_fills(conn, principal, order_id=order_id, before=before, limit=limit)}


@router.get("/positions", dependencies=[Read])
async def positions(principal: CurrentPrincipal, conn: TenantConn) -> dict[str, Any]:
    return {"items": await trading.list_positions(conn, principal)}


@router.get("/portfolio", dependencies=[Read])
async def portfolio(principal: CurrentPrincipal, conn: TenantConn) -> dict[str, Any]:
    """Equity, cash, exposure, day P&L, drawdown and returns, marked at the latest prices."""
    return await trading.portfolio(conn, principal)


@router.get("/portfolio/history", dependencies=[Read])
async def portfolio_history(
    principal: CurrentPrincipal, conn: TenantConn, days: Annotated[int, Query(ge=1, le=366)] = 30
) -> dict[str, Literal["IDR"] | list[dict[str, Any]]]:
    """The daily equity curve (cash at each day's end plus holdings at that day's last close), in WIB days."""
    return {"currency": "IDR", "items": await trading.portfolio_history(conn, principal, days=days)}
