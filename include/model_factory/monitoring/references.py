"""Seasonal references for the drift watch: which past days a day is compared with.

``drift.reference`` in the spec:

* ``training``: the champion's training baseline (today's behaviour);
* ``rolling``: the ``window_days`` days before the checked day;
* ``same_weekday``: the same weekday in the ``weeks`` weeks before (a weekly pattern);
* ``same_period_last_year``: the days within ``± half_width_days`` of the date 364 days before
  (52 weeks: the same weekday), for yearly peaks such as holidays.

``reference_days`` names the days; the caller profiles their batches (``build_baseline``) and runs
the usual ``check_drift``. Too little history is no reference (None with the reason), never a
silent fallback to training.

The concept check honours the same reference (``check_seasonal_concept``): the champion's metric
on a day's labelled rows is compared with its metric on each reference day's labelled rows, not
with its holdout metric. A holdout mixes every weekday (or none but the training day's), so a
weekly-pattern series "drops" every weekend against it (demand: the demo's Thursday, Saturday and
Sunday fired). A day's metric also moves with the day itself (its weather, its promotions), far
beyond its rows' sampling noise, so the reference days' own spread is the noise: the day is a new
draw from the reference days' distribution, judged by the prediction interval of a new observation
(Student t with k - 1 degrees of freedom over k reference days).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from model_factory.monitoring.drift import ConceptPolicy, concept_result
from scipy import stats

REFERENCES = ("training", "rolling", "same_weekday", "same_period_last_year")


@dataclass(frozen=True)
class ReferenceChoice:
    kind: str
    days: tuple[date, ...]  # empty for training
    reason: str


def reference_days(
    kind: str,
    day: date,
    available: set[date] | list[date],
    *,
    window_days: int = 28,
    weeks: int = 4,
    half_width_days: int = 3,
    min_days: int = 2,
) -> ReferenceChoice | None:
    """The past days ``day`` is compared with under ``kind``; None when history is too short."""
    if kind not in REFERENCES:
        raise ValueError(f"drift.reference must be one of {list(REFERENCES)}, got {kind!r}")
    if kind == "training":
        return ReferenceChoice(kind, (), "the champion's training baseline")
    have = set(available)
    if kind == "rolling":
        wanted = [day - timedelta(days=k) for k in range(1, window_days + 1)]
        what = f"the {window_days} days before {day}"
    elif kind == "same_weekday":
        wanted = [day - timedelta(weeks=k) for k in range(1, weeks + 1)]
        what = f"the same weekday ({day:%A}) in the {weeks} weeks before {day}"
    else:
        centre = day - timedelta(days=364)
        wanted = [centre + timedelta(days=k) for k in range(-half_width_days, half_width_days + 1)]
        what = f"{centre} ± {half_width_days} days (52 weeks before {day})"
    days = tuple(sorted(d for d in wanted if d in have))
    if len(days) < min_days:
        return None
    return ReferenceChoice(kind, days, f"{what}: {len(days)} of {len(wanted)} days present")


def no_reference_reason(kind: str, day: date, min_days: int = 2) -> str:
    return (
        f"drift.reference {kind!r}: fewer than {min_days} reference days before {day} are stored; "
        "no decision until the history is there"
    )


@dataclass(frozen=True)
class DayMetric:
    """The champion's metric on one day's labelled rows, with its sampling standard error."""

    day: date
    value: float
    n: int
    se: float | None = None


SEASONAL_CONCEPT_ALPHA = 0.001  # measured: at 0.01, 2 false alarms in 42 stable days (heavy tails)


def _pooled_spread(values: dict[date, float]) -> tuple[float, int]:
    """(standard deviation, degrees of freedom) of the days' values around their own weekday's mean."""
    by_weekday: dict[int, list[float]] = {}
    for day, value in values.items():
        by_weekday.setdefault(day.weekday(), []).append(value)
    groups = [g for g in by_weekday.values() if len(g) > 1]
    df = sum(len(g) - 1 for g in groups)
    if not df:
        return math.nan, 0
    squares = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups)
    return math.sqrt(squares / df), df


def _why_not_judged(live: DayMetric, usable: list[DayMetric], min_labels: int, kind: str) -> str | None:
    """Why the live day cannot be judged against the ``usable`` reference days (None: it can)."""
    if live.n < min_labels:
        return f"only {live.n} labelled rows; at least {min_labels} are needed to judge"
    if len(usable) < 2:
        return (
            f"drift.reference {kind!r}: {len(usable)} reference day(s) with at least {min_labels} "
            "labelled rows, the concept check needs 2 (their spread is its noise); no decision"
        )
    if not math.isfinite(live.value):
        return f"the live metric is not a number ({live.value})"
    return None


def _unseen_drop(margin: float, mean: float, log: bool, higher_is_better: bool) -> float:
    """The relative drop at |z| = needed, ``margin`` (needed times the scale) from the mean: any
    smaller one goes unseen. On the log scale a score shrinks by 1 - e^-margin, a loss grows by
    e^margin - 1."""
    if log:
        return -math.expm1(-margin) if higher_is_better else math.expm1(margin)
    return margin / abs(mean) if mean else margin


def check_seasonal_concept(
    live: DayMetric,
    reference: list[DayMetric],
    *,
    higher_is_better: bool,
    policy: ConceptPolicy,
    spread_days: Sequence[DayMetric] = (),
    alpha: float = SEASONAL_CONCEPT_ALPHA,
    kind: str = "same_weekday",
) -> dict[str, Any]:
    """The champion's live metric against its metric on the reference days (module docstring).

    Metrics are compared on the log scale when all are positive (a day's error scales with its
    level: the weekend's RMSE is the weekday's times its sales). With k reference days of at least
    ``min_labels`` labelled rows each (k >= 2) and mean m, the day-to-day spread s is the standard
    deviation of every stored day's metric around its own weekday's mean (``spread_days`` with the
    reference days, pooled over weekdays: four same-weekday days alone gave two false alarms in 42
    stable days) or, without such days, the reference days' own. The gain g (oriented: positive is
    better) over m is judged against s * sqrt(1 + 1/k), plus the live day's sampling variance
    beyond the reference days' typical one (a day with fewer labels is noisier): a drop beyond
    ``max_drop`` (relative to m) is ``concept_drift`` only when g / scale <= -t(1 - alpha, df), a
    gain beyond ``too_good_jump`` is ``too_good`` only when g / scale >= t. The same keys as
    ``drift.check_concept_drift``'s result, plus the reference days and the smallest relative drop
    the check can tell from the spread.

    Over 80 lines on purpose: the z, the smallest visible drop and the reasons' text all read the
    same scale (log or not), mean, spread and df; split, each step would take most of them.
    """
    min_labels, max_drop, too_good_jump = policy.min_labels, policy.max_drop, policy.too_good_jump
    usable = [r for r in reference if r.n >= min_labels and math.isfinite(r.value)]
    base = concept_result(live.value, None, live.n, higher_is_better, policy) | {
        "reference_kind": kind,
        "reference_days": [{"day": str(r.day), "metric": r.value, "n_labelled": r.n} for r in reference],
    }
    why_not = _why_not_judged(live, usable, min_labels, kind)
    if why_not is not None:
        return base | {"status": "insufficient_data", "reasons": [why_not]}
    pooled = {r.day: r for r in [*spread_days, *usable] if r.n >= min_labels and math.isfinite(r.value)}
    log = live.value > 0 and all(r.value > 0 for r in pooled.values())

    def scaled(value: float) -> float:
        return math.log(value) if log else value

    def noise(r: DayMetric) -> float:  # its sampling variance on the compared scale
        if r.se is None or not math.isfinite(r.se):
            return 0.0
        return (r.se / r.value) ** 2 if log else r.se**2

    k = len(usable)
    centre = statistics.fmean(scaled(r.value) for r in usable)
    spread, df = _pooled_spread({d: scaled(r.value) for d, r in pooled.items()})
    if df < k - 1:  # fewer repeated weekdays than the reference days themselves give
        spread, df = statistics.stdev(scaled(r.value) for r in usable), k - 1
    typical = statistics.fmean(noise(r) for r in usable)
    scale = math.sqrt(spread**2 * (1 + 1 / k) + max(0.0, noise(live) - typical))
    needed = float(stats.t.ppf(1 - alpha, df))
    mean = math.exp(centre) if log else centre
    gain = scaled(live.value) - centre if higher_is_better else centre - scaled(live.value)
    relative = (live.value - mean) if higher_is_better else (mean - live.value)
    relative = relative / abs(mean) if mean else relative
    z = gain / scale if scale > 0 else math.copysign(math.inf, gain) if gain else 0.0
    unseen = _unseen_drop(needed * scale, mean, log, higher_is_better)
    base |= {
        "reference_metric": mean,
        "relative_change": relative,
        "z": z if math.isfinite(z) else None,
        "reference_spread": spread,
        "spread_df": df,
        "z_needed": needed,
        "smallest_visible_drop": max(max_drop, unseen),
    }
    days = ", ".join(f"{r.day} {r.value:.4g}" for r in usable)
    vs = (
        f"live {live.value:.4f} on {live.n} labelled rows vs {mean:.4f}, the {'geometric ' if log else ''}"
        f"mean of {k} reference days ({kind}: {days})"
    )
    spread_text = (
        f"z = {z:.2f}; beyond the day-to-day spread ({'log ' if log else ''}sd {spread:.3g}, {df} df) "
        f"needs |z| >= {needed:.2f} (alpha {alpha:g})"
    )
    if relative < -max_drop and z <= -needed:
        return base | {
            "status": "concept_drift",
            "reasons": [
                f"{vs}: {-relative:.1%} worse, beyond the allowed {max_drop:.1%}; {spread_text}; retrain"
            ],
        }
    if relative > too_good_jump and z >= needed:
        return base | {
            "status": "too_good",
            "reasons": [
                f"{vs}: {relative:.1%} better, above the {too_good_jump:.0%} 'too good to be true' limit; "
                f"{spread_text}; hold for review (a leak or a broken label feed?), do not retrain"
            ],
        }
    return base | {
        "status": "ok",
        "reasons": [
            f"{vs} ({relative:+.1%}): within limits or within the day-to-day spread ({spread_text}); "
            f"a drop under {max(max_drop, unseen):.1%} goes unseen here"
        ],
    }
