"""Secrets of the embedded setup, generated once into ``PASAR_HOME/secrets.json`` (mode 0600).

Only used when ``PASAR_DATABASE_URL`` is unset: a production deployment gives every secret explicitly.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from pasar.config import Settings


class ConfigurationError(RuntimeError):
    """A setting is missing or inconsistent; the message says which and what to do."""


@dataclass(frozen=True)
class EmbeddedSecrets:
    app_db_password: str
    etl_db_password: str
    jwt_secret: str


def embedded_secrets(home: Path) -> EmbeddedSecrets:
    path = home / "secrets.json"
    if path.exists():
        return EmbeddedSecrets(**json.loads(path.read_text()))
    home.mkdir(parents=True, exist_ok=True)
    made = EmbeddedSecrets(
        app_db_password=secrets.token_urlsafe(24),
        etl_db_password=secrets.token_urlsafe(24),
        jwt_secret=secrets.token_urlsafe(48),
    )
    # Create with 0600 from the start so the secret is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(made), handle)
    return made


def jwt_secret(settings: Settings) -> str:
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    if settings.embedded:
        return embedded_secrets(settings.home).jwt_secret
    raise ConfigurationError("PASAR_JWT_SECRET must be set when PASAR_DATABASE_URL is set (no default secret).")
