"""A served version compiled once at load into a vectorised predictor that needs no pandas.

The factory's pipelines are ``Pipeline([("preprocess", ColumnTransformer), ("model", estimator)])``
(``training.build_pipeline``). ``compile_pipeline`` reads the fitted transformers into numpy arrays
and dictionaries, so a request's rows (JSON objects) become the model matrix directly:

* ``SimpleImputer`` -> NaN replaced by the fitted statistics; ``StandardScaler`` -> (x - mean) / scale;
  ``"passthrough"`` numeric columns as float64;
* ``OneHotEncoder`` (no drop, no infrequent categories; unknown -> all zeros) and ``OrdinalEncoder``
  (unknown -> its ``unknown_value``) -> one dictionary lookup per value;
* linear models (``coef_``/``intercept_``: LogisticRegression, LinearRegression, Ridge, ElasticNet)
  are evaluated in numpy too: ``X @ coef.T + intercept``, then the logistic function (binary) or
  softmax (multiclass), as scikit-learn 1.9 does;
* any other final estimator (tree ensembles, gradient boosting) gets the dense matrix: the same
  numbers the ColumnTransformer would hand it, without the DataFrame round trip.

Feature values are converted as ``features.prepare_features`` does (numbers as float64, null as
NaN; categories as text, null as ``__missing__``). Each compiled predictor is checked against the
pipeline on probe rows built from the fitted transformers (every category, an unseen one, nulls,
values around the training statistics); it is used only if classes agree and outputs are within
``TOLERANCE``. Otherwise the version is served by the pipeline, and the status says why.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit

TOLERANCE = 1e-6  # largest |difference| of a probability or a regression output vs the pipeline
PROBE_ROWS = 64


class NotCompilableError(ValueError):
    """The pipeline has a shape the fast path does not evaluate; the message says which part."""


@dataclass
class _NumericBlock:
    columns: list[str]
    fill: np.ndarray | None = None  # imputer statistics (NaN -> these)
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None


@dataclass
class _CategoryBlock:
    columns: list[str]
    lookups: list[dict[str, int]]  # category -> output offset (one-hot) or code (ordinal)
    one_hot: bool
    width: int
    unknown: float = math.nan  # ordinal code for an unseen category


@dataclass
class CompiledPredictor:
    """Rows (dicts of raw feature values) in, probabilities or values out."""

    numeric: list[str]
    categorical: list[str]
    blocks: list[tuple[int, Any]]  # (first output column, block)
    width: int
    estimator: Any
    classification: bool
    coef: np.ndarray | None = None  # (outputs, width): linear models evaluated here
    intercept: np.ndarray | None = None
    description: str = ""
    max_difference: float | None = field(default=None)
    # One row is built in plain Python: numpy's per-call overhead on 1 x width arrays cost more
    # than the arithmetic. Set up by ``_plan_rows`` at compile time.
    _plan: list[tuple] = field(default_factory=list, repr=False)
    _coef_rows: list[list[float]] = field(default_factory=list, repr=False)
    _intercepts: list[float] = field(default_factory=list, repr=False)

    def _plan_rows(self) -> None:
        """(kind, column, output index, ...) per input column, for :meth:`dense_row`."""
        plan: list[tuple] = []
        for start, block in self.blocks:
            if isinstance(block, _NumericBlock):
                for j, col in enumerate(block.columns):
                    fill = float(block.fill[j]) if block.fill is not None else None
                    mean = float(block.mean[j]) if block.mean is not None else None
                    scale = float(block.scale[j]) if block.scale is not None else None
                    plan.append((_NUMBER, col, start + j, fill, mean, scale))
            elif block.one_hot:
                for col, lookup in zip(block.columns, block.lookups, strict=True):
                    plan.append((_ONE_HOT, col, start, lookup, None, None))
            else:
                for j, (col, lookup) in enumerate(zip(block.columns, block.lookups, strict=True)):
                    plan.append((_ORDINAL, col, start + j, lookup, block.unknown, None))
        self._plan = plan
        if self.coef is not None and self.intercept is not None:
            self._coef_rows = [[float(c) for c in row] for row in self.coef]
            self._intercepts = [float(b) for b in self.intercept]

    def dense_row(self, row: dict) -> list[float]:
        """One row of :meth:`matrix`, as floats: the same operations in the same order."""
        x = [0.0] * self.width
        isfinite = math.isfinite
        for kind, col, index, a, b, c in self._plan:
            if kind is _NUMBER:
                value = row.get(col)
                if type(value) is not float or not isfinite(value):  # a finite float is itself
                    value = _number(value)
                if a is not None and value != value:  # NaN: the imputer's statistic
                    value = a
                if b is not None:
                    value = value - b
                if c is not None:
                    value = value / c
                x[index] = value
            else:
                value = row.get(col)
                if type(value) is not str:  # text is its own category
                    value = _category(value)
                if kind is _ONE_HOT:
                    offset = a.get(value)
                    if offset is not None:
                        x[index + offset] = 1.0
                else:
                    x[index] = a.get(value, b)
        return x

    def one_row(self, row: dict) -> list[float] | None:
        """One row's class probabilities (or its value, as a one-item list) as plain floats, when
        the model is linear (evaluated here); None otherwise (:meth:`predict` then)."""
        if not (self._plan and self._coef_rows):
            return None
        x = self.dense_row(row)
        scores = [
            intercept + sum(map(operator.mul, coefs, x))
            for coefs, intercept in zip(self._coef_rows, self._intercepts, strict=True)
        ]
        if not self.classification:
            return scores
        if len(scores) == 1:
            positive = _logistic(scores[0])
            return [1.0 - positive, positive]
        top = max(scores)
        exps = [math.exp(v - top) for v in scores]
        total = sum(exps)
        return [e / total for e in exps]

    def _predict_one_linear(self, row: dict) -> np.ndarray:
        values = self.one_row(row)
        return np.array([values] if self.classification else values)

    def matrix(self, rows: list[dict]) -> np.ndarray:
        """The dense model matrix the ColumnTransformer would produce for these rows."""
        n = len(rows)
        X = np.zeros((n, self.width), dtype=np.float64)
        for start, block in self.blocks:
            if isinstance(block, _NumericBlock):
                values = np.array(
                    [[_number(row.get(c)) for c in block.columns] for row in rows], dtype=np.float64
                ).reshape(n, len(block.columns))
                if block.fill is not None:
                    values = np.where(np.isnan(values), block.fill, values)
                if block.mean is not None:
                    values = values - block.mean
                if block.scale is not None:
                    values = values / block.scale
                X[:, start : start + len(block.columns)] = values
            elif block.one_hot:
                for i, row in enumerate(rows):
                    for col, lookup in zip(block.columns, block.lookups, strict=True):
                        offset = lookup.get(_category(row.get(col)))
                        if offset is not None:
                            X[i, start + offset] = 1.0
            else:
                for j, (col, lookup) in enumerate(zip(block.columns, block.lookups, strict=True)):
                    X[:, start + j] = [lookup.get(_category(row.get(col)), block.unknown) for row in rows]
        return X

    def predict(self, rows: list[dict]) -> np.ndarray:
        """Class probabilities (n, classes) for a classifier, values (n,) for a regressor."""
        if len(rows) == 1 and self._plan:
            if self._coef_rows:
                return self._predict_one_linear(rows[0])
            X = np.array([self.dense_row(rows[0])], dtype=np.float64)
        else:
            X = self.matrix(rows)
        if self.coef is None:
            if self.classification:
                return np.asarray(self.estimator.predict_proba(X), dtype=float)
            return np.asarray(self.estimator.predict(X), dtype=float).reshape(-1)
        scores = X @ self.coef.T + self.intercept
        if not self.classification:
            return scores.reshape(-1)
        if scores.shape[1] == 1:
            positive = expit(scores[:, 0])  # as scikit-learn: no overflow warning at extremes
            return np.column_stack([1.0 - positive, positive])
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        return scores / scores.sum(axis=1, keepdims=True)


_NUMBER, _ONE_HOT, _ORDINAL = "number", "one_hot", "ordinal"
_MISSING_CATEGORY: str | None = None  # features.MISSING_CATEGORY, imported on first use


def _logistic(score: float) -> float:
    """scipy's expit for one float, without overflow at either end."""
    if score >= 0:
        return 1.0 / (1.0 + math.exp(-score))
    e = math.exp(score)
    return e / (1.0 + e)


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan  # prepare_features' to_numeric(errors="coerce")
    return number if math.isfinite(number) else math.nan


def _category(value: Any) -> str:
    global _MISSING_CATEGORY
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if _MISSING_CATEGORY is None:
            from model_factory.pipeline.features import MISSING_CATEGORY

            _MISSING_CATEGORY = MISSING_CATEGORY
        return _MISSING_CATEGORY
    return value if type(value) is str else str(value)


def _numeric_block(transformer: Any, columns: list[str]) -> _NumericBlock:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    block = _NumericBlock(columns)
    steps = [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]
    for step in steps:
        if (isinstance(step, str) and step == "passthrough") or step is None:
            continue
        if isinstance(step, FunctionTransformer) and step.func is None:  # a fitted "passthrough"
            continue
        if isinstance(step, SimpleImputer) and block.mean is None and block.fill is None:
            if step.add_indicator or len(step.statistics_) != len(columns):
                raise NotCompilableError("SimpleImputer with missing-value indicators")
            if np.isnan(step.statistics_.astype(float)).any():
                raise NotCompilableError("SimpleImputer dropped an all-empty column")
            block.fill = step.statistics_.astype(np.float64)
        elif isinstance(step, StandardScaler) and block.mean is None:
            block.mean = step.mean_.astype(np.float64) if step.with_mean else None
            block.scale = step.scale_.astype(np.float64) if step.with_std else None
            if block.mean is None:
                block.mean = np.zeros(len(columns))
        else:
            raise NotCompilableError(f"numeric step {type(step).__name__} is not compiled")
    return block


def _category_block(transformer: Any, columns: list[str]) -> _CategoryBlock:
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if isinstance(transformer, OneHotEncoder):
        if transformer.drop_idx_ is not None or getattr(transformer, "_infrequent_enabled", False):
            raise NotCompilableError("OneHotEncoder with drop or infrequent categories")
        lookups, offset = [], 0
        for categories in transformer.categories_:
            lookups.append({str(c): offset + i for i, c in enumerate(categories)})
            offset += len(categories)
        return _CategoryBlock(columns, lookups, one_hot=True, width=offset)
    if isinstance(transformer, OrdinalEncoder):
        if getattr(transformer, "_infrequent_enabled", False):
            raise NotCompilableError("OrdinalEncoder with infrequent categories")
        unknown = transformer.unknown_value if transformer.handle_unknown == "use_encoded_value" else None
        if unknown is None:
            raise NotCompilableError("OrdinalEncoder that raises on unknown categories")
        lookups = [{str(c): i for i, c in enumerate(cats)} for cats in transformer.categories_]
        return _CategoryBlock(columns, lookups, one_hot=False, width=len(columns), unknown=float(unknown))
    raise NotCompilableError(f"categorical transformer {type(transformer).__name__} is not compiled")


def compile_pipeline(pipeline: Any, numeric: list[str], categorical: list[str]) -> CompiledPredictor:
    """The fast predictor for a fitted factory pipeline, or ``NotCompilableError`` naming the part."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        raise NotCompilableError(f"{type(pipeline).__name__} is not a two-step (preprocess, model) Pipeline")
    preprocess, estimator = pipeline.steps[0][1], pipeline.steps[1][1]
    if not isinstance(preprocess, ColumnTransformer):
        raise NotCompilableError(f"preprocessing {type(preprocess).__name__} is not a ColumnTransformer")
    if getattr(preprocess, "_sklearn_output_config", {}).get("transform") not in (None, "default"):
        raise NotCompilableError("ColumnTransformer with a pandas/polars output")
    blocks: list[tuple[int, Any]] = []
    width = 0
    for name, transformer, columns in preprocess.transformers_:
        if (isinstance(transformer, str) and transformer == "drop") or (
            name == "remainder" and not len(columns)
        ):
            continue
        if name == "remainder":
            raise NotCompilableError("ColumnTransformer remainder columns")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise NotCompilableError(f"transformer {name!r} selects columns by position or callable")
        if not columns:
            continue
        if set(columns) <= set(numeric):
            block: Any = _numeric_block(transformer, columns)
            size = len(columns)
        elif set(columns) <= set(categorical):
            block = _category_block(transformer, columns)
            size = block.width
        else:
            raise NotCompilableError(f"transformer {name!r} mixes numeric and categorical columns")
        blocks.append((width, block))
        width += size
    if width != getattr(estimator, "n_features_in_", width):
        raise NotCompilableError(
            f"preprocessing gives {width} columns, the model expects {estimator.n_features_in_}"
        )
    classification = hasattr(estimator, "predict_proba")
    compiled = CompiledPredictor(numeric, categorical, blocks, width, estimator, classification)
    coef, intercept = getattr(estimator, "coef_", None), getattr(estimator, "intercept_", None)
    linear = type(estimator).__name__ in ("LogisticRegression", "LinearRegression", "Ridge", "ElasticNet")
    if linear and coef is not None and intercept is not None:
        compiled.coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
        compiled.intercept = np.atleast_1d(np.asarray(intercept, dtype=np.float64))
        if (
            classification
            and len(estimator.classes_) > 2
            and compiled.coef.shape[0] != len(estimator.classes_)
        ):
            raise NotCompilableError("multiclass linear model without one row of coefficients per class")
        compiled.description = f"numpy: preprocessing and {type(estimator).__name__} evaluated in numpy"
    else:
        compiled.description = (
            f"numpy preprocessing; {type(estimator).__name__} called on the dense matrix (no pandas)"
        )
    compiled._plan_rows()
    return compiled


def probe_rows(compiled: CompiledPredictor, n: int = PROBE_ROWS, seed: int = 0) -> list[dict]:
    """Rows that exercise every category, an unseen one, nulls and values around the statistics."""
    rng = np.random.default_rng(seed)
    centre: dict[str, float] = {}
    spread: dict[str, float] = {}
    choices: dict[str, list[Any]] = {}
    for _, block in compiled.blocks:
        if isinstance(block, _NumericBlock):
            for i, col in enumerate(block.columns):
                centre[col] = float(block.fill[i]) if block.fill is not None else 0.0
                if block.mean is not None:
                    centre[col] = float(block.mean[i])
                spread[col] = float(block.scale[i]) if block.scale is not None else max(1.0, abs(centre[col]))
        else:
            for col, lookup in zip(block.columns, block.lookups, strict=True):
                choices[col] = [*lookup, "never-seen-in-training", None]
    rows = []
    for k in range(n):
        row: dict[str, Any] = {}
        for col in compiled.numeric:
            if k % 7 == 3 or col not in centre:
                row[col] = None
            else:
                row[col] = round(centre[col] + spread[col] * float(rng.normal(0, 1.5)), 3)
        for col in compiled.categorical:
            options = choices.get(col, [None])
            row[col] = (
                options[k % len(options)] if k < 2 * len(options) else options[rng.integers(len(options))]
            )
        rows.append(row)
    return rows


def agreement(compiled: CompiledPredictor, pipeline: Any, rows: list[dict], spec: Any) -> float:
    """Largest |difference| between the compiled outputs and the pipeline's on ``rows``; raises
    ``NotCompilableError`` when predicted classes differ."""
    import pandas as pd
    from model_factory.pipeline.features import prepare_features

    frame = prepare_features(
        pd.DataFrame.from_records(rows, columns=[*compiled.numeric, *compiled.categorical]), spec
    )
    fast = compiled.predict(rows)
    one_at_a_time = np.concatenate([compiled.predict([row]) for row in rows])  # the single-row path
    if compiled.classification:
        slow = np.asarray(pipeline.predict_proba(frame), dtype=float)
        if (fast.argmax(axis=1) != slow.argmax(axis=1)).any() and np.abs(fast - slow).max() > TOLERANCE:
            raise NotCompilableError("predicted classes differ from the pipeline's")
    else:
        slow = np.asarray(pipeline.predict(frame), dtype=float).reshape(-1)
    if fast.shape != slow.shape or one_at_a_time.shape != slow.shape:
        raise NotCompilableError(f"output shape {fast.shape} differs from the pipeline's {slow.shape}")
    if not fast.size:
        return 0.0
    return float(max(np.max(np.abs(fast - slow)), np.max(np.abs(one_at_a_time - slow))))


def compile_version(pipeline: Any, spec: Any) -> tuple[CompiledPredictor | None, str]:
    """(predictor or None, status text): compiled and checked, or why the pipeline serves it."""
    try:
        compiled = compile_pipeline(pipeline, list(spec.features.numeric), list(spec.features.categorical))
        difference = agreement(compiled, pipeline, probe_rows(compiled), spec)
    except NotCompilableError as exc:
        return None, f"pipeline (not compiled: {exc})"
    except Exception as exc:  # a shape we misread: serve with the pipeline, say so
        return None, f"pipeline (compiling failed: {type(exc).__name__}: {str(exc)[:200]})"
    if not difference <= TOLERANCE:
        return None, f"pipeline (compiled outputs differ by {difference:.2g} > {TOLERANCE:g} on probe rows)"
    compiled.max_difference = difference
    return compiled, f"compiled ({compiled.description}; max |difference| {difference:.1g} on probe rows)"
