"""The one settings class of Pasar: every value comes from a ``PASAR_*`` environment variable.

With ``PASAR_DATABASE_URL`` unset Pasar runs on its embedded defaults: a private PostgreSQL cluster under
``PASAR_HOME`` and secrets generated once into ``PASAR_HOME/secrets.json``. With it set (production), the
secrets must be given explicitly: there is no working default secret outside the embedded demo.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PASAR_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".pasar"), description="Where embedded state lives (cluster, secrets, demo).")
    env: Literal["development", "test", "production"] = "development"

    database_url: SecretStr | None = Field(
        default=None, description="Owner connection URL (runs migrations). Unset: the embedded cluster."
    )
    app_database_url: SecretStr | None = Field(
        default=None, description="Connection URL of the pasar_app role (serves requests)."
    )
    etl_database_url: SecretStr | None = Field(
        default=None, description="Connection URL of the pasar_etl role (ingestion, dbt)."
    )
    database_name: str = Field(default="pasar", description="Database used on the embedded cluster.")
    pg_bin_dir: Path | None = Field(default=None, description="Where initdb/pg_ctl live; found on PATH if unset.")
    db_pool_min_size: int = Field(default=2, ge=1)
    db_pool_max_size: int = Field(default=10, ge=1)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)

    redis_url: SecretStr | None = Field(
        default=None, description="Redis for rate limits and pub/sub. Unset: in-process (one process only)."
    )

    jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 key for access tokens; required when PASAR_DATABASE_URL is set."
    )
    jwt_issuer: str = "pasar"
    jwt_audience: str = "pasar-api"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=30 * 86_400, ge=300)

    login_max_failures_per_user: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_failure_window_seconds: int = Field(default=300, ge=1)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65_535)
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS (JSON list).")
    max_body_bytes: int = Field(default=1_048_576, ge=1_024, description="Larger request bodies get 413.")
    log_level: str = "INFO"

    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PASAR_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        description=(
            "MLflow tracking URI (a tracking server or backend store), read from PASAR_MLFLOW_TRACKING_URI, else the "
            "standard MLFLOW_TRACKING_URI. Unset: the embedded store sqlite:///<home>/mlflow.db, artifacts in "
            "<home>/mlruns."
        ),
    )

    # Signals (pasar.signals, serving): the served model and when the API refuses to answer with it.
    signal_model_name: str = Field(default="pasar-signal", description="Registered model whose champion serves.")
    signal_max_model_age_days: float = Field(
        default=30.0,
        ge=0,
        description="A champion registered longer ago is stale (503 model_unavailable); 0: no limit.",
    )
    signal_max_feature_age_seconds: float = Field(
        default=900.0,
        ge=0,
        description="Trading-session seconds between a symbol's last bar and the venue's clock beyond which its "
        "features are stale (503 features_stale); 0: no limit.",
    )
    signal_reload_seconds: float = Field(
        default=30.0, gt=0, description="How often (at most) the predictor checks whether the champion alias moved."
    )

    @property
    def embedded(self) -> bool:
        return self.database_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
