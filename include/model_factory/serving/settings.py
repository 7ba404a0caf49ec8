"""Gateway settings, read from the environment (on top of the factory's own, see ``config``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from model_factory.settings import FactorySettings

ENV = {
    "db_uri": "FACTORY_PREDICTION_DB_URI",
    "api_key": "FACTORY_GATEWAY_API_KEY",
    "refresh_s": "FACTORY_GATEWAY_REFRESH_SECONDS",
    "models": "FACTORY_GATEWAY_MODELS",
    "max_body_bytes": "FACTORY_GATEWAY_MAX_BODY_BYTES",
    "max_instances": "FACTORY_GATEWAY_MAX_INSTANCES",
    "log_inputs": "FACTORY_GATEWAY_LOG_INPUTS",
}


def prediction_db_uri(factory: FactorySettings | None = None) -> str:
    """``FACTORY_PREDICTION_DB_URI``, else SQLite under FACTORY_HOME: where DAGs find the prediction log."""
    factory = factory or FactorySettings.from_env()
    return os.environ.get(ENV["db_uri"]) or f"sqlite:///{factory.home / 'serving' / 'predictions.db'}"


def _number(name: str, default: float, cast: type = float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a valid {cast.__name__}") from None
    if value <= 0:
        raise ValueError(f"environment variable {name}={raw!r} must be > 0")
    return value


@dataclass(frozen=True)
class GatewaySettings:
    factory: FactorySettings
    db_uri: str
    api_key: str | None = None
    refresh_s: float = 10.0
    models: tuple[str, ...] | None = None
    """Serve only these registered models; None: every registered model with a champion."""
    max_body_bytes: int = 1_048_576
    max_instances: int = 1000
    log_inputs: bool = True
    """Log the request's features as JSON next to their hash (off: the hash only)."""

    @classmethod
    def from_env(cls) -> GatewaySettings:
        factory = FactorySettings.from_env()
        models = os.environ.get(ENV["models"], "").strip()
        return cls(
            factory=factory,
            db_uri=prediction_db_uri(factory),
            api_key=os.environ.get(ENV["api_key"]) or None,
            refresh_s=_number(ENV["refresh_s"], 10.0),
            models=tuple(m.strip() for m in models.split(",") if m.strip()) or None,
            max_body_bytes=int(_number(ENV["max_body_bytes"], 1_048_576, int)),
            max_instances=int(_number(ENV["max_instances"], 1000, int)),
            log_inputs=os.environ.get(ENV["log_inputs"], "true").lower() not in ("0", "false", "no"),
        )
