"""The BentoML service of the signal model: the same champion ONNX through the same :class:`Predictor` as the API.

``pasar serve-model`` (``bentoml serve serving.service:SignalModel``) serves, on loopback by default:

``POST /predict``
    ``{"rows": [[f1, ..., fk], ...]}`` (rows in the model's feature order) or ``{"rows": [{"ret_1": ..., ...}, ...]}``
    (rows keyed by feature name) → ``{"scores": [P(up), ...], "model_name", "model_version", "feature_names"}``.
``POST /signal``
    ``{"symbol": "BBCA", "explain": false}`` → the features of the symbol's latest stored bars → ``{"symbol",
    "score", "direction", "model_name", "model_version", "timeframe", "feature_ts", "feature_age_seconds",
    "features", "explanation"}``. Read as ``pasar_app`` on the market clock; not logged (there is no tenant here:
    tenant signals go through the API, ``GET /v1/signals/{symbol}``).
``POST /model``
    The served model's status.

Errors use the API's envelope ``{"error": {"code", "message", "details"}}``: 503 ``model_unavailable`` (no champion
yet, or too old), 503 ``features_stale``, 404 ``unknown_symbol``, 422 ``no_bars`` / ``insufficient_history``, 400
for rows of the wrong width. The champion is loaded once when the worker starts and swapped when the alias moves
(checked at most every ``PASAR_SIGNAL_RELOAD_SECONDS``). Configuration is Pasar's: ``PASAR_HOME``, the database URLs,
``PASAR_MLFLOW_TRACKING_URI`` (or ``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar, cast

import bentoml
import numpy as np
from pydantic import BaseModel
from starlette.responses import JSONResponse

from pasar.config import get_settings
from pasar.db.pool import Database
from pasar.db.urls import database_urls
from pasar.errors import DomainError
from pasar.signals.service import ModelUnavailable, SignalCache, SignalPolicy, compute_signals
from serving.predictor import ModelNotLoaded, Predictor

log = logging.getLogger("pasar.serving")

Rows = list[list[float]] | list[dict[str, float]]


# The answers are models (not bare dicts): BentoML then serialises them directly, and documents them in /docs.


class Scores(BaseModel):
    scores: list[float]
    model_name: str
    model_version: int
    feature_names: list[str]


class SignalAnswer(BaseModel):
    symbol: str
    score: float
    direction: str
    model_name: str
    model_version: int
    timeframe: str
    feature_ts: str
    feature_age_seconds: float
    features: dict[str, float]
    explanation: dict[str, Any] | None = None


class ServedModel(BaseModel):
    loaded: bool
    model: dict[str, Any] | None
    last_error: str | None


Answer = TypeVar("Answer", bound=BaseModel)


def _error(answer: type[Answer], status: int, code: str, message: str, details: Any = None) -> Answer:
    """The API's error envelope as the response: BentoML passes a returned Response through as is (typed as the
    method's answer so that the method keeps its declared output schema)."""
    response = JSONResponse({"error": {"code": code, "message": message, "details": details}}, status_code=status)
    return cast(Answer, response)


def _domain_error(answer: type[Answer], error: DomainError) -> Answer:
    return _error(answer, error.status_code, error.code, error.message, error.details)


@bentoml.service(
    name="pasar-signal-model",
    workers=1,
    traffic={"timeout": 30, "concurrency": 256},
    logging={"access": {"enabled": False}},  # like the API: no per-request log line; request metrics at /metrics
    # No tracing exporter is configured: spare the per-request spans (BENTOML_CONFIG_OPTIONS can turn them on).
    tracing={"excluded_urls": ["/predict", "/signal", "/model"]},
)
class SignalModel:
    """The champion signal model over HTTP (see the module docstring)."""

    def __init__(self) -> None:
        self.settings = get_settings()
        self.predictor = Predictor.from_settings(self.settings)
        if not self.predictor.load():  # once, at start: the first request does not pay for it
            log.warning("no champion model yet (%s): answering 503 until one is promoted", self.predictor.last_error)
        self.cache = SignalCache()
        self._database: Database | None = None
        self._database_lock = asyncio.Lock()

    async def _db(self) -> Database:
        async with self._database_lock:
            if self._database is None:
                urls = await asyncio.to_thread(database_urls, self.settings)
                database = Database(urls.app, min_size=1, max_size=self.settings.db_pool_max_size)
                await database.open()
                self._database = database
            return self._database

    @bentoml.on_shutdown  # type: ignore[untyped-decorator]  # bentoml's decorators are not typed
    async def close(self) -> None:
        if self._database is not None:
            await self._database.close()

    @bentoml.api  # type: ignore[untyped-decorator]
    async def predict(self, rows: Rows) -> Scores:
        """P(up) of each feature row (the model call takes microseconds: it runs on the event loop)."""
        self.predictor.poke()
        status = self.predictor.status
        if status is None:
            return _domain_error(Scores, ModelUnavailable("no signal model is loaded: train and promote one"))
        try:
            keyed = [row for row in rows if isinstance(row, dict)]
            if keyed:
                if len(keyed) != len(rows):
                    raise ValueError("rows mix lists and objects")
                matrix = self.predictor.rows_from_dicts(keyed)
            else:
                matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        except (KeyError, ValueError, TypeError) as error:
            return _error(Scores, 400, "invalid_rows", str(error).strip("'\""))
        width = len(status.feature_names)
        if matrix.shape[1] != width and len(rows) > 0:
            names = ", ".join(status.feature_names)
            return _error(Scores, 400, "invalid_rows", f"each row needs {width} features in the order {names}")
        try:
            scores = self.predictor.predict(matrix) if len(rows) else np.empty(0, dtype=np.float32)
        except ModelNotLoaded as error:
            return _domain_error(Scores, ModelUnavailable(str(error)))
        return Scores(
            scores=scores.tolist(),
            model_name=status.name,
            model_version=status.version,
            feature_names=list(status.feature_names),
        )

    @bentoml.api  # type: ignore[untyped-decorator]
    async def signal(self, symbol: str, explain: bool = False) -> SignalAnswer:
        """The signal of ``symbol`` from the features of its latest stored bars."""
        try:
            database = await self._db()
            async with database.untenanted_transaction() as conn:
                results = await compute_signals(
                    conn,
                    self.predictor,
                    [symbol],
                    policy=SignalPolicy.from_settings(self.settings),
                    venue_clock="market",
                    explain=explain,
                    cache=self.cache,
                )
        except DomainError as error:
            return _domain_error(SignalAnswer, error)
        result = results[symbol]
        if isinstance(result, DomainError):
            return _domain_error(SignalAnswer, result)
        document = result.document()
        del document["signal_id"], document["created_at"]
        return SignalAnswer(**document)

    @bentoml.api  # type: ignore[untyped-decorator]
    def model(self) -> ServedModel:
        """The served model's status."""
        document = self.predictor.document()
        return ServedModel(loaded=document["loaded"], model=document["model"], last_error=document["last_error"])
