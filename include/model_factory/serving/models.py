"""A registered model version ready to serve: estimator, spec, and its signature's input fields.

Versions are loaded by number (``models:/<name>/<version>``), never by alias, so an alias that
moves during a load cannot mix two versions. Requests are checked against the MLflow signature,
then turned into the model input frame by ``features.prepare_features``: the same code as training.
"""

from __future__ import annotations

import math
import pickle
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from model_factory.io import attestation
from model_factory.pipeline.features import prepare_features
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec, SpecError, load_spec

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

NUMBER_TYPES = {"double", "float"}
INTEGER_TYPES = {"long", "integer"}


class LoadError(RuntimeError):
    """A version that cannot be served; the message says which and why."""


@dataclass(frozen=True)
class InputField:
    name: str
    type: str  # MLflow DataType name: double, long, string, boolean...
    required: bool = True


@dataclass(frozen=True, eq=False)
class LoadedVersion:
    model: str
    version: str
    run_id: str | None
    estimator: Any
    spec: ModelSpec
    inputs: tuple[InputField, ...]
    classes: tuple | None
    loaded_at: float
    load_seconds: float
    fast: Any = None  # fastpath.CompiledPredictor, compiled once at load; None: the pipeline serves
    serving_path: str = "pipeline"
    pickled_bytes: int = 0
    """Size of the pickled estimator: the base of the model store's resident-size estimate."""

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    @cached_property
    def _plain_kinds(self) -> tuple[tuple[str, type | tuple[type, ...]], ...]:
        """(name, the Python type a plain value of it has) per input, for :meth:`_plainly_fits`."""
        plain: dict[str, type | tuple[type, ...]] = {"boolean": bool}
        plain.update({t: (float, int) for t in NUMBER_TYPES})
        plain.update({t: int for t in INTEGER_TYPES})
        return tuple((f.name, plain.get(f.type, str)) for f in self.inputs)

    def _plainly_fits(self, instance: dict) -> bool:
        """The common case, decided in one pass: every input present (nothing else) with null or a
        plain value of its type. Anything else takes the full check, which names the problems."""
        if len(instance) != len(self._plain_kinds):
            return False
        for name, kind in self._plain_kinds:
            value = instance.get(name, _ABSENT)
            cls = type(value)
            if value is None:
                continue
            if kind is str or kind is bool:
                if cls is not kind:
                    return False
            elif cls is float:
                if kind is int or not math.isfinite(value):
                    return False
            elif cls is not int or not -_PLAIN_INT < value < _PLAIN_INT:  # bool is not int here
                return False
        return True

    def check(self, instance: Any) -> dict[str, Any]:
        """Problems with one instance against the signature: {} when fine.

        ``null`` is accepted for any field and means missing (the pipeline imputes it, as in
        training); absent and unknown fields are not.
        """
        if type(instance) is dict and self._plainly_fits(instance):
            return {}
        if not isinstance(instance, dict):
            return {"not_an_object": f"expected an object of features, got {type(instance).__name__}"}
        names = self.input_names
        missing = [n for n in names if n not in instance]
        extra = sorted(k for k in instance if k not in set(names))
        wrong = {}
        for spec_field in self.inputs:
            if spec_field.name in instance:
                problem = _type_problem(spec_field.type, instance[spec_field.name])
                if problem:
                    wrong[spec_field.name] = problem
        problems: dict[str, Any] = {}
        if missing:
            problems["missing"] = missing
        if extra:
            problems["extra"] = extra
        if wrong:
            problems["wrong_type"] = wrong
        return problems

    def predict(self, instances: list[dict]) -> list[dict]:
        """One output per instance: {"label", "probabilities", "score"} or {"value", "score"}."""
        if self.fast is not None and len(instances) == 1:
            values = self.fast.one_row(instances[0])
            if values is not None and not any(map(math.isnan, values)):  # NaN: numpy's argmax decides
                return [self._output(values)]
        if self.fast is not None:  # compiled at load, checked against the pipeline: no pandas
            outputs = self.fast.predict(instances)
        else:
            X = prepare_features(pd.DataFrame.from_records(instances, columns=self.input_names), self.spec)
            outputs = self.estimator.predict(X) if self.classes is None else self.estimator.predict_proba(X)
        if self.classes is None:
            values = np.asarray(outputs, dtype=float).reshape(-1)
            return [{"value": float(v), "score": float(v)} for v in values]
        proba = np.asarray(outputs, dtype=float)
        labels = self._labels
        out = []
        for row in proba:
            best = int(row.argmax())
            score = float(row[1]) if len(labels) == 2 else float(row[best])
            probabilities = {str(c): round(float(p), 6) for c, p in zip(labels, row, strict=True)}
            out.append({"label": labels[best], "score": score, "probabilities": probabilities})
        return out

    def _output(self, values: list[float]) -> dict:
        """:meth:`predict`'s output for one row given as plain floats (none NaN): the same
        numbers the numpy path gives (argmax is the first largest, as ``list.index(max)``)."""
        if self.classes is None:
            return {"value": values[0], "score": values[0]}
        labels = self._labels
        best = values.index(max(values))
        score = values[1] if len(labels) == 2 else values[best]
        probabilities = {key: round(p, 6) for key, p in zip(self._label_keys, values, strict=True)}
        return {"label": labels[best], "score": score, "probabilities": probabilities}

    @cached_property
    def _labels(self) -> list:
        return [_plain(c) for c in self.classes or ()]

    @cached_property
    def _label_keys(self) -> tuple[str, ...]:
        """The classes as the keys of ``probabilities``."""
        return tuple(str(c) for c in self._labels)

    def describe(self) -> dict:
        return {
            "version": self.version,
            "run_id": self.run_id,
            "task": self.spec.task,
            "inputs": [{"name": f.name, "type": f.type, "required": f.required} for f in self.inputs],
            "classes": list(self.classes) if self.classes is not None else None,
            "load_seconds": round(self.load_seconds, 4),
            "serving_path": self.serving_path,
        }


_ABSENT = object()
_PLAIN_INT = 1 << 1000  # integers this size are doubles without question (the full check decides larger)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _type_problem(expected: str, value: Any) -> str | None:
    if value is None:
        return None
    got = type(value).__name__
    numeric = expected in NUMBER_TYPES | INTEGER_TYPES
    if numeric and isinstance(value, int) and not isinstance(value, bool) and _out_of_range(value):
        return f"a {len(str(abs(value)))}-digit integer is out of the range of a double"
    if expected in NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {got} {_show(value)}"
        if not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
    elif expected in INTEGER_TYPES:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            return f"expected an integer, got {got} {_show(value)}"
    elif expected == "boolean":
        if not isinstance(value, bool):
            return f"expected true/false, got {got} {_show(value)}"
    elif not isinstance(value, str):
        return f"expected a string, got {got} {_show(value)}"
    return None


def _out_of_range(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return True
    return False


def _show(value: Any) -> str:
    """A short, safe rendering of a caller's value for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and _out_of_range(value):
        return f"<{len(str(abs(value)))}-digit integer>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_outcome(version: LoadedVersion | None, outcome: Any) -> tuple[Any, str | None]:
    """(the outcome as the model's own class value or a float, None) or (None, the problem).

    Classification: one of the classes the version was trained on, of the same type (``1`` for
    class 1, ``"setosa"`` for class "setosa"; never ``"yes"``, ``2`` or ``true`` for classes 0/1).
    Regression: a finite number. ``version`` None (nothing loaded to ask): any finite number or
    string.
    """
    if outcome is None:
        return None, "null is not an outcome"
    if isinstance(outcome, int) and not isinstance(outcome, bool) and _out_of_range(outcome):
        return None, f"{_show(outcome)} is out of range"
    if isinstance(outcome, float) and not math.isfinite(outcome):
        return None, f"{outcome!r} is not a finite number"
    if version is None:
        if isinstance(outcome, bool) or not isinstance(outcome, int | float | str):
            return None, f"expected a number or a string, got {type(outcome).__name__}"
        return outcome, None
    if version.classes is None:
        if isinstance(outcome, bool) or not isinstance(outcome, int | float):
            got = f"{type(outcome).__name__} {_show(outcome)}"
            return None, f"a regression model's outcome is a number, got {got}"
        return float(outcome), None
    for cls in version.classes:
        if _same_class(outcome, cls):
            return cls, None
    shown = list(version.classes[:20])
    return None, f"{_show(outcome)} is not one of the model's classes {shown}"


def _same_class(outcome: Any, cls: Any) -> bool:
    if isinstance(cls, bool) or isinstance(outcome, bool):
        return isinstance(cls, bool) and isinstance(outcome, bool) and cls == outcome
    if isinstance(cls, str) or isinstance(outcome, str):
        return isinstance(cls, str) and isinstance(outcome, str) and cls == outcome
    if isinstance(cls, int | float) and isinstance(outcome, int | float):
        return float(cls) == float(outcome)
    return False


def _spec_for(client: MlflowClient, model: str, run_id: str | None, settings: FactorySettings) -> ModelSpec:
    """The spec the version was trained with (its run's spec.json), else the spec file of that name."""
    import mlflow.artifacts

    errors = []
    if run_id:
        try:
            logged = mlflow.artifacts.load_dict(f"runs:/{run_id}/spec.json")
            return ModelSpec.model_validate(logged, context={"settings": settings})
        except Exception as exc:
            errors.append(f"run {run_id} spec.json: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    try:
        return load_spec(settings.specs_dir / f"{model}.yaml", settings)
    except SpecError as exc:
        errors.append(str(exc).splitlines()[0])
    raise LoadError(f"no usable spec for {model}: " + "; ".join(errors))


def load_version(client: MlflowClient, model: str, version: str, settings: FactorySettings) -> LoadedVersion:
    """Load ``model`` v``version`` fully (artifacts, estimator, spec, signature) or raise LoadError.

    Only through ``io.model_loading``: a version the factory did not bless, or not saved the way
    the factory saves (skops, types it trusts), is refused before anything is deserialised.
    """
    from model_factory.io.model_loading import ModelRefusedError, ModelUnavailableError, load_registered

    started = time.perf_counter()
    where = f"{model} v{version}"
    try:
        key = attestation.signing_key(settings)
        trusted = load_registered(client, model, str(version), code_dir=settings.specs_dir / "code", key=key)
    except (ModelRefusedError, ModelUnavailableError) as exc:
        raise LoadError(str(exc)) from exc
    estimator, signature = trusted.estimator, trusted.mlmodel.signature
    if signature is None or signature.inputs is None:
        raise LoadError(f"{where} was logged without an input signature; it cannot be checked or served")
    inputs = tuple(
        InputField(col.name, getattr(col.type, "name", str(col.type)), bool(getattr(col, "required", True)))
        for col in signature.inputs.inputs
    )
    spec = _spec_for(client, model, trusted.run_id, settings)
    if [f.name for f in inputs] != spec.features.all:
        raise LoadError(
            f"{where}: signature inputs {[f.name for f in inputs]} differ from the spec's features "
            f"{spec.features.all}"
        )
    classes = None
    if spec.task == "classification":
        if not hasattr(estimator, "predict_proba"):
            raise LoadError(f"{where}: a classifier without predict_proba")
        classes = tuple(_plain(c) for c in estimator.classes_)
    from model_factory.serving.fastpath import compile_version

    fast, serving_path = compile_version(estimator, spec)
    pickled_bytes = len(pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL))
    return LoadedVersion(
        model=model,
        version=str(version),
        run_id=trusted.run_id,
        fast=fast,
        serving_path=serving_path,
        pickled_bytes=pickled_bytes,
        estimator=estimator,
        spec=spec,
        inputs=inputs,
        classes=classes,
        loaded_at=time.time(),
        load_seconds=time.perf_counter() - started,
    )
