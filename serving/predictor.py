"""The in-process predictor: the champion ONNX model in an onnxruntime session, answering in microseconds.

Loading
    :class:`RegistrySource` reads the version of the registered model (``Settings.signal_model_name``) that holds
    the alias ``champion`` from the MLflow store of the settings, with its own ``MlflowClient`` (no process-wide
    MLflow state is touched): the ONNX bytes of that exact version, checked against the SHA-256 recorded at
    registration, the feature names and order from the ONNX metadata (``feature_names``), the family, the
    registration time and the bars' timeframe it was trained on (the run's ``pasar.timeframe`` tag). An embedded
    sqlite store that does not exist yet means "no model" without creating it.

    :meth:`Predictor.start` loads in a background thread, so the API starts (and answers 503 ``model_unavailable``)
    before any model exists. :meth:`Predictor.reload_if_moved` asks the registry which version holds the alias at
    most every ``check_interval`` seconds and, when it changed, builds the new session aside and swaps it in with
    one attribute assignment (atomic: a request uses the old model or the new one, never a mix).
    :meth:`Predictor.poke` does that check in the background when it is due, so a request never waits on it.

Scoring
    One onnxruntime ``InferenceSession`` on the CPU with one intra-op and one inter-op thread and every graph
    optimization on. :meth:`Predictor.predict` takes float32 rows ``[n, k]`` in the model's feature order and returns
    P(up) (the ``probabilities`` output's column 1); the input and output names are bound once per model, so a
    single row costs one ``session.run`` (a few microseconds).

Explanations (:meth:`Predictor.explain`), additive per feature, computed on the native model of the same version
(logged beside the ONNX in the training run; loaded in the background after the ONNX):

``lightgbm``
    LightGBM's own ``pred_contrib`` (TreeSHAP): SHAP values in log-odds, ``bias + Σ contributions = raw score``.
``logistic_regression``
    Exact for a linear model: ``coefficient × standardized value`` (the pipeline's ``StandardScaler``), in
    log-odds; the bias is the intercept.
``random_forest``
    Saabas path attribution: along each tree's decision path the change of P(up) at a split is credited to the
    split's feature; averaged over the trees, in probability space; the bias is the root's P(up). Exact additivity,
    no sampling, one pass per tree.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]

from pasar.config import Settings
from pasar.errors import ServiceUnavailable
from pasar.signals.models import Contribution, Explanation, ModelStatus

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "CHAMPION_ALIAS",
    "ExplanationUnavailable",
    "LoadedModel",
    "ModelNotLoaded",
    "Predictor",
    "RegistrySource",
    "explain_native",
    "tracking_uri",
]

log = logging.getLogger("pasar.serving")

CHAMPION_ALIAS: Final = "champion"
PROBABILITIES: Final = "probabilities"
_TAG: Final = "pasar."


class ModelNotLoaded(RuntimeError):
    """No model is loaded (yet): nothing to score with."""


class ExplanationUnavailable(ServiceUnavailable):
    """The native model of the served version is not available, or its family has no explainer (503)."""

    code = "explanation_unavailable"


def tracking_uri(settings: Settings) -> str:
    """The MLflow store of ``settings`` (the same rule as :func:`models_ml.registry.tracking_uri`)."""
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    return f"sqlite:///{(settings.home.resolve() / 'mlflow.db').as_posix()}"


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


# The registry ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """What :meth:`RegistrySource.fetch` returns: the ONNX bytes of a version, its status and native model URI."""

    onnx_bytes: bytes
    status: ModelStatus
    native_model_uri: str


class RegistrySource:
    """The champion of ``model_name`` in the MLflow store at ``uri``, read with an explicit client."""

    def __init__(self, uri: str, model_name: str) -> None:
        self.uri = uri
        self.model_name = model_name
        self._client_lock = threading.Lock()
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, model_name: str | None = None) -> RegistrySource:
        return cls(tracking_uri(settings), model_name or settings.signal_model_name)

    def _store_exists(self) -> bool:
        parsed = urlparse(self.uri)
        if parsed.scheme == "sqlite":
            path = self.uri[len("sqlite:///") :] if self.uri.startswith("sqlite:///") else parsed.path
            return Path(path).exists()
        if parsed.scheme in ("", "file"):
            return Path(parsed.path or self.uri).exists()
        return True

    def client(self) -> Any:
        """The MLflow client (None while an embedded store does not exist)."""
        if not self._store_exists():
            return None
        with self._client_lock:
            if self._client is None:
                os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
                os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
                from mlflow import MlflowClient

                self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            return self._client

    def current_version(self) -> int | None:
        """The version number holding the alias ``champion`` (None: no store, model or alias)."""
        version = self._champion()
        return None if version is None else int(version.version)

    def _champion(self) -> Any:
        client = self.client()
        if client is None:
            return None
        from mlflow.exceptions import MlflowException

        try:
            return client.get_model_version_by_alias(self.model_name, CHAMPION_ALIAS)
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def fetch(self) -> Fetched | None:
        """The champion's ONNX bytes (checked against the recorded SHA-256) and status; None without a champion."""
        version = self._champion()
        if version is None:
            return None
        import mlflow
        from mlflow.models import Model

        from models_ml.export import feature_names_of, metadata_of

        client = self.client()
        tags = dict(version.tags or {})
        download = client.get_model_version_download_uri(self.model_name, version.version)
        with tempfile.TemporaryDirectory(prefix="pasar-serving-") as scratch:
            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=download, dst_path=scratch, tracking_uri=self.uri)
            )
            flavor = Model.load(str(local)).flavors.get("onnx")
            if flavor is None:
                raise ValueError(f"{self.model_name} v{version.version} is not an ONNX model")
            onnx_bytes = (local / str(flavor["data"])).read_bytes()
        recorded = tags.get(f"{_TAG}onnx_sha256")
        if recorded and hashlib.sha256(onnx_bytes).hexdigest() != recorded:
            raise ValueError(f"{self.model_name} v{version.version}: the ONNX bytes do not match the recorded SHA-256")
        names = feature_names_of(onnx_bytes)
        # Version tags first, then the training run's (where pasar.signals.training records them): one more
        # tracking-store call, made only when a tag is missing from the version.
        timeframe_key, base_rate_key = f"{_TAG}timeframe", f"{_TAG}base_rate"
        run_tags: dict[str, str] = {}
        if version.run_id and not (tags.get(timeframe_key) and tags.get(base_rate_key)):
            run_tags = client.get_run(version.run_id).data.tags
        timeframe = tags.get(timeframe_key) or run_tags.get(timeframe_key)
        base_rate = tags.get(base_rate_key) or run_tags.get(base_rate_key)
        metric = tags.get(f"{_TAG}promotion_metric")
        status = ModelStatus(
            name=self.model_name,
            version=int(version.version),
            feature_names=names,
            family=tags.get(f"{_TAG}model_family") or metadata_of(onnx_bytes).get("model_family", ""),
            run_id=str(version.run_id or ""),
            registered_at=datetime.fromtimestamp(int(version.creation_timestamp) / 1000, UTC),
            timeframe=timeframe,
            base_rate=float(base_rate) if base_rate else None,
            metric_name=tags.get(f"{_TAG}promotion_metric_name", ""),
            metric=float(metric) if metric else None,
        )
        return Fetched(onnx_bytes, status, tags.get(f"{_TAG}native_model_uri", ""))

    def load_native(self, native_model_uri: str) -> Any:
        """The native model (``LGBMClassifier`` or scikit-learn estimator) logged at ``native_model_uri``."""
        client = self.client()
        if client is None or not native_model_uri:
            raise ExplanationUnavailable("the served version records no native model")
        import mlflow

        location = native_model_uri
        if native_model_uri.startswith("models:/m-"):
            location = client.get_logged_model(native_model_uri.removeprefix("models:/")).artifact_location
        with tempfile.TemporaryDirectory(prefix="pasar-native-") as scratch:
            local = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=scratch, tracking_uri=self.uri)
            flavors = mlflow.models.Model.load(local).flavors
            if "lightgbm" in flavors:
                import mlflow.lightgbm

                return mlflow.lightgbm.load_model(local)
            import mlflow.sklearn

            return mlflow.sklearn.load_model(local)


# Explanations ---------------------------------------------------------------------------------------------------


def _saabas(model: Any, row: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
    """Bias and per-feature contributions (P(class 1)) of a scikit-learn tree ensemble by path attribution."""
    positive = int(np.flatnonzero(np.asarray(model.classes_) == 1)[0])
    contributions = np.zeros(row.shape[1], dtype=np.float64)
    bias = 0.0
    for estimator in model.estimators_:
        tree = estimator.tree_
        values = np.asarray(tree.value[:, 0, :], dtype=np.float64)
        proba = values[:, positive] / values.sum(axis=1)
        node = 0
        bias += proba[0]
        while tree.children_left[node] != -1:
            feature = tree.feature[node]
            child = tree.children_left[node] if row[0, feature] <= tree.threshold[node] else tree.children_right[node]
            contributions[feature] += proba[child] - proba[node]
            node = child
    count = len(model.estimators_)
    return bias / count, contributions / count


def explain_native(model: Any, family: str, row: npt.ArrayLike, feature_names: Sequence[str]) -> Explanation:
    """The additive explanation of one row by the native model (see the module docstring)."""
    values = np.asarray(row, dtype=np.float64).reshape(1, -1)
    if family == "lightgbm":
        booster = getattr(model, "booster_", model)
        contrib = np.asarray(booster.predict(values, pred_contrib=True, num_threads=1), dtype=np.float64)[0]
        raw = float(np.asarray(booster.predict(values, raw_score=True, num_threads=1)).reshape(-1)[0])
        bias, parts, space, method = float(contrib[-1]), contrib[:-1], "log_odds", "lightgbm_pred_contrib"
    elif family == "logistic_regression":
        steps = list(getattr(model, "steps", [("model", model)]))
        linear = steps[-1][1]
        scaled = values
        for _, step in steps[:-1]:
            scaled = np.asarray(step.transform(scaled), dtype=np.float64)
        positive = int(np.flatnonzero(np.asarray(linear.classes_) == 1)[0])
        sign = 1.0 if positive == 1 else -1.0
        parts = sign * np.asarray(linear.coef_[0], dtype=np.float64) * scaled[0]
        bias = sign * float(linear.intercept_[0])
        raw = float(bias + parts.sum())
        space, method = "log_odds", "coefficient_x_standardized_value"
    elif family == "random_forest":
        bias, parts = _saabas(model, values)
        raw = float(np.asarray(model.predict_proba(values))[0, int(np.flatnonzero(model.classes_ == 1)[0])])
        space, method = "probability", "saabas_path_attribution"
    else:
        raise ExplanationUnavailable(f"no explainer for the model family {family!r}")
    items = sorted(
        (Contribution(name, float(values[0, index]), float(parts[index])) for index, name in enumerate(feature_names)),
        key=lambda item: -abs(item.contribution),
    )
    return Explanation(space=space, bias=float(bias), raw_score=raw, method=method, items=tuple(items))


# The predictor --------------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """One served version: its session with the names bound, and (once loaded) its native model."""

    session: ort.InferenceSession
    input_name: str
    outputs: list[str]
    status: ModelStatus
    native_model_uri: str = ""
    native: Any = None
    native_error: str | None = None
    native_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(
        cls, onnx_bytes: bytes, status: ModelStatus, native_model_uri: str = "", native: Any = None
    ) -> LoadedModel:
        session = ort.InferenceSession(onnx_bytes, session_options(), providers=["CPUExecutionProvider"])
        (given,) = session.get_inputs()
        width = given.shape[1]
        if isinstance(width, int) and width != len(status.feature_names):
            raise ValueError(f"the ONNX model takes {width} features, its metadata names {len(status.feature_names)}")
        outputs = [output.name for output in session.get_outputs()]
        if PROBABILITIES not in outputs:
            raise ValueError(f"the ONNX model has no {PROBABILITIES!r} output: {outputs}")
        return cls(session, given.name, [PROBABILITIES], status, native_model_uri, native)


class Predictor:
    """The champion model in process (see the module docstring). Thread-safe: scoring reads one immutable
    :class:`LoadedModel` reference; loads and reloads are serialised by a lock."""

    def __init__(self, source: RegistrySource | None = None, *, check_interval: float = 30.0) -> None:
        self.source = source
        self.check_interval = check_interval
        self._model: LoadedModel | None = None
        self._reload_lock = threading.Lock()
        self._last_check = 0.0
        self._checking = threading.Event()
        self.last_error: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, model_name: str | None = None) -> Predictor:
        return cls(RegistrySource.from_settings(settings, model_name), check_interval=settings.signal_reload_seconds)

    @classmethod
    def from_onnx(
        cls,
        onnx_bytes: bytes,
        *,
        name: str = "local",
        version: int = 0,
        native: Any = None,
        timeframe: str | None = None,
    ) -> Predictor:
        """A predictor serving fixed ONNX bytes (benchmarks, tests), optionally with the native model to explain."""
        from models_ml.export import feature_names_of, metadata_of

        status = ModelStatus(
            name=name,
            version=version,
            feature_names=feature_names_of(onnx_bytes),
            family=metadata_of(onnx_bytes).get("model_family", ""),
            registered_at=datetime.now(UTC),
            timeframe=timeframe,
        )
        predictor = cls(None)
        predictor._model = LoadedModel.build(onnx_bytes, status, native=native)
        return predictor

    # State

    @property
    def status(self) -> ModelStatus | None:
        model = self._model
        return None if model is None else model.status

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._loaded().status.feature_names

    @property
    def model(self) -> LoadedModel | None:
        return self._model

    def _loaded(self) -> LoadedModel:
        model = self._model
        if model is None:
            raise ModelNotLoaded("no model is loaded")
        return model

    # Loading

    def load(self) -> bool:
        """Load the champion now (blocking) if it differs from the served one; whether a model is loaded after."""
        self.reload_if_moved(force=True)
        return self._model is not None

    def reload_if_moved(self, *, force: bool = False) -> bool:
        """Ask the registry which version holds the alias (at most every ``check_interval`` s unless ``force``) and
        swap in that version when it is not the served one. True when the served model changed."""
        if self.source is None:
            return False
        with self._reload_lock:
            now = time.monotonic()
            if not force and now - self._last_check < self.check_interval:
                return False
            self._last_check = now
            try:
                current = self.source.current_version()
                served = self._model
                if current is None:
                    if served is not None:
                        log.warning(
                            "the champion alias of %s is gone; keeping v%s",
                            self.source.model_name,
                            served.status.version,
                        )
                    return False
                if served is not None and served.status.version == current:
                    return False
                fetched = self.source.fetch()
                if fetched is None:
                    return False
                model = LoadedModel.build(fetched.onnx_bytes, fetched.status, fetched.native_model_uri)
                self._model = model  # the swap: one reference assignment
                self.last_error = None
                log.info("serving %s v%s (%s)", fetched.status.name, fetched.status.version, fetched.status.family)
            except Exception as error:  # noqa: BLE001 - a broken registry must not take the server down
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("loading the champion failed: %s", self.last_error)
                return False
        self._load_native(model)
        return True

    def _load_native(self, model: LoadedModel) -> None:
        if self.source is None or model.native is not None:
            return
        with model.native_lock:
            if model.native is not None or model.native_error is not None:
                return
            try:
                model.native = self.source.load_native(model.native_model_uri)
            except Exception as error:  # noqa: BLE001 - explanations degrade alone
                model.native_error = f"{type(error).__name__}: {error}"
                log.warning("loading the native model failed: %s", model.native_error)

    def start(self, then: Callable[[], None] | None = None) -> threading.Thread:
        """Load the champion in a background thread (the caller does not wait), then call ``then`` in that thread
        (loaded or not: a failed load is logged, not raised)."""
        self._last_check = time.monotonic()
        thread = threading.Thread(
            target=self._background_check, kwargs={"force": True, "then": then}, daemon=True, name="pasar-model"
        )
        self._checking.set()
        thread.start()
        return thread

    def poke(self) -> None:
        """Non-blocking: when a check is due and none runs, check the alias in a background thread."""
        if self.source is None or self._checking.is_set():
            return
        if time.monotonic() - self._last_check < self.check_interval:
            return
        self._checking.set()
        threading.Thread(target=self._background_check, daemon=True, name="pasar-model-check").start()

    def _background_check(self, force: bool = False, then: Callable[[], None] | None = None) -> None:
        try:
            self.reload_if_moved(force=force)
            if then is not None:
                then()
        finally:
            self._checking.clear()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no background check runs (tests); whether it finished in time."""
        deadline = time.monotonic() + timeout
        while self._checking.is_set():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # Scoring

    def predict(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """P(up) of each row: float32 ``[n, k]`` in :attr:`feature_names` order → float32 ``[n]``."""
        model = self._model
        if model is None:
            raise ModelNotLoaded("no model is loaded")
        if rows.dtype != np.float32 or not rows.flags.c_contiguous or rows.ndim != 2:
            rows = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, len(model.status.feature_names))
        probabilities = model.session.run(model.outputs, {model.input_name: rows})[0]
        scores: npt.NDArray[np.float32] = probabilities[:, 1]
        return scores

    def predict_one(self, row: npt.NDArray[np.float32]) -> float:
        """P(up) of one row (float32 ``[1, k]`` or ``[k]``)."""
        model = self._model
        if model is None:
            raise ModelNotLoaded("no model is loaded")
        if row.ndim != 2 or row.dtype != np.float32:
            row = np.ascontiguousarray(row, dtype=np.float32).reshape(1, -1)
        return float(model.session.run(model.outputs, {model.input_name: row})[0][0, 1])

    def rows_from_dicts(self, rows: Sequence[dict[str, float]]) -> npt.NDArray[np.float32]:
        """Rows keyed by feature name → float32 ``[n, k]`` in the model's order (KeyError names a missing one)."""
        names = self.feature_names
        matrix = np.empty((len(rows), len(names)), dtype=np.float32)
        for index, row in enumerate(rows):
            missing = [name for name in names if name not in row]
            if missing:
                raise KeyError(f"row {index} lacks the features {', '.join(missing)}")
            matrix[index] = [row[name] for name in names]
        return matrix

    def explain(self, row: npt.NDArray[np.float32]) -> Explanation:
        """The additive contributions of one row (see the module docstring)."""
        model = self._loaded()
        if model.native is None:
            self._load_native(model)
        if model.native is None:
            raise ExplanationUnavailable(model.native_error or "the native model is not loaded")
        return explain_native(model.native, model.status.family, row, model.status.feature_names)

    def features(self, bars: pl.DataFrame, *, calendar_code: str) -> pl.DataFrame:
        """The features of each symbol's last bar (``models_ml.features.latest_features``)."""
        from models_ml.features import latest_features

        return latest_features(bars, calendar_code=calendar_code)

    def document(self) -> dict[str, Any]:
        """What ``status`` endpoints show."""
        status = self.status
        return {
            "loaded": status is not None,
            "model": None if status is None else status.document(),
            "last_error": self.last_error,
            "source": None if self.source is None else {"model_name": self.source.model_name},
        }
