"""Rows of churn's health history for tests: one plain day, and each test names what it changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from typing import Any

from model_factory.monitoring.health_history import HealthRow

CHURN_DAY = HealthRow(
    model="churn",
    version="3",
    day=date(2026, 3, 1),
    metric="roc_auc",
    realized=None,
    realized_low=None,
    realized_high=None,
    estimated=0.8,
    estimated_low=0.78,
    estimated_high=0.82,
    predictions=1000,
    outcomes=0,
    label_coverage=None,
    label_delay_days=2.0,
    output_drift_ks=0.05,
    error_rate=0.0,
    p95_ms=12.0,
    checked_at=datetime(2026, 3, 5),
)
"""An estimate of 0.8 [0.78, 0.82] over 1,000 predictions, no outcome yet."""


def health_row(**changes: Any) -> HealthRow:
    """``CHURN_DAY`` with ``changes`` (field names of ``HealthRow``)."""
    return replace(CHURN_DAY, **changes)
