"""AI signals: the champion model's score for a symbol (or up to 100), through the in-process predictor, each one
logged in the tenant's signal log; the served model's status.

No model loaded, or a champion older than ``PASAR_SIGNAL_MAX_MODEL_AGE_DAYS`` → 503 ``model_unavailable``; bars older
than ``PASAR_SIGNAL_MAX_FEATURE_AGE_SECONDS`` of trading time on the tenant's venue clock → 503 ``features_stale``;
an unknown symbol → 404; a symbol without bars or with too little history → 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from api.deps import CurrentPrincipal, RuntimeDep, TenantConn, require
from api.schemas import ERROR_RESPONSES, Body, ErrorDetail
from pasar.errors import DomainError
from pasar.signals import service as signals
from pasar.signals.models import Explanation as ExplanationModel
from pasar.signals.models import Signal as SignalModel
from pasar.tenancy.models import Role, Scope

router = APIRouter(prefix="/v1", tags=["signals"], responses=ERROR_RESPONSES)
Read = Depends(require(*Role, scope=Scope.read))
Symbol = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")]


class Contribution(BaseModel):
    feature: str
    value: float
    contribution: float


class Explanation(BaseModel):
    """Additive contributions: ``bias + Σ contribution = raw_score`` in ``space`` (``log_odds`` or
    ``probability``), sorted by absolute contribution."""

    space: str
    method: str
    bias: float
    raw_score: float
    items: list[Contribution]


class Signal(BaseModel):
    signal_id: UUID | None
    symbol: str
    score: float = Field(description="P(up after costs) over the model's horizon")
    direction: Literal["long", "short", "flat"] = Field(
        description="long when score >= the model's base_rate + 0.05, short when <= base_rate - 0.05 (base_rate 0.5 "
        "when unknown; see the served model), else flat"
    )
    model_name: str
    model_version: int
    timeframe: str
    feature_ts: datetime = Field(description="Start of the last bar the features were computed from")
    feature_age_seconds: float = Field(description="Trading-session seconds behind the venue's clock")
    features: dict[str, float]
    explanation: Explanation | None = None
    created_at: datetime | None = None


class BatchRequest(Body):
    symbols: list[Symbol] = Field(min_length=1, max_length=signals.MAX_BATCH)
    explain: bool = False


class BatchItem(BaseModel):
    symbol: str
    signal: Signal | None = None
    error: ErrorDetail | None = None


class BatchResponse(BaseModel):
    items: list[BatchItem]


class LoggedSignal(BaseModel):
    signal_id: UUID
    symbol: str
    timeframe: str
    score: float
    direction: str
    model_name: str
    model_version: int
    feature_ts: datetime
    features: dict[str, float]
    contributions: dict[str, Any] | None
    actor_type: str
    actor_id: str
    request_id: str | None
    created_at: datetime


class ServedModel(BaseModel):
    loaded: bool
    model: dict[str, Any] | None
    last_error: str | None


def _explanation(explanation: ExplanationModel | None) -> Explanation | None:
    if explanation is None:
        return None
    return Explanation(
        space=explanation.space,
        method=explanation.method,
        bias=explanation.bias,
        raw_score=explanation.raw_score,
        items=[
            Contribution(feature=item.feature, value=item.value, contribution=item.contribution)
            for item in explanation.items
        ],
    )


def _signal(signal: SignalModel) -> Signal:
    return Signal(
        signal_id=signal.signal_id,
        symbol=signal.symbol,
        score=signal.score,
        direction=signal.direction.value,
        model_name=signal.model_name,
        model_version=signal.model_version,
        timeframe=signal.timeframe,
        feature_ts=signal.feature_ts,
        feature_age_seconds=signal.feature_age_seconds,
        features=signal.features,
        explanation=_explanation(signal.explanation),
        created_at=signal.created_at,
    )


@router.get("/models/champion", response_model=ServedModel, dependencies=[Read])
async def served_model(runtime: RuntimeDep, principal: CurrentPrincipal) -> ServedModel:
    """The model this API process serves (the champion it loaded), or why none is loaded."""
    document = runtime.predictor.document()
    return ServedModel(loaded=document["loaded"], model=document["model"], last_error=document["last_error"])


@router.post("/signals/batch", response_model=BatchResponse, dependencies=[Read])
async def batch_signals(
    body: BatchRequest, conn: TenantConn, principal: CurrentPrincipal, runtime: RuntimeDep
) -> BatchResponse:
    """Signals of up to 100 symbols in one call; a symbol that has none carries its error instead."""
    results = await signals.signals_for(
        conn,
        principal,
        runtime.predictor,
        body.symbols,
        settings=runtime.settings,
        explain=body.explain,
        cache=runtime.signal_cache,
    )
    items = []
    for symbol, result in results.items():
        if isinstance(result, DomainError):
            error = ErrorDetail(code=result.code, message=result.message, details=result.details)
            items.append(BatchItem(symbol=symbol, error=error))
        else:
            items.append(BatchItem(symbol=symbol, signal=_signal(result)))
    return BatchResponse(items=items)


@router.get("/signals/log/{signal_id}", response_model=LoggedSignal, dependencies=[Read])
async def logged_signal(signal_id: UUID, conn: TenantConn, principal: CurrentPrincipal) -> LoggedSignal:
    """A signal of this tenant's log, by the ``signal_id`` it was answered with (an order can name it)."""
    row = await signals.logged_signal(conn, principal, signal_id)
    return LoggedSignal(signal_id=row["id"], **{key: value for key, value in row.items() if key != "id"})


@router.get("/signals/{symbol}", response_model=Signal, dependencies=[Read])
async def get_signal(
    symbol: Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")],
    conn: TenantConn,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    explain: bool = False,
) -> Signal:
    """The champion model's signal for ``symbol`` from its latest bars: score, direction, model version, feature
    time; with ``explain=true`` the feature contributions."""
    signal = await signals.signal_for(
        conn,
        principal,
        runtime.predictor,
        symbol,
        settings=runtime.settings,
        explain=explain,
        cache=runtime.signal_cache,
    )
    return _signal(signal)
