"""The data scientist's own training code (template ``custom_training``).

``estimator: {factory: "module:function"}`` names a function in ``code/<module>.py`` beside the
specs. It is loaded by file path (never from an arbitrary import path), only inside the train
task, and must return a scikit-learn-compatible estimator or pipeline taking the factory's
prepared feature frame. The factory keeps splitting, signature, baseline, lineage (the code
file's sha256 is recorded), gates and registry; the saved model trusts exactly the classes the
code folder defines, on top of the factory's own list.
"""

from __future__ import annotations

import hashlib
import importlib
import types
from pathlib import Path
from typing import Any

from model_factory.io import tag_schema
from model_factory.io.code_folder import CODE_PACKAGE, defined_types, install_code_package
from model_factory.pipeline.training import Fitted
from model_factory.spec import ModelSpec


class CustomCodeError(ValueError):
    """The data scientist's code cannot be used: names the file, the field and the reason."""


def code_file(spec: ModelSpec, code_dir: Path | str) -> Path:
    module = (spec.estimator.factory or "").partition(":")[0]
    return Path(code_dir) / f"{module}.py"


def _fail(spec: ModelSpec, path: Path, reason: str) -> CustomCodeError:
    return CustomCodeError(
        f"{path} (estimator.factory {spec.estimator.factory!r} of model {spec.name!r}): {reason}"
    )


def load_factory(spec: ModelSpec, code_dir: Path | str) -> tuple[Any, types.ModuleType, Path]:
    """The factory function, its module and file; CustomCodeError when any is missing."""
    module_name, _, function_name = (spec.estimator.factory or "").partition(":")
    path = code_file(spec, code_dir)
    if not path.is_file():
        raise _fail(spec, path, f"no such file: put {module_name}.py in {code_dir}")
    install_code_package(code_dir)
    try:
        module = importlib.import_module(f"{CODE_PACKAGE}.{module_name}")
    except Exception as exc:
        raise _fail(spec, path, f"importing it raised {type(exc).__name__}: {exc}") from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise _fail(spec, path, f"defines no function {function_name!r}")
    return function, module, path


def check_estimator(obj: Any) -> str | None:
    """Why ``obj`` is not a scikit-learn-compatible estimator, or None."""
    needed = ("fit", "predict", "get_params", "set_params")
    missing = [m for m in needed if not callable(getattr(obj, m, None))]
    if missing:
        return f"returned {type(obj).__name__}, not a scikit-learn estimator (no {', '.join(missing)})"
    return None


def fit_custom(spec: ModelSpec, X_train, y_train, code_dir: Path | str) -> Fitted:
    """Build the estimator with the data scientist's factory (``estimator.params`` as keyword
    arguments), check it, fit it on the factory's training part."""
    function, module, path = load_factory(spec, code_dir)
    try:
        estimator = function(**spec.estimator.params)
    except Exception as exc:
        raise _fail(spec, path, f"calling it raised {type(exc).__name__}: {exc}") from exc
    problem = check_estimator(estimator)
    if problem:
        raise _fail(spec, path, problem)
    if spec.task == "classification" and not callable(getattr(estimator, "predict_proba", None)):
        raise _fail(spec, path, "a classifier must have predict_proba (the gates and the canary use it)")
    try:
        estimator.fit(X_train, y_train)
    except Exception as exc:
        raise _fail(spec, path, f"fit raised {type(exc).__name__}: {exc}") from exc
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return Fitted(
        model=estimator,
        params={"code.factory": spec.estimator.factory, "code.estimator": type(estimator).__name__},
        tags={
            tag_schema.CODE_FILE: path.name,
            tag_schema.CODE_SHA256: sha256,
            tag_schema.CODE_MODULE: module.__name__,
        },
        trusted_types=defined_types(module),
    )
