"""The health history: one row per model, version and day in the prediction DB (a time series).

A check rewrites its (model, version, day) rows, so late outcomes recomputed by the next check
replace the older figures rather than adding a second row. The table lives beside the prediction
log (``FACTORY_PREDICTION_DB_URI``); the caller passes the engine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

METADATA = sa.MetaData()
HEALTH = sa.Table(
    "model_health",
    METADATA,
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("metric", sa.String(32), nullable=False),
    sa.Column("realized", sa.Float),
    sa.Column("realized_low", sa.Float),
    sa.Column("realized_high", sa.Float),
    sa.Column("estimated", sa.Float),
    sa.Column("estimated_low", sa.Float),
    sa.Column("estimated_high", sa.Float),
    sa.Column("predictions", sa.Integer, nullable=False),
    sa.Column("outcomes", sa.Integer, nullable=False),
    sa.Column("label_coverage", sa.Float),
    sa.Column("label_delay_days", sa.Float),
    sa.Column("output_drift_ks", sa.Float),
    sa.Column("error_rate", sa.Float),
    sa.Column("p95_ms", sa.Float),
    sa.Column("checked_at", sa.DateTime, nullable=False),  # naive UTC
)


@dataclass(frozen=True)
class HealthRow:
    model: str
    version: str
    day: date
    metric: str
    realized: float | None
    realized_low: float | None
    realized_high: float | None
    estimated: float | None
    estimated_low: float | None
    estimated_high: float | None
    predictions: int
    outcomes: int
    label_coverage: float | None
    label_delay_days: float | None
    output_drift_ks: float | None
    error_rate: float | None
    p95_ms: float | None
    checked_at: datetime


def record(engine: Engine, rows: list[HealthRow]) -> int:
    """Write the rows, replacing those of the same (model, version, day); how many were written."""
    METADATA.create_all(engine, checkfirst=True)
    with engine.begin() as conn:
        for row in rows:
            conn.execute(
                HEALTH.delete().where(
                    (HEALTH.c.model == row.model)
                    & (HEALTH.c.version == row.version)
                    & (HEALTH.c.day == row.day)
                )
            )
        if rows:
            conn.execute(HEALTH.insert(), [asdict(r) for r in rows])
    return len(rows)


def history(engine: Engine, model: str, since: date | None = None) -> list[HealthRow]:
    """The model's rows, oldest day first (then by version)."""
    METADATA.create_all(engine, checkfirst=True)
    query = HEALTH.select().where(HEALTH.c.model == model)
    if since is not None:
        query = query.where(HEALTH.c.day >= since)
    names = [f.name for f in fields(HealthRow)]
    with engine.connect() as conn:
        result = conn.execute(query.order_by(HEALTH.c.day, HEALTH.c.version))
        return [HealthRow(**{n: row._mapping[n] for n in names}) for row in result]


Gauge = tuple[str, str, dict[str, str], float]
_GAUGES = (
    (
        "realized",
        "factory_model_realized_metric",
        "Realized primary metric on matured outcomes (latest day).",
    ),
    ("estimated", "factory_model_estimated_metric", "Estimated primary metric before outcomes (latest day)."),
    ("label_coverage", "factory_model_label_coverage", "Share of matured predictions with an outcome."),
    ("output_drift_ks", "factory_model_output_drift_ks", "KS of served scores vs the holdout's."),
)


def latest_gauges(engine: Engine) -> list[Gauge]:
    """The latest figures per model and version as Prometheus gauges (name, help, labels, value),
    in the form the gateway's ``/metrics`` renders; figures not measured yet are left out."""
    METADATA.create_all(engine, checkfirst=True)
    newest = (
        sa.select(HEALTH.c.model, HEALTH.c.version, sa.func.max(HEALTH.c.day).label("day"))
        .group_by(HEALTH.c.model, HEALTH.c.version)
        .subquery()
    )
    query = HEALTH.select().join(
        newest,
        (HEALTH.c.model == newest.c.model)
        & (HEALTH.c.version == newest.c.version)
        & (HEALTH.c.day == newest.c.day),
    )
    gauges: list[Gauge] = []
    with engine.connect() as conn:
        for row in conn.execute(query.order_by(HEALTH.c.model, HEALTH.c.version)):
            labels = {"model": row.model, "version": row.version, "metric": row.metric}
            for column, name, help_text in _GAUGES:
                value = getattr(row, column)
                if value is not None:
                    gauges.append((name, help_text, labels, float(value)))
    return gauges


@dataclass(frozen=True)
class LatestFigures:
    """A version's newest realized and estimated metric, each with the day it is of."""

    version: str
    metric: str
    realized: float | None
    realized_day: date | None
    estimated: float | None
    estimated_day: date | None


def latest_figures(engine: Engine, models: list[str]) -> dict[tuple[str, str], LatestFigures]:
    """Per (model, version): the newest day with a realized metric and the newest with an estimate
    (outcomes arrive late, so the two are usually of different days)."""
    METADATA.create_all(engine, checkfirst=True)
    out: dict[tuple[str, str], LatestFigures] = {}
    if not models:
        return out
    c = HEALTH.c
    query = (
        sa.select(c.model, c.version, c.day, c.metric, c.realized, c.estimated)
        .where(c.model.in_(models))
        .order_by(c.day)
    )
    with engine.connect() as conn:
        for row in conn.execute(query):
            key = (row.model, row.version)
            seen = out.get(key) or LatestFigures(row.version, row.metric, None, None, None, None)
            if row.realized is not None:
                seen = LatestFigures(
                    seen.version, row.metric, row.realized, row.day, seen.estimated, seen.estimated_day
                )
            if row.estimated is not None:
                seen = LatestFigures(
                    seen.version, row.metric, seen.realized, seen.realized_day, row.estimated, row.day
                )
            out[key] = seen
    return out
