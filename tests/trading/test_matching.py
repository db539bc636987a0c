"""The paper venue's matching rules on hand-made bars (IDX ticks: 25 rupiah from 5,000)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pasar.market.exchange import on_tick_grid
from pasar.trading.fees import SlippageModel
from pasar.trading.matching import BarView, Match, MatchParams, OpenOrder, available_quantity, match
from pasar.trading.models import OrderType, Side

D = Decimal
TS = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
PARAMS = MatchParams(participation=D("0.1"), lot_size=100, tick_rule="idx_equity", slippage=SlippageModel(D(5)))
NO_SLIP = dataclasses.replace(PARAMS, slippage=SlippageModel(D(0)))


def bar(open_: int, high: int, low: int, close: int, volume: int = 100_000) -> BarView:
    return BarView(TS, D(open_), D(high), D(low), D(close), D(volume))


def market(side: Side, remaining: int = 1000) -> OpenOrder:
    return OpenOrder(side, OrderType.market, D(remaining), None, None, False)


def limit(side: Side, price: int, remaining: int = 1000) -> OpenOrder:
    return OpenOrder(side, OrderType.limit, D(remaining), D(price), None, False)


# Market ------------------------------------------------------------------------------------------------------


def test_market_buy_fills_at_the_slipped_close_on_the_grid() -> None:
    result = match(market(Side.buy), bar(8950, 9050, 8925, 9000), PARAMS)
    assert result == Match(D(1000), D(9025), False)  # 9,004.5 rounded up to the 25-rupiah grid


def test_market_sell_fills_at_the_slipped_close_on_the_grid() -> None:
    result = match(market(Side.sell), bar(8950, 9050, 8925, 9000), PARAMS)
    assert result == Match(D(1000), D(8975), False)


def test_market_without_slippage_fills_at_the_close() -> None:
    assert match(market(Side.buy), bar(8950, 9050, 8925, 9000), NO_SLIP) == Match(D(1000), D(9000), False)


# Limit -------------------------------------------------------------------------------------------------------


def test_limit_buy_not_touched() -> None:
    assert match(limit(Side.buy, 9000), bar(9100, 9150, 9025, 9050), PARAMS) is None


def test_limit_buy_touched_fills_at_the_limit() -> None:
    assert match(limit(Side.buy, 9000), bar(9100, 9150, 9000, 9050), PARAMS) == Match(D(1000), D(9000), False)


def test_limit_buy_opening_below_the_limit_gets_the_slipped_open() -> None:
    assert match(limit(Side.buy, 9000), bar(8900, 8950, 8850, 8925), PARAMS) == Match(D(1000), D(8925), False)


def test_limit_buy_never_pays_more_than_the_limit() -> None:
    # Opens at 8,990 (a 10-rupiah price: bars need not be on the order's tier), slipped 8,994.5 -> 9,000 = the limit.
    assert match(limit(Side.buy, 9000), bar(8990, 9050, 8975, 9025), PARAMS) == Match(D(1000), D(9000), False)
    assert match(limit(Side.buy, 9000), bar(9000, 9050, 8975, 9025), PARAMS) == Match(D(1000), D(9000), False)


def test_limit_sell_not_touched() -> None:
    assert match(limit(Side.sell, 9000), bar(8900, 8975, 8850, 8950), PARAMS) is None


def test_limit_sell_touched_fills_at_the_limit() -> None:
    assert match(limit(Side.sell, 9000), bar(8900, 9000, 8850, 8950), PARAMS) == Match(D(1000), D(9000), False)


def test_limit_sell_opening_above_the_limit_gets_the_slipped_open() -> None:
    assert match(limit(Side.sell, 9000), bar(9100, 9150, 9050, 9125), PARAMS) == Match(D(1000), D(9075), False)


# Stops -------------------------------------------------------------------------------------------------------


def stop(side: Side, stop_price: int, limit_price: int | None = None, triggered: bool = False) -> OpenOrder:
    kind = OrderType.stop if limit_price is None else OrderType.stop_limit
    return OpenOrder(side, kind, D(1000), None if limit_price is None else D(limit_price), D(stop_price), triggered)


def test_stop_buy_not_triggered() -> None:
    assert match(stop(Side.buy, 9100), bar(9000, 9075, 8975, 9050), PARAMS) is None


def test_stop_buy_triggers_and_fills_as_market() -> None:
    assert match(stop(Side.buy, 9100), bar(9000, 9150, 8975, 9100), PARAMS) == Match(D(1000), D(9125), True)


def test_stop_sell_triggers_on_the_low() -> None:
    assert match(stop(Side.sell, 8900), bar(9000, 9025, 8900, 8950), PARAMS) == Match(D(1000), D(8925), True)
    assert match(stop(Side.sell, 8900), bar(9000, 9025, 8925, 8950), PARAMS) is None


def test_stop_limit_triggers_and_fills_as_limit() -> None:
    result = match(stop(Side.buy, 9100, 9125), bar(9050, 9150, 9025, 9100), PARAMS)
    assert result == Match(D(1000), D(9075), True)  # opened at 9,050 <= 9,125: slipped open 9,054.5 -> 9,075


def test_stop_limit_triggers_without_touching_its_limit() -> None:
    result = match(stop(Side.sell, 8900, 8950), bar(8900, 8925, 8850, 8875), PARAMS)
    assert result == Match(D(0), D(8900), True)  # triggered, but the bar never reached 8,950
    # Next bar, already triggered: it fills when the limit is touched, and not before.
    triggered = stop(Side.sell, 8900, 8950, triggered=True)
    assert match(triggered, bar(8875, 8925, 8850, 8900), PARAMS) is None
    assert match(triggered, bar(8900, 8975, 8875, 8950), PARAMS) == Match(D(1000), D(8950), True)


def test_stop_trigger_on_a_zero_volume_bar_then_fill() -> None:
    order = stop(Side.buy, 9100)
    first = match(order, bar(9100, 9100, 9100, 9100, volume=0), PARAMS)
    assert first == Match(D(0), D(9100), True)
    # Triggered: now a market order, filled in the next bar even though that bar stays below the stop.
    second = match(dataclasses.replace(order, triggered=True), bar(9050, 9075, 9000, 9050), PARAMS)
    assert second == Match(D(1000), D(9075), True)


# Quantity ----------------------------------------------------------------------------------------------------


def test_participation_caps_the_fill() -> None:
    # 10% of 12,345 = 1,234.5 -> 12 whole lots.
    result = match(market(Side.buy, remaining=5000), bar(9000, 9050, 8975, 9000, volume=12_345), PARAMS)
    assert result == Match(D(1200), D(9025), False)


def test_a_partial_fill_then_the_rest() -> None:
    thin = bar(9000, 9050, 8975, 9000, volume=5_000)  # 500 per bar
    remaining = D(1200)
    fills = []
    while remaining:
        result = match(dataclasses.replace(market(Side.buy), remaining=remaining), thin, PARAMS)
        assert result is not None
        fills.append(result.quantity)
        remaining -= result.quantity
    assert fills == [D(500), D(500), D(200)]


def test_zero_volume_bar_fills_nothing() -> None:
    assert match(market(Side.buy), bar(9000, 9000, 9000, 9000, volume=0), PARAMS) is None
    assert match(limit(Side.buy, 9000), bar(9000, 9000, 9000, 9000, volume=0), PARAMS) is None


@pytest.mark.parametrize(("volume", "available"), [(999, 0), (1_000, 100), (1_999, 100), (2_000, 200), (0, 0)])
def test_lot_rounding(volume: int, available: int) -> None:
    assert available_quantity(bar(9000, 9000, 9000, 9000, volume=volume), PARAMS) == D(available)
    result = match(market(Side.sell), bar(9000, 9000, 9000, 9000, volume=volume), PARAMS)
    assert (result.quantity if result else D(0)) == D(available)


def test_nothing_remaining_matches_nothing() -> None:
    assert match(market(Side.buy, remaining=0), bar(9000, 9050, 8975, 9000), PARAMS) is None


@pytest.mark.parametrize("close", [150, 199, 201, 499, 503, 1999, 2010, 4990, 5000, 9000, 12_345])
@pytest.mark.parametrize("side", list(Side))
def test_fill_prices_are_on_the_grid(close: int, side: Side) -> None:
    result = match(market(side), bar(close, close, close, close), PARAMS)
    assert result is not None
    assert on_tick_grid(result.price, "idx_equity")
    assert (result.price > D(close)) if side is Side.buy else (result.price < D(close))


@pytest.mark.parametrize("participation", [D(0), D("1.5"), D("NaN")])
def test_participation_must_be_a_fraction(participation: Decimal) -> None:
    with pytest.raises(ValueError, match="participation"):
        dataclasses.replace(PARAMS, participation=participation)
