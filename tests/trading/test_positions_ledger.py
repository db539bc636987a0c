"""Positions, P&L and the double-entry ledger: hand-computed examples and hypothesis properties.

The reconciliation is exact, with no tolerance: fills move an integer cost basis (see ``pasar.trading.positions``),
so after any sequence of deposits, withdrawals and fills, to the rupiah,

    cash + market value == deposits - withdrawals - fees - taxes + realized + unrealized.

The only approximation anywhere is the documented one between a fill's realized P&L and the textbook
``round((price - avg_cost) x closed)``: at most one rupiah apart (asserted below), exactly equal on whole numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pasar.market.exchange import round_to_tick
from pasar.trading import ledger
from pasar.trading.fees import Costs, FeeModel, trade_value
from pasar.trading.ledger import Account, Entry, Line, balances
from pasar.trading.models import DIVIDE, Side, exact_product, rupiah
from pasar.trading.positions import (
    Position,
    apply_fill,
    cost_basis,
    fill_effect,
    market_value,
    unrealized_pnl,
)

D = Decimal
FEES = FeeModel()
SEEDED = settings(derandomize=True, max_examples=300, deadline=None)


# Hand-computed positions -------------------------------------------------------------------------------------


def test_average_cost_round_trip_through_a_short() -> None:
    position = Position()
    position, realized = apply_fill(position, Side.buy, D(1000), D(9000))
    assert (position, realized) == (Position(D(1000), D(9000), 0), 0)
    position, realized = apply_fill(position, Side.buy, D(1000), D(9100))
    assert (position.quantity, position.avg_cost, realized) == (D(2000), D(9050), 0)  # re-averaged
    assert cost_basis(position) == 18_100_000
    position, realized = apply_fill(position, Side.sell, D(500), D(9200))
    assert realized == 500 * (9200 - 9050)  # 75,000
    assert (position.quantity, position.avg_cost) == (D(1500), D(9050))  # the average does not move on a reduction
    position, realized = apply_fill(position, Side.sell, D(2500), D(9000))  # through zero
    assert realized == 1500 * (9000 - 9050)  # -75,000 on the closed 1,500
    assert (position.quantity, position.avg_cost) == (D(-1000), D(9000))  # the rest opened short at the fill price
    assert cost_basis(position) == -9_000_000
    position, realized = apply_fill(position, Side.buy, D(1000), D(8800))  # cover
    assert realized == 1000 * (9000 - 8800)  # 200,000
    assert position == Position(D(0), D(0), 75_000 - 75_000 + 200_000)


def test_market_value_and_unrealized_pnl() -> None:
    long = Position(D(1000), D(9050), 0)
    assert market_value(long, D(9100)) == 9_100_000
    assert unrealized_pnl(long, D(9100)) == 50_000
    short = Position(D(-1000), D(9000), 0)
    assert market_value(short, D(8900)) == -8_900_000
    assert cost_basis(short) == -9_000_000
    assert unrealized_pnl(short, D(8900)) == 100_000  # the short gains as the price falls
    flat = Position()
    assert (market_value(flat, D(9000)), cost_basis(flat), unrealized_pnl(flat, D(9000))) == (0, 0, 0)


def test_fractional_prices_keep_an_integer_basis() -> None:
    # 3 units at 0.5 cost 1.5 -> 2 rupiah (half-up); the average is 2/3, and 3 x avg rounds back to 2.
    position, _ = apply_fill(Position(), Side.buy, D(3), D("0.5"))
    assert cost_basis(position) == 2
    assert position.avg_cost == DIVIDE.divide(D(2), D(3))
    effect = fill_effect(position, Side.sell, D(1), D("0.5"))  # value 1 (0.5 -> 1), releases 2 - round(4/3) = 1
    assert (effect.value, effect.cost_basis_released, effect.realized) == (1, 1, 0)
    assert cost_basis(effect.position) == 1


def test_a_tie_in_the_remaining_basis_rounds_half_up() -> None:
    # 46 units for 273 rupiah (31 at 0.01 -> 0, 15 at 18.17 -> 272.55 -> 273); half of them carry 136.5 of basis, which
    # the 34-digit average (273/46 = 5.9347826...) would cut to 136.4999...: the remaining half keeps 137.
    position, _ = apply_fill(Position(), Side.buy, D(31), D("0.01"))
    position, _ = apply_fill(position, Side.buy, D(15), D("18.17"))
    assert cost_basis(position) == 273
    effect = fill_effect(position, Side.sell, D(23), D("0.01"))
    assert cost_basis(effect.position) == 137
    assert (effect.cost_basis_released, effect.realized) == (136, 0 - 136)


def test_realized_pnl_of_a_round_trip_equals_the_hand_computation() -> None:
    position, _ = apply_fill(Position(), Side.buy, D(500), D(1250))
    position, _ = apply_fill(position, Side.buy, D(300), D(1300))
    position, realized = apply_fill(position, Side.sell, D(800), D(1400))
    # bought 625,000 + 390,000 = 1,015,000; sold 1,120,000
    assert realized == position.realized_pnl == 1_120_000 - 1_015_000


@pytest.mark.parametrize(("quantity", "price"), [(D(0), D(9000)), (D(-100), D(9000)), (D(100), D(0)), (D("NaN"), D(1))])
def test_apply_fill_refuses_nonsense(quantity: Decimal, price: Decimal) -> None:
    with pytest.raises(ValueError, match="fill"):
        apply_fill(Position(), Side.buy, quantity, price)


# Hand-computed ledger ----------------------------------------------------------------------------------------


def lines(entry: Entry) -> dict[Account, int]:
    return {line.account: line.amount for line in entry.lines}


def test_deposit_and_withdrawal() -> None:
    assert lines(ledger.deposit(10_000_000)) == {Account.cash: 10_000_000, Account.capital: -10_000_000}
    assert lines(ledger.withdrawal(4_000_000)) == {Account.cash: -4_000_000, Account.capital: 4_000_000}
    total = balances([ledger.deposit(10_000_000), ledger.withdrawal(4_000_000)])
    assert total[Account.cash] == 6_000_000
    assert total[Account.fees] == 0  # every account is present


@pytest.mark.parametrize("amount", [0, -1])
def test_deposit_and_withdrawal_must_be_positive(amount: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        ledger.deposit(amount)
    with pytest.raises(ValueError, match="positive"):
        ledger.withdrawal(amount)


def test_money_is_int() -> None:
    with pytest.raises(TypeError, match="int"):
        ledger.deposit(D(100))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int"):
        Line(Account.cash, True)


def test_an_unbalanced_entry_cannot_exist() -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        Entry("manual", (Line(Account.cash, 100), Line(Account.capital, -99)))


def test_buy_and_sell_entries_of_ten_lots_of_bbca() -> None:
    buy = ledger.fill(Side.buy, 9_000_000, FEES.costs(Side.buy, 9_000_000), 0, 0)
    assert lines(buy) == {Account.cash: -9_013_500, Account.fees: 13_500, Account.securities: 9_000_000}
    position, _ = apply_fill(Position(), Side.buy, D(1000), D(9000))
    effect = fill_effect(position, Side.sell, D(1000), D(9100))
    assert (effect.value, effect.cost_basis_released, effect.realized) == (9_100_000, 9_000_000, 100_000)
    sell = ledger.fill(Side.sell, effect.value, FEES.costs(Side.sell, effect.value), 9_000_000, 100_000)
    assert lines(sell) == {
        Account.cash: 9_077_250,  # 9,100,000 - 13,650 - 9,100
        Account.fees: 13_650,
        Account.taxes: 9_100,
        Account.securities: -9_000_000,
        Account.realized_pnl: -100_000,
    }
    assert buy.balanced
    assert sell.balanced


def test_short_entries() -> None:
    opening = ledger.fill(Side.sell, 9_000_000, FEES.costs(Side.sell, 9_000_000), 0, 0)
    assert lines(opening)[Account.securities] == -9_000_000  # the proceeds are owed back, not a gain
    assert Account.realized_pnl not in lines(opening)
    cover = ledger.fill(Side.buy, 8_800_000, FEES.costs(Side.buy, 8_800_000), 9_000_000, 200_000)
    assert lines(cover) == {
        Account.cash: -8_813_200,
        Account.fees: 13_200,
        Account.securities: 9_000_000,
        Account.realized_pnl: -200_000,
    }


@pytest.mark.parametrize(
    ("side", "value", "released", "realized"),
    [(Side.sell, 100, 90, 20), (Side.buy, 100, 0, 5), (Side.sell, 100, 10, -20), (Side.sell, -1, 0, 0)],
)
def test_an_inconsistent_fill_is_refused(side: Side, value: int, released: int, realized: int) -> None:
    with pytest.raises(ValueError, match="fill"):
        ledger.fill(side, value, Costs(0, 0), released, realized)


def test_a_buy_pays_no_tax() -> None:
    with pytest.raises(ValueError, match="tax"):
        ledger.fill(Side.buy, 100, Costs(1, 1), 0, 0)


# The account model used by the properties --------------------------------------------------------------------


@dataclass(frozen=True)
class Instrument:
    symbol: str
    lot_size: int
    tick_rule: str
    min_price: Decimal
    max_price: Decimal


# An IDX stock (whole rupiah, tick tiers) and a 2-decimal instrument whose trade values need rounding.
INSTRUMENTS = (
    Instrument("BBCA", 100, "idx_equity", D(50), D(20_000)),
    Instrument("XYZ", 1, "decimal:2", D("0.01"), D(500)),
)


@dataclass
class Book:
    """An account driven through the pure modules, with independent running totals to check them against."""

    entries: list[Entry] = field(default_factory=list)
    positions: dict[str, Position] = field(default_factory=lambda: {i.symbol: Position() for i in INSTRUMENTS})
    marks: dict[str, Decimal] = field(default_factory=lambda: {"BBCA": D(9000), "XYZ": D("1.23")})
    deposits: int = 0
    withdrawals: int = 0
    cash_deltas: int = 0
    commissions: int = 0
    taxes: int = 0
    filled: dict[str, Decimal] = field(default_factory=lambda: {i.symbol: D(0) for i in INSTRUMENTS})
    realized: int = 0

    @property
    def cash(self) -> int:
        return balances(self.entries)[Account.cash]

    def deposit(self, amount: int) -> None:
        self.entries.append(ledger.deposit(amount))
        self.deposits += amount

    def withdraw(self, amount: int) -> None:
        self.entries.append(ledger.withdrawal(amount))
        self.withdrawals += amount

    def fill(self, symbol: str, side: Side, quantity: Decimal, price: Decimal) -> bool:
        """Apply the fill if cash allows (no margin): False when it was skipped."""
        value = trade_value(quantity, price)
        delta = FEES.cash_delta(side, value)
        if self.cash + delta < 0:
            return False
        before = self.positions[symbol]
        effect = fill_effect(before, side, quantity, price)
        assert effect.value == value
        assert apply_fill(before, side, quantity, price) == (effect.position, effect.realized)
        self._check_realized_against_the_textbook(before, side, quantity, price, effect.realized)
        costs = FEES.costs(side, value)
        self.entries.append(ledger.fill(side, value, costs, effect.cost_basis_released, effect.realized))
        self.positions[symbol] = effect.position
        self.marks[symbol] = price
        self.cash_deltas += delta
        self.commissions += costs.commission
        self.taxes += costs.tax
        self.filled[symbol] += quantity if side is Side.buy else -quantity
        self.realized += effect.realized
        return True

    @staticmethod
    def _check_realized_against_the_textbook(
        before: Position, side: Side, quantity: Decimal, price: Decimal, realized: int
    ) -> None:
        """A reduction realizes round((price - avg) x closed) give or take the documented rupiah."""
        reduces = before.quantity != 0 and (before.quantity > 0) != (side is Side.buy)
        if not reduces or quantity > abs(before.quantity):
            return
        direction = 1 if before.quantity > 0 else -1
        textbook = rupiah((price - before.avg_cost) * quantity * direction)
        assert abs(realized - textbook) <= 1

    def check(self) -> None:
        total = balances(self.entries)
        assert all(entry.balanced and sum(line.amount for line in entry.lines) == 0 for entry in self.entries)
        assert sum(total.values()) == 0
        assert total[Account.cash] == self.deposits - self.withdrawals + self.cash_deltas
        assert total[Account.cash] >= 0  # no margin
        assert -total[Account.capital] == self.deposits - self.withdrawals
        assert total[Account.fees] == self.commissions
        assert total[Account.taxes] == self.taxes
        for symbol, position in self.positions.items():
            assert position.quantity == self.filled[symbol]  # position = signed sum of fills
            if position.quantity == 0:
                assert position.avg_cost == 0
            # avg_cost is the rupiah basis per unit: |quantity| x avg_cost rounds to the integer basis (a tie cut to
            # x.4999... by the 34-digit average counts as x.5: hence the 1e-12)
            product = exact_product(abs(position.quantity), position.avg_cost)
            assert abs(product - abs(cost_basis(position))) <= D("0.5") + D("1e-12")
        assert total[Account.securities] == sum(cost_basis(p) for p in self.positions.values())
        assert -total[Account.realized_pnl] == self.realized == sum(p.realized_pnl for p in self.positions.values())
        for marks in (self.marks, {symbol: D(77) for symbol in self.marks}):  # at the last prices and elsewhere
            value = sum(market_value(p, marks[s]) for s, p in self.positions.items())
            unrealized = sum(unrealized_pnl(p, marks[s]) for s, p in self.positions.items())
            assert total[Account.cash] + value == (
                self.deposits - self.withdrawals - self.commissions - self.taxes + self.realized + unrealized
            )


@st.composite
def prices(draw: st.DrawFn, instrument: Instrument) -> Decimal:
    places = 0 if instrument.tick_rule == "idx_equity" else 2
    raw = draw(st.decimals(instrument.min_price, instrument.max_price, places=places))
    return round_to_tick(raw, instrument.tick_rule, "nearest")


@st.composite
def fills(draw: st.DrawFn) -> tuple[str, Side, Decimal, Decimal]:
    instrument = draw(st.sampled_from(INSTRUMENTS))
    lots = draw(st.integers(1, 60))
    return instrument.symbol, draw(st.sampled_from(Side)), D(lots * instrument.lot_size), draw(prices(instrument))


operations = st.one_of(
    st.tuples(st.just("deposit"), st.integers(1, 500_000_000)),
    st.tuples(st.just("withdraw"), st.integers(1, 500_000_000)),
    st.tuples(st.just("fill"), fills()),
)


@SEEDED
@given(st.lists(operations, max_size=40))
def test_any_sequence_reconciles_after_every_step(ops: list[tuple[str, object]]) -> None:
    book = Book()
    for kind, argument in ops:
        if kind == "deposit":
            assert isinstance(argument, int)
            book.deposit(argument)
        elif kind == "withdraw":
            assert isinstance(argument, int)
            if book.cash > 0:
                book.withdraw(min(argument, book.cash))  # never below zero cash
        else:
            assert isinstance(argument, tuple)
            book.fill(*argument)
        book.check()


@SEEDED
@given(
    buys=st.lists(st.tuples(st.integers(1, 50), prices(INSTRUMENTS[0])), min_size=1, max_size=8),
    exit_price=prices(INSTRUMENTS[0]),
)
def test_a_round_trip_realizes_sells_minus_buys(buys: list[tuple[int, Decimal]], exit_price: Decimal) -> None:
    position = Position()
    for lots, price in buys:
        position, realized = apply_fill(position, Side.buy, D(lots * 100), price)
        assert realized == 0
    quantity = sum((D(lots * 100) for lots, _ in buys), D(0))
    bought = sum(lots * 100 * int(price) for lots, price in buys)
    assert position.quantity == quantity
    assert position.avg_cost == DIVIDE.divide(D(bought), quantity)  # the volume-weighted average price
    position, realized = apply_fill(position, Side.sell, quantity, exit_price)
    assert realized == int(quantity * exit_price) - bought
    assert position == Position(D(0), D(0), realized)


@SEEDED
@given(
    opening=st.tuples(st.integers(1, 50), prices(INSTRUMENTS[1])),
    closes=st.lists(st.tuples(st.integers(1, 20), prices(INSTRUMENTS[1])), min_size=1, max_size=6),
)
def test_partial_closes_of_a_short_add_up(opening: tuple[int, Decimal], closes: list[tuple[int, Decimal]]) -> None:
    quantity, price = D(opening[0]), opening[1]
    position, _ = apply_fill(Position(), Side.sell, quantity, price)
    proceeds = trade_value(quantity, price)
    paid = 0
    for lots, cover_price in closes:
        take = min(D(lots), abs(position.quantity))
        if take == 0:
            break
        position, _ = apply_fill(position, Side.buy, take, cover_price)
        paid += trade_value(take, cover_price)
    # realized so far + what is still open (at its basis) == proceeds - paid, exactly
    assert position.realized_pnl - cost_basis(position) == proceeds - paid


# The same, as a hypothesis state machine ---------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    """Deposits, withdrawals and fills in any order, with the invariants checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.book = Book()

    @initialize(amount=st.integers(1, 1_000_000_000))
    def opening_deposit(self, amount: int) -> None:
        self.book.deposit(amount)

    @rule(amount=st.integers(1, 500_000_000))
    def deposit(self, amount: int) -> None:
        self.book.deposit(amount)

    @precondition(lambda self: self.book.cash > 0)
    @rule(amount=st.integers(1, 500_000_000))
    def withdraw(self, amount: int) -> None:
        self.book.withdraw(min(amount, self.book.cash))

    @rule(order=fills())
    def fill(self, order: tuple[str, Side, Decimal, Decimal]) -> None:
        self.book.fill(*order)

    @rule(symbol=st.sampled_from([i.symbol for i in INSTRUMENTS]), price_fraction=st.integers(1, 100))
    def close_out(self, symbol: str, price_fraction: int) -> None:
        """Flatten a position (exercises full closes of longs and shorts)."""
        position = self.book.positions[symbol]
        if position.quantity != 0:
            instrument = next(i for i in INSTRUMENTS if i.symbol == symbol)
            raw = instrument.min_price + (instrument.max_price - instrument.min_price) * price_fraction / 100
            price = round_to_tick(raw, instrument.tick_rule, "nearest")
            side = Side.sell if position.quantity > 0 else Side.buy
            if self.book.fill(symbol, side, abs(position.quantity), price):
                # flat, and the close realized its cash flow (before costs) against the whole basis
                flow = trade_value(abs(position.quantity), price) * (1 if side is Side.sell else -1)
                expected = Position(D(0), D(0), position.realized_pnl + flow - cost_basis(position))
                assert self.book.positions[symbol] == expected

    @invariant()
    def reconciles(self) -> None:
        self.book.check()


LedgerMachine.TestCase.settings = settings(derandomize=True, max_examples=300, stateful_step_count=30, deadline=None)
test_ledger_state_machine = LedgerMachine.TestCase
