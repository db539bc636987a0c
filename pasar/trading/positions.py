"""Positions by the average-cost method, with an integer cost basis so P&L and cash reconcile to the rupiah.

A position is (signed quantity, average cost, realized P&L). Its *cost basis* is the integer rupiah it cost
(:func:`cost_basis`, signed like the quantity: a short's basis is the proceeds of the sale it owes back), and
``avg_cost`` is that basis per unit, kept to enough digits that ``round(|quantity| x avg_cost)`` gives the basis back
exactly (store it as an unconstrained ``numeric`` to keep that property across a round trip through the database).
Being money per unit, it is what was actually paid: 1 unit bought at 0.01 costs 0 rupiah, so its avg_cost is 0.

Fills move the basis by whole rupiah:

* adding to a position (or opening one) adds the fill's trade value (:func:`~pasar.trading.fees.trade_value`) to
  the basis and re-averages;
* reducing releases ``basis(before) - basis(after)`` with the average unchanged, and realizes
  ``value - released`` for a long, ``released - value`` for a short;
* a fill through zero first closes the whole position (the closing part's value is the fill value less the opening
  part's), then opens the remainder at the fill price.

Why not ``round((price - avg_cost) x closed)``: that rounds a second time, so over many partial fills realized P&L
would drift from the cash by a rupiah here and there. The two agree to within one rupiah on every fill, and exactly
when the numbers are whole (every IDX fill of whole shares at a whole-rupiah price). With this definition, for any
sequence of fills, exactly::

    sum of cash flows of the fills (sells minus buys, before costs) == realized_pnl - cost_basis
    cash + market value == deposits - withdrawals - fees - taxes + realized + unrealized
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from pasar.trading.fees import trade_value
from pasar.trading.models import DIVIDE, EXACT, Side, exact_product, rupiah

__all__ = ["FillEffect", "Position", "apply_fill", "cost_basis", "fill_effect", "market_value", "unrealized_pnl"]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Position:
    """Signed quantity (long > 0, short < 0), average cost per unit (0 when flat), realized P&L before fees."""

    quantity: Decimal = ZERO
    avg_cost: Decimal = ZERO
    realized_pnl: int = 0

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0


@dataclass(frozen=True, slots=True)
class FillEffect:
    """Everything one fill does to a position, for the ledger: the new position, the fill's trade value, the
    realized P&L and the cost basis released (a magnitude: the part of the old basis the fill closed)."""

    position: Position
    value: int
    realized: int
    cost_basis_released: int


# |quantity| x avg_cost is snapped to this grid before rounding to rupiah. avg_cost is a rational number (basis /
# quantity) cut to 34 digits, so the product misses the rational value by less than 1e-15 rupiah; a product that is
# truly not a tie lies at least 1 / (2 x quantity in its smallest units) from one, far more than 1e-12. Snapping
# therefore turns a tie that the cut made 0.4999... back into 0.5 (which rounds up), and changes nothing else.
_SNAP = Decimal("1e-12")


def _basis_magnitude(quantity: Decimal, avg_cost: Decimal) -> int:
    return rupiah(exact_product(abs(quantity), avg_cost).quantize(_SNAP, context=EXACT))


def cost_basis(position: Position) -> int:
    """The rupiah the position cost, signed like its quantity (0 when flat)."""
    magnitude = _basis_magnitude(position.quantity, position.avg_cost)
    return -magnitude if position.quantity < 0 else magnitude


def market_value(position: Position, mark: Decimal) -> int:
    """``quantity x mark`` in whole rupiah, signed (a short is worth a negative amount)."""
    return rupiah(exact_product(position.quantity, mark))


def unrealized_pnl(position: Position, mark: Decimal) -> int:
    """Market value at ``mark`` minus cost basis: what closing at ``mark`` would realize (before costs)."""
    return market_value(position, mark) - cost_basis(position)


def _check_fill(quantity: Decimal, price: Decimal) -> None:
    if not (isinstance(quantity, Decimal) and quantity.is_finite() and quantity > 0):
        raise ValueError(f"fill quantity must be a positive, finite Decimal, got {quantity!r}")
    if not (isinstance(price, Decimal) and price.is_finite() and price > 0):
        raise ValueError(f"fill price must be a positive, finite Decimal, got {price!r}")


def fill_effect(position: Position, side: Side, quantity: Decimal, price: Decimal) -> FillEffect:
    """Apply a fill of ``quantity`` (> 0) at ``price`` on ``side``; see the module docstring for the rules."""
    _check_fill(quantity, price)
    value = trade_value(quantity, price)
    held = position.quantity
    signed = quantity if side is Side.buy else -quantity
    new_quantity = held + signed
    if held == 0 or (held > 0) == (signed > 0):  # opening or adding: re-average on the integer basis
        basis = abs(cost_basis(position)) + value
        avg = DIVIDE.divide(Decimal(basis), abs(new_quantity))
        return FillEffect(Position(new_quantity, avg, position.realized_pnl), value, 0, 0)
    closed = min(quantity, abs(held))
    opened = quantity - closed
    old_basis = abs(cost_basis(position))
    if opened > 0:  # through zero: close everything, open the rest at the fill price
        released = old_basis
        open_value = trade_value(opened, price)
        new_position_avg = price
    else:
        released = old_basis - _basis_magnitude(new_quantity, position.avg_cost)
        open_value = 0
        new_position_avg = position.avg_cost if new_quantity != 0 else ZERO
    close_value = value - open_value
    realized = close_value - released if held > 0 else released - close_value
    new_position = Position(new_quantity, new_position_avg, position.realized_pnl + realized)
    return FillEffect(new_position, value, realized, released)


def apply_fill(position: Position, side: Side, quantity: Decimal, price: Decimal) -> tuple[Position, int]:
    """The position after the fill and the realized P&L of this fill (whole rupiah, before fees)."""
    effect = fill_effect(position, side, quantity, price)
    return effect.position, effect.realized
