"""The factory's trust policy for model files: which types a saved model may hold.

Training saves only models whose types pass :func:`factory_trusts`; the safe loader
(:mod:`model_factory.io.model_loading`) loads only those. One rule, read by both.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

# Types a fitted pipeline may hold beyond skops' defaults whatever the estimator: numpy's
# dtype (encoders), and what HistGradientBoosting keeps (a partial of check_array).
BASE_TRUSTED_TYPES = ("numpy.dtype", "functools.partial", "sklearn.utils.validation.check_array")


def factory_trusts(name: str, extra: set[str] | frozenset[str] = frozenset()) -> bool:
    """The factory's own rule (the same as training's ``trusted_types``): its base types, the
    code folder's classes in ``extra``, and scikit-learn's classes (classes only: a reference to
    any other scikit-learn function in a model file is not something the factory writes)."""
    if name in BASE_TRUSTED_TYPES or name in extra:
        return True
    return name.startswith("sklearn.") and is_class(name)


def is_class(name: str) -> bool:
    """Whether the dotted ``name`` is an importable class (importing its module, never calling it)."""
    module_name, _, attr = name.rpartition(".")
    while module_name:
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            module_name, _, head = module_name.rpartition(".")
            attr = f"{head}.{attr}"
            continue
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        return inspect.isclass(obj)
    return False
