"""IDX fees and slippage, checked against hand-computed figures."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pasar.market.exchange import on_tick_grid
from pasar.trading.fees import Costs, FeeModel, SlippageModel, trade_value
from pasar.trading.models import Side

D = Decimal
IDX = FeeModel()


def test_buy_ten_lots_of_bbca_at_9000() -> None:
    value = IDX.trade_value(D(1000), D(9000))
    assert value == 9_000_000
    assert IDX.costs(Side.buy, value) == Costs(commission=13_500, tax=0)  # 0.15%, no tax on a purchase
    assert IDX.cash_delta(Side.buy, value) == -9_013_500
    assert IDX.buy_reserve(value) == 9_013_500


def test_sell_ten_lots_of_bbca_at_9000() -> None:
    value = IDX.trade_value(D(1000), D(9000))
    costs = IDX.costs(Side.sell, value)
    assert costs == Costs(commission=13_500, tax=9_000)  # 0.15% commission + 0.1% final income tax
    assert costs.total == 22_500
    assert IDX.cash_delta(Side.sell, value) == 8_977_500


def test_defaults_are_the_idx_retail_schedule() -> None:
    assert (IDX.buy_commission, IDX.sell_commission, IDX.sell_tax, IDX.min_commission) == (
        D("0.0015"),
        D("0.0015"),
        D("0.001"),
        0,
    )


@pytest.mark.parametrize(
    ("value", "commission"),
    [(1_000, 2), (3_000, 5), (333, 0), (334, 1), (999, 1)],  # 1.5 -> 2, 4.5 -> 5 (half-up, not half-even)
)
def test_commission_rounds_half_up(value: int, commission: int) -> None:
    assert IDX.costs(Side.buy, value).commission == commission


@pytest.mark.parametrize(("value", "tax"), [(2_500, 3), (1_500, 2), (2_499, 2), (499, 0), (500, 1)])
def test_sell_tax_rounds_half_up(value: int, tax: int) -> None:
    assert IDX.costs(Side.sell, value).tax == tax


@pytest.mark.parametrize(
    ("quantity", "price", "value"),
    [("3", "0.5", 2), ("5", "0.5", 3), ("1", "0.49", 0), ("100", "1.08455", 108), ("7", "1234.5", 8642)],
)
def test_trade_value_rounds_half_up(quantity: str, price: str, value: int) -> None:
    assert trade_value(D(quantity), D(price)) == value
    assert IDX.trade_value(D(quantity), D(price)) == value


def test_minimum_commission_applies_to_a_real_trade_only() -> None:
    fees = FeeModel(min_commission=5_000)
    assert fees.costs(Side.buy, 1_000_000).commission == 5_000  # 1,500 raised to the minimum
    assert fees.costs(Side.sell, 10_000_000) == Costs(commission=15_000, tax=10_000)
    assert fees.costs(Side.buy, 0).commission == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"buy_commission": D("-0.001")}, {"sell_tax": D(1)}, {"min_commission": -1}, {"sell_commission": D("NaN")}],
)
def test_fee_model_refuses_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        FeeModel(**kwargs)  # type: ignore[arg-type]


def test_negative_value_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        IDX.costs(Side.buy, -1)


# Slippage ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "side", "expected"),
    [
        ("9000", Side.buy, "9025"),  # 9004.5 -> up to the next 25-rupiah tick
        ("9000", Side.sell, "8975"),  # 8995.5 -> down
        ("4990", Side.buy, "5000"),  # 4992.495 (10-rupiah tier) -> up lands on the 5000 tier boundary
        ("5000", Side.sell, "4990"),  # 4997.5, below 5000 the tick is 10 -> 4990
        ("5000", Side.buy, "5025"),  # 5002.5 in the 25-rupiah tier
        ("498", Side.buy, "500"),  # 498.249 (2-rupiah tier) -> 500
        ("500", Side.sell, "498"),  # 499.75 (2-rupiah tier) -> 498
        ("199", Side.buy, "200"),
        ("200", Side.sell, "199"),  # 199.9 (1-rupiah tier) -> 199
    ],
)
def test_slippage_is_adverse_and_on_the_idx_grid(price: str, side: Side, expected: str) -> None:
    slipped = SlippageModel().apply(D(price), side, "idx_equity")
    assert slipped == D(expected)
    assert on_tick_grid(slipped, "idx_equity")
    assert (slipped > D(price)) if side is Side.buy else (slipped < D(price))


def test_slippage_on_a_decimal_grid() -> None:
    model = SlippageModel(bps=D(5))
    assert model.apply(D("1.0845"), Side.buy, "decimal:4") == D("1.0851")  # 1.08504225 -> up
    assert model.apply(D("1.0845"), Side.sell, "decimal:4") == D("1.0839")  # 1.08395775 -> down


def test_zero_bps_returns_the_price_unchanged() -> None:
    model = SlippageModel(bps=D(0))
    assert model.apply(D("9000"), Side.buy, "idx_equity") == D("9000")
    assert model.apply(D("9013"), Side.sell, "idx_equity") == D("9013")  # even off the grid: no slippage, no rounding


def test_larger_slippage() -> None:
    assert SlippageModel(bps=D(100)).apply(D(9000), Side.buy, "idx_equity") == D(9100)  # 9090 -> 9100
    assert SlippageModel(bps=D(100)).apply(D(9000), Side.sell, "idx_equity") == D(8900)  # 8910 -> 8900


@pytest.mark.parametrize("bps", [D(-1), D(10_000), D("NaN")])
def test_slippage_refuses_nonsense(bps: Decimal) -> None:
    with pytest.raises(ValueError, match="bps"):
        SlippageModel(bps=bps)
