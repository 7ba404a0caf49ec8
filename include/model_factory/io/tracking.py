"""MLflow connection: one place that points MLflow at the factory's tracking store."""

from __future__ import annotations

import os
import time
import warnings
import weakref
from typing import TYPE_CHECKING, Any

from model_factory.errors import PermanentError
from model_factory.settings import FactorySettings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

# Fail in seconds, not minutes, when a tracking server is down: the Airflow task retries anyway.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# The artifact download progress bar goes to stderr, which task logs show as errors.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# skops scans sys.modules when it saves or loads a model; inside an Airflow task that touches
# every deprecated airflow.* attribute and logs thousands of DeprecatedImportWarnings per model.
warnings.filterwarnings("ignore", module=r"skops\.io\._utils")


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking store cannot be reached."""


_CHECKED: weakref.WeakKeyDictionary[FactorySettings, MlflowClient] = weakref.WeakKeyDictionary()


def connect(settings: FactorySettings, attempts: int = 3, delay_s: float = 2.0) -> MlflowClient:
    """Point MLflow at the tracking store and check it answers; return an MlflowClient.

    One checked client per settings object: a task reads its settings once (the Airflow layer)
    and hands them down, so every step of the task shares one client and one reachability check
    instead of opening its own."""
    import mlflow
    from mlflow.tracking import MlflowClient

    checked = _CHECKED.get(settings)
    if checked is not None:
        _point_at(mlflow, settings)  # another settings object may have pointed MLflow elsewhere since
        return checked

    if settings.tracking_uri.startswith("sqlite:///"):
        db_path = settings.tracking_uri.removeprefix("sqlite:///")
        os.makedirs(os.path.dirname(db_path) or ".", exist_ok=True)
    _point_at(mlflow, settings)
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    last_error: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            client.search_experiments(max_results=1)
            _CHECKED[settings] = client
            return client
        except Exception as exc:
            last_error = exc
            if attempt < attempts:
                time.sleep(delay_s * attempt)
    raise TrackingUnavailableError(
        f"MLflow tracking store {settings.tracking_uri} is unreachable after {attempts} attempts: "
        f"{type(last_error).__name__}: {str(last_error).splitlines()[0] if str(last_error) else ''}. "
        "Check MLFLOW_TRACKING_URI and that the tracking server is running."
    )


def _point_at(mlflow: Any, settings: FactorySettings) -> None:
    """Set MLflow's process-wide URIs (its fluent API reads them) without changing os.environ:
    MLflow writes its copy there, and the next FactorySettings.from_env() would read it."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def version_run_id(version: ModelVersion) -> str:
    """The MLflow run a registry version was logged from (every version the factory registers has one)."""
    if not version.run_id:
        raise PermanentError(
            f"registered model {version.name} v{version.version} has no MLflow run (registered outside "
            "the factory?): it has no lineage, card or baseline to read"
        )
    return version.run_id


def experiment_id(client: MlflowClient, settings: FactorySettings, model: str) -> str:
    """The model's experiment, created on first use with artifacts under the factory's root."""
    name = f"model-factory/{model}"
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    local_store = settings.tracking_uri.startswith(("sqlite:", "file:", "postgresql"))
    explicit = "artifact_root" in settings.model_fields_set  # set by FACTORY_MLFLOW_ARTIFACT_ROOT
    location = f"{settings.artifact_root.rstrip('/')}/{model}" if (local_store or explicit) else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:
        # Another task created it in between.
        existing = client.get_experiment_by_name(name)
        if existing is None:
            raise
        return existing.experiment_id
