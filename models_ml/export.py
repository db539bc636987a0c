"""ONNX export of a trained signal model, and the parity check that must pass before the ONNX is logged or served.

:func:`to_onnx` converts the native model (LightGBM through ``onnxmltools.convert_lightgbm``, scikit-learn through
``skl2onnx.to_onnx``) into an ONNX graph with one float32 input ``features`` of shape ``[N, k]`` and two outputs,
``label`` (int64 ``[N]``) and ``probabilities`` (float32 ``[N, 2]``, a plain tensor: no ZipMap), column 1 being
P(class 1), the long signal's score. The model's ``metadata_props`` carry:

``feature_names``
    The JSON list of the feature columns, in the order of the input's columns. Serving builds its input rows in
    exactly this order.
``model_family``
    ``lightgbm``, ``logistic_regression``, ``random_forest`` (or ``sklearn:<ClassName>`` for another classifier).
``created_at``
    When the export was made (ISO 8601, UTC).
``probability_output``
    The name of the probability output (``probabilities``) and ``positive_class`` (``1``), so that a consumer needs
    no knowledge of the converter.

Opsets: the default ONNX domain at :data:`TARGET_OPSET` (15, the highest the LightGBM converter of onnxmltools 1.16
supports; skl2onnx is pinned to the same so every family loads in any onnxruntime >= 1.10) and ``ai.onnx.ml`` at
whatever version the converter needs for its tree or linear operators.

:func:`parity` compares P(class 1) of the native model with onnxruntime's on held-out rows (one intra-op thread, as
in serving) and raises :class:`ParityError` when the largest absolute difference exceeds :data:`PARITY_TOLERANCE`
(1e-5), when the ONNX input width differs from the rows, or when the graph does not run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import onnx

__all__ = [
    "INPUT_NAME",
    "PARITY_TOLERANCE",
    "PROBABILITY_OUTPUT",
    "TARGET_OPSET",
    "ParityError",
    "family_of",
    "feature_names_of",
    "metadata_of",
    "parity",
    "positive_proba",
    "session",
    "to_onnx",
]

INPUT_NAME: Final = "features"
PROBABILITY_OUTPUT: Final = "probabilities"
TARGET_OPSET: Final = 15
PARITY_TOLERANCE: Final = 1e-5


class ParityError(RuntimeError):
    """The ONNX graph does not reproduce the native model's probabilities within the tolerance."""


def family_of(model: Any) -> str:
    """The family name of a native model: ``lightgbm``, ``logistic_regression``, ``random_forest`` or
    ``sklearn:<ClassName>`` for any other scikit-learn classifier (the last step of a pipeline)."""
    from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]

    if isinstance(model, lgb.LGBMClassifier | lgb.Booster):
        return "lightgbm"
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    if isinstance(final, LogisticRegression):
        return "logistic_regression"
    if isinstance(final, RandomForestClassifier):
        return "random_forest"
    return f"sklearn:{type(final).__name__}"


def positive_proba(model: Any, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """P(class 1) of the native model for each row, as float64 (a binary ``lightgbm.Booster`` predicts it
    directly; a classifier with ``predict_proba`` gives it in column 1)."""
    rows = np.asarray(X, dtype=np.float32)
    if isinstance(model, lgb.Booster):
        return np.asarray(model.predict(rows), dtype=np.float64).reshape(-1)
    return np.asarray(model.predict_proba(rows), dtype=np.float64)[:, 1]


def to_onnx(model: Any, feature_names: Sequence[str]) -> bytes:
    """The serialized ONNX model of a fitted binary classifier, with the feature names in its metadata."""
    names = [str(name) for name in feature_names]
    if not names or len(set(names)) != len(names):
        raise ValueError("feature_names must be non-empty and unique")
    width = len(names)
    family = family_of(model)
    if family == "lightgbm":
        from onnxmltools import convert_lightgbm  # type: ignore[import-untyped]
        from onnxmltools.convert.common.data_types import (  # type: ignore[import-untyped]
            FloatTensorType as LgbFloatTensorType,
        )

        proto = convert_lightgbm(
            model,
            name="pasar-signal",
            initial_types=[(INPUT_NAME, LgbFloatTensorType([None, width]))],
            zipmap=False,
            target_opset=TARGET_OPSET,
        )
    else:
        import skl2onnx  # type: ignore[import-untyped]
        from skl2onnx.common.data_types import FloatTensorType  # type: ignore[import-untyped]

        proto = skl2onnx.to_onnx(
            model,
            initial_types=[(INPUT_NAME, FloatTensorType([None, width]))],
            options={id(model): {"zipmap": False}},
            target_opset=TARGET_OPSET,
            name="pasar-signal",
        )
    if not isinstance(proto, onnx.ModelProto):
        raise TypeError(f"the converter returned {type(proto).__name__}, not an ONNX ModelProto")
    outputs = [output.name for output in proto.graph.output]
    if PROBABILITY_OUTPUT not in outputs:
        raise ValueError(f"the converted graph has no {PROBABILITY_OUTPUT!r} output: {outputs}")
    # Every output is batch-major; some converters declare a fixed first dimension (onnxmltools' LightGBM label is
    # [1]), which makes onnxruntime warn on every batch. Declare it symbolic like the input's.
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    metadata = {
        "feature_names": json.dumps(names),
        "model_family": family,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "probability_output": PROBABILITY_OUTPUT,
        "positive_class": "1",
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def metadata_of(onnx_bytes: bytes) -> dict[str, str]:
    """The ``metadata_props`` of a serialized ONNX model, as a dict."""
    proto = onnx.load_from_string(onnx_bytes)
    return {entry.key: entry.value for entry in proto.metadata_props}


def feature_names_of(onnx_bytes: bytes) -> tuple[str, ...]:
    """The feature names, in input order, recorded in the model's metadata by :func:`to_onnx`."""
    raw = metadata_of(onnx_bytes).get("feature_names")
    if raw is None:
        raise ValueError("the ONNX model has no feature_names metadata")
    names = json.loads(raw)
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError("the ONNX feature_names metadata is not a JSON list of strings")
    return tuple(names)


def session(onnx_bytes: bytes) -> Any:
    """An onnxruntime ``InferenceSession`` on the CPU with one intra-op thread (as serving runs it)."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def parity(model: Any, onnx_bytes: bytes, X_holdout: npt.ArrayLike, *, tolerance: float = PARITY_TOLERANCE) -> float:
    """The largest absolute difference of P(class 1) between the native model and the ONNX graph on the given
    (held-out) rows. Raises :class:`ParityError` above ``tolerance``, or when the graph cannot score the rows."""
    rows = np.ascontiguousarray(X_holdout, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError("parity needs a non-empty 2-d array of rows")
    native = positive_proba(model, rows)
    try:
        runtime = session(onnx_bytes)
        width = runtime.get_inputs()[0].shape[1]
        if isinstance(width, int) and width != rows.shape[1]:
            raise ParityError(f"the ONNX model takes {width} features, the rows have {rows.shape[1]}")
        (probabilities,) = runtime.run([PROBABILITY_OUTPUT], {INPUT_NAME: rows})
    except ParityError:
        raise
    except Exception as error:
        raise ParityError(f"the ONNX model does not run on the rows: {error}") from error
    scores = np.asarray(probabilities, dtype=np.float64)
    if scores.shape != (rows.shape[0], 2):
        raise ParityError(f"the ONNX probabilities have shape {scores.shape}, expected ({rows.shape[0]}, 2)")
    difference = float(np.max(np.abs(scores[:, 1] - native)))
    if not difference <= tolerance:  # also catches NaN
        raise ParityError(f"ONNX vs native max |ΔP(class 1)| = {difference:.3g} > {tolerance:g}")
    return difference
