"""The baseline profile: what the training data looked like, kept as plain JSON with the model.

The reference data is never needed again: ``build_baseline`` keeps, per feature, what the checks
need (quantile bins and a quantile sketch for numeric features, category counts for categorical
ones). Training makes it; scoring and monitoring read it (``baseline_from_json`` checks it).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
from model_factory.pipeline.column_counts import (
    NumericAccumulator,
    bin_counts,
    category_counts,
    numeric_values,
)

FORMAT_VERSION = 1
SKETCH_INTERVALS = 1000  # ~1000 quantiles per numeric feature: KS within ~0.001 of the exact value

_NUMERIC_KEYS = (
    "count",
    "missing_rate",
    "mean",
    "std",
    "min",
    "max",
    "edges",
    "proportions",
    "missing_share",
    "sketch",
)
_CATEGORICAL_KEYS = ("count", "missing_rate", "counts", "frequencies")


class BaselineError(ValueError):
    """The baseline profile is absent, from an older format, or incomplete; the message says which."""


def build_baseline(df: pd.DataFrame, numeric: list[str], categorical: list[str], *, bins: int = 10) -> dict:
    """Profile the training frame for later drift checks; the result is plain JSON.

    Numeric features keep ``bins`` quantile bins (edges collapse on ties, so a discrete or constant
    column gets fewer bins) with the training proportions, and a sketch of ~1000 quantiles with the
    exact training counts at and between them, enough for KS without the training data.
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    absent = [c for c in (*numeric, *categorical) if c not in df.columns]
    if absent:
        raise ValueError(f"cannot build a drift baseline: columns {absent} are not in the training frame")
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ValueError(f"columns {both} are listed as both numeric and categorical")
    if not len(df):
        raise ValueError("cannot build a drift baseline from an empty training frame")

    rows = len(df)
    intervals = bins * math.ceil(SKETCH_INTERVALS / bins)  # bin edges are sketch points
    out: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "rows": rows,
        "bins": bins,
        "numeric": {},
        "categorical": {},
    }
    for col in numeric:
        values = numeric_values(df[col])
        ordered = np.sort(values[~np.isnan(values)])
        n = ordered.size
        if not n:
            raise ValueError(f"numeric feature {col!r} has no values in the training data: cannot profile it")
        # Inverted-CDF quantiles (actual data values) at k / intervals, in integer arithmetic.
        k = np.arange(intervals + 1, dtype=np.int64)
        quantiles = ordered[np.clip((k * n + intervals - 1) // intervals - 1, 0, n - 1)]
        grid = np.unique(quantiles)
        edges = np.unique(quantiles[(intervals // bins) * np.arange(1, bins)])
        acc = NumericAccumulator(grid)
        acc.update(df[col])
        missing = rows - acc.count
        out["numeric"][col] = {
            "count": acc.count,
            "missing_rate": missing / rows,
            "mean": acc.mean,
            "std": acc.std,
            "min": acc.min,
            "max": acc.max,
            "edges": edges.tolist(),
            "proportions": (bin_counts(acc.cells, grid, edges) / rows).tolist(),
            "missing_share": missing / rows,
            "sketch": {"grid": grid.tolist(), "cell_counts": acc.cells.tolist()},
        }
    for col in categorical:
        counts, missing = category_counts(df[col])
        ordered_counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        out["categorical"][col] = {
            "count": rows - missing,
            "missing_rate": missing / rows,
            "counts": ordered_counts,
            "frequencies": {c: n / rows for c, n in ordered_counts.items()},
        }
    return out


def baseline_from_json(obj: dict | str | bytes | None) -> dict:
    """Check a stored baseline (dict or JSON text) and return it as a dict, or raise ``BaselineError``."""
    if obj is None:
        raise BaselineError(
            "no drift baseline: this model version was trained before baselines were recorded; "
            "retrain it to get one"
        )
    if isinstance(obj, str | bytes):
        try:
            obj = json.loads(obj)
        except ValueError as exc:
            raise BaselineError(f"the drift baseline is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise BaselineError(f"the drift baseline must be a JSON object, got {type(obj).__name__}")
    version = obj.get("format_version")
    if version is None:
        raise BaselineError("the drift baseline has no format_version: it predates this library; retrain")
    if version != FORMAT_VERSION:
        age = "older" if isinstance(version, int) and version < FORMAT_VERSION else "other"
        raise BaselineError(
            f"the drift baseline has format_version {version!r}, an {age} format than this library's "
            f"{FORMAT_VERSION}; retrain the model to record a current baseline"
        )
    for key in ("rows", "numeric", "categorical"):
        if key not in obj:
            raise BaselineError(f"the drift baseline lacks {key!r}")
    for kind, required in (("numeric", _NUMERIC_KEYS), ("categorical", _CATEGORICAL_KEYS)):
        for name, profile in obj[kind].items():
            lacking = [k for k in required if k not in profile]
            if lacking:
                raise BaselineError(f"the drift baseline's {kind} feature {name!r} lacks {lacking}")
    for name, profile in obj["numeric"].items():
        sketch = profile["sketch"]
        if not {"grid", "cell_counts"} <= set(sketch):
            raise BaselineError(f"the drift baseline's sketch for {name!r} lacks grid/cell_counts")
        if (
            len(sketch["cell_counts"]) != 2 * len(sketch["grid"]) + 1
            or not np.isin(profile["edges"], sketch["grid"]).all()
        ):
            raise BaselineError(f"the drift baseline's sketch for {name!r} is inconsistent with its bins")
    if not obj["numeric"] and not obj["categorical"]:
        raise BaselineError("the drift baseline profiles no features")
    return obj
