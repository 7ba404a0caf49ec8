"""Output drift: what the champion actually served against its predictions on the holdout.

A day's scores (P(positive) for a binary classifier, the value for a regressor, from the
prediction log or batch scoring) are compared with the holdout's by the two-sample KS test and
PSI over the holdout's deciles. Drift needs both a KS p-value below ``alpha`` (0.001: at most ~1
false alarm in 1,000 stable days, 0.05 expected in 50) and an effect of at least
``min_effect`` (KS statistic 0.1: a 0.5 sigma shift of a normal score moves it ~0.2), so huge days
do not alarm on a negligible shift and small days do not alarm on noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from model_factory.pipeline.two_sample import psi
from scipy import stats

ALPHA = 0.001
MIN_EFFECT = 0.1
MIN_ROWS = 100


@dataclass(frozen=True)
class OutputDrift:
    status: str  # drift | no_drift | insufficient_data
    ks_statistic: float | None
    ks_pvalue: float | None
    psi: float | None
    rows: int
    reason: str


def check_output_drift(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    min_rows: int = MIN_ROWS,
) -> OutputDrift:
    """The day's scores against the holdout's; see the module docstring for the rule."""
    ref = np.asarray(reference, dtype="float64")
    cur = np.asarray(current, dtype="float64")
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if len(cur) < min_rows or len(ref) < min_rows:
        return OutputDrift(
            "insufficient_data",
            None,
            None,
            None,
            len(cur),
            f"{len(cur)} scores served, {len(ref)} on the holdout: at least {min_rows} "
            "of each are needed to judge output drift",
        )
    result = stats.ks_2samp(ref, cur)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    d, pvalue, figure = float(result.statistic), float(result.pvalue), psi(p, q)
    drifted = pvalue < alpha and d >= min_effect
    reason = (
        f"KS {d:.3f} (p = {pvalue:.2g}), PSI {figure:.3f} on {len(cur):,} scores vs {len(ref):,} "
        f"holdout: {'drift' if drifted else 'no drift'} (rule: p < {alpha:g} and KS >= {min_effect:g})"
    )
    return OutputDrift("drift" if drifted else "no_drift", d, pvalue, figure, len(cur), reason)
