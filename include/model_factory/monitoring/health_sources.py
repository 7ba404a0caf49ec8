"""Where the health check's inputs live: predictions (the gateway's prediction log, batch scoring's
files), outcomes (the gateway's feedback, an outcome source in another system), the champion's
holdout. Each reader returns plain frames for :mod:`model_factory.monitoring.health`; a missing or
unreadable outcome file is a named finding in ``SourceReport``, never a crash or a silent gap.

The prediction log is read by table and column name (``predictions``, ``feedback``) with plain
SQL, so monitoring does not import the gateway's code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from model_factory.io import storage
from model_factory.io.batches import UnreadableBatchError, iter_frames, resolve_source_uri
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec

LOG_COLUMNS = [
    "request_id",
    "entity_id",
    "version",
    "status",
    "latency_ms",
    "prediction",
    "score",
    "created_at",
]


@dataclass
class SourceReport:
    """What was read, and what was not (by day), for the check's report."""

    outcome_days_read: list[str] = field(default_factory=list)
    outcome_days_missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    outcome_rows: int = 0


def _label(raw: str | None) -> Any:
    """The logged prediction's label (classifier) or value (regressor) from its JSON."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value.get("label", value.get("value")) if isinstance(value, dict) else value


def read_prediction_log(engine: sa.Engine, model: str, since: datetime, until: datetime) -> pd.DataFrame:
    """The gateway's log rows of ``model`` in [since, until): the columns of ``LOG_COLUMNS``."""
    query = sa.text(
        "SELECT request_id, entity_id, version, status, latency_ms, prediction, score, created_at "
        "FROM predictions WHERE model = :model AND created_at >= :since AND created_at < :until"
    )
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("predictions"):
            return pd.DataFrame(columns=LOG_COLUMNS)
        rows = conn.execute(query, {"model": model, "since": since, "until": until}).all()
    log = pd.DataFrame(rows, columns=LOG_COLUMNS)
    log["created_at"] = pd.to_datetime(log["created_at"])
    return log


def log_predictions(log: pd.DataFrame) -> pd.DataFrame:
    """The log's served predictions as the join wants them (id: the entity id, else the request id)."""
    ok = log[log["status"] == "ok"]
    ids = ok["entity_id"].where(ok["entity_id"].notna(), ok["request_id"])
    return pd.DataFrame(
        {
            "id": ids.astype("str"),
            "request_id": ok["request_id"].astype("str"),
            "version": ok["version"].astype("str"),
            "predicted_at": ok["created_at"],
            "prediction": ok["prediction"].map(_label),
            "score": pd.to_numeric(ok["score"], errors="coerce"),
        }
    )


def read_feedback(engine: sa.Engine, predictions: pd.DataFrame) -> pd.DataFrame:
    """The gateway's feedback for the logged requests, keyed by the predictions' id."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("feedback"):
            return pd.DataFrame(columns=["id", "outcome", "event_time", "arrived_at"])
        rows = conn.execute(sa.text("SELECT request_id, outcome, received_at FROM feedback")).all()
    feedback = pd.DataFrame(rows, columns=["request_id", "outcome", "received_at"])
    joined = feedback.merge(predictions[["request_id", "id"]], on="request_id", how="inner")
    arrived = pd.to_datetime(joined["received_at"])
    return pd.DataFrame(
        {
            "id": joined["id"],
            "outcome": joined["outcome"].map(json.loads),
            "event_time": arrived,
            "arrived_at": arrived,
        }
    )


def read_batch_predictions(store_uri: str, model: str, days: list[date]) -> pd.DataFrame:
    """Batch scoring's predictions files of those days (absent days are simply not scored)."""
    parts = []
    for day in days:
        uri = storage.join(store_uri, "predictions", model, str(day), "predictions.parquet")
        if not storage.exists(uri):
            continue
        with storage.local_file(uri) as path:
            frame = pd.read_parquet(path)
        proba = [c for c in frame.columns if c.startswith("proba_")]
        parts.append(
            pd.DataFrame(
                {
                    "id": frame["row_id"].astype("str"),
                    "version": frame["model_version"].astype("str"),
                    "predicted_at": pd.Timestamp(day),
                    "prediction": frame["prediction"],
                    "score": frame[proba[-1]] if len(proba) == 2 else np.nan,
                }
            )
        )
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["id", "version", "predicted_at"])
    )


def read_outcome_source(
    spec: ModelSpec, days: list[date], report: SourceReport, settings: FactorySettings
) -> pd.DataFrame:
    """The outcome source's files of those days (the day the outcomes arrived), renamed for the join
    (under the data roots of ``settings``, read ``settings.chunk_rows`` rows at a time)."""
    source = spec.outcomes.source
    columns = ["id", "outcome", "event_time", "arrived_at"]
    if source is None:
        return pd.DataFrame(columns=columns)
    parts = []
    for day in days:
        uri = resolve_source_uri(source.uri, str(day), settings)
        if not storage.exists(uri):
            report.outcome_days_missing.append(str(day))
            continue
        try:
            with storage.local_file(uri) as path:
                frame = pd.concat(
                    list(iter_frames(path, source.format, uri, settings.chunk_rows)), ignore_index=True
                )
            wanted = [source.id_column, source.outcome_column, source.event_time_column]
            absent = [c for c in wanted if c not in frame.columns]
            if absent:
                raise UnreadableBatchError(f"{uri} lacks column(s) {absent}")
        except UnreadableBatchError as exc:
            report.unreadable.append(str(exc))
            continue
        report.outcome_days_read.append(str(day))
        report.outcome_rows += len(frame)
        parts.append(
            pd.DataFrame(
                {
                    "id": frame[source.id_column].astype("str"),
                    "outcome": frame[source.outcome_column],
                    "event_time": pd.to_datetime(frame[source.event_time_column], errors="coerce"),
                    "arrived_at": pd.Timestamp(day) + timedelta(days=1) - timedelta(microseconds=1),
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
