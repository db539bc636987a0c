"""Machine learning: the signal model's features, training, evaluation, ONNX export and registration; the weekly
retraining schedule."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.ml.assets import assets
from orchestration.defs.ml.schedules import jobs, schedules

sensors: list[dg.SensorDefinition] = []

__all__ = ["assets", "jobs", "schedules", "sensors"]
