"""Transaction costs of the paper venue: IDX retail fees and an adverse slippage model.

IDX retail brokers charge a commission on both sides (0.15% is typical) and the exchange withholds the 0.1% final
income tax on the value of every share *sale* (PP 41/1994), never on a purchase. Money is whole rupiah: the trade
value and each charge are rounded half-up separately, so a fill's cash effect is exactly what the ledger books.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from pasar.market.exchange import TickRule, round_to_tick
from pasar.trading.models import EXACT, Side, exact_product, rupiah

__all__ = ["BPS", "Costs", "FeeModel", "SlippageModel", "trade_value"]

BPS = Decimal(10_000)


def trade_value(quantity: Decimal, price: Decimal) -> int:
    """``quantity x price`` in whole rupiah, half-up: the value a fill moves (before costs)."""
    return rupiah(exact_product(quantity, price))


@dataclass(frozen=True, slots=True)
class Costs:
    """The charges of one fill, whole rupiah."""

    commission: int
    tax: int

    @property
    def total(self) -> int:
        return self.commission + self.tax


@dataclass(frozen=True, slots=True)
class FeeModel:
    """Commission rates per side, the sell tax rate and a minimum commission per fill (0: none)."""

    buy_commission: Decimal = Decimal("0.0015")
    sell_commission: Decimal = Decimal("0.0015")
    sell_tax: Decimal = Decimal("0.001")
    min_commission: int = 0

    def __post_init__(self) -> None:
        for name in ("buy_commission", "sell_commission", "sell_tax"):
            rate = getattr(self, name)
            if not isinstance(rate, Decimal) or not rate.is_finite() or not 0 <= rate < 1:
                raise ValueError(f"{name} must be a Decimal fraction in [0, 1), got {rate!r}")
        if isinstance(self.min_commission, bool) or not isinstance(self.min_commission, int) or self.min_commission < 0:
            raise ValueError(f"min_commission must be a non-negative int of rupiah, got {self.min_commission!r}")

    def trade_value(self, quantity: Decimal, price: Decimal) -> int:
        """See :func:`trade_value` (the same rounding everywhere, so positions and the ledger agree)."""
        return trade_value(quantity, price)

    def costs(self, side: Side, value: int) -> Costs:
        """Commission (at least ``min_commission`` on a non-zero value) and, on a sell, the sell tax."""
        if value < 0:
            raise ValueError(f"trade value must not be negative, got {value}")
        rate = self.buy_commission if side is Side.buy else self.sell_commission
        commission = rupiah(EXACT.multiply(Decimal(value), rate))
        if value > 0:
            commission = max(commission, self.min_commission)
        tax = rupiah(EXACT.multiply(Decimal(value), self.sell_tax)) if side is Side.sell else 0
        return Costs(commission=commission, tax=tax)

    def cash_delta(self, side: Side, value: int) -> int:
        """The change of cash from a fill of ``value``: a buy pays value + commission, a sell receives value minus
        commission and tax."""
        costs = self.costs(side, value)
        if side is Side.buy:
            return -(value + costs.commission)
        return value - costs.commission - costs.tax

    def buy_reserve(self, value: int) -> int:
        """Cash a buy of ``value`` needs: the value plus its commission."""
        return value + self.costs(Side.buy, value).commission


@dataclass(frozen=True, slots=True)
class SlippageModel:
    """Adverse slippage of ``bps`` basis points, kept on the tick grid.

    A buy pays more, a sell gets less; the slipped price is rounded to the grid *away* from the trader (buy up, sell
    down), so any positive bps costs at least one tick (a real order crossing the spread does too). ``bps == 0``
    returns the price untouched.
    """

    bps: Decimal = Decimal(5)

    def __post_init__(self) -> None:
        if not isinstance(self.bps, Decimal) or not self.bps.is_finite() or not 0 <= self.bps < BPS:
            raise ValueError(f"slippage bps must be a Decimal in [0, 10000), got {self.bps!r}")

    def apply(self, price: Decimal, side: Side, tick_rule: str | TickRule) -> Decimal:
        if self.bps == 0:
            return price
        factor = EXACT.divide(BPS + side.sign * self.bps, BPS)
        return round_to_tick(EXACT.multiply(price, factor), tick_rule, "up" if side is Side.buy else "down")
