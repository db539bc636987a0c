"""Signals: what a signal is, the direction rule, the venue clock for staleness, and the scorer the service uses.

Direction (:func:`direction`)
    The score is the model's P(up after costs) over its horizon; the champion's *base rate* is the share of such
    moves among its training rows (the score of a model that knows nothing). ``long`` when the score is at least
    5 points above the base rate, ``short`` when at least 5 points below, ``flat`` in between: the band where the
    model has no usable edge over the prior, so that a score hovering near it does not flip the position back and
    forth. With a balanced label (or a model without a recorded base rate) that is score >= 0.55 / <= 0.45. Costs
    make the label unbalanced — beating a 0.4% round trip within 15 minutes is rarer than a coin flip — and a fixed
    band around 0.5 would then answer ``short`` for every symbol of a calibrated model.

Feature age (:func:`session_seconds_between`)
    Staleness is measured on the venue's clock in *trading-session* seconds: the continuous-trading time of the
    instrument's calendar between the end of the symbol's last bar and the venue's "now". Overnight, at weekends and
    on holidays no session time passes, so the last bar of the day stays fresh until trading resumes. The venue's
    "now" follows the tenant's ``trading.venue_clock``: ``wall`` is the real clock; ``market`` (the paper venue
    replaying stored bars) is the end of the newest stored bar of any instrument on the same calendar and timeframe,
    so a symbol whose data stopped while the market went on is stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol
from uuid import UUID

import numpy as np
import numpy.typing as npt
import polars as pl

from pasar.market.exchange import TradingCalendar

__all__ = [
    "EDGE_BAND",
    "Contribution",
    "Direction",
    "Explanation",
    "ModelStatus",
    "Scorer",
    "Signal",
    "direction",
    "direction_thresholds",
    "session_seconds_between",
]

EDGE_BAND: Final = 0.05
_UNKNOWN_BASE_RATE: Final = 0.5
_MAX_SPAN_DAYS: Final = 400  # beyond this the age is only a lower bound (the answer is "stale" anyway)


class Direction(StrEnum):
    long = "long"
    short = "short"
    flat = "flat"


def direction_thresholds(base_rate: float | None = None) -> tuple[float, float]:
    """(long at or above, short at or below) for a model with ``base_rate`` (see the module docstring)."""
    centre = _UNKNOWN_BASE_RATE if base_rate is None else base_rate
    return round(centre + EDGE_BAND, 12), round(centre - EDGE_BAND, 12)  # 0.5 - 0.05 is 0.45, not 0.44999…


def direction(score: float, base_rate: float | None = None) -> Direction:
    """``long`` at score >= base rate + 0.05, ``short`` at score <= base rate - 0.05, else ``flat``."""
    long_at, short_at = direction_thresholds(base_rate)
    if score >= long_at:
        return Direction.long
    if score <= short_at:
        return Direction.short
    return Direction.flat


def session_seconds_between(calendar: TradingCalendar, start: datetime, end: datetime) -> float:
    """Continuous-trading seconds of ``calendar`` within [start, end] (aware datetimes; 0 when end <= start)."""
    if end <= start:
        return 0.0
    zone = calendar.timezone
    first = start.astimezone(zone).date()
    last = min(end.astimezone(zone).date(), first + timedelta(days=_MAX_SPAN_DAYS))
    total = 0.0
    day: date = first
    while day <= last:
        midnight = datetime.combine(day, time(0), tzinfo=zone)
        for session in calendar.sessions_on(day):
            opens = (midnight + timedelta(seconds=session.start_seconds)).astimezone(UTC)
            closes = (midnight + timedelta(seconds=session.end_seconds)).astimezone(UTC)
            overlap = (min(closes, end) - max(opens, start)).total_seconds()
            if overlap > 0:
                total += overlap
        day += timedelta(days=1)
    return total


@dataclass(frozen=True)
class ModelStatus:
    """The model a scorer serves: the registered version holding the alias ``champion`` (or a local file)."""

    name: str
    version: int
    feature_names: tuple[str, ...]
    family: str = ""
    run_id: str = ""
    registered_at: datetime | None = None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    timeframe: str | None = None  # the bars' timeframe the model was trained on (None: unknown)
    base_rate: float | None = None  # share of positive labels in its training rows (None: unknown)
    metric_name: str = ""
    metric: float | None = None

    def age_days(self, now: datetime | None = None) -> float | None:
        if self.registered_at is None:
            return None
        return ((now or datetime.now(UTC)) - self.registered_at).total_seconds() / 86_400.0

    def document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "family": self.family,
            "run_id": self.run_id,
            "registered_at": None if self.registered_at is None else self.registered_at.isoformat(),
            "loaded_at": self.loaded_at.isoformat(),
            "timeframe": self.timeframe,
            "base_rate": self.base_rate,
            "feature_names": list(self.feature_names),
            "metric_name": self.metric_name,
            "metric": self.metric,
        }


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: float
    contribution: float


@dataclass(frozen=True)
class Explanation:
    """Additive feature contributions of one prediction: ``bias + sum(contribution) == raw_score`` in ``space``
    (``log_odds`` for LightGBM and logistic regression, ``probability`` for a random forest). ``items`` are sorted
    by absolute contribution, largest first; ``method`` says how they were computed."""

    space: str
    bias: float
    raw_score: float
    method: str
    items: tuple[Contribution, ...]

    def document(self, top: int | None = None) -> dict[str, Any]:
        items = self.items if top is None else self.items[:top]
        return {
            "space": self.space,
            "method": self.method,
            "bias": self.bias,
            "raw_score": self.raw_score,
            "items": [
                {"feature": item.feature, "value": item.value, "contribution": item.contribution} for item in items
            ],
        }


class Scorer(Protocol):
    """What the signal service needs from a model server (:class:`serving.predictor.Predictor` is one)."""

    @property
    def status(self) -> ModelStatus | None: ...

    def poke(self) -> None:
        """Non-blocking: check in the background whether the champion moved, if due."""

    def predict(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """P(up) of each row (float32 [n, k] in ``status.feature_names`` order)."""

    def explain(self, row: npt.NDArray[np.float32]) -> Explanation:
        """The additive explanation of one row."""

    def features(self, bars: pl.DataFrame, *, calendar_code: str) -> pl.DataFrame:
        """The features of each symbol's last bar (``models_ml.features.latest_features``)."""


@dataclass(frozen=True)
class Signal:
    """One answered signal."""

    symbol: str
    score: float
    direction: Direction
    model_name: str
    model_version: int
    timeframe: str
    feature_ts: datetime
    features: dict[str, float]
    feature_age_seconds: float
    explanation: Explanation | None = None
    instrument_id: int | None = None
    signal_id: UUID | None = None
    created_at: datetime | None = None

    def document(self) -> dict[str, Any]:
        return {
            "signal_id": None if self.signal_id is None else str(self.signal_id),
            "symbol": self.symbol,
            "score": self.score,
            "direction": self.direction.value,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "timeframe": self.timeframe,
            "feature_ts": self.feature_ts.isoformat(),
            "feature_age_seconds": self.feature_age_seconds,
            "features": self.features,
            "explanation": None if self.explanation is None else self.explanation.document(),
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
        }
