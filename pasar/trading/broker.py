"""The broker adapter interface: where an order goes once the risk engine has accepted it, and the paper venue.

A venue is a :class:`Broker`. This platform runs one, :class:`PaperBroker`: it fills orders against the bars of
``market.bars`` by the rules of :mod:`pasar.trading.matching`. A live venue (an IDX member broker's order API) would
be another implementation: ``submit`` sends the order and answers None (its executions arrive later, as execution
reports, each booked once by its ``execution_id``, as the paper venue's are), and ``match`` answers None (the venue
matches on its side). Forwarding cancels and amendments would come with such an adapter; the paper venue keeps no
orders of its own, so the service has nothing to tell it then.

The risk engine is the only way to reach a broker: ``submit`` takes an :class:`~pasar.trading.risk.ApprovedOrder`,
which only :func:`pasar.trading.risk.approve` makes, from an accepted decision. ``match`` takes orders resting at the
venue, which were approved when they were accepted (or amended).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol
from uuid import UUID

from pasar.trading.fees import SlippageModel
from pasar.trading.matching import BarView, MatchParams, OpenOrder, match
from pasar.trading.risk import ApprovedOrder

__all__ = ["Broker", "Execution", "PaperBroker"]


@dataclass(frozen=True, slots=True)
class Execution:
    """What a venue reports for one order: ``quantity`` at ``price``, under the venue's ``execution_id`` (fills are
    idempotent by it). ``triggered``: the order is a stop whose stop has triggered; a stop that triggers without
    filling is reported with quantity 0."""

    execution_id: str
    quantity: Decimal
    price: Decimal
    triggered: bool


class Broker(Protocol):
    """A venue as the trading service sees it."""

    @property
    def venue(self) -> str:
        """The venue's name, which prefixes its execution ids."""
        ...

    def submit(self, order: ApprovedOrder, bar: BarView) -> Execution | None:
        """Send a newly accepted order; what executes at once, with ``bar`` the latest market data, or None."""
        ...

    def match(
        self, order_id: UUID, order: OpenOrder, bar: BarView, *, lot_size: int, tick_rule: str
    ) -> Execution | None:
        """A resting order against a new bar: what executes in it, or None."""
        ...


class PaperBroker:
    """The paper venue: a tenant's participation in each bar's volume and its slippage model (``trading`` config)."""

    venue = "paper"

    def __init__(self, *, participation: Decimal, slippage: SlippageModel) -> None:
        self.participation = participation
        self.slippage = slippage

    def submit(self, order: ApprovedOrder, bar: BarView) -> Execution | None:
        request = order.request
        opened = OpenOrder(
            side=request.side,
            type=request.type,
            remaining=request.quantity,
            limit_price=request.limit_price,
            stop_price=request.stop_price,
        )
        instrument = order.instrument
        return self.match(order.order_id, opened, bar, lot_size=instrument.lot_size, tick_rule=instrument.tick_rule)

    def match(
        self, order_id: UUID, order: OpenOrder, bar: BarView, *, lot_size: int, tick_rule: str
    ) -> Execution | None:
        params = MatchParams(
            participation=self.participation, lot_size=lot_size, tick_rule=tick_rule, slippage=self.slippage
        )
        result = match(order, bar, params)
        if result is None:
            return None
        # One execution per order and bar: matching the same bar again reports the same id, booked once.
        execution_id = f"{self.venue}:{order_id}:{bar.ts.isoformat()}"
        return Execution(execution_id, result.quantity, result.price, result.triggered)
