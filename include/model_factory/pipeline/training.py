"""Train: build the spec's scikit-learn pipeline, fit it, log one MLflow run with full lineage."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import resource
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from model_factory.contracts import TrainedModel
from model_factory.errors import LabelError, UntrustedModelError
from model_factory.io import storage, tag_schema, tracking
from model_factory.io.batches import write_parquet
from model_factory.io.trust import BASE_TRUSTED_TYPES
from model_factory.pipeline import labels
from model_factory.pipeline.datasets import log_training_inputs
from model_factory.pipeline.features import prepare_features, target_values
from model_factory.pipeline.small_data import cross_validate
from model_factory.pipeline.training_data import check_training_frame, training_window
from model_factory.settings import PROJECT_ROOT, FactorySettings
from model_factory.spec import ESTIMATORS, ModelSpec

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def trusted_types(model: Any, extra: Iterable[str] = ()) -> list[str]:
    """The skops types to trust for this fitted model: the types it holds (skops lists the
    ones outside its defaults) that are scikit-learn's own, the base ones, and ``extra`` (a
    template's own classes). Anything else raises UntrustedModelError: the factory would not
    load such a model back, so it does not save it."""
    import skops.io

    allowed = {*BASE_TRUSTED_TYPES, *extra}
    held = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    refused = sorted(t for t in held if t not in allowed and not t.startswith("sklearn."))
    if refused:
        raise UntrustedModelError(
            f"the fitted model holds types the factory does not trust when loading: {refused}"
        )
    return sorted(held)


def _close_abandoned_runs(client: Any, exp_id: str, key: str, stale_hours: float) -> list[str]:
    """Mark earlier runs of this training that were killed mid-run (still RUNNING) as KILLED.

    A run is abandoned when its worker process (tag ``factory.worker`` = host:pid) is gone from
    this host, or when it started more than ``stale_hours`` ago (a worker elsewhere)."""
    running = client.search_runs(
        [exp_id], filter_string=f"tags.`factory.run_key` = '{key}' and attributes.status = 'RUNNING'"
    )
    host, closed = socket.gethostname(), []
    for run in running:
        worker = run.data.tags.get(tag_schema.WORKER, "")
        run_host, _, pid = worker.rpartition(":")
        age_h = (time.time() * 1000 - (run.info.start_time or 0)) / 3_600_000
        dead_here = run_host == host and pid.isdigit() and not storage.process_alive(int(pid))
        if dead_here or age_h > stale_hours:
            why = f"worker {worker} is gone" if dead_here else f"still RUNNING after {age_h:.1f} h"
            client.set_tag(run.info.run_id, tag_schema.ABANDONED, f"{why}; closed by a retry")
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    return closed


# A RUNNING run of the same training on another host is taken for dead after this long.
STALE_RUN_HOURS = 24.0


def build_pipeline(spec: ModelSpec) -> Pipeline:
    """Preprocessing chosen for the estimator family, then the estimator with the spec's seed."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    name = spec.estimator.class_
    if name is None:  # estimator.factory: the data scientist's code builds the model instead
        raise ValueError(f"{spec.name}: estimator.factory models are built by their own code")
    cls = getattr(importlib.import_module(ESTIMATORS[name]["module"]), name)
    params = dict(spec.estimator.params)
    if "random_state" in cls().get_params():
        params["random_state"] = spec.split.seed
    numeric, categorical = spec.features.numeric, spec.features.categorical

    if name.startswith("HistGradientBoosting"):
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, dtype=np.float64)
        preprocess = ColumnTransformer(
            [("categorical", encoder, categorical), ("numeric", "passthrough", numeric)],
            verbose_feature_names_out=False,
        )
        params["categorical_features"] = [True] * len(categorical) + [False] * len(numeric)
    else:
        numeric_steps: list = [("impute", SimpleImputer(strategy="median"))]
        if name in ("LogisticRegression", "Ridge", "ElasticNet", "LinearRegression"):
            numeric_steps.append(("scale", StandardScaler()))
        preprocess = ColumnTransformer(
            [
                ("numeric", Pipeline(numeric_steps), numeric),
                ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
            ]
        )
    return Pipeline([("preprocess", preprocess), ("model", cls(**params))])


@dataclass
class Fitted:
    """What a fit step hands back: the fitted model and what to record with it."""

    model: Any
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    trusted_types: list[str] = field(default_factory=list)


FitFunction = Callable[[ModelSpec, pd.DataFrame, pd.Series], Fitted]


def default_fit(spec: ModelSpec, X_train: pd.DataFrame, y_train: pd.Series) -> Fitted:
    """The spec's allow-listed estimator with the factory's preprocessing."""
    pipeline = build_pipeline(spec)
    pipeline.fit(X_train, y_train)
    return Fitted(pipeline)


def split_holdout(df: pd.DataFrame, spec: ModelSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random (seeded) or time-based holdout: the latest rows by ``split.time_column``."""
    n_holdout = max(1, round(len(df) * spec.split.holdout_fraction))
    if len(df) - n_holdout < 2:
        raise ValueError(f"only {len(df)} rows: too few to train and hold out for {spec.name}")
    if spec.split.strategy == "time":
        order = pd.to_datetime(df[spec.split.time_column]).argsort(kind="stable")
        ordered = df.iloc[order]
        return ordered.iloc[:-n_holdout], ordered.iloc[-n_holdout:]
    rng = np.random.default_rng(spec.split.seed)
    mask = np.zeros(len(df), dtype=bool)
    mask[rng.choice(len(df), size=n_holdout, replace=False)] = True
    return df.iloc[~mask], df.iloc[mask]


def git_revision(settings: FactorySettings) -> str:
    """The code revision: ``FACTORY_CODE_REVISION`` (baked into the Docker image, which has no
    ``.git``), else the checkout's ``git rev-parse HEAD`` (``-dirty`` with local changes)."""
    if revision := settings.code_revision:
        return revision
    try:
        rev = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def requirements_file(settings: FactorySettings) -> Path:
    """The locked requirements: ``FACTORY_REQUIREMENTS_FILE`` (set in the Docker image), else the
    checkout's requirements.txt."""
    return Path(settings.requirements_file or PROJECT_ROOT / "requirements.txt")


def _requirements_sha256(settings: FactorySettings) -> str:
    path = requirements_file(settings)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "unknown"


def _pip_requirements() -> list[str]:
    """Pinned from what is installed: MLflow's own inference costs seconds per model."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for dist in ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "skops", "cloudpickle"):
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return pins


BASELINE_ARTIFACT = "baseline/profile.json"
CONTRACT_ARTIFACT = "baseline/input_contract.json"


def log_baseline(X_train: pd.DataFrame, spec: ModelSpec) -> dict:
    """Log what the model saw (the drift baseline) and the input contract suggested from it
    to the active MLflow run; drift checks compare fresh data with the champion's copy."""
    import mlflow
    from model_factory.pipeline.contract import input_contract
    from model_factory.pipeline.profile import build_baseline

    baseline = build_baseline(X_train, spec.features.numeric, spec.features.categorical)
    contract = input_contract(
        baseline, k_sigma=spec.drift.contract_k_sigma, mostly=spec.drift.contract_mostly
    )
    mlflow.log_dict(baseline, BASELINE_ARTIFACT)
    mlflow.log_dict(contract, CONTRACT_ARTIFACT)
    mlflow.set_tag(tag_schema.BASELINE, BASELINE_ARTIFACT)
    return baseline


def run_key(spec: ModelSpec, ds: str, inputs: list[dict]) -> str:
    """Identity of a training: same model, date, data and spec means the same run."""
    payload = json.dumps([spec.name, ds, spec.spec_hash(), [i["sha256"] for i in inputs]])
    return hashlib.sha256(payload.encode()).hexdigest()


def _finished_run(client: Any, exp_id: str, key: str) -> TrainedModel | None:
    """The finished run of this same training (``run_key``), if there is one, to reuse."""
    done = client.search_runs(
        [exp_id],
        filter_string=f"tags.`factory.run_key` = '{key}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if not done:
        return None
    run = done[0]
    return {
        "run_id": run.info.run_id,
        "model_uri": run.data.tags[tag_schema.MODEL_URI],
        "holdout_uri": run.data.tags[tag_schema.HOLDOUT_URI],
        "reused": True,
    }


def _run_tags(
    spec: ModelSpec,
    ds: str,
    key: str,
    force: bool,
    withdrawn: list[dict],
    settings: FactorySettings,
    inputs: list[dict],
    rows: int,
    context: dict[str, Any],
) -> dict[str, str]:
    """The run's tags (also its ``lineage.json``): the model, date and key, the worker, the spec,
    code and requirements, the data it read, who asked (``context``) and the spec's own tags."""
    data_sha = hashlib.sha256("".join(i["sha256"] for i in inputs).encode()).hexdigest()
    return {
        tag_schema.MODEL: spec.name,
        tag_schema.OWNER: spec.owner,
        tag_schema.DS: ds,
        tag_schema.RUN_KEY: key,
        # Registration is idempotent on this key (a forced retrain asks for a new version).
        tag_schema.REGISTRATION_KEY: key if not force else f"{key}:forced:{uuid.uuid4().hex[:12]}",
        tag_schema.WORKER: f"{socket.gethostname()}:{os.getpid()}",
        **({tag_schema.WITHDRAWN_BATCHES: json.dumps(withdrawn)[:5000]} if withdrawn else {}),
        tag_schema.SPEC_HASH: spec.spec_hash(),
        tag_schema.GIT_REVISION: git_revision(settings),
        tag_schema.REQUIREMENTS_SHA256: _requirements_sha256(settings),
        tag_schema.DATA_URIS: json.dumps([i["uri"] for i in inputs]),
        tag_schema.DATA_SHA256: data_sha,
        tag_schema.DATA_ROWS: str(rows),
        **{f"{tag_schema.PREFIX}{k}": str(v) for k, v in context.items() if v is not None},
        **{f"spec.{k}": v for k, v in spec.tags.items()},
    }


def _run_params(spec: ModelSpec, fitted: Fitted, train_rows: int, holdout_rows: int) -> dict[str, Any]:
    """The run's parameters: the estimator (and the fit's own), split, window, features, rows."""
    return {
        "estimator": spec.estimator.class_ or f"factory:{spec.estimator.factory}",
        "template": spec.template,
        **fitted.params,
        **{f"estimator.{k}": v for k, v in spec.estimator.params.items()},
        "split.strategy": spec.split.strategy,
        "split.holdout_fraction": spec.split.holdout_fraction,
        "split.seed": spec.split.seed,
        "training.window_batches": spec.training.window_batches,
        "features.numeric": ",".join(spec.features.numeric),
        "features.categorical": ",".join(spec.features.categorical),
        "rows.train": train_rows,
        "rows.holdout": holdout_rows,
    }


def _log_cross_validation(spec: ModelSpec, pipeline: Any, df: pd.DataFrame) -> None:
    """Too few holdout rows to judge on: every row of the window scored out of fold, logged to
    the active run (metrics, and the ``factory.cross_validation`` tag evaluation reads)."""
    import mlflow

    cv = cross_validate(spec, pipeline, df)
    if cv is not None:
        mlflow.log_metrics(
            {
                "cv_score": cv.score,
                "cv_score_sd": cv.score_sd,
                "cv_baseline": cv.baseline,
                "cv_rows": cv.rows,
            }
        )
        mlflow.set_tag(tag_schema.CROSS_VALIDATION, json.dumps(cv.as_dict()))


def _log_model(pipeline: Any, example: pd.DataFrame, extra_trusted_types: list[str]) -> Any:
    """Log the fitted pipeline to the active run with its signature, pinned requirements and the
    skops types it may be loaded with; MLflow's model info."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    return mlflow.sklearn.log_model(
        pipeline,
        name="model",
        signature=infer_signature(example, pipeline.predict(example)),
        input_example=example,
        pip_requirements=_pip_requirements(),
        skops_trusted_types=trusted_types(pipeline, extra_trusted_types),
    )


def train_model(
    spec: ModelSpec,
    ds: str,
    batch_uris: list[str],
    settings: FactorySettings,
    context: dict[str, Any] | None = None,
    force: bool = False,
    s3: storage.S3Options | None = None,
    fit: FitFunction | None = None,
) -> TrainedModel:
    """Fit the spec's pipeline on the given validated batches and log one MLflow run.

    ``fit`` replaces the plain fit of the spec's estimator (a template's tuning or the data
    scientist's own code); splitting, signature, baseline, lineage and logging stay here.

    ``context`` carries who asked (Airflow dag/run ids, the batch's source sha256) and is
    tagged on the run. A second call with the same model, date, data and spec returns the
    run that already exists instead of training again, unless ``force``.
    """
    import mlflow

    context = context or {}
    client = tracking.connect(settings)
    exp_id = tracking.experiment_id(client, settings, spec.name)
    df, inputs, withdrawn = training_window(spec, ds, batch_uris, settings, s3)
    key = run_key(spec, ds, inputs)

    if not force:
        finished = _finished_run(client, exp_id, key)
        if finished is not None:
            return finished

    check_training_frame(df, spec, [i["uri"] for i in inputs])
    if spec.task == "classification":
        known = labels.learn_classes(spec, target_values(df, spec), ds, settings.store_uri, s3)
    train_df, holdout_df = split_holdout(df, spec)
    X_train, y_train = prepare_features(train_df, spec), target_values(train_df, spec)
    if spec.task == "classification":
        only_held = sorted(set(target_values(holdout_df, spec)) - set(y_train), key=str)
        if only_held:
            raise LabelError(
                f"classes {only_held} of {spec.target!r} are in the holdout but not in the "
                f"training part (known classes {known}): too few rows of them in the window"
            )
    _close_abandoned_runs(client, exp_id, key, STALE_RUN_HOURS)

    tags = _run_tags(spec, ds, key, force, withdrawn, settings, inputs, len(df), context)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{spec.name}-{ds}", tags=tags) as run:
        # Inside the run: a template's fit may log nested runs (tuning trials); a fit that
        # raises leaves this run FAILED, never RUNNING.
        wall0, cpu0 = time.perf_counter(), time.process_time()
        fitted = (fit or default_fit)(spec, X_train, y_train)
        pipeline = fitted.model
        wall_s, cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        mlflow.set_tags(fitted.tags)
        holdout_uri = storage.join(
            settings.store_uri, "evaluation", spec.name, ds, run.info.run_id, "holdout.parquet"
        )
        write_parquet(holdout_df, holdout_uri, s3)
        mlflow.log_params(_run_params(spec, fitted, len(train_df), len(holdout_df)))
        mlflow.log_metrics(
            {"train_wall_seconds": wall_s, "train_cpu_seconds": cpu_s, "process_peak_rss_mb": peak_rss_mb}
        )
        if len(holdout_df) < spec.gates.min_holdout_rows:
            _log_cross_validation(spec, pipeline, df)
        mlflow.log_dict({"inputs": inputs, "holdout_uri": holdout_uri, **tags}, "lineage.json")
        log_training_inputs(spec.name, inputs, X_train.head(5))
        mlflow.log_dict(spec.model_dump(mode="json", by_alias=True), "spec.json")
        if requirements_file(settings).exists():
            mlflow.log_artifact(str(requirements_file(settings)), "environment")
        info = _log_model(pipeline, X_train.head(5), fitted.trusted_types)
        log_baseline(X_train, spec)
        mlflow.set_tags({tag_schema.MODEL_URI: info.model_uri, tag_schema.HOLDOUT_URI: holdout_uri})
    return {
        "run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "holdout_uri": holdout_uri,
        "reused": False,
    }
