"""The demo bot on a model's signals (a fake scorer with fixed scores, through the real signal service and database):
a long signal buys whole lots named ``sig-<signal id>`` after the logged signal, a short one sells what is held and
never goes short, a flat one holds, no signal falls back to the rules, and one tenant's run is invisible to another."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import numpy as np
import numpy.typing as npt
import polars as pl
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from pasar.cli import _demo_trading_summary
from pasar.config import Settings
from pasar.db.urls import DatabaseUrls
from pasar.signals.models import Direction, Explanation, ModelStatus
from pasar.trading.bot import Intent, follow_signal, order_size, run_demo_trading
from pasar.trading.models import OrderType, Side
from tests.api.test_trading import MINUTE, T0, fresh_symbol, get, load_bars

RISING = list(range(1000, 1300, 10))  # 30 closes: the rules' trend says buy
SIZE = Decimal(order_size(Decimal(RISING[-1]), 100))  # 7,700 shares at 1,290


class FakeScorer:
    """A :class:`pasar.signals.models.Scorer` whose score for a symbol is fixed: its one feature *is* the score
    (``None``: the feature is still warming up, so the symbol has no signal)."""

    def __init__(self, scores: dict[str, float | None], *, loaded: bool = True) -> None:
        self.scores = scores
        self._status = (
            ModelStatus(
                name="fake", version=7, feature_names=("score",), registered_at=datetime.now(UTC), timeframe="1m"
            )
            if loaded
            else None
        )

    @property
    def status(self) -> ModelStatus | None:
        return self._status

    def poke(self) -> None:
        pass

    def predict(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        scores: npt.NDArray[np.float32] = rows[:, 0].copy()
        return scores

    def explain(self, row: npt.NDArray[np.float32]) -> Explanation:
        raise NotImplementedError

    def features(self, bars: pl.DataFrame, *, calendar_code: str) -> pl.DataFrame:
        last = bars.group_by("symbol").agg(pl.col("ts").max())
        return last.with_columns(
            pl.col("symbol").replace_strict(self.scores, return_dtype=pl.Float64, default=None).alias("score")
        )


@pytest.fixture
def bot_settings(settings: Settings) -> Settings:
    """No feature staleness limit: other tests load bars of later dates, which move the market clock."""
    return settings.model_copy(update={"signal_max_feature_age_seconds": 0.0})


@pytest.fixture
def owner(urls: DatabaseUrls) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """The signal log as the database owner sees it: every tenant's rows."""
    with psycopg.connect(urls.owner, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def symbol(urls: DatabaseUrls) -> str:
    """A new IDX equity (lots of 100) with 30 rising 1-minute closes."""
    code = fresh_symbol(urls)
    load_bars(urls, code, [(T0 + i * MINUTE, c - 5, c + 5, c - 10, c, 1_000_000) for i, c in enumerate(RISING)])
    return code


def trade(
    settings: Settings, urls: DatabaseUrls, tenant: Any, symbol: str, scorer: FakeScorer | None, rounds: int
) -> dict[str, Any]:
    report: dict[str, Any]
    (report,) = run_demo_trading(settings, urls, [tenant.id], rounds, symbols=[symbol], scorer=scorer)["tenants"]
    return report


def held(client: TestClient, tenant: Any) -> Decimal:
    positions = get(client, tenant, "/v1/positions")["items"]
    return sum((Decimal(position["quantity"]) for position in positions), Decimal(0))


def logged_signal(owner: psycopg.Connection[dict[str, Any]], signal_id: str) -> dict[str, Any] | None:
    return owner.execute(
        "select tenant_id, symbol, direction, score, model_name, model_version from ai.signals where id = %s",
        [UUID(signal_id)],
    ).fetchone()


def test_follow_signal() -> None:
    close = Decimal(1290)
    assert follow_signal(Direction.long, close, Decimal(0), lot_size=100) == Intent(Side.buy, OrderType.market, SIZE)
    assert follow_signal(Direction.long, close, 2 * SIZE, lot_size=100) == Intent(Side.buy, OrderType.market, SIZE)
    assert follow_signal(Direction.long, close, 3 * SIZE, lot_size=100) is None  # at the target
    assert follow_signal(Direction.short, close, Decimal(500), lot_size=100) == Intent(
        Side.sell, OrderType.market, Decimal(500)
    )
    assert follow_signal(Direction.short, close, Decimal(0), lot_size=100) is None  # long-only: never short
    assert follow_signal(Direction.flat, close, Decimal(500), lot_size=100) is None


def test_a_long_signal_buys_whole_lots_named_after_the_logged_signal(
    client: TestClient, bot_settings: Settings, urls: DatabaseUrls, tenant_a: Any, symbol: str, owner: Any
) -> None:
    report = trade(bot_settings, urls, tenant_a, symbol, FakeScorer({symbol: 0.9}), rounds=2)
    assert report["model"] == "fake v7"
    assert report["signals"] == {"long": 2} and report["strategies"] == {"signal": 2} and report["fallbacks"] == {}
    assert report["orders"] == {"filled": 2}
    assert held(client, tenant_a) == 2 * SIZE
    orders = get(client, tenant_a, "/v1/orders")["items"]
    assert len(orders) == 2
    for order in orders:
        assert (order["side"], order["type"], Decimal(order["quantity"])) == ("buy", "market", SIZE)
        assert Decimal(order["quantity"]) % 100 == 0
        assert order["client_order_id"].startswith("sig-")
        logged = logged_signal(owner, order["client_order_id"].removeprefix("sig-"))
        assert logged == {
            "tenant_id": UUID(tenant_a.id),
            "symbol": symbol,
            "direction": "long",
            "score": pytest.approx(0.9),
            "model_name": "fake",
            "model_version": 7,
        }


def test_a_short_signal_sells_the_holding_and_never_goes_short(
    client: TestClient, bot_settings: Settings, urls: DatabaseUrls, tenant_a: Any, symbol: str
) -> None:
    trade(bot_settings, urls, tenant_a, symbol, FakeScorer({symbol: 0.8}), rounds=1)
    assert held(client, tenant_a) == SIZE
    report = trade(bot_settings, urls, tenant_a, symbol, FakeScorer({symbol: 0.1}), rounds=2)
    assert report["signals"] == {"short": 2}
    assert report["strategies"] == {"signal": 1}  # the first round sells everything, the second has nothing to sell
    assert held(client, tenant_a) == 0
    sells = [order for order in get(client, tenant_a, "/v1/orders")["items"] if order["side"] == "sell"]
    assert [(Decimal(order["quantity"]), order["status"]) for order in sells] == [(SIZE, "filled")]


def test_a_flat_signal_holds(
    client: TestClient, bot_settings: Settings, urls: DatabaseUrls, tenant_a: Any, symbol: str, owner: Any
) -> None:
    report = trade(bot_settings, urls, tenant_a, symbol, FakeScorer({symbol: 0.5}), rounds=2)
    assert report["signals"] == {"flat": 2} and report["fallbacks"] == {}
    assert report["strategies"] == {} and report["orders"] == {}
    assert get(client, tenant_a, "/v1/orders")["items"] == []
    logged = owner.execute(
        "select count(*) as signals from ai.signals where tenant_id = %s and symbol = %s", [tenant_a.id, symbol]
    ).fetchone()
    assert logged == {"signals": 2}  # the signals were asked for and logged all the same


@pytest.mark.parametrize(
    ("scorer", "reason"),
    [
        (lambda symbol: FakeScorer({symbol: 0.9}, loaded=False), "model_unavailable"),  # no champion
        (lambda symbol: FakeScorer({symbol: None}), "insufficient_history"),  # no signal for this symbol
    ],
)
def test_without_a_signal_the_rules_trade(
    client: TestClient,
    bot_settings: Settings,
    urls: DatabaseUrls,
    tenant_a: Any,
    symbol: str,
    scorer: Any,
    reason: str,
) -> None:
    report = trade(bot_settings, urls, tenant_a, symbol, scorer(symbol), rounds=2)
    assert report["fallbacks"] == {reason: 2} and report["signals"] == {}
    assert report["strategies"] == {"rules": 3}  # as the rule bot: two market buys and a resting limit sell
    orders = get(client, tenant_a, "/v1/orders")["items"]
    assert len(orders) == 3 and all(order["client_order_id"].startswith("bot-") for order in orders)


def test_without_a_scorer_the_rule_bot_trades(
    client: TestClient, bot_settings: Settings, urls: DatabaseUrls, tenant_a: Any, symbol: str
) -> None:
    report = trade(bot_settings, urls, tenant_a, symbol, None, rounds=1)
    assert report["model"] is None and report["fallbacks"] == {} and report["strategies"] == {"rules": 1}


def test_a_tenants_bot_run_is_invisible_to_another(
    client: TestClient, bot_settings: Settings, urls: DatabaseUrls, tenant_a: Any, tenant_b: Any, symbol: str
) -> None:
    trade(bot_settings, urls, tenant_a, symbol, FakeScorer({symbol: 0.9}), rounds=1)
    (order,) = get(client, tenant_a, "/v1/orders")["items"]
    signal_id = order["client_order_id"].removeprefix("sig-")
    assert client.get(f"/v1/signals/log/{signal_id}", headers=tenant_a.headers).status_code == 200
    assert client.get(f"/v1/signals/log/{signal_id}", headers=tenant_b.headers).status_code == 404
    assert client.get(f"/v1/orders/{order['id']}", headers=tenant_b.headers).status_code == 404
    assert get(client, tenant_b, "/v1/orders")["items"] == []
    assert get(client, tenant_b, "/v1/positions")["items"] == []
    assert get(client, tenant_b, "/v1/cash/ledger")["items"] == []


def test_the_demo_says_which_strategy_traded() -> None:
    rules = {"model": None, "signals": {}, "strategies": {"rules": 4}}
    assert _demo_trading_summary({"tenants": [rules, rules]}) == "the bot traded on its rules (8 orders)"
    signal = {"model": "m v2", "signals": {"long": 3, "short": 1}, "strategies": {"signal": 2}}
    assert _demo_trading_summary({"tenants": [signal, {**signal, "strategies": {"signal": 1, "rules": 2}}]}) == (
        "the bot traded on the signals of m v2 (8 signals: 6 long, 0 flat, 2 short; 3 orders), "
        "and on its rules where a symbol had no signal (2 orders)"
    )
