"""Class labels: what a classification target may hold and which classes a model knows.

Labels are whole numbers (``0/1``, ``0..k-1``, ``-1/+1``) or class names (``"setosa"``). A
number with a fraction (``0.9``), ``inf`` or a boolean mixed with names is not a label: it is
refused, never truncated. A model's class set comes from the spec (``target.classes``) or,
when the spec lists none, is learnt from the first training's data and kept in the store
(``<store>/labels/<model>/classes.json``); validation then refuses a batch with a class
outside that set, so an unseen class is a quarantine reason, not an error in ``evaluate``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from model_factory.errors import LabelError
from model_factory.io import storage
from model_factory.spec import ModelSpec


def canonical(value: Any) -> str | None:
    """One text form per label, so 1, 1.0 and "1" are the same class; None: not a label."""
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if not np.isfinite(value) or not float(value).is_integer():
            return None
        return str(int(value))
    if isinstance(value, str):
        return value
    return None


def canonical_values(values: pd.Series) -> pd.Series:
    """``canonical`` of every value, computed once per distinct value (a target column holds a
    handful of classes in a million rows)."""
    distinct = values.dropna().unique()
    return values.map({value: canonical(value) for value in distinct})


def bad_labels(values: pd.Series) -> pd.Series:
    """Mask of non-null values that are not labels (fractions, inf, other objects)."""
    present = values.notna()
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
        return pd.Series(False, index=values.index)
    if pd.api.types.is_float_dtype(values):
        numbers = values.astype("float64")
        return present & ~(np.isfinite(numbers) & (numbers == np.floor(numbers)))
    return present & canonical_values(values).isna()


def outside(values: pd.Series, classes: list[Any]) -> pd.Series:
    """Mask of labels (valid ones) that are not in ``classes``."""
    known = {canonical(c) for c in classes}
    valid = values.notna() & ~bad_labels(values)
    return valid & ~canonical_values(values).isin(known)


def as_labels(values: pd.Series, column: str) -> pd.Series:
    """The target as the estimator gets it: int64 for whole numbers, str for class names.

    Raises LabelError (no retry fixes it) naming the column and examples of what is wrong.
    """
    bad = bad_labels(values)
    if values.isna().any():
        raise LabelError(f"target {column!r} has {int(values.isna().sum())} missing labels")
    if bad.any():
        sample = values[bad].head(5).tolist()
        raise LabelError(
            f"target {column!r} has {int(bad.sum())} values that are not class labels, e.g. "
            f"{sample}: labels are whole numbers or class names (0.9 is not truncated to 0)"
        )
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.astype("int64")
    # class names (numbers mixed in, e.g. batches written differently, get one text form)
    return canonical_values(values).astype(object)


def classes_uri(store_uri: str, model: str) -> str:
    return storage.join(store_uri, "labels", model, "classes.json")


def known_classes(
    spec: ModelSpec, store_uri: str, s3: storage.S3Options | None = None
) -> tuple[list[Any] | None, str]:
    """The model's class set and where it comes from (``target.classes`` or the learnt file);
    (None, "") before the first training of a model whose spec lists no classes."""
    if spec.task != "classification":
        return None, ""
    if spec.target_classes:
        return list(spec.target_classes), "target.classes in the spec"
    uri = classes_uri(store_uri, spec.name)
    if storage.exists(uri, s3):
        learnt = storage.read_json(uri, s3)
        return list(learnt["classes"]), f"learnt at the first training ({learnt.get('ds', '?')})"
    return None, ""


def learn_classes(
    spec: ModelSpec, y: pd.Series, ds: str, store_uri: str, s3: storage.S3Options | None = None
) -> list[Any]:
    """Check the training labels against the class set, or record it at the first training.

    Raises LabelError for a label outside a known set (validation normally stops such a batch
    first; this guards batches validated before the set was known)."""
    present = sorted(pd.unique(y).tolist(), key=str)
    known, origin = known_classes(spec, store_uri, s3)
    if len(present) < 2:  # with or without a known set: no retry adds a second class
        raise LabelError(
            f"target {spec.target!r} has one class only ({present}) in the training data of "
            f"{spec.name} on {ds}: a classifier needs at least two; widen training.window_batches "
            "or wait for a batch with the other classes"
        )
    if known is None:
        storage.write_json(
            classes_uri(store_uri, spec.name), {"model": spec.name, "ds": ds, "classes": present}, s3
        )
        return present
    stray = sorted({canonical(v) for v in present} - {canonical(c) for c in known}, key=str)
    if stray:
        raise LabelError(
            f"target {spec.target!r} has classes {stray} outside the model's classes {known} "
            f"({origin}); list every class in target.classes to add one"
        )
    return known
