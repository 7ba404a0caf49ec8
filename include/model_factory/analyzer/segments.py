"""Users grouped by skill: K-means on their action and time signals, labelled by the centroids.

Clusters: 3 (Beginner, Intermediate, Expert, as in the platform study this follows).
Features, per user:

1. ``completed_actions``   log(1 + actions that succeeded): how much a user gets done
2. ``distinct_actions``    how many kinds of action a user uses: breadth of the platform known
3. ``time_to_green_min``   log(1 + mean minutes from the first attempt at a goal to its success),
   each time capped at ``CAP_GREEN_MIN`` (a week): a goal first tried on a months-old batch date
   says nothing more about skill than a week does
4. ``retries_before_success``  mean failed attempts before each success, capped at ``CAP_RETRIES``

A user with no success yet gets the largest time/retries seen (never reached green is the slow
end, not the middle). Robust scaling: each feature is winsorised at its median ± 3 scaled median
absolute deviations, then standardised (z-scores of the winsorised values, clipped to ±3): one
odd user cannot stretch a feature's scale for the rest. Who is segmented at all (service
accounts out, a minimum of real activity): ``people``.

Each centroid gets a skill score (z of 1 and 2 added, z of 3 and 4 subtracted); ranked low to
high the clusters are Beginner, Intermediate, Expert.

Stability: the clustering is repeated with ``seeds`` (10 by default); the adjusted Rand index of
each against the first says whether the segments depend on the seed (``stable`` when the lowest
is at least 0.9). Fewer than ``MIN_USERS`` users, or fewer distinct users than clusters: no
segmentation, and the reason is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from model_factory.analyzer.signals import UserSignals

K = 3
LABELS = ("Beginner", "Intermediate", "Expert")
FEATURES = ("completed_actions", "distinct_actions", "time_to_green_min", "retries_before_success")
SKILL_SIGNS = (1.0, 1.0, -1.0, -1.0)
CAP_GREEN_MIN = 7 * 24 * 60.0
CAP_RETRIES = 10.0
WINSOR_MADS = 3.0
CLIP_Z = 3.0
MIN_USERS = 6
"""Two users per segment at the least: a share of one user is not a share."""
STABLE_ARI = 0.9


@dataclass
class Segmentation:
    ok: bool
    reason: str | None = None
    k: int = K
    features: tuple[str, ...] = FEATURES
    segments: dict[str, str] = field(default_factory=dict)
    """user -> Beginner | Intermediate | Expert"""
    sizes: dict[str, int] = field(default_factory=dict)
    centroids: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per segment, the centroid in the features' own units (log scales undone)."""
    stability: dict = field(default_factory=dict)

    def members(self, label: str) -> set[str]:
        return {user for user, seg in self.segments.items() if seg == label}

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "k": self.k,
            "features": list(self.features),
            "sizes": self.sizes,
            "centroids": self.centroids,
            "stability": self.stability,
            "segments": self.segments,
        }


def feature_rows(signals: dict[str, UserSignals]) -> tuple[list[str], list[list[float]]]:
    users = sorted(signals)
    greens = [s.time_to_green_s for s in signals.values() if s.time_to_green_s is not None]
    retries = [s.retries_before_success for s in signals.values() if s.retries_before_success is not None]
    worst_green = max(greens, default=0.0)
    worst_retries = max(retries, default=0.0)
    rows = []
    for user in users:
        s = signals[user]
        green = s.time_to_green_s if s.time_to_green_s is not None else worst_green
        tries = s.retries_before_success if s.retries_before_success is not None else worst_retries
        if s.unfinished_goals and s.time_to_green_s is None:
            tries = max(tries, float(s.unfinished_goals))
        green_min = min(green / 60.0, CAP_GREEN_MIN)
        tries = min(tries, CAP_RETRIES)
        rows.append([math.log1p(s.completed), float(s.distinct_actions), math.log1p(green_min), tries])
    return users, rows


def robust_scale(x: Any) -> tuple[Any, Any, Any]:
    """``(z, mean, scale)``: each feature winsorised at its median ± WINSOR_MADS scaled MADs (the
    standard deviation when the MAD is 0), then standardised by the winsorised mean and standard
    deviation, and clipped to ±CLIP_Z. An outlier is pulled in before it can set the scale."""
    import numpy as np

    median = np.median(x, axis=0)
    mad = 1.4826 * np.median(np.abs(x - median), axis=0)
    std = x.std(axis=0)
    spread = np.where(mad > 0, mad, np.where(std > 0, std, 1.0))
    kept = np.clip(x, median - WINSOR_MADS * spread, median + WINSOR_MADS * spread)
    mean, sd = kept.mean(axis=0), kept.std(axis=0)
    scale = np.where(sd > 0, sd, 1.0)
    return np.clip((kept - mean) / scale, -CLIP_Z, CLIP_Z), mean, scale


def segment_users(
    signals: dict[str, UserSignals],
    seeds: tuple[int, ...] = tuple(range(10)),
    k: int = K,
    unplaced: int = 0,
) -> Segmentation:
    """Segment the users of ``signals`` (``unplaced``: how many more users were left out before,
    for too little activity of their own; named in the reason when too few remain)."""
    if len(signals) < MIN_USERS:
        total = len(signals) + unplaced
        who = "one user" if total == 1 else f"{total} users"
        if unplaced:
            who += f", {len(signals)} of them with enough activity of their own to place"
        return Segmentation(
            ok=False,
            reason=(
                f"no segmentation: the events come from {who}; K-means into {k} skill segments needs at "
                f"least {MIN_USERS} (two per segment) for a segment's share to mean anything"
            ),
        )
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    users, rows = feature_rows(signals)
    x = np.asarray(rows, dtype=float)
    if len({tuple(r) for r in x.round(9)}) < k:
        return Segmentation(
            ok=False,
            reason=(
                f"no segmentation: only {len({tuple(r) for r in x.round(9)})} distinct signal profiles among "
                f"{len(users)} users, fewer than the {k} segments"
            ),
        )
    z, mean, scale = robust_scale(x)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # a few dozen rows: thread start-up costs more than it saves (15x here)
        runs = [KMeans(n_clusters=k, n_init=10, random_state=seed).fit(z) for seed in seeds]
    first = runs[0]
    aris = [float(adjusted_rand_score(first.labels_, run.labels_)) for run in runs]
    skill = first.cluster_centers_ @ np.asarray(SKILL_SIGNS)
    order = np.argsort(skill)  # lowest skill first
    label_of = {int(cluster): LABELS[rank] for rank, cluster in enumerate(order)}
    segments = {user: label_of[int(c)] for user, c in zip(users, first.labels_, strict=True)}
    centroids = {}
    for cluster, label in label_of.items():
        centre = first.cluster_centers_[cluster] * scale + mean
        centroids[label] = {
            "completed_actions": round(math.expm1(centre[0]), 1),
            "distinct_actions": round(float(centre[1]), 1),
            "time_to_green_min": round(math.expm1(centre[2]), 1),
            "retries_before_success": round(float(centre[3]), 2),
        }
    return Segmentation(
        ok=True,
        k=k,
        segments=segments,
        sizes={label: sum(seg == label for seg in segments.values()) for label in LABELS},
        centroids={label: centroids[label] for label in LABELS},
        stability={
            "seeds": list(seeds),
            "min_ari": round(min(aris), 3),
            "mean_ari": round(sum(aris) / len(aris), 3),
            "stable": min(aris) >= STABLE_ARI,
        },
    )
