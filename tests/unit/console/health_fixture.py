"""A churn health history as the churn__health DAG writes it (a slow decline; outcomes two days
late, so the last two days have an estimate only) and daily drift checks, for the page tests."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from model_factory.io import storage
from model_factory.monitoring.health_history import HealthRow, record
from model_factory.settings import FactorySettings

START = date(2026, 1, 5)
DAYS = 14


def store_health(settings: FactorySettings, rows: list[HealthRow], check: dict) -> None:
    """``rows`` into the health history (the prediction DB, SQLite) and ``check`` as churn's
    health report of its day, where the churn__health DAG writes them."""
    Path(settings.prediction_db.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(settings.prediction_db)
    record(engine, rows)
    engine.dispose()
    storage.write_json(storage.join(settings.store_uri, "health", "churn", check["ds"], "report.json"), check)


def write_churn_health(settings: FactorySettings) -> None:
    rows = []
    for k in range(DAYS):
        day = START + timedelta(days=k)
        estimate = 0.83 - 0.007 * k
        matured = k < DAYS - 2
        realized = estimate - 0.004 + (0.006 if k % 3 == 0 else -0.003) if matured else None
        low, high = (realized - 0.02, realized + 0.02) if realized else (None, None)
        version = "1" if k < 10 else "2"
        rows.append(
            HealthRow(
                "churn",
                version,
                day,
                "roc_auc",
                realized,
                low,
                high,
                estimate,
                estimate - 0.025,
                estimate + 0.025,
                2000,
                1800 if matured else 0,
                0.9 if matured else None,
                2.0 if matured else None,
                0.03 + 0.01 * k,
                0.0,
                11.0 + (k % 4),
                datetime(2026, 1, 20),
            )
        )
    for k in range(0, DAYS, 2):
        ds = (START + timedelta(days=k)).isoformat()
        psi = {"tenure_months": 0.02 + 0.01 * k, "usage_gb": 0.05, "plan": 0.01 * (k % 3), "age": None}
        features = {name: {"psi": value} for name, value in psi.items()}
        report = {"ds": ds, "status": "no_drift", "reasons": [], "data_drift": {"features": features}}
        storage.write_json(storage.join(settings.store_uri, "drift", "churn", ds, "report.json"), report)
    check = {
        "ds": "2026-01-18",
        "action": "alert",
        "champion_version": "2",
        "expiry": "2026-01-24",
        "retrain_by": "2026-01-21",
        "cadence_days": 12,
        "reason": "expiry: roc_auc falls 0.007/day; crosses 0.70 around 2026-01-24",
    }
    store_health(settings, rows, check)
