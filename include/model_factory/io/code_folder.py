"""The data scientists' code folder as an importable package, and the classes it defines.

The folder is importable as ``model_factory_code``, so a saved model that refers to a class of
the code folder (``model_factory_code.features.RatioFeatures``) loads wherever the folder is
installed with :func:`install_code_package`. Training (``pipeline.custom_code``) and the safe
loader (``io.model_loading``) both use it.
"""

from __future__ import annotations

import inspect
import sys
import types
from pathlib import Path

CODE_PACKAGE = "model_factory_code"


def install_code_package(code_dir: Path | str) -> types.ModuleType:
    """Make ``model_factory_code.<module>`` import ``<code_dir>/<module>.py`` (and only that)."""
    code_dir = str(Path(code_dir).resolve())
    package = sys.modules.get(CODE_PACKAGE)
    if package is None or list(getattr(package, "__path__", [])) != [code_dir]:
        for name in [n for n in sys.modules if n.startswith(CODE_PACKAGE + ".")]:
            del sys.modules[name]
        package = types.ModuleType(CODE_PACKAGE, "The data scientists' code folder")
        package.__path__ = [code_dir]
        package.__file__ = None
        sys.modules[CODE_PACKAGE] = package
    return package


def defined_types(module: types.ModuleType) -> list[str]:
    """The classes the code module itself defines (what the saved model may trust beyond ours)."""
    return sorted(
        f"{obj.__module__}.{obj.__qualname__}"
        for obj in vars(module).values()
        if inspect.isclass(obj) and obj.__module__ == module.__name__
    )
