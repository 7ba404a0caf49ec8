"""Stability of each feature's effect across retrained versions.

A version's effects are its coefficients (linear models) or permutation importances (others),
one number per feature. Across versions a feature is *volatile* when its effect changes sign
(a coefficient's, while the spread is not negligible) or its coefficient of variation
(std / |mean|) exceeds ``max_cv``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_CV = 0.5


@dataclass(frozen=True)
class FeatureStability:
    feature: str
    versions: int
    mean: float
    std: float
    cv: float | None
    sign_changes: int
    volatile: bool
    reason: str


def feature_effects(estimator: Any, X: Any, y: Any, features: list[str], seed: int = 0) -> dict[str, float]:
    """Coefficients of a linear model (the last step of a pipeline), else permutation importance."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    coef = getattr(final, "coef_", None)
    if coef is not None and np.asarray(coef).reshape(-1).size == len(features):
        return dict(zip(features, np.asarray(coef, dtype="float64").reshape(-1).tolist(), strict=True))
    from sklearn.inspection import permutation_importance

    result = permutation_importance(estimator, X, y, n_repeats=5, random_state=seed)
    return dict(zip(features, result.importances_mean.tolist(), strict=True))


def effect_stability(effects: dict[str, dict[str, float]], max_cv: float = MAX_CV) -> list[FeatureStability]:
    """Per feature, across versions (``effects[version][feature]``), in the order first seen."""
    features: list[str] = []
    for per_version in effects.values():
        features += [f for f in per_version if f not in features]
    out = []
    for feature in features:
        values = np.array([v[feature] for v in effects.values() if feature in v], dtype="float64")
        mean, std = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
        cv = std / abs(mean) if mean else (math.inf if std else None)
        signs = np.sign(values[values != 0])
        changes = int(np.sum(signs[1:] != signs[:-1]))
        why = []
        if changes:
            why.append(f"effect changed sign {changes} time(s)")
        if cv is not None and cv > max_cv:
            why.append(f"spread {cv:.2f} of its mean (limit {max_cv:g})")
        out.append(
            FeatureStability(
                feature,
                len(values),
                mean,
                std,
                cv if cv is None or math.isfinite(cv) else None,
                changes,
                bool(why),
                "; ".join(why) or "stable",
            )
        )
    return out
