"""The broker adapter interface: only the risk engine's approval reaches a broker, and the paper venue behind it.

The matching rules themselves are tested in test_matching.py; here, what the interface adds: the approval, the
execution ids (one per order and bar, so a fill is booked once) and the paper venue's settings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest

from pasar.trading.broker import Broker, Execution, PaperBroker
from pasar.trading.fees import SlippageModel
from pasar.trading.matching import BarView, OpenOrder
from pasar.trading.models import InstrumentInfo, OrderRequest, OrderType, RiskReason, Side
from pasar.trading.risk import ApprovedOrder, RiskDecision, approve

D = Decimal
BBCA = InstrumentInfo("BBCA", 100, "idx_equity", "IDR", "IDX", True, False, 0)
BAR = BarView(ts=datetime(2032, 3, 1, 2, 0, tzinfo=UTC), open=D(1000), high=D(1010), low=D(990), close=D(1000),
              volume=D(1_000_000))  # fmt: skip
ACCEPTED = RiskDecision.accept(reserve_cash=100_500, check_price=D(1000))
MARKET_BUY = OrderRequest(symbol="BBCA", side=Side.buy, type=OrderType.market, quantity=D(100))
PAPER = PaperBroker(participation=D("0.1"), slippage=SlippageModel(bps=D(5)))


def test_an_accepted_order_is_approved_with_what_the_risk_engine_reserved() -> None:
    order_id = uuid4()
    approved = approve(ACCEPTED, MARKET_BUY, order_id=order_id, instrument=BBCA)
    assert (approved.order_id, approved.request, approved.instrument, approved.reserve_cash) == (
        order_id, MARKET_BUY, BBCA, 100_500,
    )  # fmt: skip


def test_a_denied_order_cannot_be_approved() -> None:
    denied = RiskDecision.deny(RiskReason.insufficient_cash)
    with pytest.raises(ValueError, match="denied order"):
        approve(denied, MARKET_BUY, order_id=uuid4(), instrument=BBCA)


def test_an_order_without_a_known_instrument_cannot_be_approved() -> None:
    with pytest.raises(ValueError, match="known instrument"):
        approve(ACCEPTED, MARKET_BUY, order_id=uuid4(), instrument=None)


@pytest.mark.parametrize("approval", [None, object()], ids=["no approval", "a forged one"])
def test_an_approved_order_made_outside_the_risk_engine_is_refused(approval: object) -> None:
    with pytest.raises(TypeError, match="risk engine only"):
        ApprovedOrder(uuid4(), MARKET_BUY, BBCA, 100_500, approval)


def test_the_paper_venue_fills_an_approved_market_order_under_one_execution_id_per_order_and_bar() -> None:
    approved = approve(ACCEPTED, MARKET_BUY, order_id=uuid4(), instrument=BBCA)
    execution = PAPER.submit(approved, BAR)
    # the close, slipped 5 bps up and onto the tick grid (5 at 1000)
    assert execution == Execution(f"paper:{approved.order_id}:{BAR.ts.isoformat()}", D(100), D(1005), False)
    assert PAPER.submit(approved, BAR) == execution  # the same bar again: the same id, so the fill is booked once


def test_the_paper_venue_matches_a_resting_order_by_its_own_rules() -> None:
    order_id = uuid4()
    resting = OpenOrder(side=Side.buy, type=OrderType.limit, remaining=D(300), limit_price=D(980))
    assert PAPER.match(order_id, resting, BAR, lot_size=100, tick_rule="idx_equity") is None  # low 990 > 980
    touched = BarView(ts=BAR.ts, open=D(985), high=D(990), low=D(975), close=D(980), volume=D(2_000))
    execution = PAPER.match(order_id, resting, touched, lot_size=100, tick_rule="idx_equity")
    # 10 % of 2,000 is 200: two lots of the three, at the limit (the bar opened above it)
    assert execution == Execution(f"paper:{order_id}:{BAR.ts.isoformat()}", D(200), D(980), False)


def test_a_stop_that_triggers_without_filling_is_reported_with_no_quantity() -> None:
    stop = OrderRequest(symbol="BBCA", side=Side.buy, type=OrderType.stop, quantity=D(100), stop_price=D(1005))
    thin = BarView(ts=BAR.ts, open=D(1000), high=D(1010), low=D(995), close=D(1005), volume=D(0))
    execution = PAPER.submit(approve(ACCEPTED, stop, order_id=uuid4(), instrument=BBCA), thin)
    assert execution is not None and (execution.quantity, execution.price, execution.triggered) == (D(0), D(1005), True)


def test_the_paper_venue_is_a_broker() -> None:
    broker: Broker = PAPER  # mypy checks the protocol
    assert broker.venue == "paper"
