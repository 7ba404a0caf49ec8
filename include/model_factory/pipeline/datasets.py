"""The training batches as MLflow datasets, so the run's Datasets tab (and ``run.inputs``) shows
what a version was trained on: one entry per validated batch, with its URI as the source, its
content hash as the digest and its row count, without reading the data again."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.models import infer_signature

DIGEST_CHARS = 32
"""MLflow keeps at most 36 characters of a dataset digest: the sha256's first 32 hex digits (the
whole hash is the input's ``sha256`` tag and in lineage.json)."""


def training_datasets(model: str, inputs: list[dict], example: pd.DataFrame) -> list[MetaDataset]:
    """One dataset per training batch (``inputs``: the lineage's uri, sha256 and rows), with the
    features' schema taken from ``example``."""
    schema = infer_signature(example).inputs
    return [
        MetaDataset(  # type: ignore[abstract]  # mlflow's Dataset declares profile abstract but is no ABC
            source=resolve_dataset_source(batch["uri"]),
            name=f"{model}/{batch['uri'].rstrip('/').split('/')[-2]}",
            digest=batch["sha256"][:DIGEST_CHARS],
            schema=schema,
        )
        for batch in inputs
    ]


def log_training_inputs(model: str, inputs: list[dict], example: pd.DataFrame) -> None:
    """Log the batches as the active run's ``training`` inputs."""
    for dataset, batch in zip(training_datasets(model, inputs, example), inputs, strict=True):
        mlflow.log_input(
            dataset, context="training", tags={"sha256": batch["sha256"], "rows": str(batch["rows"])}
        )
