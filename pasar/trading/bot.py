"""The demo's paper-trading bot, so the demo tenants' portfolio, orders and stream have real content: it trades on the
champion model's signals, and on simple rules where there is no signal.

For each symbol, every round, the bot first cancels its previous round's resting limit orders of the symbol (so they do
not pile up), then decides by one of two strategies:

**signal** (when the bot was given a scorer, :class:`SignalSource`): the champion's signal for the symbol, through the
signal service exactly as ``GET /v1/signals/{symbol}`` answers it and appended to the tenant's signal log. ``long``
moves towards a target of ``max_orders`` order sizes with one market order per round (scaling in one order size at a
time); ``short`` sells what the tenant holds at once (IDX equities are long-only: the bot never sells short); ``flat``
holds. Each such order's ``client_order_id`` is ``sig-<signal id>``, so an order names the logged signal it acted on.

**rules** (no scorer, or no signal for the symbol this round: no champion, stale features, too little history — the
report counts these fallbacks by reason), over the latest closes of the symbol's finest stored bars:

* *trend* (SMA crossover): while the fast average (5 bars) is above the slow one (20 bars) the same target as a
  ``long`` signal, and flat otherwise, reached the same way;
* *mean reversion*: when the close is below the slow average it rests a day limit buy 0.5% below the close;
  when it is above and the bot holds shares, a limit sell 0.5% above it.

An order size is about ``order_value`` rupiah in whole lots. Every order goes through the trading service like an API
order (the pre-trade risk engine decides; a denial is stored as a rejected order), placed as the tenant's ``admin``
user acting as a trader. After the orders of a round the paper venue matches the resting ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.rows import dict_row

from pasar.config import Settings
from pasar.db.pool import Conn, Database, tenant_transaction
from pasar.db.urls import DatabaseUrls
from pasar.errors import DomainError
from pasar.market import repository as market_repo
from pasar.market import service as market_service
from pasar.market.exchange import round_to_tick
from pasar.market.frames import Timeframe
from pasar.signals.models import Direction, Scorer, Signal
from pasar.signals.service import SignalCache, signals_for
from pasar.tenancy import repository as tenancy_repo
from pasar.tenancy.models import ROLE_SCOPES, Principal, Role
from pasar.trading import repository as repo
from pasar.trading import service
from pasar.trading.models import OrderRequest, OrderStatus, OrderType, Side, TimeInForce

__all__ = [
    "BotReport",
    "Intent",
    "SignalSource",
    "Strategy",
    "decide",
    "ensure_deposit",
    "follow_signal",
    "order_size",
    "pick_symbols",
    "run_bot",
    "run_demo_trading",
    "trader_principal",
]

log = logging.getLogger("pasar.bot")

FAST = 5
SLOW = 20
BAND = Decimal("0.005")  # how far from the close the mean-reversion limits rest
DEFAULT_DEPOSIT = 1_000_000_000
DEFAULT_ORDER_VALUE = 10_000_000
DEFAULT_MAX_ORDERS = 3
PREFERRED_SYMBOLS = ("BBCA", "BBRI", "BMRI", "TLKM", "ASII")
CLIENT_PREFIX = "bot-"  # the rules' orders
SIGNAL_PREFIX = "sig-"  # a signal's order: sig-<signal id>

Publish = Callable[[UUID, list[dict[str, Any]]], Awaitable[None]]


class Strategy(StrEnum):
    signal = "signal"
    rules = "rules"


@dataclass(frozen=True)
class Intent:
    """An order the rules want: side, type, quantity and (for a limit) its price."""

    side: Side
    type: OrderType
    quantity: Decimal
    limit_price: Decimal | None = None


def _mean(values: Sequence[Decimal]) -> Decimal:
    return sum(values, Decimal(0)) / len(values)


def order_size(close: Decimal, lot_size: int, order_value: int = DEFAULT_ORDER_VALUE) -> int:
    """Shares worth about ``order_value`` at ``close``, in whole lots (at least one lot)."""
    return max(1, int(Decimal(order_value) / (close * lot_size))) * lot_size


def _step_towards(held: Decimal, target: Decimal, size: int) -> Intent | None:
    """The market order towards ``target`` shares: scaling in one order size at a time, scaling out at once."""
    if held < target:
        return Intent(Side.buy, OrderType.market, min(Decimal(size), target - held))
    if held > target:
        return Intent(Side.sell, OrderType.market, held - target)
    return None


def follow_signal(
    signal: Direction,
    close: Decimal,
    held: Decimal,
    *,
    lot_size: int,
    order_value: int = DEFAULT_ORDER_VALUE,
    max_orders: int = DEFAULT_MAX_ORDERS,
) -> Intent | None:
    """The order for one symbol's signal this round (pure): see the module docstring."""
    if signal is Direction.flat or lot_size <= 0 or close <= 0:
        return None
    size = order_size(close, lot_size, order_value)
    target = Decimal(size * max_orders) if signal is Direction.long else Decimal(0)  # long-only: short means out
    return _step_towards(held, target, size)


def decide(
    closes: Sequence[Decimal],
    held: Decimal,
    *,
    lot_size: int,
    tick_rule: str,
    order_value: int = DEFAULT_ORDER_VALUE,
    max_orders: int = DEFAULT_MAX_ORDERS,
) -> list[Intent]:
    """The rules' orders for one symbol this round (pure): see the module docstring. Needs at least ``SLOW``
    closes."""
    if len(closes) < SLOW or lot_size <= 0:
        return []
    close, fast, slow = closes[-1], _mean(closes[-FAST:]), _mean(closes[-SLOW:])
    if close <= 0:
        return []
    size = order_size(close, lot_size, order_value)
    trend = _step_towards(held, Decimal(size * max_orders) if fast > slow else Decimal(0), size)
    intents = [] if trend is None else [trend]
    selling = trend.quantity if trend is not None and trend.side is Side.sell else Decimal(0)
    if close < slow:
        price = round_to_tick(close * (1 - BAND), tick_rule, "down")
        intents.append(Intent(Side.buy, OrderType.limit, Decimal(size), price))
    elif close > slow and held - selling > 0:
        price = round_to_tick(close * (1 + BAND), tick_rule, "up")
        intents.append(Intent(Side.sell, OrderType.limit, min(Decimal(size), held - selling), price))
    return intents


@dataclass(frozen=True)
class SignalSource:
    """Where the bot's signals come from: the in-process signal service over ``scorer`` (the champion model)."""

    scorer: Scorer
    settings: Settings
    cache: SignalCache = field(default_factory=SignalCache)

    @property
    def model(self) -> str | None:
        status = self.scorer.status
        return None if status is None else f"{status.name} v{status.version}"


@dataclass
class BotReport:
    tenant_id: UUID
    symbols: list[str]
    model: str | None = None  # the champion whose signals the bot was given (None: rules only)
    deposited: int = 0
    rounds: int = 0
    orders: Counter[str] = field(default_factory=Counter)  # by status
    signals: Counter[str] = field(default_factory=Counter)  # the signals answered, by direction
    strategies: Counter[str] = field(default_factory=Counter)  # orders by the strategy that placed them
    fallbacks: Counter[str] = field(default_factory=Counter)  # symbol rounds without a signal, by reason code
    rejections: Counter[str] = field(default_factory=Counter)  # by reason code
    cancelled: int = 0
    fills: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": str(self.tenant_id),
            "symbols": self.symbols,
            "model": self.model,
            "deposited": self.deposited,
            "rounds": self.rounds,
            "orders": dict(self.orders),
            "signals": dict(self.signals),
            "strategies": dict(self.strategies),
            "fallbacks": dict(self.fallbacks),
            "rejections": dict(self.rejections),
            "cancelled": self.cancelled,
            "fills": self.fills,
        }


async def trader_principal(database: Database, tenant_id: UUID) -> Principal:
    """The tenant's ``admin`` user acting as a trader: orders need a user, and the system principal is none."""
    async with tenant_transaction(Principal.system(tenant_id), database=database) as conn:
        admin = await tenancy_repo.get_user_by_username(conn, tenant_id, "admin")
    if admin is None:
        raise LookupError(f"tenant {tenant_id} has no admin user for the bot to act as")
    return Principal(
        kind="user", subject_id=admin.id, tenant_id=tenant_id, role=Role.trader, scopes=ROLE_SCOPES[Role.trader]
    )


async def ensure_deposit(database: Database, tenant_id: UUID, amount: int) -> int:
    """Deposit ``amount`` once: only when the tenant has never deposited. Returns what was deposited now."""
    system = Principal.system(tenant_id)
    async with tenant_transaction(system, database=database) as conn:
        await repo.lock_account(conn, tenant_id)  # two bots at once deposit once
        if (await repo.ledger_balances(conn, tenant_id)).get("capital", 0) != 0:
            return 0
        await service.move_cash(conn, system, amount=amount, currency=service.ACCOUNT_CURRENCY, deposit=True)
    return amount


async def recent_closes(conn: Conn, instrument: market_repo.InstrumentRow, count: int) -> list[Decimal]:
    """The latest ``count`` closes (oldest first) of the instrument's finest stored timeframe."""
    latest = await repo.latest_bar(conn, instrument.id)
    if latest is None:
        return []
    timeframe = Timeframe(latest["timeframe"])
    span = timedelta(seconds=timeframe.seconds * count * 4)
    rows: list[dict[str, Any]] = []
    for _ in range(6):  # widen over nights, weekends and holidays
        page = await market_service.bars(
            conn,
            symbol=instrument.symbol,
            timeframe=timeframe,
            start=latest["ts"] - span,
            end=latest["ts"] + timedelta(microseconds=1),
            limit=market_service.MAX_BARS_PAGE,
        )
        rows = page.bars
        if len(rows) >= count:
            break
        span *= 8
    return [Decimal(row["close"]) for row in rows[-count:]]


async def pick_symbols(database: Database, tenant_id: UUID, wanted: int = len(PREFERRED_SYMBOLS)) -> list[str]:
    """Tradable IDR instruments of IDX that have bars: the preferred liquid names first."""
    async with tenant_transaction(Principal.system(tenant_id), database=database) as conn:
        instruments = [
            row
            for row in await market_repo.list_instruments(conn, asset_class=None, exchange="IDX")
            if row.currency == service.ACCOUNT_CURRENCY and row.is_tradable
        ]
        priced = await repo.latest_closes(conn, [row.id for row in instruments])
    symbols = [row.symbol for row in instruments if row.id in priced]
    symbols.sort(key=lambda s: (PREFERRED_SYMBOLS.index(s) if s in PREFERRED_SYMBOLS else len(PREFERRED_SYMBOLS), s))
    return symbols[:wanted]


async def _signal(conn: Conn, principal: Principal, symbol: str, source: SignalSource) -> Signal | DomainError:
    """The symbol's signal (logged in the tenant's signal log), or why there is none."""
    try:
        answers = await signals_for(
            conn, principal, source.scorer, [symbol], settings=source.settings, cache=source.cache
        )
    except DomainError as error:  # no usable champion: raised for the whole batch, before anything is written
        return error
    return answers[symbol]


async def _trade_symbol(
    conn: Conn,
    principal: Principal,
    symbol: str,
    report: BotReport,
    outbox: service.Outbox,
    round_no: int,
    signals: SignalSource | None,
) -> None:
    assert principal.tenant_id is not None
    instrument = await market_repo.get_instrument(conn, symbol)
    if instrument is None:
        return
    for order in await repo.open_orders(conn, principal.tenant_id, instrument_id=instrument.id):
        if order["client_order_id"].startswith(CLIENT_PREFIX) and order["type"] == OrderType.limit:
            await service.cancel_order(conn, principal, order["id"], outbox=outbox)
            report.cancelled += 1
    closes = await recent_closes(conn, instrument, SLOW)
    if not closes:
        return
    position = await repo.get_position(conn, principal.tenant_id, instrument.id)
    held = Decimal(0) if position is None else position["quantity"]
    signal = None if signals is None else await _signal(conn, principal, symbol, signals)
    if isinstance(signal, DomainError):
        report.fallbacks[signal.code] += 1
    orders: list[tuple[Intent, str]]
    if isinstance(signal, Signal):
        report.signals[signal.direction] += 1
        strategy = Strategy.signal
        step = follow_signal(signal.direction, closes[-1], held, lot_size=instrument.lot_size)
        orders = [] if step is None else [(step, f"{SIGNAL_PREFIX}{signal.signal_id}")]
    else:
        strategy = Strategy.rules
        intents = decide(closes, held, lot_size=instrument.lot_size, tick_rule=instrument.tick_rule)
        orders = [(intent, f"{CLIENT_PREFIX}{round_no}-{symbol}-{uuid4().hex[:12]}") for intent in intents]
    for intent, client_order_id in orders:
        request = OrderRequest(
            symbol=symbol,
            side=intent.side,
            type=intent.type,
            quantity=intent.quantity,
            limit_price=intent.limit_price,
            time_in_force=TimeInForce.day,
            client_order_id=client_order_id,
        )
        _, body = await service.place_order(conn, principal, request, idempotency_key=None, outbox=outbox)
        document = json.loads(body)
        report.orders[document["status"]] += 1
        report.strategies[strategy] += 1
        if document["status"] == OrderStatus.rejected:
            report.rejections[document["reject_reason"]] += 1


async def run_bot(
    database: Database,
    principal: Principal,
    *,
    symbols: Sequence[str],
    rounds: int,
    deposit: int = DEFAULT_DEPOSIT,
    publish: Publish | None = None,
    signals: SignalSource | None = None,
) -> BotReport:
    """Trade ``rounds`` rounds over ``symbols`` for the principal's tenant (a user principal: see
    :func:`trader_principal`), on ``signals`` where they answer and on the rules elsewhere. Each symbol is one
    transaction per round (its signal is logged with its order), then the venue matches resting orders;
    ``publish`` gets each committed transaction's stream events."""
    assert principal.tenant_id is not None
    tenant_id = principal.tenant_id
    report = BotReport(tenant_id, list(symbols), model=None if signals is None else signals.model)
    report.deposited = await ensure_deposit(database, tenant_id, deposit)
    for round_no in range(1, rounds + 1):
        for symbol in symbols:
            outbox = service.Outbox()
            async with tenant_transaction(principal, database=database) as conn:
                await _trade_symbol(conn, principal, symbol.upper(), report, outbox, round_no, signals)
            if publish is not None:
                await publish(tenant_id, outbox.events)
        outbox = service.Outbox()
        async with tenant_transaction(principal, database=database) as conn:
            report.fills += await service.run_matching(conn, principal, outbox=outbox)
        if publish is not None:
            await publish(tenant_id, outbox.events)
        report.rounds = round_no
    return report


async def _tenant_id(owner_url: str, tenant: str) -> UUID:
    try:
        return UUID(tenant)
    except ValueError:
        pass
    # A slug: tenants are invisible without a tenant context, so look it up as the owner (as the demo does).
    async with await psycopg.AsyncConnection.connect(owner_url, row_factory=dict_row) as conn:
        found = await tenancy_repo.tenant_id_by_slug(conn, tenant)
    if found is None:
        raise LookupError(f"no tenant {tenant!r}")
    return found


async def _demo(
    settings: Settings,
    urls: DatabaseUrls,
    tenants: list[str],
    rounds: int,
    symbols: Sequence[str] | None,
    scorer: Scorer | None,
) -> dict[str, Any]:
    database = Database(urls.app, min_size=1, max_size=2)
    await database.open()
    publish: Publish | None = None
    redis = None
    if settings.redis_url is not None:  # with Redis, API processes serving the tenants see the bot's events live
        from redis.asyncio import Redis

        from api.stream import StreamHub

        redis = Redis.from_url(settings.redis_url.get_secret_value(), socket_connect_timeout=0.5, socket_timeout=0.5)
        publish = StreamHub(redis).publish
    signals = None if scorer is None else SignalSource(scorer, settings)  # one feature cache for every tenant
    try:
        reports = []
        for tenant in tenants:
            tenant_id = await _tenant_id(urls.owner, tenant)
            chosen = list(symbols) if symbols else await pick_symbols(database, tenant_id)
            principal = await trader_principal(database, tenant_id)
            report = await run_bot(database, principal, symbols=chosen, rounds=rounds, publish=publish, signals=signals)
            log.info("demo bot for %s: %s", tenant, report.as_dict())
            reports.append(report.as_dict())
        return {"rounds": rounds, "tenants": reports}
    finally:
        await database.close()
        if redis is not None:
            await redis.aclose()


def run_demo_trading(
    settings: Settings,
    urls: DatabaseUrls,
    tenants: list[str],
    rounds: int,
    *,
    symbols: Sequence[str] | None = None,
    scorer: Scorer | None = None,
) -> dict[str, Any]:
    """Paper-trade ``rounds`` rounds for each tenant (a tenant id or slug) with the demo bot, on the signals of
    ``scorer`` (the champion model: ``serving.predictor.Predictor``, built by the caller) or, without one, on the
    rules; blocking (runs its own event loop). Symbols default to :func:`pick_symbols`. Returns a summary per
    tenant."""
    return asyncio.run(_demo(settings, urls, tenants, rounds, symbols, scorer))
