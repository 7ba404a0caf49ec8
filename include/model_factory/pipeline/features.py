"""The model's inputs and target as the estimator sees them, shared by training, evaluation,
serving and monitoring (so all of them encode a missing category the same way)."""

from __future__ import annotations

import pandas as pd
from model_factory.pipeline import labels
from model_factory.spec import ModelSpec

MISSING_CATEGORY = "__missing__"


def prepare_features(df: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """The model's input frame: numeric as float64, categoricals as plain strings.

    Serving must call this too; MLflow signatures reject pandas ``category`` input, so
    categoricals travel as strings, with missing values as an explicit category.
    """
    X = pd.DataFrame(index=df.index)
    for col in spec.features.numeric:
        X[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in spec.features.categorical:
        values = df[col].astype("object")
        X[col] = values.where(values.notna(), MISSING_CATEGORY).astype(str).astype(object)
    return X


def target_values(df: pd.DataFrame, spec: ModelSpec) -> pd.Series:
    """The target as the estimator gets it: class labels (whole numbers as int64, class names
    as str; 0.9 raises LabelError, never truncated) or float64 for regression."""
    y = df[spec.target]
    return labels.as_labels(y, spec.target) if spec.task == "classification" else y.astype("float64")
