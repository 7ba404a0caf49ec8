"""Worked example for the custom_training template: own feature engineering + ExtraTrees.

The factory hands ``build()``'s estimator its prepared features (numeric as float, categoricals
as strings) and keeps the split, gates, registry and lineage (this file's sha256 is recorded).
Classes defined here are the only extra types the saved model trusts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "usage_gb", "age"]
CATEGORICAL = ["plan", "region", "payment_method"]


class ChurnRatios(BaseEstimator, TransformerMixin):
    """Adds ratios a churn analyst would try first: charge per GB, support calls per year."""

    def fit(self, X: pd.DataFrame, y=None) -> ChurnRatios:
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        out["charge_per_gb"] = X["monthly_charges"] / (X["usage_gb"].clip(lower=0) + 1.0)
        out["calls_per_year"] = X["support_calls"] * 12.0 / (X["tenure_months"].clip(lower=0) + 1.0)
        out["log_tenure"] = np.log1p(X["tenure_months"].clip(lower=0))
        return out


def build(n_estimators: int = 200, max_depth: int | None = 8, min_samples_leaf: int = 5) -> Pipeline:
    """The estimator the factory fits: ratios, imputation/one-hot, then ExtraTrees."""
    derived = ["charge_per_gb", "calls_per_year", "log_tenure"]
    columns = ColumnTransformer(
        [
            ("numeric", SimpleImputer(strategy="median"), NUMERIC + derived),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    model = ExtraTreesClassifier(
        n_estimators=n_estimators,
        max_depth=max_depth,
        min_samples_leaf=min_samples_leaf,
        random_state=0,
        n_jobs=1,
    )
    return Pipeline([("ratios", ChurnRatios()), ("columns", columns), ("model", model)])
