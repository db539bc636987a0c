"""A tenant's orders of the last minute, counted in one-second buckets kept on its account row.

The pre-trade check "order rate above the tenant's limit" needs the number of orders created in the last minute.
Counting order rows costs more the faster a tenant trades (at a few hundred orders a second the index range holds
thousands of fresh rows, each visited in the heap); sixty counters on the account row, which every order locks and
writes anyway, cost the same at any rate. The window is exact to the second: it holds the orders of the current
second and of the 59 before it, by the database's clock (the transaction's ``now()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

WINDOW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class OrderRateWindow:
    """``counts[s % 60]`` is the number of orders created in second ``s`` (Unix time), for the 60 seconds ending at
    ``second``, the newest one counted."""

    second: int
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.counts) != WINDOW_SECONDS:
            raise ValueError(f"an order rate window has {WINDOW_SECONDS} buckets, not {len(self.counts)}")

    @classmethod
    def of_account(cls, account: dict[str, Any]) -> OrderRateWindow:
        return cls(int(account["order_rate_second"]), tuple(account["order_rate_counts"]))

    def at(self, moment: datetime) -> OrderRateWindow:
        """The window ending at ``moment``'s second: the buckets of the seconds that left it emptied. A moment before
        the newest second counted (a transaction that began earlier but locked the account later) keeps the window
        as it is, so its order is counted in that newest second."""
        second = int(moment.timestamp())
        if second <= self.second:
            return self
        if second - self.second >= WINDOW_SECONDS:
            return OrderRateWindow(second, (0,) * WINDOW_SECONDS)
        counts = list(self.counts)
        for gone in range(self.second + 1, second + 1):
            counts[gone % WINDOW_SECONDS] = 0
        return OrderRateWindow(second, tuple(counts))

    @property
    def orders(self) -> int:
        return sum(self.counts)

    def counting_one(self) -> OrderRateWindow:
        """The window with one more order in its newest second."""
        counts = list(self.counts)
        counts[self.second % WINDOW_SECONDS] += 1
        return OrderRateWindow(self.second, tuple(counts))
