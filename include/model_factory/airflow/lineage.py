"""Lineage where users look: batch -> training run -> model version, in Airflow and OpenLineage.

Airflow's own asset graph gets two Assets per model, declared at parse time: ``<model>__batches``
(an inlet of ``train``) and ``<model>__versions`` (an outlet of ``register``, its event's extra
naming the version and the batches it was trained on).

The exact datasets of a run are only known while it runs (which dated batches the window held,
which version the registry gave), so ``train`` and ``register`` add them to their own
inlets/outlets as OpenLineage datasets; Airflow's OpenLineage provider (when installed and
given a transport) puts them in the task's COMPLETE event: ``train`` reads the batch files and
writes the MLflow run's model, ``register`` reads that model and writes the registry version,
so an OpenLineage backend draws batch -> model version. Without the provider (or the
``openlineage-python`` client) this adds nothing and costs nothing; Airflow ignores
non-asset lineage objects.

Dataset names follow OpenLineage's naming: ``s3://bucket`` + key, ``file`` + absolute path; an
MLflow model is named inside the tracking server's namespace (``runs/<id>/model``,
``models/<name>/versions/<n>``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from model_factory.spec import ModelSpec

from airflow.sdk import Asset

log = logging.getLogger("model_factory.airflow")


def batches_asset(spec: ModelSpec) -> Asset:
    return Asset(name=f"{spec.name}__batches", uri=f"x-model-factory://{spec.name}/batches")


def versions_asset(spec: ModelSpec) -> Asset:
    return Asset(name=f"{spec.name}__versions", uri=f"x-model-factory://{spec.name}/versions")


def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) of a batch URI or local path, as OpenLineage names files."""
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a", "gs", "gcs") and parsed.netloc:
        scheme = "gs" if parsed.scheme == "gcs" else parsed.scheme.removesuffix("a")
        return f"{scheme}://{parsed.netloc}", parsed.path.lstrip("/")
    if parsed.scheme == "file":
        return "file", str(Path(parsed.path).resolve())
    if parsed.scheme:
        return f"{parsed.scheme}://{parsed.netloc}", parsed.path.lstrip("/")
    return "file", str(Path(uri).resolve())


def model_namespace(tracking_uri: str) -> str:
    """The OpenLineage namespace of an MLflow tracking server (``mlflow://host:port``); a local
    store (``sqlite:///...``, a path) is ``mlflow://local``."""
    parsed = urlparse(tracking_uri)
    return (
        f"mlflow://{parsed.netloc}"
        if parsed.scheme in ("http", "https") and parsed.netloc
        else "mlflow://local"
    )


def run_model_name(run_id: str) -> str:
    return f"runs/{run_id}/model"


def version_name(model: str, version: str | int) -> str:
    return f"models/{model}/versions/{version}"


def add_run_lineage(context: Any, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> bool:
    """Add ``(namespace, name)`` datasets to the running task's inlets/outlets for the
    OpenLineage provider; False (nothing added) without the OpenLineage client. Never raises."""
    try:
        from openlineage.client.event_v2 import Dataset
    except ImportError:
        return False
    try:
        task = context["task"]
        task.inlets = [*task.inlets, *(Dataset(namespace=ns, name=name) for ns, name in inputs)]
        task.outlets = [*task.outlets, *(Dataset(namespace=ns, name=name) for ns, name in outputs)]
    except Exception as exc:  # lineage never fails a training
        log.warning("lineage of %s not recorded: %s", context.get("task_instance"), exc)
        return False
    return True
