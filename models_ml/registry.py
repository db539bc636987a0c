"""Where models are tracked, registered and promoted: MLflow's tracking store and Model Registry.

The store
    :func:`tracking_uri` is ``PASAR_MLFLOW_TRACKING_URI`` (or the standard ``MLFLOW_TRACKING_URI``) when set -- a
    tracking server (``http://...``) or any MLflow backend store -- else the embedded store
    ``sqlite:///<PASAR_HOME>/mlflow.db``. On a local store (sqlite, a database, files) the experiments Pasar
    creates keep their artifacts under :func:`artifact_location` (``<PASAR_HOME>/mlruns``); a tracking server keeps
    them in its own artifact root. :func:`configure` points MLflow at the store once per process and creates the
    experiment; :func:`models_ml.automl.train` and the functions below configure from
    :func:`pasar.config.get_settings` themselves when nobody did.

Registration and promotion (:func:`register_and_promote`)
    In the training session's parent run (:attr:`TrainingResult.run_id`): the holdout metrics, the native model
    (``mlflow.lightgbm`` / ``mlflow.sklearn``, logged model ``native``) and -- only if the ONNX parity figure is
    within 1e-5 -- the ONNX model (``mlflow.onnx``, logged model ``onnx``, with the feature names in its
    ``metadata_props``, its MLmodel metadata and a ``feature_names.json`` run artifact). The **ONNX model** becomes a
    new version of the registered model: ``models:/<name>@champion`` is therefore the exact, parity-checked graph
    that serving runs; the native model's URI is a tag of the version (``pasar.native_model_uri``) for
    explanations and re-scoring.

    The challenger's promotion metric (:attr:`Evaluation.promotion_metric`, the holdout ROC AUC) is compared with
    the current champion's, read from the champion version's ``pasar.promotion_metric`` tag (else its run's
    ``holdout_roc_auc`` metric). The alias ``champion`` moves to the new version only if there is no champion, the
    champion has no figure for the same metric, or the challenger's figure is higher by more than
    ``min_improvement``; otherwise the version stays registered without the alias. Each figure comes from its
    model's own holdout (the challenger's is usually a later period): the ROC AUC is used because it does not move
    with the base rate of positive labels from one period to the next. Registry stages are not used
    (deprecated in MLflow). The decision, its reason and both figures are logged as tags of the new version
    (``pasar.decision``, ``pasar.decision_reason``, ``pasar.challenger_metric``, ``pasar.champion_metric``,
    ``pasar.champion_version``) and as metrics and tags of the run (``challenger_promotion_metric``,
    ``champion_promotion_metric``, ``promoted``). Two promotions racing on one model name are not serialised: the
    alias is last-writer-wins.

Serving reads :func:`champion` (cheap: one registry call; poll it to notice the alias moving) and
:func:`load_champion_onnx` (the ONNX bytes of that exact version, checked against the recorded hash and names);
both take ``settings=`` to read a store through an explicit client instead of MLflow's global tracking URI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlparse

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.types import Schema, TensorSpec

from models_ml.export import (
    INPUT_NAME,
    PARITY_TOLERANCE,
    PROBABILITY_OUTPUT,
    ParityError,
    family_of,
    feature_names_of,
)
from pasar.config import Settings, get_settings

if TYPE_CHECKING:
    from models_ml.automl import TrainingResult
    from models_ml.evaluate import Evaluation

__all__ = [
    "CHAMPION_ALIAS",
    "DEFAULT_EXPERIMENT",
    "ChampionInfo",
    "NoChampionError",
    "PromotionDecision",
    "artifact_location",
    "champion",
    "configure",
    "ensure_experiment",
    "load_champion_onnx",
    "register_and_promote",
    "tracking_uri",
]

CHAMPION_ALIAS: Final = "champion"
DEFAULT_EXPERIMENT: Final = "pasar-signals"
_SERVER_SCHEMES: Final = ("http", "https", "databricks", "databricks-uc", "uc")
_TAG = "pasar."

_configured: Settings | None = None


class NoChampionError(LookupError):
    """The registered model has no version with the alias ``champion`` (or does not exist)."""


@dataclass(frozen=True)
class ChampionInfo:
    """The version of ``name`` that holds the alias ``champion``: what serving loads and reports."""

    name: str
    version: int
    run_id: str
    metric: float | None  # its promotion metric (holdout ROC AUC) when recorded
    feature_names: tuple[str, ...]
    metric_name: str = "holdout_roc_auc"
    family: str = ""
    native_model_uri: str = ""
    onnx_sha256: str = ""  # of the registered ONNX bytes (checked by load_champion_onnx)

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class PromotionDecision:
    """What :func:`register_and_promote` did: the new version, whether it took the alias, why, and both figures."""

    model_name: str
    version: int
    run_id: str
    promoted: bool
    reason: str
    metric_name: str
    challenger_metric: float
    champion_metric: float | None
    previous_champion_version: int | None
    onnx_model_uri: str
    native_model_uri: str


# The store ------------------------------------------------------------------------------------------------------


def tracking_uri(settings: Settings) -> str:
    """The MLflow tracking URI: the configured one, else the embedded ``sqlite:///<PASAR_HOME>/mlflow.db``."""
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    return f"sqlite:///{(settings.home.resolve() / 'mlflow.db').as_posix()}"


def artifact_location(settings: Settings) -> str:
    """The artifact root (a ``file://`` URI, ``<PASAR_HOME>/mlruns``) of the experiments Pasar creates on a local
    store; a tracking server (http, https, databricks) uses its own artifact root instead."""
    return (settings.home.resolve() / "mlruns").as_uri()


def _is_server(uri: str) -> bool:
    return urlparse(uri).scheme.lower() in _SERVER_SCHEMES


def configure(settings: Settings, *, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Point MLflow (tracking and registry) at the store of ``settings`` and make sure ``experiment`` exists;
    returns its id. The embedded store's directory is created when missing."""
    global _configured
    uri = tracking_uri(settings)
    if settings.mlflow_tracking_uri is None:
        settings.home.resolve().mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _configured = settings
    return ensure_experiment(experiment)


def _settings() -> Settings:
    if _configured is None:
        configure(get_settings())
    assert _configured is not None
    return _configured


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``, created (with :func:`artifact_location` on a local store) when missing."""
    settings = _settings()
    client = MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    location = None if _is_server(tracking_uri(settings)) else artifact_location(settings)
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:  # created meanwhile by another process
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


# Registration and promotion -------------------------------------------------------------------------------------


def _requirements(*packages: str) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pinned = []
    for package in packages:
        try:
            pinned.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pinned.append(package)
    return pinned


def _input_schema(width: int) -> Schema:
    return Schema([TensorSpec(np.dtype(np.float32), (-1, width), INPUT_NAME)])


def _log_native(model: Any, width: int) -> str:
    """Log the native model in the active run; its model URI."""
    signature = ModelSignature(
        inputs=_input_schema(width), outputs=Schema([TensorSpec(np.dtype(np.float64), (-1, 2), PROBABILITY_OUTPUT)])
    )
    if family_of(model) == "lightgbm":
        import mlflow.lightgbm

        info = mlflow.lightgbm.log_model(
            model,
            name="native",
            signature=signature,
            pip_requirements=_requirements("lightgbm", "scikit-learn", "numpy"),
        )
    else:
        import mlflow.sklearn

        # skops refuses to load tree node storage it was not told to trust; these models are our own.
        trusted = ["sklearn.tree._tree.Tree"] if family_of(model) == "random_forest" else None
        info = mlflow.sklearn.log_model(
            model,
            name="native",
            signature=signature,
            pip_requirements=_requirements("scikit-learn", "numpy"),
            skops_trusted_types=trusted,
        )
    return str(info.model_uri)


def _log_onnx(onnx_bytes: bytes, feature_names: tuple[str, ...]) -> str:
    """Log the ONNX model in the active run; its model URI."""
    import mlflow.onnx
    import onnx

    signature = ModelSignature(
        inputs=_input_schema(len(feature_names)),
        outputs=Schema(
            [
                TensorSpec(np.dtype(np.int64), (-1,), "label"),
                TensorSpec(np.dtype(np.float32), (-1, 2), PROBABILITY_OUTPUT),
            ]
        ),
    )
    info = mlflow.onnx.log_model(
        onnx.load_from_string(onnx_bytes),
        name="onnx",
        signature=signature,
        save_as_external_data=False,
        metadata={"feature_names": list(feature_names), "probability_output": PROBABILITY_OUTPUT},
        pip_requirements=_requirements("onnx", "onnxruntime", "numpy"),
    )
    return str(info.model_uri)


def _float_tag(tags: dict[str, str], key: str) -> float | None:
    raw = tags.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _decide(
    challenger: float, metric_name: str, current: ChampionInfo | None, min_improvement: float
) -> tuple[bool, str]:
    if not math.isfinite(challenger):
        return False, f"the challenger's {metric_name} is not a number"
    if current is None:
        return True, "no champion yet"
    if current.metric is None or current.metric_name != metric_name:
        return True, f"champion v{current.version} has no recorded {metric_name}"
    if challenger > current.metric + min_improvement:
        return True, f"{metric_name} {challenger:.6f} beats champion v{current.version}'s {current.metric:.6f}"
    return False, f"{metric_name} {challenger:.6f} does not beat champion v{current.version}'s {current.metric:.6f}"


def register_and_promote(
    result: TrainingResult,
    evaluation: Evaluation,
    *,
    model_name: str,
    onnx_bytes: bytes,
    feature_names: tuple[str, ...] | list[str],
    parity: float,
    min_improvement: float = 0.0,
) -> PromotionDecision:
    """Log the models and the evaluation in the training run, register the ONNX model as a new version of
    ``model_name`` and give it the alias ``champion`` only if it beats the current champion (module docstring).

    Raises :class:`ParityError` when ``parity`` (the max abs difference of :func:`models_ml.export.parity`) exceeds
    1e-5, and ``ValueError`` when the ONNX metadata's feature names are not ``feature_names`` in that order: in
    either case nothing is logged or registered."""
    names = tuple(feature_names)
    if not parity <= PARITY_TOLERANCE:
        raise ParityError(f"ONNX parity {parity:.3g} > {PARITY_TOLERANCE:g}: the ONNX model is not logged")
    if feature_names_of(onnx_bytes) != names:
        raise ValueError("the ONNX metadata's feature names differ from feature_names (names or order)")
    if names != tuple(result.feature_names):
        raise ValueError("feature_names differ from the features the model was trained on")
    _settings()
    client = MlflowClient()
    current = champion(model_name)
    metric_name = evaluation.promotion_metric_name
    challenger = float(evaluation.promotion_metric)
    promoted, reason = _decide(challenger, metric_name, current, min_improvement)

    with mlflow.start_run(run_id=result.run_id):
        mlflow.log_metrics({key: value for key, value in evaluation.metrics().items() if math.isfinite(value)})
        mlflow.log_metric("onnx_parity_max_abs_diff", float(parity))
        native_uri = _log_native(result.model, len(names))
        onnx_uri = _log_onnx(onnx_bytes, names)
        mlflow.log_dict({"feature_names": list(names)}, "feature_names.json")

    digest = hashlib.sha256(onnx_bytes).hexdigest()
    version_tags = {
        f"{_TAG}promotion_metric_name": metric_name,
        f"{_TAG}promotion_metric": repr(challenger),
        f"{_TAG}feature_names": json.dumps(list(names)),
        f"{_TAG}model_family": result.family,
        f"{_TAG}native_model_uri": native_uri,
        f"{_TAG}onnx_sha256": digest,
        f"{_TAG}onnx_parity": repr(float(parity)),
        f"{_TAG}code_version": result.code_version,
        f"{_TAG}holdout_start": evaluation.data_range[0],
        f"{_TAG}holdout_end": evaluation.data_range[1],
    }
    registered = mlflow.register_model(onnx_uri, model_name, tags=version_tags)
    version = int(registered.version)
    champion_figure = None if current is None else current.metric
    decision_tags = {
        f"{_TAG}decision": "promoted" if promoted else "rejected",
        f"{_TAG}decision_reason": reason,
        f"{_TAG}challenger_metric": repr(challenger),
        f"{_TAG}champion_metric": "none" if champion_figure is None else repr(champion_figure),
        f"{_TAG}champion_version": "none" if current is None else str(current.version),
    }
    for tag, text in decision_tags.items():
        client.set_model_version_tag(model_name, str(version), tag, text)
    if promoted:
        client.set_registered_model_alias(model_name, CHAMPION_ALIAS, str(version))

    figures = {"challenger_promotion_metric": challenger, "promoted": 1.0 if promoted else 0.0}
    if champion_figure is not None:
        figures["champion_promotion_metric"] = champion_figure
    now = int(time.time() * 1000)
    run_tags = decision_tags | {f"{_TAG}registered_model": model_name, f"{_TAG}model_version": str(version)}
    client.log_batch(
        result.run_id,
        metrics=[Metric(key, value, now, 0) for key, value in figures.items() if math.isfinite(value)],
        tags=[RunTag(key, text) for key, text in run_tags.items()],
    )

    return PromotionDecision(
        model_name=model_name,
        version=version,
        run_id=result.run_id,
        promoted=promoted,
        reason=reason,
        metric_name=metric_name,
        challenger_metric=challenger,
        champion_metric=champion_figure,
        previous_champion_version=None if current is None else current.version,
        onnx_model_uri=onnx_uri,
        native_model_uri=native_uri,
    )


# Serving ------------------------------------------------------------------------------------------------------


def _not_found(error: MlflowException) -> bool:
    """No such registered model (RESOURCE_DOES_NOT_EXIST), or no such alias (INVALID_PARAMETER_VALUE "... alias
    ... not found" on the SQL store)."""
    if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
        return True
    return error.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(error).lower()


def _client(settings: Settings | None) -> tuple[MlflowClient, str]:
    """A client of the store of ``settings`` (explicit URIs, no global state), else of the configured store."""
    uri = tracking_uri(settings if settings is not None else _settings())
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def champion(model_name: str, *, settings: Settings | None = None) -> ChampionInfo | None:
    """The version of ``model_name`` that holds the alias ``champion``, or None (no such model or alias).
    ``settings``: read that store (without touching MLflow's global tracking URI); default: the configured one."""
    client, _ = _client(settings)
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MlflowException as error:
        if _not_found(error):
            return None
        raise
    tags = dict(version.tags or {})
    metric_name = tags.get(f"{_TAG}promotion_metric_name", "holdout_roc_auc")
    metric = _float_tag(tags, f"{_TAG}promotion_metric")
    run_id = str(version.run_id or "")
    raw_names = tags.get(f"{_TAG}feature_names")
    if (metric is None or raw_names is None) and run_id:
        run = client.get_run(run_id)
        if metric is None:
            value = run.data.metrics.get(metric_name)
            metric = value if value is not None and math.isfinite(value) else None
        if raw_names is None:
            with tempfile.TemporaryDirectory(prefix="pasar-champion-") as scratch:
                path = client.download_artifacts(run_id, "feature_names.json", scratch)
                raw_names = json.dumps(json.loads(Path(path).read_text())["feature_names"])
    return ChampionInfo(
        name=model_name,
        version=int(version.version),
        run_id=run_id,
        metric=metric,
        feature_names=tuple(json.loads(raw_names)) if raw_names else (),
        metric_name=metric_name,
        family=tags.get(f"{_TAG}model_family", ""),
        native_model_uri=tags.get(f"{_TAG}native_model_uri", ""),
        onnx_sha256=tags.get(f"{_TAG}onnx_sha256", ""),
    )


def load_champion_onnx(model_name: str, *, settings: Settings | None = None) -> tuple[bytes, ChampionInfo]:
    """The ONNX bytes of the champion version of ``model_name`` and its :class:`ChampionInfo`. The bytes are
    checked against the SHA-256 recorded at registration and their metadata's feature names against the version's;
    ``feature_names`` in the returned info are those of the ONNX metadata (the input order).

    Raises :class:`NoChampionError` when there is no champion."""
    info = champion(model_name, settings=settings)
    if info is None:
        raise NoChampionError(f"registered model {model_name!r} has no {CHAMPION_ALIAS!r} version")
    client, uri = _client(settings)
    source = client.get_model_version_download_uri(model_name, str(info.version))
    with tempfile.TemporaryDirectory(prefix="pasar-champion-") as scratch:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=scratch, tracking_uri=uri))
        flavor = Model.load(str(local)).flavors.get("onnx")
        if flavor is None:
            raise ValueError(f"{info.model_uri} is not an ONNX model")
        onnx_bytes = (local / str(flavor["data"])).read_bytes()
    if info.onnx_sha256 and hashlib.sha256(onnx_bytes).hexdigest() != info.onnx_sha256:
        raise ValueError(f"{info.model_uri}: the ONNX bytes do not match the SHA-256 recorded at registration")
    names = feature_names_of(onnx_bytes)
    if info.feature_names and names != info.feature_names:
        raise ValueError(f"{info.model_uri}: the ONNX feature names differ from the version's")
    return onnx_bytes, dataclasses.replace(info, feature_names=names)
