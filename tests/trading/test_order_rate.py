"""The order-rate window on the account row agrees with counting the orders of the last 60 seconds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pasar.trading.order_rate import WINDOW_SECONDS, OrderRateWindow

EMPTY = OrderRateWindow(0, (0,) * WINDOW_SECONDS)
START = 1_790_000_000  # a second in 2026


def at(second: float) -> datetime:
    return datetime.fromtimestamp(second, UTC)


def test_orders_leave_the_window_a_minute_after_their_second() -> None:
    window = EMPTY.at(at(START + 0.9)).counting_one().counting_one()
    window = window.at(at(START + 30)).counting_one()
    assert window.orders == 3
    assert window.at(at(START + 59.999)).orders == 3
    assert window.at(at(START + 60)).orders == 1  # second START left the window
    assert window.at(at(START + 90)).orders == 0
    assert window.at(at(START + 10_000)).orders == 0


def test_a_moment_behind_the_newest_second_counts_in_it() -> None:
    """A transaction that began before another but locked the account after it has an older now()."""
    window = EMPTY.at(at(START + 5)).counting_one()
    behind = window.at(at(START + 3))
    assert behind == window
    assert behind.counting_one().counts[(START + 5) % WINDOW_SECONDS] == 2


def test_the_window_has_sixty_buckets() -> None:
    with pytest.raises(ValueError, match="60 buckets"):
        OrderRateWindow(START, (0,) * 59)
    assert OrderRateWindow.of_account({"order_rate_second": START, "order_rate_counts": [1] * 60}).orders == 60


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=80).map(sorted))
def test_the_window_matches_a_count_of_the_orders_in_the_last_sixty_seconds(offsets: list[int]) -> None:
    window, placed = EMPTY, list[int]()
    for offset in offsets:
        now = START + offset
        window = window.at(at(now))
        assert window.orders == sum(1 for second in placed if second > now - WINDOW_SECONDS)
        window = window.counting_one()
        placed.append(now)
