"""Drift watch: compare a fresh production batch with the champion's training baseline.

The statistics live in :mod:`model_factory.monitoring.drift`; this module finds the champion and its
stored baseline, reads the batch, adds the concept-drift check when the batch carries labels,
writes the HTML + JSON report to the store and decides whether a retrain may be fired
(cooldown, nothing already running). The Airflow DAG ``<model>__drift_watch`` is thin wiring
around these functions.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from model_factory.io import attestation, storage, tracking
from model_factory.io.batches import MissingBatchError, resolve_source_uri
from model_factory.pipeline.champion_baseline import (  # NoBaselineError: the watch's callers catch it
    ChampionBaseline,
    NoBaselineError,  # noqa: F401
    champion_baseline,
)
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec

if TYPE_CHECKING:
    from model_factory.monitoring.drift import DriftCheck, DriftRule

RETRAIN_STATUSES = ("drift", "concept_drift", "performance")  # performance: the health check
# The concept-drift metric needs the champion's predictions: it uses at most this many labelled
# rows (the first ones in the batch), so a huge batch costs no more memory than this.
MAX_CONCEPT_ROWS = 200_000
ALERT_HEADLINES = {
    "drift": "input drift vs the champion's training baseline: retraining",
    "concept_drift": "the champion's live metric dropped: retraining",
    "too_good": "live metric too good to be true (broken feed or leak?): held for review, no retrain",
    "data_quality": "data-quality failure (contract/schema break, not statistical drift): fix the feed",
}
ALERT_STATUSES = tuple(ALERT_HEADLINES)


def watched_uri(spec: ModelSpec, ds: str, settings: FactorySettings) -> str:
    """The production batch for ``ds``: ``drift.data_uri`` when set, else the training source
    (confined to the data roots of ``settings``)."""
    return resolve_source_uri(spec.drift.data_uri or spec.source.uri, ds, settings)


def report_folder(store_uri: str, model: str, ds: str) -> str:
    return storage.join(store_uri, "drift", model, ds)


def already_checked(spec: ModelSpec, ds: str, settings: FactorySettings) -> bool:
    return storage.exists(storage.join(report_folder(settings.store_uri, spec.name, ds), "report.json"))


def _champion_model(spec: ModelSpec, champion: ChampionBaseline, settings: FactorySettings) -> Any:
    """The champion's estimator, by the one safe loader: only a blessed, skops-saved version with
    types the factory trusts."""
    from model_factory.io.model_loading import load_registered

    return load_registered(
        tracking.connect(settings),
        spec.registered_model_name,
        champion.version,
        code_dir=settings.specs_dir / "code",
        key=attestation.signing_key(settings),
    ).estimator


def _concept_drift(
    spec: ModelSpec,
    frame: pd.DataFrame,
    champion: ChampionBaseline,
    settings: FactorySettings,
    seasonal: SeasonalReference | None = None,
    why_none: str | None = None,
) -> dict[str, Any]:
    """Champion's live metric on the labelled rows of the batch vs its holdout metric, or, under a
    seasonal ``drift.reference``, vs its metric on the reference days' labelled rows."""
    from model_factory.monitoring.drift import ConceptPolicy, check_concept_drift
    from model_factory.monitoring.references import DayMetric, check_seasonal_concept

    labelled = frame[frame[spec.target].notna()] if spec.target in frame.columns else frame.iloc[:0]
    seasonal_kind = spec.drift.reference != "training"
    if seasonal_kind and seasonal is None:  # no silent fallback to the holdout either
        return {"status": "insufficient_data", "reasons": [why_none or "no reference days"]}
    if not seasonal_kind and champion.holdout_metric is None:
        return {
            "status": "insufficient_data",
            "reasons": [f"champion v{champion.version} has no recorded holdout {spec.gates.primary_metric}"],
        }
    if len(labelled) < spec.drift.min_labels:
        return {
            "status": "insufficient_data",
            "n_labelled": len(labelled),
            "reasons": [f"{len(labelled)} labelled rows, concept drift needs {spec.drift.min_labels}"],
        }
    if any(col not in labelled.columns for col in spec.features.all):
        return {
            "status": "insufficient_data",
            "reasons": ["features missing: see data quality"],
            **({"reference_kind": spec.drift.reference} if seasonal_kind else {}),
        }
    from model_factory.pipeline.evaluation import metric_standard_error, metric_value, predict_holdout

    model = _champion_model(spec, champion, settings)
    metric = spec.gates.primary_metric

    def day_metric(day: date, rows: pd.DataFrame) -> DayMetric:
        # A past day with too few labels or a missing feature (a data-quality day) is no reference.
        if len(rows) < spec.drift.min_labels or any(col not in rows.columns for col in spec.features.all):
            return DayMetric(day, math.nan, len(rows))
        predictions = predict_holdout(model, rows, spec)
        return DayMetric(
            day, metric_value(metric, predictions), len(rows), metric_standard_error(metric, predictions)
        )

    policy = ConceptPolicy.of(spec)
    if seasonal is not None:
        assert seasonal_kind
        live = day_metric(seasonal.day, labelled)
        result = check_seasonal_concept(
            live,
            [day_metric(d, rows) for d, rows in seasonal.labelled.items()],
            higher_is_better=spec.higher_is_better,
            spread_days=[day_metric(d, rows) for d, rows in seasonal.spread_labelled.items()],
            policy=policy,
            kind=spec.drift.reference,
        )
        return {**result, "metric": metric, "live": live.value, "reference": result["reference_metric"]}
    assert champion.holdout_metric is not None
    predictions = predict_holdout(model, labelled, spec)
    live_value = metric_value(metric, predictions)
    result = check_concept_drift(
        live_value,
        champion.holdout_metric,
        higher_is_better=spec.higher_is_better,
        n_labelled=len(labelled),
        policy=policy,
        live_se=metric_standard_error(metric, predictions),
        reference_rows=champion.evidence_rows,
    )
    return {**result, "metric": metric, "live": live_value, "reference": champion.holdout_metric}


def _stable_types(chunk: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """The same column types in every chunk (CSV infers them per chunk: int64 here, float64 where
    a chunk has a null), so the chunks stack into one Parquet file. A non-numeric value in a
    numeric column is left as it is, for the contract's type check to report."""
    out = chunk.copy()
    for col in out.columns:
        if col in spec.features.numeric and pd.api.types.is_numeric_dtype(out[col]):
            out[col] = out[col].astype("float64")
        elif col in spec.features.categorical:
            out[col] = out[col].astype("string")
    return out


MAX_REFERENCE_ROWS = 200_000  # rows of past batches profiled for a seasonal reference, at most


@dataclass(frozen=True)
class SeasonalReference:
    """The past days a seasonal ``drift.reference`` compares ``day`` with: their features' baseline
    (the input check) and each day's labelled rows (the concept check)."""

    day: date
    baseline: dict[str, Any]
    labelled: dict[date, pd.DataFrame]
    spread_labelled: dict[date, pd.DataFrame]  # same_weekday: the other stored days of 4 weeks


@contextmanager
def _watched_frames(
    spec: ModelSpec, day: date, settings: FactorySettings, s3: storage.S3Options | None
) -> Iterator[Iterator[pd.DataFrame]]:
    """The chunks of ``day``'s watched batch (``settings.chunk_rows`` rows each), read from a
    local copy while the context is open."""
    from model_factory.io.batches import iter_frames

    uri = watched_uri(spec, str(day), settings)
    fmt = "parquet" if uri.endswith(".parquet") else spec.source.format
    with storage.local_file(uri, s3) as path:
        yield iter_frames(path, fmt, uri, settings.chunk_rows)


def _labelled_rows(
    spec: ModelSpec, day: date, limit: int, settings: FactorySettings, s3: storage.S3Options | None
) -> pd.DataFrame:
    """Up to ``limit`` labelled rows of ``day``'s watched batch (empty without a target column)."""
    parts: list[pd.DataFrame] = []
    with _watched_frames(spec, day, settings, s3) as chunks:
        for chunk in chunks:
            if spec.target not in chunk.columns:
                break
            parts.append(chunk[chunk[spec.target].notna()].head(limit - sum(map(len, parts))))
            if sum(map(len, parts)) >= limit:
                break
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def seasonal_reference(
    spec: ModelSpec, ds: str, settings: FactorySettings, s3: storage.S3Options | None = None
) -> tuple[SeasonalReference | None, str | None]:
    """(the reference of ``drift.reference``'s past batches, None) or (None, why there is none);
    (None, None) for the default ``training`` reference (the champion's own baseline). One pass
    over each reference batch gives both its features and its labelled rows."""
    if spec.drift.reference == "training":
        return None, None
    from model_factory.monitoring.references import no_reference_reason, reference_days
    from model_factory.pipeline.profile import build_baseline

    day = date.fromisoformat(ds)
    every_day = {day - timedelta(days=k) for k in range(1, 372)}
    wanted = reference_days(spec.drift.reference, day, every_day, min_days=0)
    stored = [
        d for d in (wanted.days if wanted else ()) if storage.exists(watched_uri(spec, str(d), settings), s3)
    ]
    choice = reference_days(spec.drift.reference, day, stored)
    if choice is None:
        return None, no_reference_reason(spec.drift.reference, day)
    per_day = MAX_REFERENCE_ROWS // len(choice.days)
    frames, labelled = [], {}
    for d in choice.days:
        with _watched_frames(spec, d, settings, s3) as chunks:
            taken, labels = 0, []
            for chunk in chunks:
                present = [c for c in spec.features.all if c in chunk.columns]
                part = chunk.head(per_day - taken)
                frames.append(_stable_types(part[present], spec))
                if spec.target in part.columns:
                    labels.append(part[part[spec.target].notna()])
                taken += len(part)
                if taken >= per_day:
                    break
            labelled[d] = pd.concat(labels, ignore_index=True) if labels else pd.DataFrame()
    reference = pd.concat(frames, ignore_index=True)
    baseline = build_baseline(reference, spec.features.numeric, spec.features.categorical)
    spread: dict[date, pd.DataFrame] = {}
    if spec.drift.reference == "same_weekday":  # the concept check's day-to-day spread, all weekdays
        window = reference_days("rolling", day, every_day, window_days=28, min_days=0)
        others = [d for d in (window.days if window else ()) if d not in labelled]
        others = [d for d in others if storage.exists(watched_uri(spec, str(d), settings), s3)]
        for d in others:
            spread[d] = _labelled_rows(spec, d, MAX_CONCEPT_ROWS // max(1, len(others)), settings, s3)
    return SeasonalReference(day, baseline, labelled, spread), None


def poolable_batches(
    spec: ModelSpec, ds: str, settings: FactorySettings, s3: storage.S3Options | None = None
) -> Iterator[tuple[str, str]]:
    """(date, watched URI) of the batches a small batch may be pooled with, newest first: the
    ``drift.pool_days`` days before ``ds`` that have a validated batch (a quarantined day is
    never pooled) and a watched batch."""
    from model_factory.io.batches import validated_dates

    if not spec.drift.pool_days:
        return
    first = str(date.fromisoformat(ds) - timedelta(days=spec.drift.pool_days))
    for earlier in sorted(
        (d for d in validated_dates(settings.store_uri, spec.name, s3) if first <= d < ds), reverse=True
    ):
        earlier_uri = watched_uri(spec, earlier, settings)
        if storage.exists(earlier_uri, s3):
            yield earlier, earlier_uri


def pooled_reason(ds: str, rows: int, pooled: list[tuple[str, int]]) -> str:
    own = rows - sum(n for _, n in pooled)
    days = ", ".join(f"{d} ({n:,})" for d, n in pooled)
    return (
        f"the batch of {ds} has {own:,} rows, under drift.min_rows: pooled with the validated "
        f"batches of {days}, {rows:,} rows in all"
    )


def overall_status(data_drift: DriftCheck, concept: dict[str, Any]) -> str:
    """One word for the batch: a data-quality break first (retraining on it would learn the
    break), then statistical drift, then concept drift, then a too-good live metric."""
    if data_drift.status == "data_quality":
        return "data_quality"
    if data_drift.status == "drift":
        return "drift"
    if concept.get("status") in ("concept_drift", "too_good"):
        return concept["status"]
    return data_drift.status


def _drift_rule(spec: ModelSpec) -> DriftRule:
    """The spec's ``drift:`` limits as the drift check's rule."""
    from model_factory.monitoring.drift import DriftRule

    return DriftRule(
        psi_threshold=spec.drift.psi_threshold,
        drifted_share=spec.drift.drifted_share,
        min_rows=spec.drift.min_rows,
        small_min_rows=spec.drift.small_min_rows,
        ignore_features=tuple(spec.drift.ignore_features),
    )


def _write_features(
    spec: ModelSpec,
    ds: str,
    path: Path,
    uri: str,
    features_path: Path,
    settings: FactorySettings,
    s3: storage.S3Options | None,
) -> tuple[int, pd.DataFrame, list[tuple[str, int]]]:
    """Write the features of ``ds``'s batch (``path``: a local copy of ``uri``) to ``features_path``,
    pooled with earlier batches while under ``drift.min_rows``. Returns (rows read, the first
    ``MAX_CONCEPT_ROWS`` labelled rows, (date, rows) of each earlier batch pooled).

    One pass over the batch, chunk by chunk: the features go to a Parquet file that check_drift
    reads a row group at a time, and a bounded sample of labelled rows is kept for the
    concept-drift metric. Memory follows the chunk, not the batch."""
    from model_factory.io.batches import iter_frames, write_parquet_file

    labelled_parts, labelled_rows, rows = [], 0, 0
    pooled: list[tuple[str, int]] = []

    def frames_of(batch_path: Path | str, batch_uri: str) -> Iterator[pd.DataFrame]:
        nonlocal labelled_rows, rows
        batch_fmt = "parquet" if batch_uri.endswith(".parquet") else spec.source.format
        for chunk in iter_frames(batch_path, batch_fmt, batch_uri, settings.chunk_rows):
            present = [col for col in spec.features.all if col in chunk.columns]
            if spec.target in chunk.columns and labelled_rows < MAX_CONCEPT_ROWS:
                labelled = chunk[chunk[spec.target].notna()].head(MAX_CONCEPT_ROWS - labelled_rows)
                labelled_parts.append(labelled)
                labelled_rows += len(labelled)
            rows += len(chunk)
            yield _stable_types(chunk[present], spec)

    def feature_chunks() -> Iterator[pd.DataFrame]:
        yield from frames_of(path, uri)
        for earlier_ds, earlier_uri in poolable_batches(spec, ds, settings, s3):
            if rows >= spec.drift.min_rows:
                break
            before = rows
            with storage.local_file(earlier_uri, s3) as earlier_path:
                yield from frames_of(earlier_path, earlier_uri)
            pooled.append((earlier_ds, rows - before))

    write_parquet_file(feature_chunks(), features_path)
    labelled = pd.concat(labelled_parts, ignore_index=True) if labelled_parts else pd.DataFrame()
    return rows, labelled, pooled


def check_batch(
    spec: ModelSpec,
    ds: str,
    settings: FactorySettings,
    s3: storage.S3Options | None = None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check the production batch for ``ds`` against the champion; write the report.

    Raises :class:`NoBaselineError` (no champion, or one without a baseline) and
    :class:`MissingBatchError`; returns a small JSON-able summary with the report URIs.
    """
    from model_factory.monitoring.drift import check_drift, without_verdicts
    from model_factory.monitoring.drift_report import render_html

    champion = champion_baseline(spec, settings)
    uri = watched_uri(spec, ds, settings)
    rule = _drift_rule(spec)
    try:
        with storage.local_file(uri, s3) as path, tempfile.TemporaryDirectory() as tmp:
            features_path = Path(tmp) / "features.parquet"
            rows, labelled, pooled = _write_features(spec, ds, path, uri, features_path, settings, s3)
            seasonal, why_none = seasonal_reference(spec, ds, settings, s3)
            reference = seasonal.baseline if seasonal else champion.baseline
            data_drift = check_drift(reference, features_path, rule, contract=champion.contract)
            if pooled:
                pooled_reasons = [pooled_reason(ds, rows, pooled), *data_drift.reasons]
                data_drift = replace(data_drift, reasons=pooled_reasons)
            if why_none and data_drift.status in ("drift", "no_drift"):
                # No silent fallback to training: the statistics are shown, no decision is made.
                data_drift = without_verdicts(data_drift, [why_none, *data_drift.reasons])
    except storage.ObjectNotFoundError as exc:
        raise MissingBatchError(f"no production batch for {spec.name!r} on {ds}: nothing at {uri}") from exc
    concept = _concept_drift(spec, labelled, champion, settings, seasonal, why_none)
    status = overall_status(data_drift, concept)
    reasons = list(data_drift.reasons) + [f"concept: {r}" for r in concept.get("reasons", [])]
    folder = report_folder(settings.store_uri, spec.name, ds)
    report = {
        "model": spec.name,
        "ds": ds,
        "status": status,
        "reasons": reasons,
        "batch_uri": uri,
        "pooled_dates": [d for d, _ in pooled],
        "champion_version": champion.version,
        "champion_run_id": champion.run_id,
        "data_drift": data_drift.to_dict(),
        "concept_drift": concept,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **({"context": context} if context else {}),
    }
    html = render_html(
        {**data_drift.to_dict(), "status": status, "reasons": reasons, "concept_drift": concept},
        reference,
        title=f"{spec.name}: drift check of {ds} vs champion v{champion.version}",
        context={
            "batch": uri,
            **({"pooled with": ", ".join(d for d, _ in pooled)} if pooled else {}),
            "champion": f"v{champion.version} (run {champion.run_id})",
            "owner": spec.owner,
            **(context or {}),
        },
    )
    html_uri = storage.write_bytes(storage.join(folder, "report.html"), html.encode(), s3)
    json_uri = storage.write_json(storage.join(folder, "report.json"), report, s3)
    return {
        "model": spec.name,
        "ds": ds,
        "status": status,
        "reasons": reasons,
        "rows": data_drift.rows,
        "pooled_dates": [d for d, _ in pooled],
        "drifted_features": data_drift.drifted_features,
        "champion_version": champion.version,
        "report_uri": html_uri,
        "report_json_uri": json_uri,
    }


def trigger_state_uri(store_uri: str, model: str) -> str:
    return storage.join(store_uri, "drift", model, "last_retrain_trigger.json")


def retrain_gate(
    spec: ModelSpec,
    checked: dict[str, Any],
    settings: FactorySettings,
    active_retrains: int,
    now: datetime | None = None,
) -> tuple[bool, str]:
    """May this check fire a retrain? Not without drift, not inside the cooldown after the
    last drift-fired retrain, not while a retrain run is queued or running."""
    now = now or datetime.now(UTC)
    if checked["status"] not in RETRAIN_STATUSES:
        return False, f"status {checked['status']}: no retrain"
    if active_retrains:
        return False, f"{spec.name}__retrain already has {active_retrains} run(s) queued or running"
    state_uri = trigger_state_uri(settings.store_uri, spec.name)
    if storage.exists(state_uri):
        last = storage.read_json(state_uri)
        last_at = datetime.fromisoformat(last["at"])
        until = last_at + timedelta(hours=spec.drift.cooldown_hours)
        if now < until:
            return False, (
                f"cooldown: a drift retrain was fired at {last['at']} for {last['ds']}; "
                f"next allowed after {until.isoformat(timespec='seconds')} (drift.cooldown_hours="
                f"{spec.drift.cooldown_hours:g})"
            )
    return True, f"{checked['status']} on {checked['ds']}: " + "; ".join(checked["reasons"][:3])


def record_retrain_trigger(
    spec: ModelSpec, checked: dict[str, Any], settings: FactorySettings, now: datetime | None = None
) -> dict[str, Any]:
    state = {
        "at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "ds": checked["ds"],
        "status": checked["status"],
        "report_uri": checked["report_uri"],
    }
    storage.write_json(trigger_state_uri(settings.store_uri, spec.name), state)
    return state
