"""A LoadedVersion for tests of what sits around a model (the store, the request path, the fast
path): nothing loaded, and each test names what it changes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from model_factory.serving.models import LoadedVersion

NOTHING_LOADED = LoadedVersion(
    model="m",
    version="1",
    run_id=None,
    estimator=None,
    spec=None,  # the tests that need a spec name it
    inputs=(),
    classes=None,
    loaded_at=0.0,
    load_seconds=0.0,
)
"""v1 of model ``m``: no estimator, spec, inputs or classes, served by the pipeline."""


def loaded_version(model: str = "m", version: str = "1", **changes: Any) -> LoadedVersion:
    """``NOTHING_LOADED`` as ``model`` v``version`` with ``changes`` (field names of ``LoadedVersion``)."""
    return replace(NOTHING_LOADED, model=model, version=version, **changes)
