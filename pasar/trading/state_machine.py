"""The order lifecycle as an explicit transition table.

new -> accepted -> partially_filled -> filled, with rejected / cancelled / expired as the other ends. The table is
the whole truth: a pair that is not in it is illegal, so the closed statuses absorb every event (a fill after a
cancel is an error to alert on, never a silent reopening). ``amend`` keeps the status: an amended order is re-checked
by the risk engine but stays in the book with its fills.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pasar.trading.models import CLOSED_STATUSES, OrderEvent, OrderStatus

__all__ = ["TRANSITIONS", "IllegalTransition", "allowed_events", "is_closed", "transition"]

_S = OrderStatus
_E = OrderEvent

TRANSITIONS: Mapping[tuple[OrderStatus, OrderEvent], OrderStatus] = MappingProxyType(
    {
        (_S.new, _E.accept): _S.accepted,
        (_S.new, _E.reject): _S.rejected,
        (_S.accepted, _E.partial_fill): _S.partially_filled,
        (_S.accepted, _E.fill): _S.filled,
        (_S.accepted, _E.cancel): _S.cancelled,
        (_S.accepted, _E.expire): _S.expired,
        (_S.accepted, _E.amend): _S.accepted,
        (_S.partially_filled, _E.partial_fill): _S.partially_filled,
        (_S.partially_filled, _E.amend): _S.partially_filled,
        (_S.partially_filled, _E.fill): _S.filled,
        (_S.partially_filled, _E.cancel): _S.cancelled,
        (_S.partially_filled, _E.expire): _S.expired,
    }
)


class IllegalTransition(Exception):
    """An event that the order's current status does not admit."""

    def __init__(self, status: OrderStatus, event: OrderEvent) -> None:
        self.status = status
        self.event = event
        closed = " (a closed status absorbs every event)" if is_closed(status) else ""
        super().__init__(f"illegal order transition: event {event.value!r} in status {status.value!r}{closed}")


def transition(status: OrderStatus, event: OrderEvent) -> OrderStatus:
    """The status after ``event``; :class:`IllegalTransition` when the pair is not in :data:`TRANSITIONS`."""
    try:
        return TRANSITIONS[(OrderStatus(status), OrderEvent(event))]
    except KeyError:
        raise IllegalTransition(OrderStatus(status), OrderEvent(event)) from None


def is_closed(status: OrderStatus) -> bool:
    """Whether ``status`` is final (filled, rejected, cancelled, expired)."""
    return status in CLOSED_STATUSES


def allowed_events(status: OrderStatus) -> frozenset[OrderEvent]:
    """The events ``status`` admits (empty for a closed status)."""
    return frozenset(event for (source, event) in TRANSITIONS if source == status)
