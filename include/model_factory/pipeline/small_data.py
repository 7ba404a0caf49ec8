"""Evidence that holds on small data: a dummy baseline on the same rows, repeated
cross-validation over the training window when the holdout is too small to judge, and a
training window that reaches back to earlier batches until it holds enough rows.

Why: with 50-row daily batches a 20% holdout has 10 rows; a "perfect" score on 10 rows says
nothing, and a gate against a champion on 10 rows is noise. Cross-validation scores every row
of the window once per repetition, so the evidence is the window's rows, not the holdout's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from model_factory.io import storage
from model_factory.pipeline.evaluation import Predictions, dummy_predictions, metric_value
from model_factory.pipeline.features import prepare_features, target_values
from model_factory.spec import ModelSpec

CV_FOLDS = 5
CV_REPEATS = 3


@dataclass(frozen=True)
class CrossValidation:
    """Out-of-fold scores of the candidate's configuration and of a dummy on the same folds."""

    metric: str
    score: float  # mean over repetitions
    score_sd: float  # spread across repetitions
    baseline: float  # the dummy's, same folds
    rows: int  # every row of the window is scored once per repetition
    folds: int
    repeats: int

    def describe(self) -> str:
        return (
            f"{self.folds}-fold cross-validation repeated {self.repeats}x over the {self.rows} "
            f"rows of the training window"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cross_validate(spec: ModelSpec, model: Any, df: pd.DataFrame) -> CrossValidation | None:
    """Repeated (stratified) K-fold over ``df`` with a fresh clone of ``model`` per fold;
    None when the window cannot be split (a class with a single row)."""
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold

    X, y = prepare_features(df, spec), target_values(df, spec)
    y_values = y.to_numpy()
    metric = spec.gates.primary_metric
    if spec.task == "classification":
        smallest = int(y.astype(str).value_counts().min())
        folds = min(CV_FOLDS, smallest)
        if folds < 2 or y.nunique() < 2:
            return None
    else:
        folds = min(CV_FOLDS, len(df) // 2)
        if folds < 2:
            return None
    scores, baselines = [], []
    for repeat in range(CV_REPEATS):
        seed = spec.split.seed + repeat
        splitter = (
            StratifiedKFold(folds, shuffle=True, random_state=seed)
            if spec.task == "classification"
            else KFold(folds, shuffle=True, random_state=seed)
        )
        fold_preds, fold_dummies = [], []
        for train_idx, test_idx in splitter.split(
            X, y_values.astype(str) if spec.task == "classification" else None
        ):
            fitted = clone(model).fit(X.iloc[train_idx], y.iloc[train_idx])
            test_y = y_values[test_idx]
            if spec.task == "regression":
                fold_preds.append(
                    Predictions("regression", test_y, np.asarray(fitted.predict(X.iloc[test_idx]), float))
                )
            else:
                classes = tuple(fitted.classes_)
                proba = np.asarray(fitted.predict_proba(X.iloc[test_idx]))
                pred = np.asarray(classes)[proba.argmax(axis=1)]
                fold_preds.append(Predictions("classification", test_y, pred, proba, classes))
            fold_dummies.append(
                dummy_predictions(test_y, spec.task, fold_preds[-1].classes, prior_from=y_values[train_idx])
            )
        scores.append(metric_value(metric, _concat(fold_preds)))
        baselines.append(metric_value(metric, _concat(fold_dummies)))
    return CrossValidation(
        metric,
        float(np.nanmean(scores)),
        float(np.nanstd(scores)),
        float(np.nanmean(baselines)),
        len(df),
        folds,
        CV_REPEATS,
    )


def _concat(parts: list[Predictions]) -> Predictions:
    """Out-of-fold predictions of one repetition as one set (the classes of the first fold,
    which are the window's: stratified folds keep every class in every training part)."""
    first = parts[0]
    y = np.concatenate([p.y for p in parts])
    pred = np.concatenate([p.pred for p in parts])
    if first.task == "regression":
        return Predictions("regression", y, pred.astype(float))
    proba = np.concatenate([_align(p, first.classes) for p in parts])
    return Predictions("classification", y, pred, proba, first.classes)


def _align(p: Predictions, classes: tuple) -> np.ndarray:
    if p.classes == classes:
        return p.probabilities
    out = np.zeros((len(p.y), len(classes)))
    for i, c in enumerate(p.classes):
        if c in classes:
            out[:, classes.index(c)] = p.probabilities[:, i]
    return out


def batch_rows(uri: str, s3: storage.S3Options | None = None) -> int:
    import pyarrow.parquet as pq

    with storage.local_file(uri, s3) as path:
        return int(pq.ParquetFile(path).metadata.num_rows)


def extend_window_to_rows(
    batch_uris: list[str], earlier: list[str], min_rows: int | None, s3: storage.S3Options | None = None
) -> list[str]:
    """``batch_uris`` plus the latest of ``earlier`` (oldest first, all before them) until the
    window holds ``min_rows`` rows (``training.window_rows``); all of them if never."""
    if not min_rows:
        return batch_uris
    rows = sum(batch_rows(u, s3) for u in batch_uris)
    taken: list[str] = []
    for uri in reversed([u for u in earlier if u not in batch_uris]):
        if rows >= min_rows:
            break
        taken.insert(0, uri)
        rows += batch_rows(uri, s3)
    return taken + batch_uris


def holdout_needed(min_holdout_rows: int, holdout_fraction: float) -> int:
    """Window rows for a holdout of ``min_holdout_rows``."""
    return math.ceil(min_holdout_rows / holdout_fraction)
