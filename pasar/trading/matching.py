"""The paper venue's matching rules: how one resting order meets one bar of market data (pure).

The venue sees bars, not a book, so the rules are deliberately simple and conservative:

* **Stops** (stop, stop_limit) trigger when the bar trades through the stop price (buy: high >= stop; sell:
  low <= stop). From then on a stop is a market order and a stop_limit a limit order, already in the bar that
  triggered it.
* **Market** orders fill at the bar's close, slipped (:class:`~pasar.trading.fees.SlippageModel`).
* **Limit** orders fill when the bar touches the limit (buy: low <= limit; sell: high >= limit). A buy whose bar opens
  at or below the limit gets the slipped open if that is still within the limit (the market gapped in its favour),
  else the limit; a sell is symmetric. A fill is therefore never worse than the limit.
* **Quantity**: at most ``participation`` x the bar's volume, in whole lots, and at most what remains: one order does
  not take the whole bar. No lot available (a thin or zero-volume bar) -> no fill.

Every fill price is on the tick grid (the slipped price is rounded away from the trader; limits are on it by the
risk engine's tick check).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from pasar.market.exchange import round_to_tick
from pasar.trading.fees import SlippageModel
from pasar.trading.models import EXACT, STOP_TYPES, OrderType, Side

__all__ = ["BarView", "Match", "MatchParams", "OpenOrder", "available_quantity", "match", "stop_triggered"]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class BarView:
    """The part of a market bar the venue uses."""

    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """A resting order as the venue sees it: what remains to fill and whether its stop has triggered already."""

    side: Side
    type: OrderType
    remaining: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    triggered: bool = False


@dataclass(frozen=True, slots=True)
class MatchParams:
    """The venue's settings for one instrument."""

    participation: Decimal
    lot_size: int
    tick_rule: str
    slippage: SlippageModel

    def __post_init__(self) -> None:
        if not (self.participation.is_finite() and 0 < self.participation <= 1):
            raise ValueError(f"participation must be in (0, 1], got {self.participation}")
        if self.lot_size <= 0:
            raise ValueError(f"lot_size must be positive, got {self.lot_size}")


@dataclass(frozen=True, slots=True)
class Match:
    """The outcome for one order and one bar: ``quantity`` at ``price``; ``triggered`` is True when the order is a
    stop whose stop has triggered (in this bar or before), so the service can record it. A stop that triggers but
    cannot fill in the same bar gives ``quantity == 0`` with ``price`` = the stop price."""

    quantity: Decimal
    price: Decimal
    triggered: bool


def stop_triggered(side: Side, stop_price: Decimal, bar: BarView) -> bool:
    """Whether ``bar`` traded through ``stop_price`` (buy: high >= stop; sell: low <= stop)."""
    return bar.high >= stop_price if side is Side.buy else bar.low <= stop_price


def available_quantity(bar: BarView, params: MatchParams) -> Decimal:
    """Whole lots of ``participation`` x the bar's volume (0 for a zero-volume bar)."""
    if bar.volume <= 0:
        return ZERO
    lots = EXACT.divide(EXACT.multiply(params.participation, bar.volume), Decimal(params.lot_size))
    return lots.to_integral_value(rounding=ROUND_FLOOR) * params.lot_size


def _slipped(price: Decimal, side: Side, params: MatchParams) -> Decimal:
    slipped = params.slippage.apply(price, side, params.tick_rule)
    return round_to_tick(slipped, params.tick_rule, "up" if side is Side.buy else "down")  # a no-op when on the grid


def _limit_price(side: Side, limit: Decimal, bar: BarView, params: MatchParams) -> Decimal | None:
    """The fill price of a limit order in ``bar``, or None when the bar does not touch the limit."""
    if side is Side.buy:
        if bar.low > limit:
            return None
        return min(limit, _slipped(bar.open, side, params)) if bar.open <= limit else limit
    if bar.high < limit:
        return None
    return max(limit, _slipped(bar.open, side, params)) if bar.open >= limit else limit


def match(order: OpenOrder, bar: BarView, params: MatchParams) -> Match | None:
    """How much of ``order`` fills in ``bar`` and at what price; None when nothing happens (see the module
    docstring). A Match with quantity 0 reports a stop that triggered in this bar without filling."""
    if order.remaining <= 0:
        return None
    is_stop = order.type in STOP_TYPES
    fresh_trigger = False
    if is_stop and not order.triggered:
        if order.stop_price is None:
            raise ValueError(f"a {order.type} order needs a stop price")
        if not stop_triggered(order.side, order.stop_price, bar):
            return None
        fresh_trigger = True
    if order.type in (OrderType.market, OrderType.stop):
        price: Decimal | None = _slipped(bar.close, order.side, params)
    else:
        if order.limit_price is None:
            raise ValueError(f"a {order.type} order needs a limit price")
        price = _limit_price(order.side, order.limit_price, bar, params)
    quantity = min(order.remaining, available_quantity(bar, params))
    if price is None or quantity <= 0:
        if fresh_trigger:
            assert order.stop_price is not None
            return Match(ZERO, order.stop_price, True)
        return None
    return Match(quantity, price, is_stop)
