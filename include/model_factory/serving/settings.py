"""Gateway settings, read from the environment (on top of the factory's own, see ``config``)."""

from __future__ import annotations

import re
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
    "log_entity_ids": "FACTORY_GATEWAY_LOG_ENTITY_IDS",
    "hash_salt": "FACTORY_GATEWAY_HASH_SALT",
    "retention_days": "FACTORY_GATEWAY_RETENTION_DAYS",
    "threads": "FACTORY_GATEWAY_THREADS",
    "keep_alive_s": "FACTORY_GATEWAY_KEEP_ALIVE_SECONDS",
    "header_timeout_s": "FACTORY_GATEWAY_HEADER_TIMEOUT_SECONDS",
    "body_timeout_s": "FACTORY_GATEWAY_BODY_TIMEOUT_SECONDS",
    "feedback_wait_s": "FACTORY_GATEWAY_FEEDBACK_WAIT_SECONDS",
    "memory_mb": "FACTORY_GATEWAY_MEMORY_MB",
    "preload_models": "FACTORY_GATEWAY_PRELOAD_MODELS",
}


def prediction_db_uri(factory: FactorySettings) -> str:
    """``FACTORY_PREDICTION_DB_URI``, else SQLite under FACTORY_HOME: where DAGs find the prediction log."""
    return factory.prediction_db


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
    log_inputs: bool = False
    """Opt-in: log the request's features as JSON next to their salted hash (off: the hash only)."""
    log_entity_ids: bool = False
    """Opt-in: log raw entity ids (off: their salted hash, enough to group a caller's rows)."""
    hash_salt: str = ""
    """Key of the HMAC over inputs and entity ids; empty: a random one per process (hashes then
    cannot be joined across restarts). Keep it secret: with it, a guessed input can be checked."""
    retention_days: float = 30.0
    """Predictions and feedback older than this are deleted (by the gateway, hourly)."""
    threads: int = 1
    """Threads per BLAS/OpenMP pool in the serving process (see the README's gateway section)."""
    keep_alive_s: int = 65
    """Idle keep-alive connections stay open this long: longer than callers' pools keep theirs
    (httpx 5 s), so the caller closes first and never sends on a connection being closed."""
    header_timeout_s: float = 15.0
    """A connection whose request headers are not complete after this long is closed."""
    body_timeout_s: float = 30.0
    """A request body not received within this long is refused (408)."""
    feedback_wait_s: float = 5.0
    """Feedback waits this long for a locked prediction DB, then answers 503 saying why."""
    memory_mb: float = 1024.0
    """Budget for the loaded versions of one serving process (estimated resident MiB): beyond it
    the least recently used versions are evicted (see ``serving/model_store.py``)."""
    preload_models: int = 100
    """A fleet of at most this many models has every champion (canary, shadow) loaded by each
    registry refresh, as long as it fits beside what is resident; a larger one loads each version on
    first use."""

    @classmethod
    def of(cls, factory: FactorySettings) -> GatewaySettings:
        """The gateway's part of the factory's settings (its entry point reads them once)."""
        models = factory.gateway_models.strip()
        same = (
            "max_body_bytes",
            "max_instances",
            "log_inputs",
            "log_entity_ids",
            "hash_salt",
            "retention_days",
            "threads",
            "memory_mb",
            "preload_models",
        )
        return cls(
            factory=factory,
            db_uri=prediction_db_uri(factory),
            api_key=factory.gateway_api_key or None,
            refresh_s=factory.gateway_refresh_seconds,
            models=tuple(m.strip() for m in models.split(",") if m.strip()) or None,
            **{name: getattr(factory, f"gateway_{name}") for name in same},
            keep_alive_s=factory.gateway_keep_alive_seconds,
            header_timeout_s=factory.gateway_header_timeout_seconds,
            body_timeout_s=factory.gateway_body_timeout_seconds,
            feedback_wait_s=factory.gateway_feedback_wait_seconds,
        )


_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@]*@")
_SECRET_PARAMS = re.compile(
    r"(?i)\b(?P<key>password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key)=[^&\s'\"]+"
)


def redact(text: str) -> str:
    """``text`` without credentials: ``scheme://user:pass@host`` becomes ``scheme://***@host`` and
    ``password=...``-style query values ``***``. For anything the gateway shows (health, errors)."""
    text = _CREDENTIALS.sub(lambda m: f"{m['scheme']}***@", text)
    return _SECRET_PARAMS.sub(lambda m: f"{m['key']}=***", text)
