"""Every ``FACTORY_*`` environment variable, read in one place.

``FactorySettings.from_env()`` is the factory's one reader of its own variables (pydantic-settings):
the embedded default puts everything under ``<project>/.factory``; production points the same
names at S3, an MLflow server and PostgreSQL (see docker-compose.yaml). boto3 and MLflow read
their own standard variables (``AWS_*``, ``MLFLOW_*``); of those the factory reads only
``MLFLOW_TRACKING_URI``, for its default. The configuration page of the docs and the
``FACTORY_*`` block of ``.env.example`` are generated from this class
(``python -m model_factory.cli.docs_gen``, ``make docs``), so a field's description is its documentation.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from pydantic import Field, ValidationError, model_validator
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# The sections of the generated configuration table, in order; each field names its own in
# json_schema_extra={"section": ...}.
SECTIONS = ("state", "sources", "training", "serving", "ops", "analyzer", "dev stack")


def _field(
    default,
    description: str,
    section: str,
    *,
    secret: bool = False,
    example: str = "",
    env: str | None = None,
    **bounds,
):
    """A setting: its env name is FACTORY_<FIELD> unless ``env`` names another."""
    extra: JsonDict = {"section": section, "secret": secret, "example": example}
    if env:
        extra["env"] = env
        bounds["validation_alias"] = env
    return Field(default, description=description, repr=not secret, json_schema_extra=extra, **bounds)


def _derived(description: str, **kwargs):
    """A state setting whose default depends on ``FACTORY_HOME``: None (not validated) until
    ``FactorySettings._derived_defaults`` fills it in."""
    return _field(None, description, "state", validate_default=False, **kwargs)


class FactorySettingsError(ValueError):
    """A ``FACTORY_*`` variable holds a value of the wrong type; the message names the variable."""


class FactorySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACTORY_", frozen=True, extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    # state -------------------------------------------------------------------------------------
    home: Path = _field(
        PROJECT_ROOT / ".factory", "Where the embedded setup keeps its state (store, MLflow, logs).", "state"
    )
    store_uri: str = _derived(
        "The factory's object store (`file://` or `s3://`): raw, validated, quarantine, drift "
        "reports. Default: `<FACTORY_HOME>/store`.",
        example="s3://factory/store",
    )
    data_root: str = _derived(
        "Where source batches live; specs refer to it as `${FACTORY_DATA_ROOT}`. File sources "
        "must lie under it (or under `FACTORY_SOURCE_ROOTS`). Default: `<FACTORY_HOME>/source`.",
        example="s3://factory/source",
    )
    specs_dir: Path = _field(
        PROJECT_ROOT / "include" / "models", "The folder of model specs (`*.yaml`).", "state"
    )
    templates_dir: Path | None = _field(
        None, "Data scientists' DAG templates. Default: `templates/` beside the specs folder.", "state"
    )
    tracking_uri: str = _derived(
        "MLflow's own variable (read for the default only). Default: SQLite under `<FACTORY_HOME>/mlflow`.",
        example="http://mlflow:5000",
        env="MLFLOW_TRACKING_URI",
    )
    artifact_root: str = _derived(
        "Artifact root of the embedded MLflow's experiments. Default: "
        "`<FACTORY_HOME>/mlflow/artifacts` (a server uses its `--artifacts-destination`).",
        env="FACTORY_MLFLOW_ARTIFACT_ROOT",
    )
    prediction_db_uri: str | None = _field(
        None,
        "SQLAlchemy URL of the prediction log (predictions, feedback, decisions, alerts, "
        "Analyzer events). Default: SQLite under `<FACTORY_HOME>/serving`.",
        "state",
        secret=True,
        example="postgresql+psycopg2://predictions:...@postgres/predictions",
    )

    claims_db_uri: str | None = _field(
        None,
        "Where the factory's claims table lives (who decided a version first). Default: the prediction DB.",
        "state",
        secret=True,
    )
    signing_key: str | None = _field(
        None,
        "Key of the HMAC that attests each registered version; the same for every process of a "
        "deployment. Default: `<FACTORY_HOME>/secrets/signing.key`, created on first use.",
        "state",
        secret=True,
    )

    # sources -----------------------------------------------------------------------------------
    source_roots: str = _field(
        "", "Comma-separated `file://` folders that file sources may also be read from.", "sources"
    )
    uri_variables: str = _field(
        "", "Comma-separated extra variable names a source URI may use besides `FACTORY_*`.", "sources"
    )
    chunk_rows: int = _field(
        1_000_000,
        "Rows per chunk in ingest and validation (memory bound for large batches).",
        "sources",
        gt=0,
    )

    # training ----------------------------------------------------------------------------------
    max_n_jobs: int | None = _field(
        None, "The most `n_jobs` a spec may ask for. Default: this machine's cores.", "training"
    )
    code_revision: str | None = _field(
        None,
        "The code revision recorded in lineage (the Docker image has no `.git`). Default: "
        "`git rev-parse HEAD`.",
        "training",
    )
    requirements_file: Path | None = _field(
        None, "The locked requirements whose hash lineage records. Default: `requirements.txt`.", "training"
    )

    template_check_timeout: float = _field(
        10.0,
        "Seconds a data scientist's template may take to import or to build one model's DAGs "
        "while DAGs parse (at least 0.5).",
        "training",
        gt=0,
    )

    # serving -----------------------------------------------------------------------------------
    gateway_api_key: str | None = _field(
        None,
        "With it, `/v1/*` requires the header `X-API-Key`. Required by docker compose; without "
        "it the gateway listens on loopback only.",
        "serving",
        secret=True,
    )
    gateway_allow_anonymous: bool = _field(
        False, "Serve without an API key on a non-loopback address, on purpose.", "serving"
    )
    gateway_host: str = _field(
        "127.0.0.1", "Address `python -m model_factory.serving` listens on.", "serving"
    )
    gateway_port: int = _field(8000, "Port of the gateway.", "serving", gt=0)
    gateway_workers: int = _field(1, "Gateway processes behind the port (uvicorn workers).", "serving", gt=0)
    gateway_threads: int = _field(
        1, "Threads per BLAS/OpenMP pool in each serving process (scale with processes).", "serving", gt=0
    )
    gateway_memory_mb: float = _field(
        1024.0,
        "Memory budget of each gateway process for loaded models (estimated MiB); least recently used "
        "versions are evicted beyond it, and a version that cannot fit answers 503.",
        "serving",
        gt=0,
    )
    gateway_preload_models: int = _field(
        100,
        "Fleets of at most this many models have their versions loaded by each registry refresh (within "
        "the budget, never evicting); larger ones load each version on its first request.",
        "serving",
        ge=0,
    )
    gateway_refresh_seconds: float = _field(
        10.0, "How often the gateway re-reads aliases and canary shares from the registry.", "serving", gt=0
    )
    gateway_models: str = _field(
        "", "Comma-separated models to serve. Default: every model with a champion or a spec.", "serving"
    )
    gateway_max_body_bytes: int = _field(1_048_576, "Largest request body (413 beyond).", "serving", gt=0)
    gateway_max_instances: int = _field(1000, "Most rows in one request.", "serving", gt=0)
    gateway_log_inputs: bool = _field(
        False, "Log the request's features as JSON (default: their salted hash only).", "serving"
    )
    gateway_log_entity_ids: bool = _field(
        False, "Log raw entity ids (default: their salted hash).", "serving"
    )
    gateway_hash_salt: str = _field(
        "",
        "Key of the HMAC over inputs and entity ids. Default: a random one per process.",
        "serving",
        secret=True,
    )
    gateway_retention_days: float = _field(
        30.0, "Predictions and feedback older than this are deleted hourly.", "serving", gt=0
    )

    gateway_keep_alive_seconds: int = _field(
        65,
        "Idle keep-alive connections stay open this long (longer than callers' pools keep theirs).",
        "serving",
        gt=0,
    )
    gateway_header_timeout_seconds: float = _field(
        15.0, "A connection whose request headers are incomplete after this long is closed.", "serving", gt=0
    )
    gateway_body_timeout_seconds: float = _field(
        30.0, "A request body not received within this long is refused (408).", "serving", gt=0
    )
    gateway_feedback_wait_seconds: float = _field(
        5.0,
        "Feedback waits this long for a locked prediction DB, then answers 503 saying why.",
        "serving",
        gt=0,
    )

    # ops ---------------------------------------------------------------------------------------
    actor: str | None = _field(
        None, "Who the CLI records as acting (ops commands, Analyzer events). Default: the login name.", "ops"
    )
    airflow_url: str = _field("http://localhost:8080", "Airflow's REST API, for the CLI.", "ops")
    airflow_user: str = _field("admin", "Airflow user the CLI logs in as.", "ops")
    airflow_password: str | None = _field(
        None,
        "Its password. Default: the simple auth manager's generated password in `AIRFLOW_HOME`.",
        "ops",
        secret=True,
    )
    mlflow_ui_url: str | None = _field(
        None,
        "The MLflow UI the view and cards link to. Default: the tracking server when it is "
        "`http(s)`, else none.",
        "ops",
        example="http://localhost:5000",
    )

    # analyzer ----------------------------------------------------------------------------------
    analyzer: str = _field(
        "on", "`off` (or false/0/no) records no Analyzer events and drops its DAG.", "analyzer"
    )
    analyzer_pseudonymize: bool = _field(
        False, "Store `u-<HMAC>` pseudonyms instead of user ids.", "analyzer"
    )
    analyzer_salt: str | None = _field(
        None,
        "Salt of the pseudonyms. Default: a random one in `<FACTORY_HOME>/analyzer/salt`.",
        "analyzer",
        secret=True,
    )
    analyzer_system_users: str = _field(
        "",
        "Comma-separated service accounts the Analyzer leaves out of its segments, beside root, "
        "airflow, demo, system, scheduler and nobody.",
        "analyzer",
    )

    # dev stack (make prod-up) ------------------------------------------------------------------
    stack_postgres_url: str = _field(
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "PostgreSQL server `make prod-up` creates its databases on.",
        "dev stack",
        secret=True,
    )
    stack_redis_url: str = _field("redis://127.0.0.1:6379/5", "Redis `make prod-up` uses.", "dev stack")

    @model_validator(mode="after")
    def _derived_defaults(self) -> FactorySettings:
        home = self.home.resolve()
        defaults = {
            "home": home,
            "store_uri": self.store_uri or (home / "store").as_uri(),
            "data_root": self.data_root or (home / "source").as_uri(),
            "tracking_uri": self.tracking_uri or f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            "artifact_root": self.artifact_root or (home / "mlflow" / "artifacts").as_uri(),
        }
        for name, value in defaults.items():
            object.__setattr__(self, name, value)
        return self

    @property
    def templates_folder(self) -> Path:
        """Data scientists' DAG templates: ``templates_dir``, else ``templates/`` beside the specs
        folder (``include/templates``; in the Docker image the specs come from the include/ mount,
        not from where the package is installed)."""
        return Path(self.templates_dir or self.specs_dir.parent / "templates")

    @property
    def prediction_db(self) -> str:
        """``prediction_db_uri``, else SQLite under ``home``."""
        return self.prediction_db_uri or f"sqlite:///{self.home / 'serving' / 'predictions.db'}"

    @classmethod
    def from_env(cls) -> FactorySettings:
        """The settings as the environment sets them now; a value of the wrong type names its
        variable. Cached per set of values: building the object reads the environment field by
        field (≈ 4 ms), and spec parsing asks for it per spec."""
        relevant = tuple(sorted((k, v) for k, v in os.environ.items() if _is_read(k)))
        return _from_environment(cls, relevant)


def _is_read(variable: str) -> bool:
    return variable.startswith("FACTORY_") or variable == "MLFLOW_TRACKING_URI"


@functools.lru_cache(maxsize=32)
def _from_environment(cls: type[FactorySettings], relevant: tuple[tuple[str, str], ...]) -> FactorySettings:
    del relevant  # the cache key: the FACTORY_* values the object is built from
    try:
        return cls()
    except ValidationError as exc:
        problems = "; ".join(
            f"{env_name(str(err['loc'][0]))}={err.get('input')!r}: {err['msg']}" for err in exc.errors()
        )
        raise FactorySettingsError(f"bad environment: {problems}") from None


def env_name(field_name: str) -> str:
    """The environment variable of a field (``chunk_rows`` -> ``FACTORY_CHUNK_ROWS``)."""
    field = FactorySettings.model_fields.get(field_name)
    env = setting_extra(field).get("env") if field else None
    return env if isinstance(env, str) and env else f"FACTORY_{field_name.upper()}"


def setting_extra(field: FieldInfo) -> JsonDict:
    """What ``_field`` put in a setting's ``json_schema_extra`` (section, secret, example, env)."""
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
