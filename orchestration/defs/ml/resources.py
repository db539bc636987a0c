"""The MLflow store of the Dagster layer: where training runs are tracked and models registered."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pasar.config import Settings


class MLflowStore(dg.ConfigurableResource):  # type: ignore[type-arg]  # the resource is its own value
    """The MLflow tracking/registry store and the registered model name.

    ``tracking_uri`` unset: the embedded store ``sqlite:///<home>/mlflow.db`` (artifacts in ``<home>/mlruns``), the
    one the API and ``pasar serve-model`` read the champion from.
    """

    tracking_uri: str | None = None
    home: str = ".pasar"
    model_name: str = "pasar-signal"

    def settings(self) -> Settings:
        return Settings(home=Path(self.home), mlflow_tracking_uri=self.tracking_uri, signal_model_name=self.model_name)
