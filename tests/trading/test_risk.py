"""The pre-trade risk engine: one focused test per reason code, the accepted case and the order of the checks.

Every test starts from an order and a context that pass every check (:func:`test_the_baseline_is_accepted`) and
breaks exactly one thing, so the reason asserted is the only one that could fire.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pasar.market.exchange import reference_instrument
from pasar.trading.fees import FeeModel
from pasar.trading.models import (
    REASON_MESSAGES,
    InstrumentInfo,
    OrderRequest,
    OrderType,
    RiskReason,
    Side,
    TimeInForce,
    TradingState,
)
from pasar.trading.risk import (
    RiskContext,
    RiskDecision,
    RiskLimits,
    check_order,
    is_reducing,
    loss_limit_breached,
    session_open,
)

D = Decimal
NOW = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)  # Monday 10:00 WIB
FEES = FeeModel()
BBCA = InstrumentInfo("BBCA", 100, "idx_equity", "IDR", "IDX", True, False, 0)

LIMITS = RiskLimits(
    max_order_value=100_000_000,
    max_position_value=200_000_000,
    max_gross_exposure=500_000_000,
    max_orders_per_minute=60,
    price_collar=D("0.10"),
    reference_max_age=timedelta(minutes=5),
    stop_loss_threshold=D("0.05"),
    enforce_session=True,
)

CONTEXT = RiskContext(
    instrument=BBCA,
    account_currency="IDR",
    reference_price=D(9000),
    reference_ts=NOW - timedelta(minutes=1),
    previous_close=D(9000),
    now=NOW,
    position_quantity=D(0),
    gross_exposure=0,
    cash_available=1_000_000_000,
    orders_last_minute=0,
    day_pnl=0,
    day_start_equity=1_000_000_000,
    trading_state=TradingState.normal,
    session_open=True,
)

ORDER = OrderRequest("BBCA", Side.buy, OrderType.limit, D(1000), D(9000), None, TimeInForce.day, "c-1")


def order(**changes: Any) -> OrderRequest:
    return dataclasses.replace(ORDER, **changes)


def context(**changes: Any) -> RiskContext:
    return dataclasses.replace(CONTEXT, **changes)


def limits(**changes: Any) -> RiskLimits:
    return dataclasses.replace(LIMITS, **changes)


def check(request: OrderRequest = ORDER, ctx: RiskContext = CONTEXT, lim: RiskLimits = LIMITS) -> RiskDecision:
    return check_order(request, ctx, lim, FEES)


def assert_denied(decision: RiskDecision, reason: RiskReason) -> None:
    assert not decision.accepted
    assert decision.reason is reason, decision.message
    assert decision.reserve_cash == 0
    assert decision.message


# Accepted ------------------------------------------------------------------------------------------------------


def test_the_baseline_is_accepted() -> None:
    decision = check()
    assert decision == RiskDecision(True, None, "accepted", reserve_cash=9_013_500, check_price=D(9000))


def test_a_market_buy_reserves_at_the_reference_price() -> None:
    decision = check(order(type=OrderType.market, limit_price=None), context(reference_price=D(9025)))
    assert decision.accepted
    assert decision.check_price == D(9025)
    assert decision.reserve_cash == 9_025_000 + 13_538  # 13,537.5 rounds half-up


def test_a_stop_is_valued_at_the_reference_and_a_stop_limit_at_its_limit() -> None:
    stop = check(order(type=OrderType.stop, limit_price=None, stop_price=D(9100)))
    assert (stop.accepted, stop.check_price, stop.reserve_cash) == (True, D(9000), 9_013_500)
    stop_limit = check(order(type=OrderType.stop_limit, limit_price=D(9200), stop_price=D(9100)))
    assert (stop_limit.accepted, stop_limit.check_price, stop_limit.reserve_cash) == (True, D(9200), 9_213_800)


def test_a_sell_reserves_no_cash() -> None:
    decision = check(order(side=Side.sell), context(position_quantity=D(1000)))
    assert decision.accepted
    assert decision.reserve_cash == 0


def test_the_exact_cash_is_enough() -> None:
    assert check(ctx=context(cash_available=9_013_500)).accepted


def test_a_paper_venue_trades_when_the_session_is_closed() -> None:
    assert check(ctx=context(session_open=False), lim=limits(enforce_session=False)).accepted


def test_a_short_sale_passes_where_shorting_is_allowed() -> None:
    shortable = dataclasses.replace(BBCA, allows_short=True)
    assert check(order(side=Side.sell), context(instrument=shortable)).accepted


# One test per reason -----------------------------------------------------------------------------------------


def test_kill_switch() -> None:
    assert_denied(check(ctx=context(trading_state=TradingState.halted)), RiskReason.kill_switch)


def test_instrument_unknown() -> None:
    decision = check(ctx=context(instrument=None))
    assert_denied(decision, RiskReason.instrument_unknown)
    assert "BBCA" in decision.message


def test_instrument_not_tradable() -> None:
    assert_denied(
        check(ctx=context(instrument=dataclasses.replace(BBCA, is_tradable=False))), RiskReason.instrument_not_tradable
    )


def test_currency_not_supported() -> None:
    decision = check(ctx=context(instrument=dataclasses.replace(BBCA, currency="USD")))
    assert_denied(decision, RiskReason.currency_not_supported)
    assert "USD" in decision.message


@pytest.mark.parametrize("quantity", [D(0), D(-100), D("NaN"), D("Infinity"), D("sNaN")])
def test_invalid_quantity(quantity: Decimal) -> None:
    assert_denied(check(order(quantity=quantity)), RiskReason.invalid_quantity)


@pytest.mark.parametrize("quantity", [D(150), D(1), D("100.5")])
def test_lot_size(quantity: Decimal) -> None:
    decision = check(order(quantity=quantity))
    assert_denied(decision, RiskReason.lot_size)
    assert "lots of 100" in decision.message


@pytest.mark.parametrize(
    "request_",
    [
        order(limit_price=D(9010)),  # the tick is 25 from 5,000
        order(limit_price=D("9000.5")),
        order(type=OrderType.stop, limit_price=None, stop_price=D(9101)),
        order(type=OrderType.stop_limit, limit_price=D(9000), stop_price=D(9005)),
    ],
)
def test_tick_size(request_: OrderRequest) -> None:
    decision = check(request_)
    assert_denied(decision, RiskReason.tick_size)
    assert "idx_equity" in decision.message


@pytest.mark.parametrize(
    "request_",
    [
        order(type=OrderType.market),  # a market order with a limit price
        order(limit_price=None),  # a limit order without one
        order(limit_price=D(0)),
        order(limit_price=D(-9000)),
        order(limit_price=D("NaN")),
        order(stop_price=D(9000)),  # a limit order with a stop price
        order(type=OrderType.stop, limit_price=None),  # a stop without its stop price
        order(type=OrderType.stop_limit, stop_price=None),
        order(type=OrderType.stop, limit_price=None, stop_price=D(9100), time_in_force=TimeInForce.ioc),
    ],
)
def test_invalid_price(request_: OrderRequest) -> None:
    assert request_.validate_shape() is RiskReason.invalid_price
    assert_denied(check(request_), RiskReason.invalid_price)


def test_ioc_is_fine_for_market_and_limit() -> None:
    assert check(order(time_in_force=TimeInForce.ioc)).accepted
    assert check(order(type=OrderType.market, limit_price=None, time_in_force=TimeInForce.ioc)).accepted


@pytest.mark.parametrize("reference", [None, D("NaN"), D(0)])
def test_reference_price_missing(reference: Decimal | None) -> None:
    assert_denied(check(ctx=context(reference_price=reference)), RiskReason.reference_price_missing)


@pytest.mark.parametrize("reference_ts", [None, NOW - timedelta(minutes=5, seconds=1)])
def test_reference_price_stale(reference_ts: datetime | None) -> None:
    assert_denied(check(ctx=context(reference_ts=reference_ts)), RiskReason.reference_price_stale)


def test_a_reference_exactly_at_the_maximum_age_is_fresh() -> None:
    assert check(ctx=context(reference_ts=NOW - timedelta(minutes=5))).accepted


def test_session_closed() -> None:
    assert_denied(check(ctx=context(session_open=False)), RiskReason.session_closed)


@pytest.mark.parametrize(
    ("price", "accepted"), [(D(10_800), True), (D(10_825), False), (D(7_200), True), (D(7_175), False)]
)
def test_price_band(price: Decimal, accepted: bool) -> None:
    # IDX >5,000: ±20% around the previous close 9,000 -> 7,200..10,800; the tenant's collar is opened wide here.
    decision = check(order(limit_price=price), lim=limits(price_collar=D("0.5")))
    if accepted:
        assert decision.accepted, decision.message
    else:
        assert_denied(decision, RiskReason.price_band)
        assert "7200-10800" in decision.message


def test_price_band_uses_the_previous_close_else_the_reference() -> None:
    wide = limits(price_collar=D("0.5"))
    # Against a previous close of 8,000 the band is 6,400..9,600: a limit of 9,700 is out.
    assert_denied(check(order(limit_price=D(9700)), context(previous_close=D(8000)), wide), RiskReason.price_band)
    # Without a previous close the reference (9,000) is the base: 7,200..10,800.
    assert check(order(limit_price=D(9700)), context(previous_close=None), wide).accepted


def test_price_collar() -> None:
    decision = check(order(limit_price=D(9925)))  # above 9,000 + 10% = 9,900, inside the exchange band
    assert_denied(decision, RiskReason.price_collar)
    assert "9925" in decision.message
    assert check(order(limit_price=D(9900))).accepted  # the edge is inside


def test_price_collar_checks_the_stop_price_too() -> None:
    assert_denied(
        check(order(type=OrderType.stop, limit_price=None, stop_price=D(8075))), RiskReason.price_collar
    )  # below 8,100


def test_order_rate() -> None:
    assert check(ctx=context(orders_last_minute=59)).accepted
    decision = check(ctx=context(orders_last_minute=60))
    assert_denied(decision, RiskReason.order_rate)
    assert "60" in decision.message


def test_daily_loss_limit() -> None:
    # 5% of 1,000,000,000 = 50,000,000: a loss of exactly that breaches; the buy would add risk.
    assert check(ctx=context(day_pnl=-49_999_999)).accepted
    decision = check(ctx=context(day_pnl=-50_000_000))
    assert_denied(decision, RiskReason.daily_loss_limit)
    assert "-50,000,000" in decision.message


def test_daily_loss_limit_in_reducing_state_lets_only_reducing_orders_through() -> None:
    reducing = context(trading_state=TradingState.reducing, position_quantity=D(2000))
    assert_denied(check(order(), reducing), RiskReason.daily_loss_limit)  # adds to the long
    assert check(order(side=Side.sell), reducing).accepted  # reduces it
    assert check(order(side=Side.sell, quantity=D(2000)), reducing).accepted  # closes it
    flipping = check(
        order(side=Side.sell, quantity=D(3000)),
        dataclasses.replace(reducing, instrument=dataclasses.replace(BBCA, allows_short=True)),
    )
    assert_denied(flipping, RiskReason.daily_loss_limit)  # would open a short


def test_max_order_value() -> None:
    decision = check(order(quantity=D(16_000), limit_price=D(9500)))
    assert_denied(decision, RiskReason.max_order_value)
    assert decision.message == "order value 152,000,000 exceeds the tenant's maximum 100,000,000"
    assert decision.check_price == D(9500)


def test_max_position() -> None:
    # 20,000 held + 3,000 bought = 23,000 x 9,000 = 207,000,000 > 200,000,000.
    decision = check(order(quantity=D(3000)), context(position_quantity=D(20_000), gross_exposure=180_000_000))
    assert_denied(decision, RiskReason.max_position)
    assert "207,000,000" in decision.message


def test_max_position_does_not_block_a_reducing_order() -> None:
    over = context(position_quantity=D(30_000), gross_exposure=270_000_000)  # over the limit already
    assert check(order(side=Side.sell), over).accepted


def test_gross_exposure() -> None:
    decision = check(ctx=context(gross_exposure=495_000_000))
    assert_denied(decision, RiskReason.gross_exposure)
    assert "495,000,000" in decision.message
    assert "500,000,000" in decision.message


def test_gross_exposure_does_not_block_a_reducing_order() -> None:
    assert check(order(side=Side.sell), context(gross_exposure=600_000_000, position_quantity=D(1000))).accepted


def test_insufficient_position() -> None:
    assert_denied(check(order(side=Side.sell)), RiskReason.insufficient_position)  # flat, no shorting
    assert_denied(
        check(order(side=Side.sell, quantity=D(1100)), context(position_quantity=D(1000))),
        RiskReason.insufficient_position,
    )


def test_insufficient_cash() -> None:
    decision = check(ctx=context(cash_available=9_013_499))
    assert_denied(decision, RiskReason.insufficient_cash)
    assert decision.message == "the order needs 9,013,500 (value and commission), available cash is 9,013,499"


def test_covering_a_short_still_needs_the_cash() -> None:
    short = context(
        instrument=dataclasses.replace(BBCA, allows_short=True), position_quantity=D(-1000), cash_available=0
    )
    assert_denied(check(ctx=short), RiskReason.insufficient_cash)


def test_every_reason_has_a_test_and_a_message() -> None:
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert {reason.value for reason in RiskReason} <= tested
    assert set(REASON_MESSAGES) == set(RiskReason)
    assert all(REASON_MESSAGES.values())


# Order of the checks ---------------------------------------------------------------------------------------------


def test_kill_switch_beats_everything() -> None:
    broken = context(
        trading_state=TradingState.halted,
        instrument=None,
        reference_price=None,
        session_open=False,
        orders_last_minute=1_000,
        cash_available=0,
    )
    assert_denied(check(order(quantity=D(-1), limit_price=D(1)), broken), RiskReason.kill_switch)


def test_halted_lets_nothing_through_not_even_a_reducing_order() -> None:
    halted = context(trading_state=TradingState.halted, position_quantity=D(1000))
    assert_denied(check(order(side=Side.sell), halted), RiskReason.kill_switch)


# (reason, how to break it) in the engine's order; breaking a later check too never changes the answer.
CHAIN: list[tuple[RiskReason, Callable[[OrderRequest, RiskContext], tuple[OrderRequest, RiskContext]]]] = [
    (RiskReason.kill_switch, lambda o, c: (o, dataclasses.replace(c, trading_state=TradingState.halted))),
    (
        RiskReason.instrument_not_tradable,
        lambda o, c: (o, dataclasses.replace(c, instrument=dataclasses.replace(BBCA, is_tradable=False))),
    ),
    (RiskReason.invalid_quantity, lambda o, c: (dataclasses.replace(o, quantity=D(-150)), c)),
    (RiskReason.reference_price_missing, lambda o, c: (o, dataclasses.replace(c, reference_price=None))),
    (RiskReason.reference_price_stale, lambda o, c: (o, dataclasses.replace(c, reference_ts=NOW - timedelta(days=1)))),
    (RiskReason.session_closed, lambda o, c: (o, dataclasses.replace(c, session_open=False))),
    (RiskReason.order_rate, lambda o, c: (o, dataclasses.replace(c, orders_last_minute=100))),
    (RiskReason.daily_loss_limit, lambda o, c: (o, dataclasses.replace(c, day_pnl=-900_000_000))),
    (RiskReason.gross_exposure, lambda o, c: (o, dataclasses.replace(c, gross_exposure=499_999_999))),
    (RiskReason.insufficient_cash, lambda o, c: (o, dataclasses.replace(c, cash_available=0))),
]


@pytest.mark.parametrize("first", range(len(CHAIN)), ids=[reason.value for reason, _ in CHAIN])
def test_the_first_failing_check_wins(first: int) -> None:
    request, ctx = ORDER, CONTEXT
    for _, breaker in CHAIN[first:]:
        request, ctx = breaker(request, ctx)
    assert_denied(check(request, ctx), CHAIN[first][0])


def test_lot_size_is_checked_before_the_tick_grid_and_the_tick_grid_before_the_band() -> None:
    assert_denied(check(order(quantity=D(150), limit_price=D(9010))), RiskReason.lot_size)
    assert_denied(check(order(limit_price=D(20_010))), RiskReason.tick_size)
    assert_denied(check(order(limit_price=D(20_000))), RiskReason.price_band)


# Helpers ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "quantity", "held", "expected"),
    [
        (Side.sell, D(100), D(1000), True),
        (Side.sell, D(1000), D(1000), True),
        (Side.sell, D(1100), D(1000), False),  # would flip to a short
        (Side.buy, D(100), D(1000), False),
        (Side.buy, D(100), D(-1000), True),
        (Side.sell, D(100), D(-1000), False),
        (Side.buy, D(100), D(0), False),
        (Side.sell, D(100), D(0), False),
    ],
)
def test_is_reducing(side: Side, quantity: Decimal, held: Decimal, expected: bool) -> None:
    assert is_reducing(side, quantity, held) is expected


def test_loss_limit_needs_a_loss() -> None:
    assert not loss_limit_breached(0, 0, D("0.05"))  # a new account with no equity yet
    assert loss_limit_breached(-1, 0, D("0.05"))
    assert loss_limit_breached(-50, 1000, D("0.05"))
    assert not loss_limit_breached(-49, 1000, D("0.05"))


def test_session_open_follows_the_idx_calendar() -> None:
    wib = ZoneInfo("Asia/Jakarta")
    assert session_open(BBCA, datetime(2026, 1, 5, 10, 0, tzinfo=wib))  # Monday morning session
    assert not session_open(BBCA, datetime(2026, 1, 5, 12, 30, tzinfo=wib))  # lunch break
    assert not session_open(BBCA, datetime(2026, 1, 10, 10, 0, tzinfo=wib))  # Saturday


def test_instrument_info_from_the_reference_spec() -> None:
    spec = reference_instrument("BBCA")
    assert spec is not None
    assert InstrumentInfo.from_spec(spec) == BBCA
