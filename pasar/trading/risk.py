"""The pre-trade risk engine: one pure function from an order and a snapshot of the account to a decision.

The service gathers the snapshot (:class:`RiskContext`) inside the tenant's transaction and calls
:func:`check_order` for every new or amended order; nothing reaches a venue without an accepted decision: a broker
takes an :class:`ApprovedOrder`, and only :func:`approve` makes one, from an accepted decision. The checks
run in a fixed order and the first failure wins, so a denial always carries exactly one stable reason code (and a
message with the figures). The order is the cheapest, most fundamental first: the kill switch beats everything,
then what the order *is* (instrument, shape, lots, ticks), then the market data it is judged against, then the
tenant's limits, and cash last (it depends on every price decided before).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from pasar.market.exchange import auto_rejection_limits, calendar, on_tick_grid
from pasar.trading.fees import FeeModel, trade_value
from pasar.trading.models import (
    EXACT,
    REASON_MESSAGES,
    InstrumentInfo,
    OrderRequest,
    OrderType,
    RiskReason,
    Side,
    TradingState,
    rupiah,
)

__all__ = [
    "ApprovedOrder",
    "RiskContext",
    "RiskDecision",
    "RiskLimits",
    "approve",
    "check_order",
    "check_price",
    "is_reducing",
    "loss_limit_breached",
    "session_open",
]


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """A tenant's limits (from its config). Money in whole rupiah; ``price_collar`` and ``stop_loss_threshold``
    are fractions (0.10 = 10%)."""

    max_order_value: int
    max_position_value: int
    max_gross_exposure: int
    max_orders_per_minute: int
    price_collar: Decimal
    reference_max_age: timedelta
    stop_loss_threshold: Decimal
    enforce_session: bool = True


@dataclass(frozen=True, slots=True)
class RiskContext:
    """The snapshot an order is judged against (gathered by the service; this module does no I/O).

    ``cash_available`` is cash minus what open orders have reserved; ``gross_exposure`` is the current sum of
    ``|quantity x mark|`` over positions; ``orders_last_minute`` counts the tenant's orders submitted in the minute
    before this one; ``day_pnl`` is the day's P&L against ``day_start_equity``.
    """

    instrument: InstrumentInfo | None
    account_currency: str
    reference_price: Decimal | None
    reference_ts: datetime | None
    previous_close: Decimal | None
    now: datetime
    position_quantity: Decimal
    gross_exposure: int
    cash_available: int
    orders_last_minute: int
    day_pnl: int
    day_start_equity: int
    trading_state: TradingState
    session_open: bool


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The answer: accepted, or denied with one reason. ``reserve_cash`` is what an accepted buy reserves (its value
    plus commission at ``check_price``; 0 for a sell and for a denial)."""

    accepted: bool
    reason: RiskReason | None
    message: str
    reserve_cash: int = 0
    check_price: Decimal | None = None

    @classmethod
    def accept(cls, reserve_cash: int, check_price: Decimal) -> RiskDecision:
        return cls(True, None, "accepted", reserve_cash, check_price)

    @classmethod
    def deny(cls, reason: RiskReason, message: str | None = None, check_price: Decimal | None = None) -> RiskDecision:
        return cls(False, reason, message or REASON_MESSAGES[reason], 0, check_price)


def _money(amount: int) -> str:
    return f"{amount:,}"


def is_reducing(side: Side, quantity: Decimal, position_quantity: Decimal) -> bool:
    """Whether an order of ``quantity`` on ``side`` only brings the position closer to flat: it is against the
    position and no larger than it (so it can neither open nor flip one). Nothing reduces a flat position."""
    if position_quantity == 0 or quantity <= 0:
        return False
    against = (position_quantity > 0) != (side is Side.buy)
    return against and quantity <= abs(position_quantity)


def loss_limit_breached(day_pnl: int, day_start_equity: int, threshold: Decimal) -> bool:
    """Whether the day's loss reached ``threshold`` x the day's starting equity (the trigger for ``reducing``).

    Only a loss counts: a flat day with zero starting equity (a new account) does not breach anything.
    """
    return day_pnl < 0 and day_pnl <= -EXACT.multiply(threshold, Decimal(day_start_equity))


def session_open(instrument: InstrumentInfo, now: datetime) -> bool:
    """Whether ``instrument``'s exchange is in continuous trading at ``now`` (for :attr:`RiskContext.session_open`
    of a live venue; a paper venue may pass True at any hour)."""
    return calendar(instrument.calendar).is_open(now)


def check_price(request: OrderRequest, reference_price: Decimal) -> Decimal:
    """The price an order is valued at: its limit price for limit and stop_limit, else the reference price."""
    if request.type in (OrderType.limit, OrderType.stop_limit) and request.limit_price is not None:
        return request.limit_price
    return reference_price


def _order_prices(request: OrderRequest) -> list[tuple[str, Decimal]]:
    named = (("limit price", request.limit_price), ("stop price", request.stop_price))
    return [(name, price) for name, price in named if price is not None]


def _static_checks(request: OrderRequest, context: RiskContext) -> RiskDecision | None:
    """What the order is, independent of prices: instrument, shape, lots, ticks."""
    instrument = context.instrument
    if instrument is None:
        return RiskDecision.deny(RiskReason.instrument_unknown, f"instrument {request.symbol} is not known")
    if not instrument.is_tradable:
        return RiskDecision.deny(RiskReason.instrument_not_tradable, f"instrument {request.symbol} is not tradable")
    if instrument.currency != context.account_currency:
        return RiskDecision.deny(
            RiskReason.currency_not_supported,
            f"{request.symbol} trades in {instrument.currency}, the account is in {context.account_currency}",
        )
    problem = request.shape_problem()
    if problem is not None:
        return RiskDecision.deny(*problem)
    if request.quantity % instrument.lot_size != 0:
        return RiskDecision.deny(
            RiskReason.lot_size,
            f"quantity {request.quantity} is not a whole number of lots of {instrument.lot_size}",
        )
    for name, price in _order_prices(request):
        try:
            on_grid = on_tick_grid(price, instrument.tick_rule)
        except ValueError:
            on_grid = False
        if not on_grid:
            return RiskDecision.deny(
                RiskReason.tick_size, f"{name} {price} is not on the {instrument.tick_rule} tick grid"
            )
    return None


def _market_checks(request: OrderRequest, context: RiskContext, limits: RiskLimits) -> RiskDecision | None:
    """The market data the order is judged against, the session, the exchange band and the tenant's collar."""
    instrument = context.instrument
    assert instrument is not None  # _static_checks ran first
    reference = context.reference_price
    if reference is None or not reference.is_finite() or reference <= 0:
        return RiskDecision.deny(
            RiskReason.reference_price_missing, f"no usable reference price for {request.symbol} ({reference})"
        )
    if context.reference_ts is None:
        return RiskDecision.deny(RiskReason.reference_price_stale, "the reference price has no timestamp")
    age = context.now - context.reference_ts
    if age > limits.reference_max_age:
        return RiskDecision.deny(
            RiskReason.reference_price_stale,
            f"the reference price is {age} old, more than the allowed {limits.reference_max_age}",
        )
    if limits.enforce_session and not context.session_open:
        return RiskDecision.deny(
            RiskReason.session_closed, f"{instrument.calendar} is not in continuous trading at {context.now}"
        )
    price = check_price(request, reference)
    band_base = context.previous_close if context.previous_close is not None else reference
    try:
        band = auto_rejection_limits(band_base, instrument.tick_rule)
    except ValueError as exc:  # e.g. a reference below the regular board's minimum: no valid band exists
        return RiskDecision.deny(RiskReason.price_band, f"no auto-rejection band around {band_base}: {exc}", price)
    if band is not None and not band[0] <= price <= band[1]:
        return RiskDecision.deny(
            RiskReason.price_band,
            f"price {price} is outside the exchange's auto-rejection band {band[0]}-{band[1]} around {band_base}",
            price,
        )
    low = EXACT.multiply(reference, 1 - limits.price_collar)
    high = EXACT.multiply(reference, 1 + limits.price_collar)
    for name, order_price in _order_prices(request):
        if not low <= order_price <= high:
            return RiskDecision.deny(
                RiskReason.price_collar,
                f"{name} {order_price} is outside the tenant's band {low.normalize():f}-{high.normalize():f} "
                f"(reference {reference} ± {(limits.price_collar * 100).normalize():f}%)",
                price,
            )
    return None


def _limit_checks(
    request: OrderRequest, context: RiskContext, limits: RiskLimits, fees: FeeModel, price: Decimal
) -> RiskDecision:
    """The tenant's limits, position and cash, valued at ``price``; the final decision."""
    instrument = context.instrument
    assert instrument is not None
    held = context.position_quantity
    reducing = is_reducing(request.side, request.quantity, held)
    if context.orders_last_minute >= limits.max_orders_per_minute:
        return RiskDecision.deny(
            RiskReason.order_rate,
            f"{context.orders_last_minute} orders in the last minute, the limit is {limits.max_orders_per_minute}",
            price,
        )
    breached = loss_limit_breached(context.day_pnl, context.day_start_equity, limits.stop_loss_threshold)
    if (context.trading_state is TradingState.reducing or breached) and not reducing:
        return RiskDecision.deny(
            RiskReason.daily_loss_limit,
            f"day P&L {_money(context.day_pnl)} against a loss limit of "
            f"{_money(rupiah(EXACT.multiply(limits.stop_loss_threshold, Decimal(context.day_start_equity))))}: "
            "only orders that reduce a position are allowed",
            price,
        )
    value = trade_value(request.quantity, price)
    if value > limits.max_order_value:
        return RiskDecision.deny(
            RiskReason.max_order_value,
            f"order value {_money(value)} exceeds the tenant's maximum {_money(limits.max_order_value)}",
            price,
        )
    resulting = held + request.side.sign * request.quantity
    position_value = trade_value(abs(resulting), price)
    if not reducing and position_value > limits.max_position_value:
        return RiskDecision.deny(
            RiskReason.max_position,
            f"resulting position {resulting} worth {_money(position_value)} exceeds the tenant's maximum "
            f"{_money(limits.max_position_value)}",
            price,
        )
    if not reducing and context.gross_exposure + value > limits.max_gross_exposure:
        return RiskDecision.deny(
            RiskReason.gross_exposure,
            f"gross exposure {_money(context.gross_exposure)} + order value {_money(value)} exceeds the tenant's cap "
            f"{_money(limits.max_gross_exposure)}",
            price,
        )
    if request.side is Side.sell and resulting < 0 and not instrument.allows_short:
        return RiskDecision.deny(
            RiskReason.insufficient_position,
            f"selling {request.quantity} with a position of {held}; {request.symbol} cannot be sold short",
            price,
        )
    if request.side is Side.sell:
        return RiskDecision.accept(0, price)
    needed = fees.buy_reserve(value)
    if needed > context.cash_available:
        return RiskDecision.deny(
            RiskReason.insufficient_cash,
            f"the order needs {_money(needed)} (value and commission), available cash is "
            f"{_money(context.cash_available)}",
            price,
        )
    return RiskDecision.accept(needed, price)


_APPROVAL = object()  # held by this module alone: the proof an ApprovedOrder came from approve()


@dataclass(frozen=True, slots=True)
class ApprovedOrder:
    """An order the risk engine accepted, the one thing a broker's ``submit`` takes (:mod:`pasar.trading.broker`).
    Made by :func:`approve` only: built any other way, it raises TypeError."""

    order_id: UUID
    request: OrderRequest
    instrument: InstrumentInfo
    reserve_cash: int
    approval: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.approval is not _APPROVAL:
            raise TypeError("an ApprovedOrder is made by the risk engine only (pasar.trading.risk.approve)")


def approve(
    decision: RiskDecision, request: OrderRequest, *, order_id: UUID, instrument: InstrumentInfo | None
) -> ApprovedOrder:
    """The order ``decision`` accepted, ready for a broker; ValueError for a denied one."""
    if not decision.accepted:
        raise ValueError(f"a denied order ({decision.reason}) cannot reach a broker")
    if instrument is None:  # an accepted order's instrument is known: check_order denies unknown ones
        raise ValueError("an order without a known instrument cannot reach a broker")
    return ApprovedOrder(order_id, request, instrument, decision.reserve_cash, _APPROVAL)


def check_order(request: OrderRequest, context: RiskContext, limits: RiskLimits, fees: FeeModel) -> RiskDecision:
    """Judge ``request`` against ``context`` and ``limits``; the first failing check wins, in this order:

    kill switch; instrument unknown / not tradable / currency; order shape; lot size; tick grid (limit and stop
    prices); reference price missing (None, NaN, <= 0); stale (no timestamp, or older than ``reference_max_age``);
    session (only when ``enforce_session``); the exchange's auto-rejection band for the check price around the
    previous close (or the reference); the tenant's collar for every limit/stop price around the reference; order
    rate; daily loss (reducing state or the loss limit breached: only :func:`is_reducing` orders pass); max order
    value; max position; gross exposure (these two not for reducing orders, which can only lower them); short
    selling; cash for a buy (value + commission; a buy that only covers a short still pays for it).

    The check price (:func:`check_price`) is the limit price for limit and stop_limit, else the reference price.
    """
    if context.trading_state is TradingState.halted:
        return RiskDecision.deny(
            RiskReason.kill_switch, "trading is halted by the kill switch: no new or amended orders"
        )
    denied = _static_checks(request, context) or _market_checks(request, context, limits)
    if denied is not None:
        return denied
    assert context.reference_price is not None  # _market_checks ran
    return _limit_checks(request, context, limits, fees, check_price(request, context.reference_price))
