"""The health check of one model: per served version and day, realized and estimated performance,
output drift, label coverage and delay, system health; then the trend, the expiry forecast and the
decision. Plain frames in, a typed ``HealthReport`` out; the Airflow layer only reads and writes.

Decision (``HealthReport.decision``), first match wins:

* fewer than ``min_outcomes`` matured outcomes in the window: **no decision**, saying how many;
* the realized metric's whole 95% interval is beyond the allowed drop from the holdout metric
  (``max_drop``, relative, as the drift watch's concept check): **retrain**, reason "performance";
* the estimate's whole interval is beyond it: **alert**, or retrain when ``retrain_on_estimate``;
* the expiry forecast's "retrain by" is within ``warn_days``: **alert** the owner;
* else **ok**.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from model_factory.monitoring.expiry import ExpiryForecast, forecast_expiry, suggest_cadence
from model_factory.monitoring.health_history import HealthRow
from model_factory.monitoring.outcomes import (
    NS_PER_DAY,
    JoinCounts,
    join_outcomes,
    nanoseconds,
    rows_by_version_and_day,
)
from model_factory.monitoring.output_drift import OutputDrift, check_output_drift
from model_factory.monitoring.performance import (
    Calibration,
    LossModel,
    MetricEstimate,
    check_calibration,
    estimate_classifier,
    estimate_regressor,
    fit_loss_model,
    realized,
)
from model_factory.monitoring.system_health import SystemHealth, system_health_by_day


@dataclass(frozen=True)
class HealthPolicy:
    """What the spec says (``outcomes:`` and the gate); the defaults are the spec's."""

    metric: str
    threshold: float
    higher_is_better: bool
    task: str  # classification | regression
    max_delay_days: float = 7.0
    min_outcomes: int = 200
    max_drop: float = 0.05
    window_days: int = 7
    warn_days: int = 14
    retrain_on_estimate: bool = False


@dataclass(frozen=True)
class Holdout:
    """The champion's holdout: true labels, its predictions and (classifier) P(positive)."""

    labels: np.ndarray
    predictions: np.ndarray
    scores: np.ndarray | None
    metric: float
    positive: Any = 1


@dataclass(frozen=True)
class DayHealth:
    version: str
    day: date
    predictions: int
    realized: MetricEstimate
    estimated: MetricEstimate
    output_drift: OutputDrift
    label_coverage: float | None
    label_delay_days: float | None
    system: SystemHealth | None


@dataclass(frozen=True)
class HealthDecision:
    action: str  # retrain | alert | none | no_decision
    reason: str


@dataclass(frozen=True)
class HealthReport:
    model: str
    as_of: datetime
    metric: str
    days: list[DayHealth]
    counts: JoinCounts
    calibration: Calibration | None
    realized_window: MetricEstimate
    estimated_window: MetricEstimate
    expiry: ExpiryForecast
    cadence_days: int | None
    decision: HealthDecision
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[HealthRow]:
        """The history table's rows for this check."""
        checked = self.as_of.replace(tzinfo=None)
        return [
            HealthRow(
                self.model,
                d.version,
                d.day,
                self.metric,
                d.realized.value,
                d.realized.low,
                d.realized.high,
                d.estimated.value,
                d.estimated.low,
                d.estimated.high,
                d.predictions,
                d.realized.n,
                d.label_coverage,
                d.label_delay_days,
                d.output_drift.ks_statistic,
                d.system.error_rate if d.system else None,
                d.system.p95_ms if d.system else None,
                checked,
            )
            for d in self.days
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _limit(policy: HealthPolicy, reference: float) -> float:
    """The metric value at the allowed relative drop from the holdout metric."""
    step = policy.max_drop * abs(reference) if reference else policy.max_drop
    return reference - step if policy.higher_is_better else reference + step


def _beyond(estimate: MetricEstimate, limit: float, higher_is_better: bool) -> bool:
    if estimate.value is None or estimate.low is None or estimate.high is None:
        return False
    return estimate.high < limit if higher_is_better else estimate.low > limit


def _estimate(
    policy: HealthPolicy,
    scores: np.ndarray | None,
    predicted: np.ndarray,
    calibration: Calibration | None,
    loss: LossModel | None,
) -> MetricEstimate:
    """The estimate from these rows' P(positive) (classifier; None or all missing: no estimate)
    or predicted values (regressor)."""
    if policy.task == "classification":
        known = scores is not None and not np.isnan(scores).all()
        return estimate_classifier(policy.metric, scores if known else None, calibration)
    assert loss is not None
    return estimate_regressor(policy.metric, predicted, loss)


@dataclass(frozen=True)
class _Columns:
    """The frame's columns the check reads, as arrays (read once, sliced per version and day)."""

    version_code: np.ndarray  # index into ``versions``; -1: no version (not checked)
    day: np.ndarray  # days since the epoch of ``predicted_at``
    time: np.ndarray  # ``predicted_at`` in int64 nanoseconds
    score: np.ndarray | None
    prediction: np.ndarray


def _columns(
    frame: pd.DataFrame, versions: pd.Index, score_column: bool, *, numeric_prediction: bool
) -> _Columns:
    time = nanoseconds(pd.to_datetime(frame["predicted_at"]))
    return _Columns(
        versions.get_indexer(frame["version"]),
        np.floor_divide(time, NS_PER_DAY),
        time,
        frame["score"].to_numpy(dtype="float64", na_value=np.nan) if score_column else None,
        frame["prediction"].to_numpy(dtype="float64" if numeric_prediction else None),
    )


def _holdout_reference(
    policy: HealthPolicy, holdout: Holdout
) -> tuple[Calibration | None, LossModel | None, np.ndarray]:
    """(calibration, loss model, reference outputs) from the holdout: a classifier's calibration
    (None without scores), a regressor's loss model, and the outputs the output-drift test uses."""
    if policy.task == "classification":
        calibration = None
        if holdout.scores is not None:
            calibration = check_calibration(holdout.scores, np.asarray(holdout.labels) == holdout.positive)
        return calibration, None, holdout.scores if holdout.scores is not None else np.array([])
    loss = fit_loss_model(holdout.labels, holdout.predictions)
    return None, loss, np.asarray(holdout.predictions, dtype="float64")


def _expiry(days: list[DayHealth], policy: HealthPolicy) -> ExpiryForecast:
    """The expiry forecast of the daily metric: realized on a day of 30 or more outcomes, else
    estimated; a day's versions averaged, weighted by their predictions."""
    trend = [
        (d.day, d.realized.value if d.realized.n >= 30 else d.estimated.value, d.predictions) for d in days
    ]
    by_day: dict[date, tuple[float, float]] = {}
    for day, value, n in trend:
        if value is not None:
            total, weight = by_day.get(day, (0.0, 0.0))
            by_day[day] = (total + value * n, weight + n)
    ordered = sorted(by_day)
    return forecast_expiry(
        ordered,
        [by_day[d][0] / by_day[d][1] for d in ordered],
        [by_day[d][1] for d in ordered],
        threshold=policy.threshold,
        higher_is_better=policy.higher_is_better,
    )


def check_health(
    model: str,
    predictions: pd.DataFrame,
    outcomes: pd.DataFrame,
    holdout: Holdout,
    policy: HealthPolicy,
    as_of: datetime,
    *,
    log: pd.DataFrame | None = None,
    classes: list[Any] | None = None,
) -> HealthReport:
    """One model's health at ``as_of`` (see the module docstring for the decision).

    Over 80 lines on purpose: the per-(version, day) loop and the window read the same served and
    matched arrays through two closures; split out, the loop alone would take a dozen arguments.
    """
    as_of_ts = pd.Timestamp(as_of).tz_localize(None) if pd.Timestamp(as_of).tzinfo else pd.Timestamp(as_of)
    join = join_outcomes(
        predictions,
        outcomes,
        as_of=as_of_ts,
        max_delay_days=policy.max_delay_days,
        classes=classes if policy.task == "classification" else None,
    )
    calibration, loss, reference_scores = _holdout_reference(policy, holdout)
    notes = [calibration.reason] if calibration is not None else []

    # One pass over arrays: the served rows grouped by (version, day), the joined rows likewise.
    served_at = pd.to_datetime(predictions["predicted_at"])
    preds = predictions[(served_at <= as_of_ts).to_numpy()]
    versions = pd.Index(pd.unique(preds["version"].dropna())).sort_values()
    classification = policy.task == "classification"
    score_column = "score" in preds
    numeric = not (classification and score_column)  # a classifier's labels may be text
    served = _columns(preds, versions, score_column, numeric_prediction=numeric)
    # A day's output: P(positive) for a classifier that logs it, else what it predicted.
    output = served.score if classification and served.score is not None else served.prediction
    joined = join.joined
    matched_rows = None
    matched_groups: dict[tuple[int, int], np.ndarray] = {}
    if len(joined):
        matched_rows = _columns(joined, versions, "score" in joined, numeric_prediction=False)
        matched_groups = rows_by_version_and_day(matched_rows.version_code, matched_rows.day)
    no_rows = np.array([], dtype=np.int64)
    outcome = joined["outcome"].to_numpy()
    delay_days = joined["delay_days"].to_numpy(dtype="float64") if len(joined) else np.array([])
    matured_before = (as_of_ts - pd.Timedelta(days=policy.max_delay_days)).value
    system = system_health_by_day(log) if log is not None and len(log) else {}

    def realized_of(rows: np.ndarray) -> MetricEstimate:
        if matched_rows is None:
            return realized(policy.metric, outcome[:0], outcome[:0], None, holdout.positive)
        score = None if matched_rows.score is None else matched_rows.score[rows]
        return realized(policy.metric, outcome[rows], matched_rows.prediction[rows], score, holdout.positive)

    def estimate_of(rows: np.ndarray) -> MetricEstimate:
        scores = None if served.score is None else served.score[rows]
        return _estimate(policy, scores, served.prediction[rows], calibration, loss)

    days: list[DayHealth] = []
    for (code, day_number), rows in rows_by_version_and_day(served.version_code, served.day).items():
        version, day = versions[code], date(1970, 1, 1) + timedelta(days=day_number)
        matched = matched_groups.get((code, day_number), no_rows)
        matured = int((served.time[rows] <= matured_before).sum())
        coverage = len(matched) / matured if matched_rows is not None and matured else None
        days.append(
            DayHealth(
                str(version),
                day,
                len(rows),
                realized_of(matched),
                estimate_of(rows),
                check_output_drift(reference_scores, output[rows]),
                coverage if coverage is None else min(coverage, 1.0),
                float(pd.Series(delay_days[matched]).median()) if len(matched) else None,
                system.get((version, day)),
            )
        )

    since = (as_of_ts - pd.Timedelta(days=policy.window_days)).value
    recent = np.flatnonzero(matched_rows.time > since) if matched_rows is not None else no_rows
    real_window = realized_of(recent)
    est_window = estimate_of(np.flatnonzero(served.time > since))
    expiry = _expiry(days, policy)
    cadence = suggest_cadence(holdout.metric, policy.threshold, expiry.slope_per_day, policy.higher_is_better)
    decision = _decide(policy, holdout.metric, real_window, est_window, expiry, as_of_ts.date())
    return HealthReport(
        model,
        as_of,
        policy.metric,
        days,
        join.counts,
        calibration,
        real_window,
        est_window,
        expiry,
        cadence,
        decision,
        notes,
    )


def _decide(
    policy: HealthPolicy,
    reference: float,
    real: MetricEstimate,
    est: MetricEstimate,
    expiry: ExpiryForecast,
    today: date,
) -> HealthDecision:
    limit = _limit(policy, reference)
    vs = f"holdout {reference:.4g}, allowed {policy.max_drop:.0%} drop to {limit:.4g}"
    if real.n < policy.min_outcomes:
        return HealthDecision(
            "no_decision",
            f"{real.n} matured outcomes in the last {policy.window_days} days; "
            f"a decision needs at least {policy.min_outcomes}",
        )
    if _beyond(real, limit, policy.higher_is_better):
        return HealthDecision(
            "retrain",
            f"performance: realized {policy.metric} {real.value:.4g} "
            f"[{real.low:.4g}, {real.high:.4g}] on {real.n} outcomes is beyond the limit ({vs})",
        )
    if _beyond(est, limit, policy.higher_is_better):
        action = "retrain" if policy.retrain_on_estimate else "alert"
        return HealthDecision(
            action,
            f"performance (estimated): {policy.metric} {est.value:.4g} "
            f"[{est.low:.4g}, {est.high:.4g}] is beyond the limit ({vs})",
        )
    if expiry.retrain_by is not None and expiry.retrain_by <= today + timedelta(days=policy.warn_days):
        return HealthDecision("alert", f"expiry: {expiry.reason} (within warn_days={policy.warn_days})")
    return HealthDecision("none", f"realized {policy.metric} {real.value:.4g} within the limit ({vs})")
