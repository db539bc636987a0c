"""Rules of signals: symbol → features of its latest bars → the champion model's score → direction, with the checks
that make the API answer a clear 503 rather than a wrong signal, and the tenant's signal log.

For each symbol: the instrument (unknown → 404 ``not_found``); the series to read — the timeframe the champion was
trained on when the symbol has it, else (a model of unknown timeframe) the finest stored one; no bars → 422
``no_bars``; the last :data:`HISTORY_BARS` bars → features of the last bar (``models_ml.features.latest_features``,
through the scorer); a feature still warming up → 422 ``insufficient_history``; the features' age on the venue's
clock (:mod:`pasar.signals.models`) above ``Settings.signal_max_feature_age_seconds`` → 503 ``features_stale``;
no champion loaded, or one registered more than ``Settings.signal_max_model_age_days`` ago → 503
``model_unavailable``.

Features depend only on the stored bars, so they are cached per ``(instrument, timeframe, last bar, series update
time)`` (:class:`FeatureCache` in a :class:`SignalCache`, which also keeps each tenant's venue clock setting for 30 s
and the market clock for 1 s): while no bar arrives, a signal costs one small indexed read, the model call and the
log insert.
Every answered signal is appended to the tenant's ``ai.signals`` with its id, model version, inputs and (when asked)
explanation, so an order can name the signal it acted on.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from uuid import UUID, uuid4

import numpy as np
import polars as pl

from pasar.config import Settings
from pasar.db.pool import Conn
from pasar.errors import DomainError, InvalidInput, NotFound, ServiceUnavailable
from pasar.market import exchange
from pasar.market import repository as market_repo
from pasar.market.frames import Timeframe
from pasar.request_context import current_request_id
from pasar.signals import repository
from pasar.signals.models import ModelStatus, Scorer, Signal, direction, session_seconds_between
from pasar.tenancy import service as tenancy
from pasar.tenancy.models import Principal

__all__ = [
    "HISTORY_BARS",
    "MAX_BATCH",
    "FeatureCache",
    "FeaturesStale",
    "InsufficientHistory",
    "ModelUnavailable",
    "NoBars",
    "SignalCache",
    "SignalPolicy",
    "check_model",
    "compute_signals",
    "logged_signal",
    "signal_for",
    "signals_for",
]

HISTORY_BARS: Final = 300  # = models_ml.features.LIVE_HISTORY: enough for the exponential means to settle
MAX_BATCH: Final = 100
VenueClock = Literal["market", "wall"]
_TIMEFRAMES: Final = frozenset(timeframe.value for timeframe in Timeframe)


class ModelUnavailable(ServiceUnavailable):
    code = "model_unavailable"


class FeaturesStale(ServiceUnavailable):
    code = "features_stale"


class NoBars(InvalidInput):
    code = "no_bars"


class InsufficientHistory(InvalidInput):
    code = "insufficient_history"


@dataclass(frozen=True)
class SignalPolicy:
    """When a signal is refused: model age (days) and feature age (trading-session seconds); 0 means no limit."""

    max_model_age_days: float = 30.0
    max_feature_age_seconds: float = 900.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SignalPolicy:
        return cls(settings.signal_max_model_age_days, settings.signal_max_feature_age_seconds)


CacheKey = tuple[int, str, datetime, datetime]


class FeatureCache:
    """A bounded LRU of feature rows: ``(instrument_id, timeframe, last_ts, updated_at) → (feature_ts, {name: value})``.
    A new bar or a rewritten series changes the key, so an entry is never stale, only unused."""

    def __init__(self, capacity: int = 4_096) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[CacheKey, tuple[datetime, dict[str, float | None]]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> tuple[datetime, dict[str, float | None]] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: CacheKey, value: tuple[datetime, dict[str, float | None]]) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class SignalCache:
    """What one server process keeps between signals: the feature rows (:class:`FeatureCache`), each tenant's venue
    clock setting (``config_ttl`` seconds, like the API's rate limits) and the market clock per (calendar, timeframe)
    (``clock_ttl`` seconds: bars arrive at most once a minute per series)."""

    def __init__(self, *, features: int = 4_096, config_ttl: float = 30.0, clock_ttl: float = 1.0) -> None:
        self.features = FeatureCache(features)
        self.config_ttl = config_ttl
        self.clock_ttl = clock_ttl
        self._venue_clocks: dict[UUID, tuple[float, VenueClock]] = {}
        self._market: dict[tuple[str, str], tuple[float, datetime | None]] = {}

    def venue_clock(self, tenant_id: UUID) -> VenueClock | None:
        found = self._venue_clocks.get(tenant_id)
        return found[1] if found is not None and found[0] > time.monotonic() else None

    def set_venue_clock(self, tenant_id: UUID, clock: VenueClock) -> None:
        self._venue_clocks[tenant_id] = (time.monotonic() + self.config_ttl, clock)

    def market_clock(self, pair: tuple[str, str]) -> tuple[bool, datetime | None]:
        """(known, newest bar start) of a (calendar, timeframe)."""
        found = self._market.get(pair)
        if found is None or found[0] <= time.monotonic():
            return False, None
        return True, found[1]

    def set_market_clock(self, pair: tuple[str, str], newest: datetime | None) -> None:
        self._market[pair] = (time.monotonic() + self.clock_ttl, newest)

    def clear(self) -> None:
        self.features.clear()
        self._venue_clocks.clear()
        self._market.clear()


def check_model(scorer: Scorer, policy: SignalPolicy, now: datetime | None = None) -> ModelStatus:
    """The served model's status; :class:`ModelUnavailable` when none is loaded or it is too old."""
    scorer.poke()
    status = scorer.status
    if status is None:
        raise ModelUnavailable(
            "no signal model is loaded: train and promote one (pasar train, or the Dagster ml assets)",
            details={"reason": "no_champion"},
        )
    age = status.age_days(now)
    if policy.max_model_age_days > 0 and age is not None and age > policy.max_model_age_days:
        raise ModelUnavailable(
            f"the champion {status.name} v{status.version} was registered {age:.1f} days ago, more than the "
            f"{policy.max_model_age_days:g} allowed: retrain it",
            details={"reason": "model_stale", "model_version": status.version, "age_days": round(age, 3)},
        )
    return status


def _pick_series(series: list[dict[str, Any]], model_timeframe: str | None) -> dict[str, Any] | None:
    known = [row for row in series if row["timeframe"] in _TIMEFRAMES]
    if model_timeframe is not None:
        return next((row for row in known if row["timeframe"] == model_timeframe), None)
    return min(known, key=lambda row: Timeframe(row["timeframe"]).seconds, default=None)


def _feature_rows(
    scorer: Scorer, bars: pl.DataFrame, symbols_by_id: dict[int, tuple[str, str]]
) -> dict[int, tuple[datetime, dict[str, float | None]]]:
    """Features of each instrument's last bar, computed per calendar: ``instrument_id → (bar start, features)``."""
    found: dict[int, tuple[datetime, dict[str, float | None]]] = {}
    if bars.is_empty():
        return found
    ids = pl.Series("instrument_id", list(symbols_by_id), dtype=pl.Int32)
    names = pl.DataFrame(
        {
            "instrument_id": ids,
            "symbol": [symbol for symbol, _ in symbols_by_id.values()],
            "_calendar": [calendar for _, calendar in symbols_by_id.values()],
        }
    )
    joined = bars.join(names, on="instrument_id", how="inner")
    for (calendar,), part in joined.group_by("_calendar"):
        features = scorer.features(part.drop("_calendar"), calendar_code=str(calendar))
        symbol_ids = {symbol: instrument_id for instrument_id, (symbol, _) in symbols_by_id.items()}
        for row in features.iter_rows(named=True):
            values = {
                key: (None if value is None or not math.isfinite(value) else float(value))
                for key, value in row.items()
                if key not in ("symbol", "ts", "close")
            }
            found[symbol_ids[row["symbol"]]] = (row["ts"], values)
    return found


async def compute_signals(
    conn: Conn,
    scorer: Scorer,
    symbols: Sequence[str],
    *,
    policy: SignalPolicy,
    venue_clock: VenueClock = "market",
    explain: bool = False,
    cache: SignalCache | None = None,
    now: datetime | None = None,
) -> dict[str, Signal | DomainError]:
    """A signal, or the reason there is none, for each distinct symbol (in the order given). Not logged.

    Raises :class:`ModelUnavailable` (for all symbols at once) when no usable model is loaded."""
    now = now or datetime.now(UTC)
    status = check_model(scorer, policy, now)
    ordered = list(dict.fromkeys(symbols))
    results: dict[str, Signal | DomainError] = {}
    found = await market_repo.instruments_with_series(conn, ordered)
    instruments = {symbol: instrument for symbol, (instrument, _) in found.items()}
    for symbol in ordered:
        if symbol not in instruments:
            results[symbol] = NotFound(f"unknown symbol {symbol!r}", code="unknown_symbol")
    chosen: dict[str, dict[str, Any]] = {}
    for symbol, (_, series) in found.items():
        picked = _pick_series(series, status.timeframe)
        if picked is None:
            what = f"{status.timeframe} bars" if status.timeframe else "bars"
            results[symbol] = NoBars(
                f"{symbol} has no stored {what} to compute the model's features from",
                details={"symbol": symbol, "timeframe": status.timeframe},
            )
        else:
            chosen[symbol] = picked

    features: dict[str, tuple[datetime, dict[str, float | None]]] = {}
    misses: list[tuple[str, CacheKey]] = []
    for symbol, row in chosen.items():
        key: CacheKey = (instruments[symbol].id, row["timeframe"], row["last_ts"], row["updated_at"])
        cached = cache.features.get(key) if cache is not None else None
        if cached is None:
            misses.append((symbol, key))
        else:
            features[symbol] = cached
    if misses:
        bars = await market_repo.latest_bars_frame(
            conn, [(key[0], key[1], key[2]) for _, key in misses], limit=HISTORY_BARS
        )
        by_id = {key[0]: (symbol, instruments[symbol].calendar) for symbol, key in misses}
        computed = _feature_rows(scorer, bars, by_id)
        for symbol, key in misses:
            value = computed.get(key[0])
            if value is None:
                results[symbol] = NoBars(f"{symbol} has no stored bars", details={"symbol": symbol})
                continue
            features[symbol] = value
            if cache is not None:
                cache.features.put(key, value)

    clocks: dict[tuple[str, str], datetime | None] = {}
    if venue_clock == "market" and features:
        missing_pairs = []
        for pair in sorted({(instruments[symbol].calendar, chosen[symbol]["timeframe"]) for symbol in features}):
            known, newest = cache.market_clock(pair) if cache is not None else (False, None)
            if known:
                clocks[pair] = newest
            else:
                missing_pairs.append(pair)
        if missing_pairs:
            fetched = await market_repo.newest_bar_starts(conn, missing_pairs)
            for pair in missing_pairs:
                clocks[pair] = fetched.get(pair)
                if cache is not None:
                    cache.set_market_clock(pair, clocks[pair])

    names = status.feature_names
    ready: list[tuple[str, datetime, dict[str, float], float]] = []
    for symbol, (feature_ts, values) in features.items():
        missing = [name for name in names if values.get(name) is None]
        if missing:
            results[symbol] = InsufficientHistory(
                f"{symbol} has too little history at {chosen[symbol]['timeframe']} for the features "
                f"{', '.join(missing)} (the model needs about {HISTORY_BARS} bars)",
                details={"symbol": symbol, "missing": missing},
            )
            continue
        instrument = instruments[symbol]
        timeframe = Timeframe(chosen[symbol]["timeframe"])
        step = timedelta(seconds=timeframe.seconds)
        calendar = exchange.calendar(instrument.calendar)
        newest = clocks.get((instrument.calendar, timeframe.value))
        venue_now = now if venue_clock == "wall" else (newest + step if newest is not None else feature_ts + step)
        age = session_seconds_between(calendar, feature_ts + step, venue_now)
        if policy.max_feature_age_seconds > 0 and age > policy.max_feature_age_seconds:
            results[symbol] = FeaturesStale(
                f"the latest {timeframe.value} bar of {symbol} ({feature_ts.isoformat()}) is {age:,.0f} trading "
                f"seconds behind the venue's {venue_clock} clock (at most {policy.max_feature_age_seconds:g})",
                details={
                    "symbol": symbol,
                    "feature_ts": feature_ts.isoformat(),
                    "age_seconds": age,
                    "venue_clock": venue_clock,
                },
            )
            continue
        row_values = {name: float(number) for name in names if (number := values.get(name)) is not None}
        ready.append((symbol, feature_ts, row_values, age))

    if ready:
        matrix = np.array([[row[2][name] for name in names] for row in ready], dtype=np.float32)
        scores = scorer.predict(matrix)
        for index, (symbol, feature_ts, row_features, age) in enumerate(ready):
            score = float(scores[index])
            results[symbol] = Signal(
                symbol=symbol,
                instrument_id=instruments[symbol].id,
                score=score,
                direction=direction(score, status.base_rate),
                model_name=status.name,
                model_version=status.version,
                timeframe=chosen[symbol]["timeframe"],
                feature_ts=feature_ts,
                features=row_features,
                feature_age_seconds=age,
                explanation=scorer.explain(matrix[index : index + 1]) if explain else None,
            )
    return {symbol: results[symbol] for symbol in ordered}


async def _venue_clock(conn: Conn, principal: Principal, cache: SignalCache | None) -> VenueClock:
    assert principal.tenant_id is not None
    clock = cache.venue_clock(principal.tenant_id) if cache is not None else None
    if clock is None:
        clock = (await tenancy.tenant_config(conn, principal)).trading.venue_clock
        if cache is not None:
            cache.set_venue_clock(principal.tenant_id, clock)
    return clock


async def signals_for(
    conn: Conn,
    principal: Principal,
    scorer: Scorer,
    symbols: Sequence[str],
    *,
    settings: Settings,
    explain: bool = False,
    cache: SignalCache | None = None,
) -> dict[str, Signal | DomainError]:
    """:func:`compute_signals` on the tenant's venue clock, each answered signal appended to the tenant's log (its
    ``signal_id`` and ``created_at`` set)."""
    if len(symbols) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} symbols per batch", code="batch_too_large")
    assert principal.tenant_id is not None
    results = await compute_signals(
        conn,
        scorer,
        symbols,
        policy=SignalPolicy.from_settings(settings),
        venue_clock=await _venue_clock(conn, principal, cache),
        explain=explain,
        cache=cache,
    )
    answered = [value for value in results.values() if isinstance(value, Signal)]
    if not answered:
        return results
    request_id = current_request_id()
    ids = [uuid4() for _ in answered]
    rows: list[dict[str, Any]] = []
    for signal_id, signal in zip(ids, answered, strict=True):
        rows.append(
            {
                "id": signal_id,
                "symbol": signal.symbol,
                "instrument_id": signal.instrument_id,
                "timeframe": signal.timeframe,
                "score": signal.score,
                "direction": signal.direction.value,
                "model_name": signal.model_name,
                "model_version": signal.model_version,
                "feature_ts": signal.feature_ts,
                "features": signal.features,
                "contributions": None if signal.explanation is None else signal.explanation.document(),
                "actor_type": principal.actor_type,
                "actor_id": principal.actor_id,
                "request_id": request_id,
            }
        )
    stored = await repository.insert_signals(conn, principal.tenant_id, rows)
    for signal_id, signal in zip(ids, answered, strict=True):
        results[signal.symbol] = _with_id(signal, signal_id, stored[signal_id])
    return results


def _with_id(signal: Signal, signal_id: UUID, created_at: datetime) -> Signal:
    return replace(signal, signal_id=signal_id, created_at=created_at)


async def signal_for(
    conn: Conn,
    principal: Principal,
    scorer: Scorer,
    symbol: str,
    *,
    settings: Settings,
    explain: bool = False,
    cache: SignalCache | None = None,
) -> Signal:
    """One symbol's signal (logged), or its domain error raised."""
    result = (await signals_for(conn, principal, scorer, [symbol], settings=settings, explain=explain, cache=cache))[
        symbol
    ]
    if isinstance(result, DomainError):
        raise result
    return result


async def logged_signal(conn: Conn, principal: Principal, signal_id: UUID) -> dict[str, Any]:
    """One signal of the tenant's log (another tenant's is not found)."""
    row = await repository.get_signal(conn, signal_id)
    if row is None:
        raise NotFound("signal not found")
    return row
