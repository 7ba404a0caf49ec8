"""Drift detection against a baseline profile stored with the model at training time.

The reference data is never needed again: ``build_baseline`` keeps, per feature, what the checks
need (quantile bins and a quantile sketch for numeric features, category counts for categorical
ones), and ``check_drift`` makes one vectorised pass over the current batch in chunks of
``chunk_rows`` (a DataFrame, or a Parquet file/bytes read one column of one row group at a time
by the thread that counts it, so memory is bounded by a few column chunks, not the batch), the
columns counted in parallel threads (Arrow and numpy release the GIL; the result is the same as
in one thread).

Statistics per feature:

* **PSI** over the baseline's quantile bins plus an explicit "missing" cell (categorical: one cell per
  training category, one per never-seen category, plus missing), on shares of all rows. Empty cells
  are clipped to ``PSI_EPSILON`` (1e-4) on both sides before ``sum((q - p) * ln(q / p))``, so a cell
  that is empty in training but holds 5% of the batch adds 0.05 * ln(500) ~= 0.31.
* **Two-sample KS** (numeric, non-missing values). The reference ECDF is known exactly at the
  sketch's ~1000 quantile points (and just left of them); the current ECDF is counted at the same
  points, and the statistic is the largest gap there. It is never above scipy's ``ks_2samp``
  statistic on the raw samples and at most ``ks_resolution`` (the largest reference mass between
  two sketch points, ~0.001) below it. The current values are placed on the sketch in O(1) each
  (``_GridLocator``), never sorted. The p-value is ``kstwo.sf(D, round(en))``, en = m n / (m + n),
  up to en = 10,000 and Kolmogorov's limit ``kstwobign.sf(D sqrt(en))`` above (within 3e-3).
* **Chi-square** (categorical): the 2 x k contingency test of training counts against batch counts
  (never-seen categories are their own cells, missing is a cell), as ``chi2_contingency(...,
  correction=False)``; with it the total variation distance (TVD) as the effect size.
* Missing-rate shift, and the share of values outside the input contract's mean +/- k sigma bounds.

With thousands of rows every p-value is tiny, so decisions use effect sizes; p-values only guard
small batches. See ``DriftRule`` for the decision and ``check_drift`` for precedence.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from model_factory.io.batches import UnreadableBatchError
from model_factory.pipeline.features import MISSING_CATEGORY  # prepare_features' missing category
from model_factory.pipeline.validation import NUMERIC_TYPES, gx_failure_reason
from scipy import stats

FORMAT_VERSION = 1
CONTRACT_FORMAT_VERSION = 1
PSI_EPSILON = 1e-4
SKETCH_INTERVALS = 1000  # ~1000 quantiles per numeric feature: KS within ~0.001 of the exact value
LISTED_NEW_CATEGORIES = 20  # never-seen categories kept by name in a result; the rest are summed
MAX_THREADS = 4  # column-counting threads (fewer where the process has fewer cores)
DEFAULT_CHUNK_ROWS = 65_536  # ~0.5 MB per float column: temporaries reuse the heap (larger ones page-fault)

_NUMERIC_KEYS = ("count", "missing_rate", "mean", "std", "min", "max", "edges", "proportions",
                 "missing_share", "sketch")  # fmt: skip
_CATEGORICAL_KEYS = ("count", "missing_rate", "counts", "frequencies")


class BaselineError(ValueError):
    """The baseline profile is absent, from an older format, or incomplete; the message says which."""


# --------------------------------------------------------------------------------------------------
# Column normalisation and one-pass accumulators (shared by the baseline and the checks)


def _null_count(series: pd.Series) -> int:
    return int(series.isna().sum())


def _numeric_values(series: pd.Series) -> np.ndarray:
    """float64 values; nulls, non-numbers and +/-inf all become NaN (missing for the statistics)."""
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
    else:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        values = values.copy()
        values[bad] = np.nan
    return values


def _category_counts(series: pd.Series) -> tuple[dict[str, int], int]:
    """(counts per category as text, missing count): NaN/None and ``__missing__`` are missing.

    Counting happens in pandas on the native dtype; only the distinct keys are touched in Python.
    """
    counts: dict[str, int] = {}
    missing = 0
    for key, n in series.value_counts(dropna=False, sort=False).items():
        if not n:  # a pandas Categorical lists unused categories with 0
            continue
        if pd.isna(key) or key == MISSING_CATEGORY:
            missing += int(n)
        else:
            text = str(key)
            counts[text] = counts.get(text, 0) + int(n)
    return counts, missing


def _categorical_text(series: pd.Series) -> pd.Series:
    """The column as strings with real nulls, the form the contract's value sets are written in."""
    text = series.astype("str")
    return text.mask(text == MISSING_CATEGORY)


class _GridLocator:
    """Cell of each value on a sorted grid, in O(1) per value instead of a sort or a binary search.

    The grid's span is cut into ``per_point * len(grid)`` equal buckets; ``lo[b]`` counts the grid
    points in buckets before ``b``. The bucket of a value is a monotone function of it (float
    subtract, multiply, floor), so points in earlier buckets are below it and points in later ones
    above it: only the few points sharing its bucket are compared, in ``max_per_bucket`` vectorised
    steps. Values in crowded buckets (heavy tails put most points in a few buckets) take
    ``np.searchsorted`` instead. The cells are exactly those of a sort-and-count.
    """

    CROWDED = 4  # points per bucket above which a bucket's values take the binary search

    def __init__(self, grid: np.ndarray, per_point: int = 8) -> None:
        self.grid = np.asarray(grid, dtype="float64")
        n = len(self.grid)
        self.buckets = max(1, per_point * n)
        span = float(self.grid[-1] - self.grid[0]) if n else 0.0
        self.origin = float(self.grid[0]) if n else 0.0
        self.scale = self.buckets / span if span > 0 and math.isfinite(span) else 0.0
        of_point = self._bucket(self.grid)
        self.lo = np.searchsorted(of_point, np.arange(self.buckets + 1), side="left")
        per_bucket = np.bincount(of_point, minlength=self.buckets + 1)
        self.crowded = per_bucket > self.CROWDED
        self.steps = int(min(per_bucket.max(initial=0), self.CROWDED))
        self.padded = np.append(self.grid, np.inf)
        self.any_crowded = bool(self.crowded.any())

    def _bucket(self, x: np.ndarray) -> np.ndarray:
        b = np.subtract(x, self.origin)
        b *= self.scale
        np.clip(b, 0, self.buckets, out=b)
        return b.astype(np.intp)

    def cells(self, x: np.ndarray) -> np.ndarray:
        """Counts per cell (see ``_NumericAccumulator``) of finite values ``x``."""
        b = self._bucket(x)
        below = self.lo.take(b)  # grid points < x, once the bucket's own points are stepped over
        for _ in range(self.steps):
            below += self.padded.take(below) < x
        if self.any_crowded:
            crowded = self.crowded.take(b)
            if crowded.any():
                below[crowded] = np.searchsorted(self.grid, x[crowded], side="left")
        equal = self.padded.take(below) == x
        below *= 2  # in place from here: below becomes the cell, 2 * below + equal
        below += equal
        return np.bincount(below, minlength=2 * len(self.grid) + 1)


class _NumericAccumulator:
    """Running counts for one numeric column against a sorted grid of reference quantiles.

    Cells alternate: cell 2k holds values strictly between grid[k-1] and grid[k], cell 2k+1 values
    equal to grid[k] (2 * len(grid) + 1 cells), so the ECDF is exact at and just below each point.
    No value is sorted: each is placed by ``_GridLocator``.
    """

    def __init__(self, grid: np.ndarray, bounds: tuple[float, float] | None = None) -> None:
        self.grid = grid
        self.locator = _GridLocator(grid)
        self.bounds = bounds
        self.cells = np.zeros(2 * len(grid) + 1, dtype=np.int64)
        self.rows = self.nulls = self.count = self.outside = 0
        self.mean = self.m2 = 0.0
        self.min, self.max = math.inf, -math.inf
        self.dtypes: list[str] = []

    def update(self, series: pd.Series | Any) -> None:
        """Add a chunk: a pandas Series, or (from Parquet) an Arrow integer/float array."""
        if isinstance(series, pd.Series):
            dtype, nulls, values = str(series.dtype), _null_count(series), _numeric_values(series)
        else:  # what to_pandas would give, without the DataFrame: ints with nulls become float64
            nulls = series.null_count
            dtype = (
                "float64"
                if nulls and not _is_float(series.type)
                else np.dtype(series.type.to_pandas_dtype()).name
            )
            present = series.drop_null() if nulls else series  # nulls never become NaN to be dropped
            values = present.to_numpy(zero_copy_only=False).astype("float64", copy=False)
        if dtype not in self.dtypes:
            self.dtypes.append(dtype)
        self.rows += len(series)
        self.nulls += nulls
        finite = np.isfinite(values)  # NaN (a null from pandas, or a stored NaN) and +/-inf are missing
        x = values if finite.all() else values[finite]
        if not x.size:
            return
        self.cells += self.locator.cells(x)
        # Chan et al.'s pairwise merge of (count, mean, M2): stable whatever the chunking.
        n_b, mean_b = x.size, float(x.mean())
        deviation = x - mean_b
        m2_b = float(np.square(deviation, out=deviation).sum())  # not np.dot: BLAS threads spin under load
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.count * n_b / n
        self.count = n
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))
        if self.bounds is not None:
            lo, hi = self.bounds
            self.outside += int(np.count_nonzero(x < lo) + np.count_nonzero(x > hi))

    @property
    def invalid(self) -> int:
        """Non-null values that are not finite numbers (inf, unparseable text)."""
        return self.rows - self.nulls - self.count

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0


class _CategoricalAccumulator:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.rows = self.missing = 0

    def update(self, series: pd.Series | Any) -> None:
        """Add a chunk: a pandas Series, or (from Parquet) an Arrow dictionary array of text."""
        self.rows += len(series)
        if isinstance(series, pd.Series):
            counts, missing = _category_counts(series)
        else:  # a bincount of the dictionary codes: no strings are touched per row
            indices = series.indices
            codes = (indices.drop_null() if indices.null_count else indices).to_numpy(zero_copy_only=False)
            tally = np.bincount(codes, minlength=len(series.dictionary))
            counts, missing = {}, series.null_count
            for key, n in zip(series.dictionary.to_pylist(), tally.tolist(), strict=True):
                if not n:
                    continue
                if key is None or key == MISSING_CATEGORY:
                    missing += n
                else:
                    counts[str(key)] = counts.get(str(key), 0) + n
        self.missing += missing
        for key, n in counts.items():
            self.counts[key] = self.counts.get(key, 0) + n


_Accumulator = _NumericAccumulator | _CategoricalAccumulator


# --------------------------------------------------------------------------------------------------
# Statistics


def psi(reference: np.ndarray | list[float], current: np.ndarray | list[float]) -> float:
    """Population stability index of two proportion vectors over the same cells.

    Proportions below ``PSI_EPSILON`` are raised to it (no renormalisation), so empty cells give a
    large but finite contribution instead of infinity.
    """
    p = np.maximum(np.asarray(reference, dtype="float64"), PSI_EPSILON)
    q = np.maximum(np.asarray(current, dtype="float64"), PSI_EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_from_cells(reference_cells: np.ndarray, current_cells: np.ndarray) -> float:
    """Largest ECDF gap at the sketch points (see the module docstring for its accuracy)."""
    ref = np.cumsum(reference_cells) / reference_cells.sum()
    cur = np.cumsum(current_cells) / current_cells.sum()
    return float(np.max(np.abs(ref - cur)))


EXACT_KS_MAX_N = 10_000  # effective sample size up to which the exact distribution is used


def ks_pvalue(statistic: float, n_reference: int, n_current: int) -> float:
    """Two-sided KS p-value for two sample sizes, at the effective size en = m n / (m + n).

    Up to ``EXACT_KS_MAX_N`` the exact one-sample distribution ``kstwo.sf(D, round(en))`` (what
    ``ks_2samp(method="asymp")`` uses); above it Kolmogorov's limit ``kstwobign.sf(D sqrt(en))``:
    within 3e-3 of the exact value there, and microseconds instead of ~0.6 s at en ~ 500k.
    """
    en = n_reference * n_current / (n_reference + n_current)
    if en <= EXACT_KS_MAX_N:
        return float(stats.kstwo.sf(statistic, max(1, round(en))))
    return float(stats.kstwobign.sf(statistic * math.sqrt(en)))


def chi2_two_sample(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, int, float]:
    """(statistic, dof, p-value) of the 2 x k contingency test; cells empty on both sides are dropped."""
    observed = np.vstack([reference_counts, current_counts]).astype("float64")
    observed = observed[:, observed.sum(axis=0) > 0]
    rows = observed.sum(axis=1)
    if observed.shape[1] < 2 or (rows == 0).any():
        return 0.0, 0, 1.0
    expected = np.outer(rows, observed.sum(axis=0)) / observed.sum()
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    dof = observed.shape[1] - 1
    return statistic, dof, float(stats.chi2.sf(statistic, dof))


def _bin_counts(cells: np.ndarray, grid: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per PSI bin (-inf, e1], (e1, e2], ..., (ek, inf); every edge is a grid point."""
    cumulative = np.cumsum(cells)
    at_edge = cumulative[2 * np.searchsorted(grid, edges) + 1]
    return np.diff(np.concatenate([[0], at_edge, [cumulative[-1]]]))


def _count_le(cells: np.ndarray, grid: np.ndarray, x: float, strict: bool = False) -> float:
    """Reference count <= x (< x if strict), interpolating linearly inside a cell between points."""
    cumulative = np.cumsum(cells)
    k = int(np.searchsorted(grid, x, side="left" if strict else "right"))  # grid points before x
    below = float(cumulative[2 * k - 1]) if k else 0.0
    if 0 < k < len(grid):
        lo, hi = grid[k - 1], grid[k]
        if not (strict and x == lo):
            below += float(cells[2 * k]) * (x - lo) / (hi - lo)
    return below


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


# --------------------------------------------------------------------------------------------------
# Baseline


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
        values = _numeric_values(df[col])
        ordered = np.sort(values[~np.isnan(values)])
        n = ordered.size
        if not n:
            raise ValueError(f"numeric feature {col!r} has no values in the training data: cannot profile it")
        # Inverted-CDF quantiles (actual data values) at k / intervals, in integer arithmetic.
        k = np.arange(intervals + 1, dtype=np.int64)
        quantiles = ordered[np.clip((k * n + intervals - 1) // intervals - 1, 0, n - 1)]
        grid = np.unique(quantiles)
        edges = np.unique(quantiles[(intervals // bins) * np.arange(1, bins)])
        acc = _NumericAccumulator(grid)
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
            "proportions": (_bin_counts(acc.cells, grid, edges) / rows).tolist(),
            "missing_share": missing / rows,
            "sketch": {"grid": grid.tolist(), "cell_counts": acc.cells.tolist()},
        }
    for col in categorical:
        counts, missing = _category_counts(df[col])
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


# --------------------------------------------------------------------------------------------------
# Input contract (Great Expectations suite as JSON)


def input_contract(
    baseline: dict,
    *,
    k_sigma: float = 2.0,
    mostly: float = 0.95,
    null_rate_slack: float = 0.05,
    max_unseen_share: float = 0.02,
) -> dict:
    """The input contract suggested by the training data, as a GX 1.x suite dict.

    Schema expectations (a break is a data-quality failure): every feature exists; numeric ones
    have a numeric dtype; nulls at most training's missing rate + ``null_rate_slack``; categorical
    values in the training categories for all but ``max_unseen_share`` of the non-null rows.
    Bounds expectations (reported, not a data-quality failure): numeric values within training mean
    +/- ``k_sigma`` std for a ``mostly`` share; where training itself had more outside (skewed
    data), the allowance is widened to that, so the contract always holds on its training data.
    """
    baseline = baseline_from_json(baseline)
    for name, value in (("mostly", mostly), ("null_rate_slack", null_rate_slack),
                        ("max_unseen_share", max_unseen_share)):  # fmt: skip
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    if k_sigma <= 0:
        raise ValueError(f"k_sigma must be positive, got {k_sigma}")

    def floor4(x: float) -> float:
        return max(0.0, math.floor(round(x * 10_000, 6)) / 10_000)

    def schema(type_: str, column: str, **kwargs: Any) -> dict:
        return {"type": type_, "kwargs": {"column": column, **kwargs}, "meta": {"kind": "schema"}}

    expectations: list[dict] = []
    for col, p in baseline["numeric"].items():
        expectations.append(schema("expect_column_to_exist", col))
        expectations.append(schema("expect_column_values_to_be_in_type_list", col, type_list=NUMERIC_TYPES))
        ceiling = min(1.0, p["missing_rate"] + null_rate_slack)
        expectations.append(schema("expect_column_values_to_not_be_null", col, mostly=floor4(1 - ceiling)))
        lo, hi = p["mean"] - k_sigma * p["std"], p["mean"] + k_sigma * p["std"]
        grid = np.asarray(p["sketch"]["grid"])
        cells = np.asarray(p["sketch"]["cell_counts"])
        inside = _count_le(cells, grid, hi) - _count_le(cells, grid, lo, strict=True)
        training_outside = max(0.0, 1.0 - inside / p["count"])
        resolution = float(cells[0::2].max()) / p["count"]
        allowed = max(1.0 - mostly, training_outside + resolution) if training_outside > 0 else 1.0 - mostly
        expectations.append(
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": col, "min_value": lo, "max_value": hi, "mostly": floor4(1 - allowed)},
                "meta": {
                    "kind": "bounds",
                    "k_sigma": k_sigma,
                    "training_outside_share": float(training_outside),
                },
            }
        )
    for col, p in baseline["categorical"].items():
        expectations.append(schema("expect_column_to_exist", col))
        ceiling = min(1.0, p["missing_rate"] + null_rate_slack)
        expectations.append(schema("expect_column_values_to_not_be_null", col, mostly=floor4(1 - ceiling)))
        expectations.append(
            schema(
                "expect_column_values_to_be_in_set",
                col,
                value_set=sorted(p["counts"]),
                mostly=floor4(1 - max_unseen_share),
            )
        )
    return {
        "name": "input_contract",
        "expectations": expectations,
        "meta": {
            "format_version": CONTRACT_FORMAT_VERSION,
            "k_sigma": k_sigma,
            "mostly": mostly,
            "null_rate_slack": null_rate_slack,
            "max_unseen_share": max_unseen_share,
            "baseline_rows": baseline["rows"],
        },
    }


def contract_suite(contract: dict) -> Any:
    """The contract as a ``great_expectations.ExpectationSuite``."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    suite = gx.ExpectationSuite(name=contract.get("name", "input_contract"))
    for config in contract["expectations"]:
        suite.add_expectation(ExpectationConfiguration(**config).to_domain_obj())
    return suite


def _contract_reason(config: dict, observed: dict) -> str:
    """One sentence for a failed contract expectation, from counts (GX's or our own pass's)."""
    kwargs = config["kwargs"]
    col = kwargs.get("column")
    allowed = 1.0 - kwargs.get("mostly", 1.0)
    type_ = config["type"]
    considered = observed["element_count"] - observed.get("missing_count", 0)
    share = observed.get("unexpected_count", 0) / considered if considered else 0.0
    if type_ == "expect_column_to_exist":
        return f"column {col!r} is missing"
    if type_ == "expect_column_values_to_be_in_type_list":
        return f"column {col!r}: type {observed.get('observed_value')!r} is not numeric"
    if type_ == "expect_column_values_to_not_be_null":
        if observed["unexpected_count"] == observed["element_count"]:
            return f"column {col!r}: all {observed['element_count']:,} values are null"
        return f"column {col!r}: {share:.1%} of values are null (contract allows {allowed:.1%})"
    if type_ == "expect_column_values_to_be_in_set":
        return (
            f"column {col!r}: {share:.1%} of values are categories never seen in training, "
            f"e.g. {observed.get('examples', [])} (contract allows {allowed:.1%})"
        )
    if type_ == "expect_column_values_to_be_between":
        k = config.get("meta", {}).get("k_sigma")
        what = f"training mean ± {k:g}σ" if k else "the contract's range"  # noqa: RUF001
        return (
            f"column {col!r}: {share:.1%} of values outside {what} "
            f"[{kwargs['min_value']:.4g}, {kwargs['max_value']:.4g}] (contract allows {allowed:.1%})"
        )
    return f"{type_} on column {col!r} failed: {observed}"


def _drop_consequences(failures: list[tuple[dict, str]]) -> list[tuple[dict, str]]:
    """A missing column fails all its checks, a non-numeric one its bounds: keep only the cause."""
    missing = {c["kwargs"]["column"] for c, _ in failures if c["type"] == "expect_column_to_exist"}
    mistyped = {c["kwargs"]["column"] for c, _ in failures
                if c["type"] == "expect_column_values_to_be_in_type_list"}  # fmt: skip
    kept = []
    for config, reason in failures:
        col = config["kwargs"].get("column")
        if col in missing and config["type"] != "expect_column_to_exist":
            continue
        if col in mistyped and config["type"] == "expect_column_values_to_be_between":
            continue
        kept.append((config, reason))
    return kept


def check_contract(df: pd.DataFrame, contract: dict) -> list[str]:
    """Validate a DataFrame against the contract with Great Expectations; readable failure reasons.

    Categorical columns are compared as text with ``__missing__`` as null, as in the baseline.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    in_set = {c["kwargs"]["column"] for c in contract["expectations"]
              if c["type"] == "expect_column_values_to_be_in_set"}  # fmt: skip
    frame = df.copy(deep=False)
    for col in in_set & set(frame.columns):
        frame[col] = _categorical_text(frame[col])

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batch = (
        context.data_sources.add_pandas("drift")
        .add_dataframe_asset("current")
        .add_batch_definition_whole_dataframe("batch")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    # batch.validate, not ValidationDefinition.run: see FINDINGS (numpy bools break the latter).
    result = batch.validate(contract_suite(contract)).to_json_dict()
    failures = []
    for r in result["results"]:
        if r["success"]:
            continue
        config = r["expectation_config"]
        detail = r.get("result") or {}
        if not detail and config["type"] != "expect_column_to_exist":
            failures.append((config, gx_failure_reason(r)))  # GX could not evaluate it: its own words
            continue
        observed = {
            "element_count": detail.get("element_count", 0),
            "missing_count": detail.get("missing_count", 0) or 0,
            "unexpected_count": detail.get("unexpected_count", 0),
            "observed_value": detail.get("observed_value"),
            "examples": sorted({str(v) for v in detail.get("partial_unexpected_list", [])})[:5],
        }
        failures.append((config, _contract_reason(config, observed)))
    # GX reports in its own order; give the reasons in the contract's.
    order = {(c["type"], c["kwargs"].get("column")): i for i, c in enumerate(contract["expectations"])}

    def position(item: tuple[dict, str]) -> int:
        return order.get((item[0]["type"], item[0]["kwargs"].get("column")), len(order))

    return [reason for _, reason in sorted(_drop_consequences(failures), key=position)]


# --------------------------------------------------------------------------------------------------
# Drift check


@dataclass(frozen=True)
class DriftRule:
    """When a batch counts as drifted.

    Decision: drift if any judged feature has PSI >= ``psi_threshold``, or at least
    ``drifted_share`` of the judged features are *drifted*. A feature is drifted when its PSI >=
    ``psi_warn``, or when its effect size (KS statistic for numeric, total variation distance for
    categorical) >= ``effect_threshold`` and the test's p-value < ``alpha`` (the p-value only
    matters for small batches). Features in ``ignore_features`` are reported but never judged
    (e.g. a column constant within a day, such as the day of week). Below ``min_rows`` rows no
    decision is made.
    """

    psi_threshold: float = 0.2
    drifted_share: float = 0.3
    psi_warn: float = 0.1
    effect_threshold: float = 0.1
    alpha: float = 0.01
    min_rows: int = 500
    ignore_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.psi_warn <= self.psi_threshold:
            raise ValueError("DriftRule needs 0 < psi_warn <= psi_threshold")
        if not 0 < self.drifted_share <= 1:
            raise ValueError("DriftRule.drifted_share must be in (0, 1]")
        if not 0 < self.effect_threshold <= 1 or not 0 < self.alpha < 1:
            raise ValueError("DriftRule.effect_threshold must be in (0, 1] and alpha in (0, 1)")
        if self.min_rows < 1:
            raise ValueError("DriftRule.min_rows must be at least 1")
        object.__setattr__(self, "ignore_features", tuple(self.ignore_features))

    def to_dict(self) -> dict:
        return {**asdict(self), "ignore_features": list(self.ignore_features)}


def _blocks(
    current: Any, numeric: list[str], categorical: list[str], chunk_rows: int
) -> tuple[int, list[str], Iterator[dict[str, Callable[[], Iterable[Any]]]]]:
    """(rows, feature columns present, blocks) for a DataFrame, a Parquet path or Parquet bytes.

    A block maps each present column to a function giving its pieces of at most ``chunk_rows``
    rows, in row order: the whole frame for a DataFrame, one row group for Parquet. A Parquet
    column is read (decoded) by the thread that counts it, with a reader of its own, so memory is
    bounded by a column of a row group per thread, whatever the number of rows.
    """
    columns = [*numeric, *categorical]
    if isinstance(current, pd.DataFrame):
        present = [c for c in columns if c in current.columns]

        def frame_pieces(col: str) -> list[pd.Series]:
            return [current[col].iloc[s : s + chunk_rows] for s in range(0, max(len(current), 1), chunk_rows)]

        return len(current), present, iter([{col: partial(frame_pieces, col) for col in present}])

    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(current, bytes | bytearray | memoryview):
        data = current

        def source() -> Any:
            return pa.BufferReader(data)

        where = "the Parquet bytes"
    elif isinstance(current, str | os.PathLike):
        path = os.fspath(current)

        def source() -> Any:
            return path

        where = f"Parquet file {path}"
    else:
        raise TypeError(f"current must be a DataFrame, a Parquet path or bytes, not {type(current).__name__}")
    try:
        schema = pq.read_schema(source())
        # Text categoricals are read as dictionaries: counting them is then a bincount of codes.
        dictionaries = sorted(c for c in categorical if c in schema.names and _is_text(schema.field(c).type))
        parquet = pq.ParquetFile(source(), read_dictionary=dictionaries or None)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise UnreadableBatchError(f"{where} is not a readable parquet table: {exc}") from exc
    present = [c for c in columns if c in schema.names]
    rows = parquet.metadata.num_rows
    readers = threading.local()  # a ParquetFile per thread: one is not safe to share

    def column_pieces(group: int, name: str) -> Iterator[Any]:
        reader = getattr(readers, "parquet", None)
        if reader is None:
            reader = readers.parquet = pq.ParquetFile(source(), read_dictionary=dictionaries or None)
        column = reader.read_row_group(group, columns=[name], use_threads=False).column(0)
        for array in column.chunks:
            for start in range(0, len(array), chunk_rows):
                yield _column(array.slice(start, chunk_rows))

    def group_blocks() -> Iterator[dict[str, Callable[[], Iterable[Any]]]]:
        if not present:
            return
        if not rows:  # still one (empty) block, so the column types are seen
            empty = parquet.schema_arrow.empty_table().select(present).to_pandas()
            yield {col: partial(list, [empty[col]]) for col in present}
            return
        for group in range(parquet.num_row_groups):
            yield {name: partial(column_pieces, group, name) for name in present}

    return rows, present, group_blocks()


def _is_float(type_: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_floating(type_)


def _is_text(type_: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _column(array: Any) -> Any:
    """An Arrow column as the accumulators take it: integer/float and dictionary-of-text arrays
    stay Arrow (counted without pandas); anything else becomes a pandas Series."""
    import pyarrow as pa

    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return array
    if pa.types.is_dictionary(kind) and _is_text(kind.value_type) and pa.types.is_integer(kind.index_type):
        return array
    return array.to_pandas()


def _observed(config: dict, acc: _NumericAccumulator | _CategoricalAccumulator | None) -> dict | None:
    """What GX would report for one expectation, from our running counts (None: not evaluable)."""
    type_ = config["type"]
    if acc is None:
        return None
    if isinstance(acc, _NumericAccumulator):
        nulls = acc.nulls
        if type_ == "expect_column_values_to_be_in_type_list":
            bad = [d for d in acc.dtypes if d not in config["kwargs"]["type_list"]]
            return {"element_count": acc.rows, "observed_value": (bad or acc.dtypes or [None])[0],
                    "success": not bad}  # fmt: skip
        if type_ == "expect_column_values_to_be_between":
            lo, hi = config["kwargs"]["min_value"], config["kwargs"]["max_value"]
            if acc.bounds != (lo, hi):
                return None
            return {"element_count": acc.rows, "missing_count": nulls,
                    "unexpected_count": acc.outside + acc.invalid}  # fmt: skip
    else:
        nulls = acc.missing
        if type_ == "expect_column_values_to_be_in_set":
            allowed = set(config["kwargs"]["value_set"])
            unseen = {c: n for c, n in acc.counts.items() if c not in allowed}
            examples = sorted(unseen, key=lambda c: (-unseen[c], c))[:5]
            return {"element_count": acc.rows, "missing_count": nulls,
                    "unexpected_count": sum(unseen.values()), "examples": examples}  # fmt: skip
    if type_ == "expect_column_values_to_not_be_null":
        return {"element_count": acc.rows, "unexpected_count": nulls}
    return None


def _passes(config: dict, observed: dict) -> bool:
    """GX's rule: success ratio over the rows considered >= mostly; nothing considered passes."""
    if "success" in observed:
        return bool(observed["success"])
    considered = observed["element_count"] - observed.get("missing_count", 0)
    if considered <= 0:
        return True
    ratio = (float(considered) - float(observed["unexpected_count"])) / float(considered)
    return ratio >= config["kwargs"].get("mostly", 1.0)


def _numeric_result(
    profile: dict, acc: _NumericAccumulator | None, rows: int, bounds_config: dict | None
) -> dict:
    grid = np.asarray(profile["sketch"]["grid"], dtype="float64")
    ref_cells = np.asarray(profile["sketch"]["cell_counts"], dtype=np.int64)
    edges = np.asarray(profile["edges"], dtype="float64")
    out: dict[str, Any] = {
        "kind": "numeric",
        "present": acc is not None,
        "rows": rows,
        "reference_mean": profile["mean"],
        "reference_std": profile["std"],
        "reference_missing_rate": profile["missing_rate"],
        "ks_resolution": float(ref_cells[0::2].max()) / profile["count"],
        "distribution": {
            "edges": profile["edges"],
            "reference": profile["proportions"],
            "reference_missing": profile["missing_share"],
            "current": None,
            "current_missing": None,
        },
    }
    none = ("count", "missing_rate", "missing_shift", "mean", "std", "min", "max", "psi", "ks_statistic",
            "ks_pvalue", "outside_bounds_share")  # fmt: skip
    out |= dict.fromkeys(none)
    if bounds_config is not None:
        kw = bounds_config["kwargs"]
        out["bounds"] = [kw["min_value"], kw["max_value"]]
        out["outside_bounds_allowed"] = 1.0 - kw.get("mostly", 1.0)
        out["reference_outside_share"] = bounds_config.get("meta", {}).get("training_outside_share")
    if acc is None:
        return out
    missing = acc.rows - acc.count
    out |= {"count": acc.count, "missing_rate": missing / rows if rows else None}
    if rows:
        out["missing_shift"] = out["missing_rate"] - profile["missing_rate"]
        current = _bin_counts(acc.cells, grid, edges) / rows
        out["distribution"] |= {"current": current.tolist(), "current_missing": missing / rows}
        out["psi"] = psi([*profile["proportions"], profile["missing_share"]], [*current, missing / rows])
    if acc.count:
        d = ks_from_cells(ref_cells, acc.cells)
        out |= {"mean": acc.mean, "std": acc.std, "min": acc.min, "max": acc.max, "ks_statistic": d,
                "ks_pvalue": ks_pvalue(d, profile["count"], acc.count)}  # fmt: skip
        if acc.bounds is not None:
            out["outside_bounds_share"] = acc.outside / acc.count
    return out


def _categorical_result(profile: dict, acc: _CategoricalAccumulator | None, rows: int, ref_rows: int) -> dict:
    ref_counts: dict[str, int] = profile["counts"]
    ref_missing = ref_rows - profile["count"]
    out: dict[str, Any] = {
        "kind": "categorical",
        "present": acc is not None,
        "rows": rows,
        "reference_missing_rate": profile["missing_rate"],
        "distribution": {
            "categories": list(ref_counts),
            "reference": list(profile["frequencies"].values()),
            "reference_missing": profile["missing_rate"],
            "current": None,
            "current_missing": None,
            "new": [False] * len(ref_counts),
            "other_new": None,
        },
    }
    none = ("count", "missing_rate", "missing_shift", "psi", "chi2_statistic", "chi2_dof", "chi2_pvalue",
            "tvd", "new_share")  # fmt: skip
    out |= dict.fromkeys(none)
    out |= {"new_categories": {}, "new_category_count": 0}
    if acc is None or not rows:
        if acc is not None:
            out["count"] = 0
        return out
    new = sorted((c for c in acc.counts if c not in ref_counts), key=lambda c: (-acc.counts[c], c))
    cats = [*ref_counts, *new]
    ref_vec = np.array([*(ref_counts[c] for c in ref_counts), *(0 for _ in new), ref_missing], dtype=np.int64)
    cur_vec = np.array([*(acc.counts.get(c, 0) for c in cats), acc.missing], dtype=np.int64)
    p, q = ref_vec / ref_vec.sum(), cur_vec / rows
    statistic, dof, pvalue = chi2_two_sample(ref_vec, cur_vec)
    new_total = int(sum(acc.counts[c] for c in new))
    listed = new[:LISTED_NEW_CATEGORIES]
    rest = new[LISTED_NEW_CATEGORIES:]
    out |= {
        "count": rows - acc.missing,
        "missing_rate": acc.missing / rows,
        "missing_shift": acc.missing / rows - profile["missing_rate"],
        "psi": psi(p, q),
        "chi2_statistic": statistic,
        "chi2_dof": dof,
        "chi2_pvalue": pvalue,
        "tvd": float(0.5 * np.abs(p - q).sum()),
        "new_share": new_total / rows,
        "new_categories": {c: acc.counts[c] for c in listed},
        "new_category_count": len(new),
    }
    n_ref = len(ref_counts)
    out["distribution"] |= {
        "categories": [*ref_counts, *listed],
        "current": q[: n_ref + len(listed)].tolist(),
        "reference": [*out["distribution"]["reference"], *(0.0 for _ in listed)],
        "current_missing": acc.missing / rows,
        "new": [False] * n_ref + [True] * len(listed),
        "other_new": {"categories": len(rest), "share": sum(acc.counts[c] for c in rest) / rows}
        if rest
        else None,
    }
    return out


def _judge(feat: dict, rule: DriftRule) -> list[str]:
    """Why a feature counts as drifted under the rule (empty: it does not)."""
    why = []
    if feat["psi"] is not None and feat["psi"] >= rule.psi_warn:
        why.append(f"PSI {feat['psi']:.3f} ≥ {rule.psi_warn:g}")
    if feat["kind"] == "numeric":
        effect, p, label = feat["ks_statistic"], feat["ks_pvalue"], "KS"
    else:
        effect, p, label = feat["tvd"], feat["chi2_pvalue"], "TVD"
    if effect is not None and effect >= rule.effect_threshold and p is not None and p < rule.alpha:
        why.append(f"{label} {effect:.3f} ≥ {rule.effect_threshold:g} (p = {p:.2g})")
    return why


def _worker_threads() -> int:
    """Threads for counting columns: the cores this process may use, at most ``MAX_THREADS``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cores))


def _count(blocks: Iterator[dict[str, Callable[[], Iterable[Any]]]], accs: dict[str, _Accumulator]) -> None:
    """Feed every block's pieces to the columns' accumulators, columns in parallel threads.

    Arrow and numpy release the GIL for the per-value work (decoding and counting), so columns
    count side by side; each accumulator sees its own pieces in row order, one thread at a time,
    so the sums are the same as in one thread.
    """

    def feed(acc: _Accumulator, pieces: Callable[[], Iterable[Any]]) -> None:
        for piece in pieces():
            acc.update(piece)

    threads = min(_worker_threads(), len(accs))
    if threads <= 1:
        for block in blocks:
            for col, acc in accs.items():
                feed(acc, block[col])
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="drift-count") as pool:
        for block in blocks:
            for _ in pool.map(feed, accs.values(), [block[col] for col in accs]):
                pass


def check_drift(
    baseline: dict,
    current: pd.DataFrame | str | os.PathLike | bytes,
    rule: DriftRule | None = None,
    *,
    contract: dict | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> dict:
    """Compare a batch with the baseline in one chunked pass; a JSON-able verdict.

    ``contract`` defaults to ``input_contract(baseline)``. Status precedence: ``data_quality`` (a
    schema expectation of the contract fails: missing or non-numeric column, nulls above the
    ceiling, a flood of never-seen categories; retraining on a broken feed would not help, and a
    missing column is certain at any batch size) > ``insufficient_data`` (fewer than
    ``rule.min_rows`` rows: statistics are reported as indicative, no decision) > ``drift`` >
    ``no_drift``. Features with a data-quality failure are not judged for drift.
    """
    rule = rule or DriftRule()
    baseline = baseline_from_json(baseline)
    contract = contract if contract is not None else input_contract(baseline)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    numeric, categorical = list(baseline["numeric"]), list(baseline["categorical"])
    expectations = contract["expectations"]
    bounds_of = {
        c["kwargs"]["column"]: c for c in expectations if c["type"] == "expect_column_values_to_be_between"
    }

    rows, present, blocks = _blocks(current, numeric, categorical, chunk_rows)
    accs: dict[str, _Accumulator] = {}
    for col in present:
        if col in baseline["numeric"]:
            b = bounds_of.get(col)
            bounds = (b["kwargs"]["min_value"], b["kwargs"]["max_value"]) if b else None
            accs[col] = _NumericAccumulator(np.asarray(baseline["numeric"][col]["sketch"]["grid"]), bounds)
        else:
            accs[col] = _CategoricalAccumulator()
    _count(blocks, accs)

    # The contract, evaluated from the same counts (check_contract gives the same answers via GX).
    failures: list[tuple[dict, str]] = []
    for config in expectations:
        col = config["kwargs"].get("column")
        if config["type"] == "expect_column_to_exist":
            if col not in accs:
                failures.append((config, _contract_reason(config, {"element_count": rows})))
            continue
        observed = _observed(config, accs.get(col))
        if observed is not None and not _passes(config, observed):
            failures.append((config, _contract_reason(config, observed)))
    failures = _drop_consequences(failures)
    dq_by_col: dict[str, list[str]] = {}
    alerts: list[str] = []
    out_of_bounds: set[str] = set()
    for config, reason in failures:
        if config.get("meta", {}).get("kind") == "bounds":
            alerts.append(reason)
            out_of_bounds.add(config["kwargs"]["column"])
        else:
            dq_by_col.setdefault(config["kwargs"].get("column"), []).append(reason)
    data_quality = [r for reasons in dq_by_col.values() for r in reasons]

    features: dict[str, dict] = {}
    for col in numeric:
        acc = accs.get(col)
        assert acc is None or isinstance(acc, _NumericAccumulator)
        features[col] = _numeric_result(baseline["numeric"][col], acc, rows, bounds_of.get(col))
    for col in categorical:
        acc = accs.get(col)
        assert acc is None or isinstance(acc, _CategoricalAccumulator)
        features[col] = _categorical_result(baseline["categorical"][col], acc, rows, baseline["rows"])
    judged = []
    for name, feat in features.items():
        feat["data_quality"] = dq_by_col.get(name, [])
        feat["ignored"] = name in rule.ignore_features
        feat["judged"] = not feat["ignored"] and not feat["data_quality"] and feat["present"]
        feat["why"] = _judge(feat, rule) if feat["judged"] else []
        feat["drifted"] = bool(feat["why"])
        feat["bounds_ok"] = None if feat.get("outside_bounds_share") is None else name not in out_of_bounds
        if feat["judged"]:
            judged.append(name)
        for key, value in feat.items():
            if isinstance(value, float):
                feat[key] = _finite(value)

    drifted = [n for n in judged if features[n]["drifted"]]
    over = [n for n in judged if (features[n]["psi"] or 0.0) >= rule.psi_threshold]
    share = len(drifted) / len(judged) if judged else 0.0
    stat_reasons: list[str] = [
        f"feature {n!r}: PSI {features[n]['psi']:.3f} is at or above the {rule.psi_threshold:g} limit "
        "for any one feature"
        for n in over
    ]
    if judged and share >= rule.drifted_share:
        stat_reasons.append(
            f"{len(drifted)} of {len(judged)} features drifted ({share:.0%}), at or above the rule's "
            f"{rule.drifted_share:.0%}: {', '.join(drifted)}"
        )
    if data_quality:
        status = "data_quality"
        reasons = [
            f"the batch breaks the input contract ({len(data_quality)} data-quality failure"
            f"{'s' if len(data_quality) != 1 else ''}, not statistical drift): fix the feed rather "
            "than retrain",
            *data_quality,
        ]
        if stat_reasons:
            reasons.append("statistical drift on the other features too: " + "; ".join(stat_reasons))
    elif rows < rule.min_rows:
        status = "insufficient_data"
        reasons = [
            f"only {rows:,} rows in the batch; the rule needs at least {rule.min_rows:,} to decide, "
            "so no decision was made (the statistics are indicative only)"
        ]
    elif stat_reasons:
        status, reasons = "drift", stat_reasons
    else:
        status = "no_drift"
        top = max(judged, key=lambda n: features[n]["psi"] or 0.0, default=None)
        highest = f" (highest: {top!r} at {features[top]['psi']:.3f})" if top else ""
        reasons = [
            f"no feature reached PSI {rule.psi_threshold:g}{highest}, and {len(drifted)} of {len(judged)} "
            f"features drifted ({share:.0%}), below the rule's {rule.drifted_share:.0%}"
        ]
    ignored = [n for n in features if features[n]["ignored"]]
    if ignored:
        reasons.append(f"not judged, by the rule: {', '.join(ignored)}")
    return {
        "format_version": FORMAT_VERSION,
        "status": status,
        "reasons": reasons,
        "rows": rows,
        "features": features,
        "drifted_features": drifted,
        "data_quality": data_quality,
        "bounds_alerts": alerts,
        "rule": rule.to_dict(),
        "contract": dict(contract.get("meta", {})),
        "baseline": {"format_version": baseline["format_version"], "rows": baseline["rows"]},
    }


# --------------------------------------------------------------------------------------------------
# Concept drift


def check_concept_drift(
    live_metric: float,
    reference_metric: float,
    *,
    higher_is_better: bool,
    n_labelled: int,
    min_labels: int = 200,
    max_drop: float = 0.05,
    too_good_jump: float = 0.15,
) -> dict:
    """Live metric on recently labelled data vs the champion's holdout metric.

    Relative change is computed as in ``evaluation.decide``: gain / |reference| (plain gain when the
    reference is 0), gain being oriented so positive is better. A drop beyond ``max_drop`` is
    ``concept_drift`` (retrain); a gain beyond ``too_good_jump`` is ``too_good`` (hold for review: a
    leak or a broken label feed is likelier than a better world), not a retrain.
    """
    base = {"live_metric": live_metric, "reference_metric": reference_metric, "n_labelled": n_labelled,
            "higher_is_better": higher_is_better, "min_labels": min_labels, "max_drop": max_drop,
            "too_good_jump": too_good_jump, "relative_change": None}  # fmt: skip
    if n_labelled < min_labels:
        return base | {
            "status": "insufficient_data",
            "reasons": [f"only {n_labelled} labelled rows; at least {min_labels} are needed to judge"],
        }
    if not (math.isfinite(live_metric) and math.isfinite(reference_metric)):
        return base | {
            "status": "insufficient_data",
            "reasons": [f"a metric is not a number (live {live_metric}, reference {reference_metric})"],
        }
    gain = (live_metric - reference_metric) if higher_is_better else (reference_metric - live_metric)
    relative = gain / abs(reference_metric) if reference_metric else gain
    base["relative_change"] = relative
    vs = f"live {live_metric:.4f} vs reference {reference_metric:.4f} on {n_labelled} labelled rows"
    if relative < -max_drop:
        return base | {
            "status": "concept_drift",
            "reasons": [f"{vs}: {-relative:.1%} worse, beyond the allowed {max_drop:.1%}; retrain"],
        }
    if relative > too_good_jump:
        return base | {
            "status": "too_good",
            "reasons": [
                f"{vs}: {relative:.1%} better, above the {too_good_jump:.0%} 'too good to be true' limit; "
                "hold for review (check for a leak or a broken label feed), do not retrain"
            ],
        }
    return base | {"status": "ok", "reasons": [f"{vs} ({relative:+.1%}), within limits"]}
