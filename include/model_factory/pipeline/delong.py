"""DeLong's ROC AUC variance (DeLong et al. 1988), in Sun and Xu's (2014) midrank form.

One implementation for the two places that need it: the holdout evaluation (the standard error
of AUC(candidate) - AUC(champion) on the same rows) and the canary analysis (each arm's AUC and
its standard error on its own live outcomes).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata


def components(score: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: per positive, the share of negatives scored below it; per
    negative, the share of positives scored above it (ties count half). A few sorts per call."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    ranks = rankdata(score)
    below = (ranks[positive] - rankdata(score[positive])) / n_neg
    above = 1.0 - (ranks[~positive] - rankdata(score[~positive])) / n_pos
    return below, above


def auc_with_se(positive: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """ROC AUC of ``score`` for the boolean ``positive`` and its DeLong standard error; (nan, nan)
    with fewer than two of either class."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        return float("nan"), float("nan")
    ranks = rankdata(score)
    auc = (ranks[positive].sum() - m * (m + 1) / 2) / (m * n)
    below, above = components(score, positive)
    var = below.var(ddof=1) / m + above.var(ddof=1) / n
    return float(auc), float(math.sqrt(max(var, 0.0)))


def difference_se(score_a: np.ndarray, score_b: np.ndarray, positive: np.ndarray) -> float | None:
    """Standard error of AUC(a) - AUC(b) on the same rows; None with fewer than two of a class."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos < 2 or n_neg < 2:
        return None
    pos_a, neg_a = components(score_a, positive)
    pos_b, neg_b = components(score_b, positive)
    variance = np.var(pos_a - pos_b, ddof=1) / n_pos + np.var(neg_a - neg_b, ddof=1) / n_neg
    return float(np.sqrt(variance))
