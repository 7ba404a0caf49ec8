"""The live metric of one arm and its standard error (normal approximations, seeded bootstraps).

ROC AUC uses the same DeLong implementation as the holdout evaluation (:mod:`pipeline.delong`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from model_factory.pipeline import delong
from model_factory.rollout.outcomes import ArmData, probability_matrix
from scipy.stats import norm
from sklearn import metrics

ANALYTIC = ("roc_auc", "accuracy", "log_loss", "rmse", "mae")
BOOTSTRAPPED = ("f1", "r2")


def auc_delong(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """ROC AUC of 0/1 outcomes ``y`` and its DeLong standard error (rows neither 0 nor 1 are
    left out); the holdout evaluation's DeLong (:mod:`model_factory.pipeline.delong`)."""
    y, score = np.asarray(y, dtype=float), np.asarray(score, dtype=float)
    keep = (y == 1) | (y == 0)
    return delong.auc_with_se(y[keep] == 1, score[keep])


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    n = len(values)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")


def metric_with_se(metric: str, arm: ArmData, task: str, seed: int = 0) -> tuple[float, float]:
    """Point estimate and standard error of ``metric`` on the arm's labelled outcomes.

    Normal approximations: DeLong for roc_auc, binomial for accuracy, CLT of per-row losses for
    log_loss/mae, delta method for rmse; f1 and r2 by a seeded bootstrap (500 resamples).
    """
    y, pred, score = arm.outcomes, arm.predictions, arm.scores
    if len(y) < 2:
        return float("nan"), float("nan")
    if task == "regression":
        err = score - y.astype(float)
        if metric == "rmse":
            mse, se_mse = _mean_se(err**2)
            rmse = math.sqrt(mse)
            return rmse, (se_mse / (2 * rmse) if rmse > 0 else 0.0)
        if metric == "mae":
            return _mean_se(np.abs(err))
    else:
        if metric == "accuracy":
            hits = _same(pred, y)
            n, k = len(hits), hits.sum()
            p, p_adj = k / n, (k + 1) / (n + 2)  # Agresti-Coull-style: no zero SE at 0 or 1
            return float(p), math.sqrt(p_adj * (1 - p_adj) / (n + 2))
        has_proba = bool(arm.probabilities) and all(arm.probabilities)
        if metric == "roc_auc" and not has_proba:
            labels = set(np.unique(y.astype(str)))
            if not labels <= {"0", "1", "0.0", "1.0"}:
                raise ValueError(f"live roc_auc needs binary 0/1 outcomes, got classes {sorted(labels)}")
            return auc_delong(y.astype(float), score)
        if metric == "roc_auc":
            classes, matrix, truth = probability_matrix(arm)
            unknown = sorted(set(truth) - set(classes))
            if unknown:
                raise ValueError(f"outcomes {unknown[:5]} are not classes the model predicts {classes[:20]}")
            if len(classes) == 2:  # binary, whatever the class names: DeLong on P(second class)
                return auc_delong((truth == classes[1]).astype(float), matrix[:, 1])
            return _bootstrap_auc(truth, matrix, classes, seed)
        if metric == "log_loss" and has_proba:
            # Probability the arm gave the true class: binary and multiclass, any class names.
            classes, matrix, truth = probability_matrix(arm)
            index = {c: j for j, c in enumerate(classes)}
            p_true = np.asarray([matrix[i, index[t]] if t in index else 0.0 for i, t in enumerate(truth)])
            return _mean_se(-np.log(np.clip(p_true, 1e-15, 1.0)))
        if metric == "log_loss":
            yy = y.astype(float)
            p = np.clip(score, 1e-15, 1 - 1e-15)
            return _mean_se(-(yy * np.log(p) + (1 - yy) * np.log(1 - p)))
    if metric in BOOTSTRAPPED:
        return _bootstrap(metric, pred, y, score, task, seed)
    raise ValueError(f"metric {metric!r} is not supported for live {task} analysis")


def _same(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    if pred.dtype == object or y.dtype == object:
        return np.asarray([str(a) == str(b) for a, b in zip(pred, y, strict=True)])
    return pred == y


def _bootstrap_auc(
    truth: np.ndarray, matrix: np.ndarray, classes: list[str], seed: int, resamples: int = 300
) -> tuple[float, float]:
    """Macro one-vs-rest ROC AUC (as the holdout evaluation computes it) with a bootstrap SE."""

    def value(idx: np.ndarray) -> float:
        y = truth[idx]
        if len(set(y)) < len(classes):
            return float("nan")  # a resample missing a class: OvR AUC undefined
        proba = matrix[idx] / np.clip(matrix[idx].sum(axis=1, keepdims=True), 1e-15, None)
        return float(metrics.roc_auc_score(y, proba, multi_class="ovr", labels=classes))

    n = len(truth)
    point = value(np.arange(n))
    if not math.isfinite(point):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = np.array([value(rng.integers(0, n, n)) for _ in range(resamples)])
    return point, float(np.nanstd(draws, ddof=1))


def _bootstrap(metric: str, pred, y, score, task: str, seed: int, resamples: int = 500):
    def value(idx: np.ndarray) -> float:
        if metric == "r2":
            return float(metrics.r2_score(y[idx].astype(float), score[idx]))
        truth, guess = y[idx].astype(str), pred[idx].astype(str)
        return float(metrics.f1_score(truth, guess, average="macro", zero_division=0))

    n = len(y)
    rng = np.random.default_rng(seed)
    point = value(np.arange(n))
    draws = np.array([value(rng.integers(0, n, n)) for _ in range(resamples)])
    return point, float(np.nanstd(draws, ddof=1))


def normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def normal_ppf(p: float) -> float:
    return float(norm.ppf(p))


@dataclass(frozen=True)
class RelativeChange:
    """The canary's relative change against the champion, oriented so > 0 is better."""

    value: float
    se: float
    upper: float
    """One-sided upper bound at level ``alpha``."""
    p_value: float
    """One-sided p of H0 "the drop is at most ``max_relative_drop``"."""
    detectable_drop: float
    """The true relative drop this sample size catches 80% of the time."""


def relative_change_test(
    champion: tuple[float, float],
    canary: tuple[float, float],
    *,
    higher_is_better: bool,
    max_relative_drop: float,
    alpha: float,
) -> RelativeChange:
    """Normal approximation of the relative difference of two independent arms' (value, se):
    the delta method over both standard errors."""
    (champ, se_h), (cand, se_c) = champion, canary
    sign = 1.0 if higher_is_better else -1.0
    base = abs(champ) if champ != 0 else 1.0
    rel = sign * (cand - champ) / base
    se_rel = math.sqrt(se_c**2 + (cand / base) ** 2 * se_h**2) / base
    z_alpha = normal_ppf(1 - alpha)
    p_value = (
        normal_cdf((rel + max_relative_drop) / se_rel) if se_rel > 0 else float(rel < -max_relative_drop)
    )
    detectable = max_relative_drop + (z_alpha + normal_ppf(0.8)) * se_rel
    return RelativeChange(rel, se_rel, rel + z_alpha * se_rel, p_value, detectable)
