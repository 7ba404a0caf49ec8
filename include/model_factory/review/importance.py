"""Permutation importance of every raw input column, on a seeded sample of the holdout.

It works for every estimator the factory builds (the whole pipeline is scored, so a
categorical column counts once, not once per one-hot column).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from model_factory.pipeline.features import prepare_features, target_values
from model_factory.spec import ModelSpec


def _metric_scorer(spec: ModelSpec):
    """A scorer computing the gate metric exactly as the evaluation does (string classes, a
    class absent from the sample, several classes), negated for a loss: higher is better."""
    from model_factory.pipeline.evaluation import Predictions, metric_value
    from model_factory.spec import METRICS

    metric = spec.gates.primary_metric
    sign = 1.0 if METRICS[metric]["higher_is_better"] else -1.0

    def score(model: Any, X: pd.DataFrame, y: pd.Series) -> float:
        y = np.asarray(y)
        if spec.task == "regression":
            predicted = np.asarray(model.predict(X), float)
            return sign * metric_value(metric, Predictions("regression", y, predicted))
        proba = np.asarray(model.predict_proba(X))
        classes = tuple(model.classes_)
        pred = np.asarray(classes)[proba.argmax(axis=1)]
        return sign * metric_value(metric, Predictions("classification", y, pred, proba, classes))

    return score


def permutation_importance_sampled(
    model: Any,
    holdout: pd.DataFrame,
    spec: ModelSpec,
    max_rows: int | None = None,
    repeats: int | None = None,
) -> dict:
    """Mean/std loss of the primary metric when each feature is shuffled.

    A holdout above ``evaluation.importance_max_rows`` is sampled (seeded) and the result says
    so; cost grows with rows x features x repeats.
    """
    from sklearn.inspection import permutation_importance

    max_rows = max_rows or spec.evaluation.importance_max_rows
    repeats = repeats or spec.evaluation.importance_repeats
    total = len(holdout)
    sample = holdout.sample(n=max_rows, random_state=spec.split.seed) if total > max_rows else holdout
    X, y = prepare_features(sample, spec), target_values(sample, spec)
    metric = spec.gates.primary_metric
    classes = int(y.nunique()) if spec.task == "classification" else 0
    started = time.perf_counter()

    def skipped(why: str) -> dict:
        return {
            "features": [],
            "rows_used": len(sample),
            "rows_total": total,
            "sampled": total > max_rows,
            "metric": metric,
            "seconds": round(time.perf_counter() - started, 3),
            "note": f"not computed: {why}",
        }

    if spec.task == "classification" and classes < 2:
        return skipped("the holdout sample holds one class only")
    try:
        result = permutation_importance(
            model,
            X,
            y,
            scoring=_metric_scorer(spec),
            n_repeats=repeats,
            random_state=spec.split.seed,
            n_jobs=1,
        )
    except (ValueError, ArithmeticError) as exc:  # an optional figure never fails the card
        return skipped(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    if not np.isfinite(result.importances_mean).any():
        return skipped(f"{metric} is not defined on this holdout sample ({len(sample)} rows)")
    features = [
        {"feature": name, "mean": float(mean), "std": float(std)}
        for name, mean, std in zip(X.columns, result.importances_mean, result.importances_std, strict=True)
    ]
    features.sort(key=lambda f: -f["mean"])
    note = f"computed on all {total:,} holdout rows"
    if total > max_rows:
        note = (
            f"computed on a seeded sample of {len(sample):,} of the {total:,} holdout rows "
            "(evaluation.importance_max_rows)"
        )
    return {
        "features": features,
        "rows_used": len(sample),
        "rows_total": total,
        "sampled": total > max_rows,
        "metric": metric,
        "repeats": repeats,
        "seconds": round(time.perf_counter() - started, 3),
        "note": note,
    }


def slice_metrics(predictions: Any, holdout: pd.DataFrame, spec: ModelSpec) -> dict:
    """The primary metric per value of each ``evaluation.slices`` column, with counts; a slice
    with at least ``min_slice_rows`` rows that is ``slice_tolerance`` (relative) worse than the
    whole holdout, beyond the slice's own bootstrap noise, is flagged. Absent or single-valued
    columns are reported as problems."""
    from model_factory.pipeline.evaluation import metric_value
    from model_factory.spec import METRICS

    metric = spec.gates.primary_metric
    higher = METRICS[metric]["higher_is_better"]
    overall = metric_value(metric, predictions)
    rows, problems = [], []
    for column in spec.evaluation.slices:
        if column not in holdout.columns:
            problems.append(
                f"slice column {column!r} (evaluation.slices) is not in the holdout "
                f"data; columns are {sorted(holdout.columns)}"
            )
            continue
        values = holdout[column].astype("object").where(holdout[column].notna(), "(missing)")
        distinct = values.unique()
        if len(distinct) < 2:
            problems.append(
                f"slice column {column!r} has a single value ({distinct[0]!r}) in the "
                "holdout: nothing to compare"
            )
            continue
        positions = np.arange(len(holdout))
        for value in sorted(distinct, key=str):
            idx = positions[(values == value).to_numpy()]
            score = metric_value(metric, predictions.take(idx))
            gap = (overall - score) if higher else (score - overall)
            relative = gap / abs(overall) if overall else gap
            judged = len(idx) >= spec.evaluation.min_slice_rows and not np.isnan(score)
            flagged = bool(judged and relative > spec.evaluation.slice_tolerance)
            if flagged:  # noise on a small slice is not "much worse": the whole interval must be
                flagged = _significantly_worse(
                    metric,
                    predictions.take(idx),
                    overall,
                    higher,
                    spec.evaluation.slice_tolerance,
                    spec.split.seed,
                )
            rows.append(
                {
                    "column": column,
                    "value": str(value),
                    "rows": len(idx),
                    "metric": score,
                    "relative_worse": float(relative) if not np.isnan(score) else None,
                    "judged": judged,
                    "flagged": flagged,
                }
            )
    return {
        "metric": metric,
        "overall": overall,
        "rows": rows,
        "problems": problems,
        "tolerance": spec.evaluation.slice_tolerance,
        "min_rows": spec.evaluation.min_slice_rows,
    }


def _significantly_worse(
    metric: str,
    part: Any,
    overall: float,
    higher: bool,
    tolerance: float,
    seed: int,
    resamples: int = 200,
    max_rows: int = 2000,
) -> bool:
    """Is the slice worse than the whole by more than ``tolerance`` even at the favourable end of
    its 95% bootstrap interval? (At most ``max_rows`` rows resampled: bounded cost.)"""
    from model_factory.pipeline.evaluation import metric_value

    rng = np.random.default_rng(seed)
    n = len(part.y)
    if n > max_rows:
        part, n = part.take(rng.choice(n, max_rows, replace=False)), max_rows
    values = [metric_value(metric, part.take(rng.integers(0, n, n))) for _ in range(resamples)]
    values = [v for v in values if not np.isnan(v)]
    if len(values) < resamples // 2:
        return False
    bound = abs(overall) * tolerance
    if higher:
        return bool(np.quantile(values, 0.975) < overall - bound)
    return bool(np.quantile(values, 0.025) > overall + bound)
