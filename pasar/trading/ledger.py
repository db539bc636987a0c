"""The double-entry cash ledger: append-only entries of balanced lines, whole rupiah.

Sign convention: a debit is positive, a credit negative, and every entry's lines sum to zero, so the balances of all
accounts always sum to zero. Reading the balances:

* ``cash``           the money held (asset, debit balance);
* ``capital``        the owner's net deposits (credit balance: ``-capital`` = deposits - withdrawals);
* ``securities``     the cost basis of the holdings, signed like the positions (a short's is a credit: proceeds the
                     account owes back) -- equal to the sum of :func:`~pasar.trading.positions.cost_basis`;
* ``fees``, ``taxes`` commission and sell tax paid (expenses, debit balances);
* ``realized_pnl``   realized trading P&L (credit balance for a gain: ``-realized_pnl`` = the P&L).

A correction is a new entry, never an edit: :class:`Entry` is frozen and refuses to exist unbalanced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pasar.trading.fees import Costs
from pasar.trading.models import Side

__all__ = ["Account", "Entry", "Line", "balances", "deposit", "fill", "withdrawal"]


class Account(StrEnum):
    cash = "cash"
    capital = "capital"
    securities = "securities"
    fees = "fees"
    taxes = "taxes"
    realized_pnl = "realized_pnl"


def _whole(amount: object, what: str) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"{what} must be an int of whole rupiah, got {type(amount).__name__}")
    return amount


@dataclass(frozen=True, slots=True)
class Line:
    """One posting: ``amount`` > 0 debits ``account``, < 0 credits it."""

    account: Account
    amount: int

    def __post_init__(self) -> None:
        _whole(self.amount, "a line amount")


@dataclass(frozen=True, slots=True)
class Entry:
    """A balanced set of lines of one kind (``deposit``, ``withdrawal``, ``fill``). ValueError if unbalanced.

    Zero amounts are left out, so a fill too small to be worth a rupiah has no lines (and still balances)."""

    kind: str
    lines: tuple[Line, ...]

    def __post_init__(self) -> None:
        if not self.balanced:
            raise ValueError(f"unbalanced {self.kind} entry: lines sum to {self.total}, not 0")

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def balanced(self) -> bool:
        return self.total == 0

    def amount(self, account: Account) -> int:
        """The net amount this entry posts to ``account``."""
        return sum(line.amount for line in self.lines if line.account is account)


def _entry(kind: str, *lines: tuple[Account, int]) -> Entry:
    """An entry of the non-zero ``lines`` (a zero tax or commission posts nothing)."""
    return Entry(kind, tuple(Line(account, amount) for account, amount in lines if amount != 0))


def _positive(amount: int, what: str) -> int:
    if _whole(amount, what) <= 0:
        raise ValueError(f"{what} must be positive, got {amount}")
    return amount


def deposit(amount: int) -> Entry:
    """The owner pays in ``amount``: cash up, capital credited."""
    amount = _positive(amount, "a deposit")
    return _entry("deposit", (Account.cash, amount), (Account.capital, -amount))


def withdrawal(amount: int) -> Entry:
    """The owner takes out ``amount``: cash down, capital debited. (Whether the cash is there is the service's
    check against available cash; the ledger only records.)"""
    amount = _positive(amount, "a withdrawal")
    return _entry("withdrawal", (Account.cash, -amount), (Account.capital, amount))


def fill(side: Side, value: int, costs: Costs, cost_basis_released: int, realized: int) -> Entry:
    """The entry of one fill of trade ``value`` with its ``costs``; ``cost_basis_released`` and ``realized`` come
    from :func:`~pasar.trading.positions.fill_effect` (a magnitude, and the P&L realized by the fill).

    Cash moves by the value and the costs; ``securities`` moves by the signed change of the cost basis; the realized
    P&L is credited. For a long position this is the textbook entry (buy: securities +value; sell: securities
    -released, realized_pnl -(value - released)); the general form below also books shorts: a sell opening a short
    credits securities with its proceeds, a buy covering one debits the basis it releases and realizes the rest.
    Balanced by construction:

    * buy:  cash -(value + commission), fees +commission, securities +(value + realized), realized_pnl -realized
    * sell: cash +(value - commission - tax), fees +commission, taxes +tax, securities -(value - realized),
      realized_pnl -realized
    """
    value = _whole(value, "a trade value")
    released = _whole(cost_basis_released, "the cost basis released")
    realized = _whole(realized, "the realized P&L")
    if value < 0 or released < 0 or costs.commission < 0 or costs.tax < 0:
        raise ValueError("a fill's value, costs and released cost basis are never negative")
    # The closing part of the fill is worth released + realized (sell) or released - realized (buy), between 0 and
    # the whole value; anything else cannot come from one fill.
    close_value = released + realized if side is Side.sell else released - realized
    if not 0 <= close_value <= value:
        raise ValueError(
            f"inconsistent {side} fill: value {value}, cost basis released {released}, realized {realized}"
        )
    if side is Side.buy:
        if costs.tax:
            raise ValueError("a buy pays no sell tax")
        return _entry(
            "fill",
            (Account.cash, -(value + costs.commission)),
            (Account.fees, costs.commission),
            (Account.securities, value + realized),
            (Account.realized_pnl, -realized),
        )
    return _entry(
        "fill",
        (Account.cash, value - costs.commission - costs.tax),
        (Account.fees, costs.commission),
        (Account.taxes, costs.tax),
        (Account.securities, -(value - realized)),
        (Account.realized_pnl, -realized),
    )


def balances(entries: Iterable[Entry]) -> dict[Account, int]:
    """Every account's balance (debit positive) over ``entries``; accounts never posted to are 0."""
    totals = dict.fromkeys(Account, 0)
    for entry in entries:
        for line in entry.lines:
            totals[line.account] += line.amount
    return totals
