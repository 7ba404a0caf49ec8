"""The template registry: which templates a spec can pick (``discover``: the factory's, the data
scientists' folder's, the installed packages'), and which specs a folder template cannot build
(``check_builds``). A folder template is first imported and built in a child process
(``template_check``), so one that exits or hangs costs only its own models.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from model_factory.airflow.template_check import (
    CONTAINED,
    TemplateCheckUnavailableError,
    check_template,
    describe,
)
from model_factory.airflow.templates import (
    ENTRY_POINT_GROUP,
    SHIPPED,
    Template,
    from_module,
    is_file_template,
    load_file,
    templates_dir,
)
from model_factory.spec import LoadedSpec


@dataclass
class Registry:
    templates: dict[str, Template] = field(default_factory=dict)
    # A template that failed to load: its name (or file stem) -> why. Models using it get an
    # invalid_spec DAG saying so; nothing else is touched.
    broken: dict[str, str] = field(default_factory=dict)
    # A template that exits or hangs building some models: name -> {spec path: why}.
    unbuildable: dict[str, dict[str, str]] = field(default_factory=dict)

    def describe(self) -> list[tuple[str, str, str]]:
        ordered = sorted(self.templates.values(), key=lambda t: t.name)
        return [(t.name, t.origin, t.description) for t in ordered]


def _as_template(obj: Any, origin: str) -> Template:
    if isinstance(obj, Template):
        return obj
    if isinstance(obj, ModuleType):
        return from_module(obj, origin)
    raise TypeError(f"entry point must name a template module or a Template, got {type(obj).__name__}")


def _add(registry: Registry, template: Template) -> None:
    if template.name in registry.templates:
        raise ValueError(
            f"template name {template.name!r} is taken by {registry.templates[template.name].origin}"
        )
    registry.templates[template.name] = template


def discover(folder: Path | None = None, entry_points: bool = True) -> Registry:
    """Every template: the factory's, the folder's, the installed packages'."""
    registry = Registry()
    for name in SHIPPED:
        try:
            _add(
                registry,
                from_module(importlib.import_module(f"model_factory.airflow.templates.{name}"), "factory"),
            )
        except Exception as exc:
            registry.broken[name] = f"shipped template {name} failed to load: {describe(exc)}"
    folder = templates_dir() if folder is None else folder
    for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
        if path.name.startswith(("_", "test_")):
            continue
        try:
            import_failure, _ = check_template(path, [])  # in a child first: exit or hang costs it alone
            if import_failure:
                registry.broken[path.stem] = f"template file {path} failed to load: {import_failure}"
                continue
            _add(registry, load_file(path))
        except CONTAINED as exc:  # one broken template file stops no other template
            registry.broken[path.stem] = f"template file {path} failed to load: {describe(exc)}"
    if entry_points:
        from importlib.metadata import entry_points as found

        for point in found(group=ENTRY_POINT_GROUP):
            try:
                _add(registry, _as_template(point.load(), origin=f"entry point {point.value}"))
            except CONTAINED as exc:
                registry.broken[point.name] = f"entry point {point.name} = {point.value}: {describe(exc)}"
    return registry


def check_builds(registry: Registry, specs: list[LoadedSpec]) -> None:
    """Try each folder template's build() on its specs in a child process (cached by content):
    the specs it exits or hangs on are recorded in ``registry.unbuildable``."""
    by_template: dict[str, list[Path]] = {}
    for loaded in specs:
        template = registry.templates.get(loaded.spec.template)
        if template is not None and is_file_template(template):
            by_template.setdefault(template.name, []).append(loaded.path)
    for name, paths in by_template.items():
        try:
            import_failure, failures = check_template(Path(registry.templates[name].origin), paths)
        except TemplateCheckUnavailableError as exc:
            import_failure, failures = str(exc), {}
        if import_failure:
            failures = dict.fromkeys(paths, import_failure)
        registry.unbuildable[name] = {str(path): why for path, why in failures.items()}
