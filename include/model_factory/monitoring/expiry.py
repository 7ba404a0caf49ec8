"""Models of models: when the primary metric will cross the gate's bar, and how often to retrain.

``forecast_expiry`` fits a straight line to the daily metric (weighted by each day's rows, so a
day of 50 outcomes counts less than a day of 5,000), and solves it for the gate's threshold. The
interval of that date comes from the fit's uncertainty: 4,000 (intercept, slope) pairs drawn
from their estimated normal distribution, the 5th and 95th percentiles of their crossing dates.
"Retrain by" is the early end of the interval. No measured decline (slope not worse than zero
at the 5% level) gives no date, and says so.

``suggest_cadence`` turns the measured decay rate into a retrain interval: the days a fresh
model takes to fall from its holdout metric to the threshold, with a safety share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

DRAWS = 4_000
MIN_DAYS = 5


@dataclass(frozen=True)
class ExpiryForecast:
    status: str  # expiring | stable | expired | insufficient_data
    slope_per_day: float | None
    crossing: date | None
    low: date | None
    high: date | None
    retrain_by: date | None
    reason: str


def _on(origin: date, t: float) -> date:
    return origin + timedelta(days=math.floor(t))


def _weighted_line(t: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(intercept, slope) of the weighted least-squares line of ``y`` on ``t``, and their
    covariance (the residual variance from the fit, weights normalized to mean 1)."""
    X = np.column_stack([np.ones_like(t), t])
    W = w / w.mean()
    XtWX = X.T @ (X * W[:, None])
    beta = np.linalg.solve(XtWX, X.T @ (W * y))
    resid = y - X @ beta
    dof = max(len(y) - 2, 1)
    sigma2 = float(np.sum(W * resid * resid) / dof)
    return beta, np.linalg.inv(XtWX) * sigma2


def forecast_expiry(
    days: list[date],
    values: list[float],
    weights: list[float] | None,
    *,
    threshold: float,
    higher_is_better: bool,
    seed: int = 0,
) -> ExpiryForecast:
    """The date the metric's trend crosses ``threshold``, with a 90% interval and "retrain by"."""
    pairs = [
        (d, v, w)
        for d, v, w in zip(days, values, weights or [1.0] * len(days), strict=True)
        if v is not None and math.isfinite(v) and w > 0
    ]
    if len(pairs) < MIN_DAYS:
        return ExpiryForecast(
            "insufficient_data",
            None,
            None,
            None,
            None,
            None,
            f"{len(pairs)} days with a metric; the forecast needs at least {MIN_DAYS}",
        )
    origin = min(d for d, _, _ in pairs)
    t = np.array([(d - origin).days for d, _, _ in pairs], dtype="float64")
    y = np.array([v for _, v, _ in pairs], dtype="float64")
    w = np.array([w for _, _, w in pairs], dtype="float64")
    sign = 1.0 if higher_is_better else -1.0  # oriented so that worse is lower
    y, bar = sign * y, sign * threshold
    beta, cov = _weighted_line(t, y, w)
    intercept, slope = float(beta[0]), float(beta[1])
    slope_se = math.sqrt(max(cov[1, 1], 0.0))
    last = float(t.max())
    now_level = intercept + slope * last
    if now_level <= bar:
        return ExpiryForecast(
            "expired",
            sign * slope,
            _on(origin, last),
            None,
            None,
            _on(origin, last),
            f"the trend is already past the threshold {threshold:g}: retrain now",
        )
    if slope >= -1.645 * slope_se:
        return ExpiryForecast(
            "stable",
            sign * slope,
            None,
            None,
            None,
            None,
            f"no significant decline ({sign * slope:+.4g} per day ± {slope_se:.2g}): no expiry date",
        )
    crossing = (bar - intercept) / slope
    draws = np.random.default_rng(seed).multivariate_normal(beta, cov, DRAWS)
    # A drawn line that never falls never crosses: "later than any date" (+inf).
    with np.errstate(divide="ignore"):
        times = np.where(draws[:, 1] < 0, (bar - draws[:, 0]) / draws[:, 1], np.inf)
    times.sort()
    lo_t, hi_t = times[int(0.05 * DRAWS)], times[int(0.95 * DRAWS) - 1]
    hi = _on(origin, hi_t) if math.isfinite(hi_t) else None
    low = _on(origin, max(lo_t, last))
    return ExpiryForecast(
        "expiring",
        sign * slope,
        _on(origin, crossing),
        low,
        hi,
        low,
        f"the metric falls {abs(slope):.4g} per day; it reaches {threshold:g} around "
        f"{_on(origin, crossing)} (90% interval {low} to {hi or 'later'}): retrain by {low}",
    )


def suggest_cadence(
    holdout_metric: float,
    threshold: float,
    slope_per_day: float | None,
    higher_is_better: bool,
    safety: float = 0.7,
) -> int | None:
    """Days between retrains so a fresh model never reaches the bar: ``safety`` of its runway."""
    if slope_per_day is None:
        return None
    decay = -slope_per_day if higher_is_better else slope_per_day
    margin = (holdout_metric - threshold) if higher_is_better else (threshold - holdout_metric)
    if decay <= 0 or margin <= 0:
        return None
    return max(1, math.floor(safety * margin / decay + 1e-9))  # 1e-9: 0.7 * 0.08 / 0.002 is 27.99..
