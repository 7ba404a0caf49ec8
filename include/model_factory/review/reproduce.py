"""Reproduce a registered version from its recorded lineage, in a scratch MLflow run.

Same data (each validated batch found and its sha256 matching), same spec (the logged
``spec.json``, its hash matching), same code revision, same seed; then the holdout metrics are
compared with the recorded ones within a tolerance. Anything missing is a clear refusal.
"""

from __future__ import annotations

import json
import time

import pandas as pd
from model_factory.io import storage, tag_schema, tracking
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec

REQUIRED_TAGS = (tag_schema.DATA_URIS, tag_schema.DATA_SHA256, tag_schema.SPEC_HASH, tag_schema.GIT_REVISION)


class ReproduceError(ValueError):
    """Why a version cannot be reproduced (lineage incomplete, data gone, code differs)."""


def training_split(
    spec: ModelSpec, uris: list[str], chunk_rows: int, s3: storage.S3Options | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and holdout rows exactly as training made them (same sample, same split;
    ``chunk_rows``: FactorySettings.chunk_rows)."""
    from model_factory.pipeline.training import split_holdout
    from model_factory.pipeline.training_data import read_frames

    df, _ = read_frames(
        uris, s3, chunk_rows=chunk_rows, max_rows=spec.training.max_rows, seed=spec.split.seed
    )
    return split_holdout(df, spec)


def _artifact(run_id: str, path: str) -> dict | None:
    import mlflow

    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")
    except Exception:
        return None


def check_lineage(
    model: str,
    version: str,
    settings: FactorySettings,
    allow_code_drift: bool = False,
    s3: storage.S3Options | None = None,
) -> dict:
    """Everything reproduce needs, or ReproduceError naming what is missing or changed."""
    from model_factory.pipeline.training import git_revision

    client = tracking.connect(settings)
    try:
        mv = client.get_model_version(model, version)
    except Exception as exc:
        raise ReproduceError(f"model {model!r} has no version {version!r}") from exc
    run = client.get_run(tracking.version_run_id(mv))
    tags = run.data.tags
    lineage, spec_dump = _artifact(run.info.run_id, "lineage.json"), _artifact(run.info.run_id, "spec.json")
    missing = [t for t in REQUIRED_TAGS if not tags.get(t) or tags[t] == "unknown"]
    missing += [name for name, art in (("lineage.json", lineage), ("spec.json", spec_dump)) if art is None]
    if lineage is not None and not all(i.get("uri") and i.get("sha256") for i in lineage.get("inputs", [])):
        missing.append("lineage.json inputs with uri and sha256")
    if missing or lineage is None:
        raise ReproduceError(
            f"{model} v{version} cannot be reproduced: its lineage is incomplete (missing "
            f"{', '.join(missing)}; run {mv.run_id})"
        )
    spec = ModelSpec.model_validate(spec_dump, context={"settings": settings})
    if spec.spec_hash() != tags[tag_schema.SPEC_HASH]:
        raise ReproduceError(
            f"{model} v{version}: the logged spec.json does not match the recorded "
            f"spec hash {tags[tag_schema.SPEC_HASH][:12]}"
        )
    if getattr(spec.estimator, "factory", None):
        raise ReproduceError(
            f"{model} v{version} was trained by the data scientist's own code "
            "(estimator.factory): reproduce retrains allow-listed estimators "
            "only"
        )
    for info in lineage["inputs"]:
        if not storage.exists(info["uri"], s3):
            raise ReproduceError(
                f"{model} v{version} cannot be reproduced: its data {info['uri']} is gone (deleted or moved)"
            )
        with storage.local_file(info["uri"], s3) as path:
            digest = storage.sha256_file(path)
        if digest != info["sha256"]:
            raise ReproduceError(
                f"{model} v{version} cannot be reproduced: {info['uri']} changed "
                f"(sha256 {digest[:12]}, recorded {info['sha256'][:12]})"
            )
    recorded, current = tags[tag_schema.GIT_REVISION], git_revision(settings)
    if recorded != current and not allow_code_drift:
        raise ReproduceError(
            f"{model} v{version} was trained at code revision {recorded}; this checkout is {current}. "
            f"Check out {recorded.removesuffix('-dirty')} first, or pass --allow-code-drift to "
            "compare anyway"
        )
    return {
        "spec": spec,
        "run": run,
        "inputs": lineage["inputs"],
        "recorded_revision": recorded,
        "current_revision": current,
    }


def reproduce_version(
    model: str,
    version: str,
    settings: FactorySettings,
    tolerance: float = 1e-6,
    allow_code_drift: bool = False,
    s3: storage.S3Options | None = None,
) -> dict:
    """Retrain from the lineage in a scratch run (experiment ``<model>__reproduce``) and compare
    every recorded holdout metric within ``tolerance`` (absolute)."""
    import mlflow
    from model_factory.pipeline.evaluation import compute_metrics
    from model_factory.pipeline.features import prepare_features, target_values
    from model_factory.pipeline.training import default_fit

    checked = check_lineage(model, version, settings, allow_code_drift, s3)
    spec, run = checked["spec"], checked["run"]
    started = time.perf_counter()
    train_df, holdout_df = training_split(
        spec, [i["uri"] for i in checked["inputs"]], settings.chunk_rows, s3
    )
    fitted = default_fit(spec, prepare_features(train_df, spec), target_values(train_df, spec))
    metrics = compute_metrics(fitted.model, holdout_df, spec)
    seconds = time.perf_counter() - started
    comparison = []
    for name, value in metrics.items():
        before = run.data.metrics.get(f"holdout_{name}")
        if before is None:
            continue
        both_nan = value != value and before != before
        diff = abs(value - before) if not both_nan else 0.0
        comparison.append(
            {
                "metric": name,
                "recorded": before,
                "reproduced": value,
                "difference": diff,
                "within": bool(diff <= tolerance),
            }
        )
    reproduced = bool(comparison) and all(c["within"] for c in comparison)
    client = tracking.connect(settings)
    exp_id = tracking.experiment_id(client, settings, f"{model}__reproduce")
    tags = {
        tag_schema.REPRODUCE_OF: f"{model}/{version}",
        tag_schema.REPRODUCE_OF_RUN: run.info.run_id,
        tag_schema.REPRODUCED: str(reproduced).lower(),
        tag_schema.GIT_REVISION: checked["current_revision"],
    }
    name = f"reproduce-{model}-v{version}"
    with mlflow.start_run(experiment_id=exp_id, run_name=name, tags=tags) as scratch:
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items() if v == v})
        mlflow.log_dict({"comparison": comparison, "inputs": checked["inputs"]}, "reproduce.json")
    differing = [c for c in comparison if not c["within"]]
    verdict = (
        f"{model} v{version} reproduced: {len(comparison)} holdout metrics within {tolerance:g}"
        if reproduced
        else f"{model} v{version} did NOT reproduce: "
        + "; ".join(f"{c['metric']} {c['reproduced']:.6f} vs recorded {c['recorded']:.6f}" for c in differing)
        if differing
        else f"{model} v{version}: no recorded holdout metrics to compare"
    )
    return {
        "model": model,
        "version": version,
        "reproduced": reproduced,
        "verdict": verdict,
        "comparison": comparison,
        "scratch_run_id": scratch.info.run_id,
        "seconds": round(seconds, 2),
        "recorded_revision": checked["recorded_revision"],
        "current_revision": checked["current_revision"],
    }


def describe(result: dict) -> str:
    return json.dumps(result, indent=2, default=str)
