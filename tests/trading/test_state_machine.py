"""The order lifecycle over the full (status, event) product: only the listed transitions exist."""

from __future__ import annotations

import itertools

import pytest

from pasar.trading.models import CLOSED_STATUSES, OPEN_STATUSES, OrderEvent, OrderStatus
from pasar.trading.state_machine import TRANSITIONS, IllegalTransition, allowed_events, is_closed, transition

S, E = OrderStatus, OrderEvent

# The specification, written out independently of the module's table.
EXPECTED = {
    (S.new, E.accept): S.accepted,
    (S.new, E.reject): S.rejected,
    (S.accepted, E.partial_fill): S.partially_filled,
    (S.accepted, E.fill): S.filled,
    (S.accepted, E.cancel): S.cancelled,
    (S.accepted, E.expire): S.expired,
    (S.accepted, E.amend): S.accepted,
    (S.partially_filled, E.partial_fill): S.partially_filled,
    (S.partially_filled, E.amend): S.partially_filled,
    (S.partially_filled, E.fill): S.filled,
    (S.partially_filled, E.cancel): S.cancelled,
    (S.partially_filled, E.expire): S.expired,
}

ALL_PAIRS = list(itertools.product(OrderStatus, OrderEvent))


def test_the_table_is_exactly_the_specification() -> None:
    assert dict(TRANSITIONS) == EXPECTED


@pytest.mark.parametrize(("status", "event"), ALL_PAIRS, ids=[f"{s}-{e}" for s, e in ALL_PAIRS])
def test_every_status_event_pair(status: OrderStatus, event: OrderEvent) -> None:
    if (status, event) in EXPECTED:
        assert transition(status, event) is EXPECTED[(status, event)]
    else:
        with pytest.raises(IllegalTransition) as raised:
            transition(status, event)
        assert status.value in str(raised.value)
        assert event.value in str(raised.value)
        assert raised.value.status is status
        assert raised.value.event is event


@pytest.mark.parametrize("status", sorted(CLOSED_STATUSES))
def test_closed_statuses_absorb_every_event(status: OrderStatus) -> None:
    assert is_closed(status)
    assert allowed_events(status) == frozenset()
    for event in OrderEvent:
        with pytest.raises(IllegalTransition, match="absorbs"):
            transition(status, event)


def test_open_and_closed_partition_the_statuses() -> None:
    assert frozenset(OrderStatus) == OPEN_STATUSES | CLOSED_STATUSES
    assert not OPEN_STATUSES & CLOSED_STATUSES
    assert {S.new, S.accepted, S.partially_filled} == OPEN_STATUSES
    assert not any(is_closed(status) for status in OPEN_STATUSES)


def test_a_fill_after_a_cancel_is_illegal() -> None:
    status = transition(transition(S.new, E.accept), E.cancel)
    with pytest.raises(IllegalTransition):
        transition(status, E.fill)


def test_a_lifecycle_with_partial_fills_and_an_amend() -> None:
    status = S.new
    for event in (E.accept, E.amend, E.partial_fill, E.amend, E.partial_fill, E.fill):
        status = transition(status, event)
    assert status is S.filled


def test_transition_accepts_the_stored_string_values() -> None:
    assert transition(OrderStatus("accepted"), OrderEvent("fill")) is S.filled
