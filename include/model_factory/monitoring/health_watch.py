"""The daily health check of one model, from where its data lives to the history table and report.

Reads the champion's holdout (scored by the champion through the factory's safe loader), the
served predictions (prediction log and batch scoring), the outcomes (gateway feedback and/or the
spec's outcome source) over the look-back of ``outcomes.window_days + outcomes.max_delay_days``
days, runs :func:`model_factory.monitoring.health.check_health`, writes the rows to the
``model_health`` table and the report JSON to ``<store>/health/<model>/<ds>/report.json``. The
Airflow DAG ``<model>__health`` is thin wiring around ``run_health_check``.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from model_factory.io import attestation, storage, tag_schema, tracking
from model_factory.monitoring.health import HealthPolicy, HealthReport, Holdout, check_health
from model_factory.monitoring.health_history import record
from model_factory.monitoring.health_sources import (
    SourceReport,
    log_predictions,
    read_batch_predictions,
    read_feedback,
    read_outcome_source,
    read_prediction_log,
)
from model_factory.monitoring.stability import effect_stability
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec


def policy_of(spec: ModelSpec) -> HealthPolicy:
    o = spec.outcomes
    return HealthPolicy(
        metric=spec.gates.primary_metric,
        threshold=spec.gates.threshold,
        higher_is_better=spec.higher_is_better,
        task=spec.task,
        max_delay_days=o.max_delay_days,
        min_outcomes=o.min_outcomes,
        max_drop=o.max_drop,
        window_days=o.window_days,
        warn_days=o.warn_days,
        retrain_on_estimate=o.retrain_on_estimate,
    )


def champion_holdout(
    spec: ModelSpec, settings: FactorySettings
) -> tuple[str, Holdout, list[Any] | None, pd.DataFrame]:
    """(version, the champion's holdout scored by the champion, its classes, the holdout frame)."""
    from model_factory.io.model_loading import load_registered
    from model_factory.pipeline.champion_baseline import champion_baseline
    from model_factory.pipeline.features import prepare_features

    found = champion_baseline(spec, settings)
    client = tracking.connect(settings)
    holdout_uri = client.get_run(found.run_id).data.tags[tag_schema.HOLDOUT_URI]
    model = load_registered(
        client,
        spec.registered_model_name,
        found.version,
        code_dir=settings.specs_dir / "code",
        key=attestation.signing_key(settings),
    ).estimator
    with storage.local_file(holdout_uri) as path:
        frame = pd.read_parquet(path)
    X = prepare_features(frame, spec)
    labels = frame[spec.target].to_numpy()
    if spec.task == "classification":
        classes = list(model.classes_)
        proba = model.predict_proba(X)
        predictions = np.asarray(classes)[proba.argmax(axis=1)]
        scores = proba[:, 1] if len(classes) == 2 else None
        positive = classes[-1]
    else:
        classes, predictions, scores, positive = None, np.asarray(model.predict(X)), None, 1
    metric = found.holdout_metric if found.holdout_metric is not None else math.nan
    return found.version, Holdout(labels, predictions, scores, metric, positive), classes, frame


MAX_VERSIONS = 5  # the feature-stability view looks at this many latest blessed versions
MAX_EFFECT_ROWS = 2_000  # holdout rows for permutation importance (seeded sample)


def version_effects(
    spec: ModelSpec, settings: FactorySettings, frame: pd.DataFrame
) -> tuple[dict, list[str]]:
    """Each recent version's feature effects on the champion's holdout, and why some are absent."""
    from model_factory.io.model_loading import ModelRefusedError, ModelUnavailableError, load_registered
    from model_factory.monitoring.stability import feature_effects
    from model_factory.pipeline.features import prepare_features

    client = tracking.connect(settings)
    name = spec.registered_model_name
    versions = sorted((int(v.version) for v in client.search_model_versions(f"name='{name}'")), reverse=True)
    sample = frame.sample(min(len(frame), MAX_EFFECT_ROWS), random_state=0)
    X, y = prepare_features(sample, spec), sample[spec.target]
    effects, notes = {}, []
    key = attestation.signing_key(settings)
    for version in sorted(versions[:MAX_VERSIONS]):
        try:
            model = load_registered(
                client, name, str(version), code_dir=settings.specs_dir / "code", key=key
            ).estimator
        except (ModelRefusedError, ModelUnavailableError) as exc:
            notes.append(f"v{version}: no feature effects ({exc})")
            continue
        effects[str(version)] = feature_effects(model, X, y, list(X.columns))
    return effects, notes


def history_engine(db_uri: str) -> sa.Engine:
    """An engine on the prediction DB; a SQLite file's folder is created first (a fresh
    FACTORY_HOME where no gateway ever ran has none, and the health history is written there)."""
    url = sa.engine.make_url(db_uri)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(url)


def run_health_check(spec: ModelSpec, ds: str, settings: FactorySettings, db_uri: str) -> dict[str, Any]:
    """Check ``spec``'s health as of the end of ``ds``; record it; a JSON-able summary."""
    as_of = datetime.combine(date.fromisoformat(ds), datetime.min.time()) + timedelta(days=1)
    look_back = spec.outcomes.window_days + math.ceil(spec.outcomes.max_delay_days)
    since = as_of - timedelta(days=look_back)
    days = [since.date() + timedelta(days=k) for k in range(look_back)]
    version, holdout, classes, holdout_frame = champion_holdout(spec, settings)
    engine = history_engine(db_uri)
    sources = SourceReport()
    try:
        log = read_prediction_log(engine, spec.name, since, as_of)
        served = log_predictions(log)
        outcomes = [read_outcome_source(spec, days, sources, settings)]
        if spec.outcomes.gateway_feedback:
            outcomes.append(read_feedback(engine, served))
        predictions = pd.concat(
            [
                served.drop(columns=["request_id"]),
                read_batch_predictions(settings.store_uri, spec.name, days),
            ],
            ignore_index=True,
        )
        report = check_health(
            spec.name,
            predictions,
            pd.concat(outcomes, ignore_index=True),
            holdout,
            policy_of(spec),
            as_of,
            log=log,
            classes=classes,
        )
        record(engine, report.rows())
    finally:
        engine.dispose()
    summary = summarize(report, ds, version, sources)
    effects, effect_notes = version_effects(spec, settings, holdout_frame)
    summary["feature_stability"] = [asdict(f) for f in effect_stability(effects)] if len(effects) > 1 else []
    summary["notes"] += effect_notes
    uri = storage.join(settings.store_uri, "health", spec.name, ds, "report.json")
    summary["report_uri"] = storage.write_json(uri, {**summary, "report": report.to_dict()})
    return summary


def summarize(report: HealthReport, ds: str, champion: str, sources: SourceReport) -> dict[str, Any]:
    return {
        "model": report.model,
        "ds": ds,
        "champion_version": champion,
        "action": report.decision.action,
        "reason": report.decision.reason,
        "metric": report.metric,
        "realized": report.realized_window.value,
        "estimated": report.estimated_window.value,
        "expiry": report.expiry.crossing.isoformat() if report.expiry.crossing else None,
        "retrain_by": report.expiry.retrain_by.isoformat() if report.expiry.retrain_by else None,
        "cadence_days": report.cadence_days,
        "counts": report.counts.to_dict(),
        "sources": sources.__dict__,
        "notes": report.notes,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
