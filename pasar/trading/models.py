"""Value objects of the trading engine: enums with stable codes, the order request and instrument facts.

Everything here is a frozen dataclass or a StrEnum: the enum values are stored in the database and returned by the
API, so they are part of the contract and never renamed. Prices and quantities are :class:`~decimal.Decimal`; money
is ``int`` whole rupiah (:func:`rupiah` is the one rounding rule from a Decimal amount to money).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from pasar.market.exchange import InstrumentSpec

__all__ = [
    "CLOSED_STATUSES",
    "DIVIDE",
    "EXACT",
    "OPEN_STATUSES",
    "REASON_MESSAGES",
    "STOP_TYPES",
    "InstrumentInfo",
    "OrderEvent",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "RiskReason",
    "Side",
    "TimeInForce",
    "TradingState",
    "exact_product",
    "rupiah",
]

# Enough digits that quantity x price is exact for any realistic order; the ambient context (28 digits by default,
# changeable by any caller) is never relied on.
EXACT = Context(prec=60)
# Division (the average cost) to 34 significant digits (decimal128): |quantity| x avg_cost is then within 1e-15 of
# the rational value it stands for, for any cost basis below 10^18 rupiah (see positions.cost_basis).
DIVIDE = Context(prec=34)


class Side(StrEnum):
    buy = "buy"
    sell = "sell"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell: the direction the position moves."""
        return 1 if self is Side.buy else -1


class OrderType(StrEnum):
    market = "market"
    limit = "limit"
    stop = "stop"
    stop_limit = "stop_limit"


STOP_TYPES: frozenset[OrderType] = frozenset({OrderType.stop, OrderType.stop_limit})


class TimeInForce(StrEnum):
    day = "day"
    gtc = "gtc"
    ioc = "ioc"


class OrderStatus(StrEnum):
    new = "new"
    accepted = "accepted"
    partially_filled = "partially_filled"
    filled = "filled"
    rejected = "rejected"
    cancelled = "cancelled"
    expired = "expired"


CLOSED_STATUSES: frozenset[OrderStatus] = frozenset(
    {OrderStatus.filled, OrderStatus.rejected, OrderStatus.cancelled, OrderStatus.expired}
)
# Not closed: an order in one of these may still change (``new`` only until the risk engine has answered).
OPEN_STATUSES: frozenset[OrderStatus] = frozenset(OrderStatus) - CLOSED_STATUSES


class OrderEvent(StrEnum):
    accept = "accept"
    reject = "reject"
    partial_fill = "partial_fill"
    fill = "fill"
    cancel = "cancel"
    expire = "expire"
    amend = "amend"


class TradingState(StrEnum):
    """A tenant's trading state: ``reducing`` after the daily loss limit (only risk-reducing orders), ``halted``
    by the kill switch (no new or amended order at all; cancels are not orders and always pass)."""

    normal = "normal"
    reducing = "reducing"
    halted = "halted"


class RiskReason(StrEnum):
    """Stable reason codes of a pre-trade denial (stored on the rejected order, returned by the API)."""

    instrument_unknown = "instrument_unknown"
    instrument_not_tradable = "instrument_not_tradable"
    currency_not_supported = "currency_not_supported"
    invalid_quantity = "invalid_quantity"
    lot_size = "lot_size"
    tick_size = "tick_size"
    invalid_price = "invalid_price"
    reference_price_missing = "reference_price_missing"
    reference_price_stale = "reference_price_stale"
    session_closed = "session_closed"
    price_band = "price_band"
    price_collar = "price_collar"
    order_rate = "order_rate"
    daily_loss_limit = "daily_loss_limit"
    kill_switch = "kill_switch"
    max_order_value = "max_order_value"
    max_position = "max_position"
    gross_exposure = "gross_exposure"
    insufficient_position = "insufficient_position"
    insufficient_cash = "insufficient_cash"


REASON_MESSAGES: dict[RiskReason, str] = {
    RiskReason.instrument_unknown: "the instrument is not known",
    RiskReason.instrument_not_tradable: "the instrument is not tradable",
    RiskReason.currency_not_supported: "the instrument's currency is not the account currency",
    RiskReason.invalid_quantity: "the quantity must be a positive, finite number",
    RiskReason.lot_size: "the quantity is not a whole number of lots",
    RiskReason.tick_size: "the price is not on the tick grid",
    RiskReason.invalid_price: "the prices do not fit the order type, or a price is not positive",
    RiskReason.reference_price_missing: "there is no reference price for the instrument",
    RiskReason.reference_price_stale: "the reference price is too old",
    RiskReason.session_closed: "the market is not in continuous trading",
    RiskReason.price_band: "the price is outside the exchange's auto-rejection band",
    RiskReason.price_collar: "the price is outside the tenant's band around the reference price",
    RiskReason.order_rate: "too many orders in the last minute",
    RiskReason.daily_loss_limit: "the daily loss limit is reached: only orders that reduce a position are allowed",
    RiskReason.kill_switch: "trading is halted by the kill switch",
    RiskReason.max_order_value: "the order value exceeds the tenant's maximum",
    RiskReason.max_position: "the resulting position exceeds the tenant's maximum position value",
    RiskReason.gross_exposure: "the gross exposure would exceed the tenant's cap",
    RiskReason.insufficient_position: "selling more than the position, and the instrument does not allow shorting",
    RiskReason.insufficient_cash: "not enough available cash for the order value and commission",
}


def exact_product(quantity: Decimal, price: Decimal) -> Decimal:
    """``quantity x price`` without the rounding of the ambient decimal context."""
    return EXACT.multiply(quantity, price)


def rupiah(amount: Decimal) -> int:
    """``amount`` as whole rupiah, half-up (away from zero on a tie): the one rounding rule from Decimal to money."""
    return int(amount.to_integral_value(rounding=ROUND_HALF_UP))


def _is_positive(value: Decimal) -> bool:
    return value.is_finite() and value > 0


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order as a client submits (or amends) it, before any check."""

    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.day
    client_order_id: str | None = None

    def shape_problem(self) -> tuple[RiskReason, str] | None:
        """The first shape error with a specific message, or None. See :meth:`validate_shape`."""
        if not _is_positive(self.quantity):
            return RiskReason.invalid_quantity, f"quantity {self.quantity} is not a positive, finite number"
        needs_limit = self.type in (OrderType.limit, OrderType.stop_limit)
        needs_stop = self.type in STOP_TYPES
        for name, price, needed in (
            ("limit_price", self.limit_price, needs_limit),
            ("stop_price", self.stop_price, needs_stop),
        ):
            if needed and price is None:
                return RiskReason.invalid_price, f"a {self.type} order needs a {name}"
            if not needed and price is not None:
                return RiskReason.invalid_price, f"a {self.type} order takes no {name}"
            if price is not None and not _is_positive(price):
                return RiskReason.invalid_price, f"{name} {price} is not a positive, finite number"
        if self.time_in_force is TimeInForce.ioc and self.type not in (OrderType.market, OrderType.limit):
            return RiskReason.invalid_price, f"time in force ioc is only for market and limit orders, not {self.type}"
        return None

    def validate_shape(self) -> RiskReason | None:
        """The reason code of the first shape error, or None.

        quantity not positive or not finite -> invalid_quantity; a missing price the type needs, a price the type
        does not take (a market order with a price, a limit order with a stop price: ambiguous, so refused), a price
        not positive or not finite, or ioc on a stop/stop_limit -> invalid_price (the stable codes have no separate
        one for time in force; the message of :meth:`shape_problem` says which).
        """
        problem = self.shape_problem()
        return None if problem is None else problem[0]


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    """What the risk engine and the paper venue need to know of an instrument."""

    symbol: str
    lot_size: int
    tick_rule: str
    currency: str
    calendar: str
    is_tradable: bool
    allows_short: bool
    price_precision: int

    @classmethod
    def from_spec(cls, spec: InstrumentSpec, *, is_tradable: bool = True) -> InstrumentInfo:
        """From the market domain's instrument reference data (``market.instruments``)."""
        return cls(
            symbol=spec.symbol,
            lot_size=spec.lot_size,
            tick_rule=spec.tick_rule,
            currency=spec.currency,
            calendar=spec.calendar,
            is_tradable=is_tradable,
            allows_short=spec.allows_short,
            price_precision=spec.price_precision,
        )


def json_text(value: Any) -> str:
    """The JSON of order answers and of the rows written with them: compact, times in UTC end in "Z" (as the API's
    response models write them), decimals and UUIDs as strings."""
    return orjson.dumps(value, default=str, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS).decode()
