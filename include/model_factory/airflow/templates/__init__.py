"""The template registry: named pipeline shapes a spec picks with ``template:``.

A template is a module (or a :class:`Template` object) with

- ``NAME``: what specs write in ``template:``;
- ``DESCRIPTION``: one line;
- ``Params``: a pydantic model for the spec's ``template_params:`` (checked at parse time);
- ``build(loaded, params) -> list[DAG]``: the model's DAGs, every id starting ``<model>__``;
- optionally ``check(spec) -> list[(field, reason)]``: what else the template needs of a spec.

Found in three places, later ones unable to replace earlier names: the factory's own
(this package), the data scientists' folder (``FACTORY_TEMPLATES_DIR``, default
``include/templates/``: every ``*.py`` there, loaded by file path, never by import path),
and installed packages through the ``model_factory.templates`` entry-point group.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from model_factory.settings import FactorySettings
from model_factory.spec import LoadedSpec, ModelSpec
from pydantic import BaseModel, ConfigDict

ENTRY_POINT_GROUP = "model_factory.templates"
SHIPPED = ("retrain", "tuned_retrain", "batch_scoring", "custom_training")
USER_PACKAGE = "model_factory_user_templates"


class NoParams(BaseModel):
    """A template without parameters: ``template_params`` must be empty."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    params: type[BaseModel]
    build: Callable[[LoadedSpec, Any], list]
    check: Callable[[ModelSpec], list[tuple[str, str]]] | None = None
    origin: str = "factory"


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


def templates_dir() -> Path:
    """Data scientists' templates: ``FACTORY_TEMPLATES_DIR``, else ``templates/`` beside the specs
    folder (``FactorySettings.templates_folder``)."""
    from model_factory.settings import FactorySettings

    return FactorySettings.from_env().templates_folder


def from_module(module: ModuleType, origin: str) -> Template:
    """A template module's NAME, DESCRIPTION, Params, build (and check) as a Template."""
    missing = [attr for attr in ("NAME", "DESCRIPTION", "build") if not hasattr(module, attr)]
    if missing:
        raise TypeError(f"a template module needs {missing} (see include/templates/README.md)")
    params = getattr(module, "Params", NoParams)
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise TypeError("Params must be a pydantic BaseModel subclass")
    return Template(
        name=str(module.NAME),
        description=str(module.DESCRIPTION),
        params=params,
        build=module.build,
        check=getattr(module, "check", None),
        origin=origin,
    )


def _as_template(obj: Any, origin: str) -> Template:
    if isinstance(obj, Template):
        return obj
    if isinstance(obj, ModuleType):
        return from_module(obj, origin)
    raise TypeError(f"entry point must name a template module or a Template, got {type(obj).__name__}")


def load_file(path: Path) -> Template:
    """Import one template file by its path (as ``model_factory_user_templates.<stem>``)."""
    name = f"{USER_PACKAGE}.{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return from_module(module, origin=str(path))


def _add(registry: Registry, template: Template) -> None:
    if template.name in registry.templates:
        raise ValueError(
            f"template name {template.name!r} is taken by {registry.templates[template.name].origin}"
        )
    registry.templates[template.name] = template


def _reason(exc: BaseException) -> str:
    from model_factory.airflow.template_check import describe

    return describe(exc)


def discover(folder: Path | None = None, entry_points: bool = True) -> Registry:
    """Every template: the factory's, the folder's, the installed packages'."""
    from model_factory.airflow.template_check import CONTAINED, check_template

    registry = Registry()
    for name in SHIPPED:
        try:
            _add(registry, from_module(importlib.import_module(f"{__name__}.{name}"), "factory"))
        except Exception as exc:
            registry.broken[name] = f"shipped template {name} failed to load: {_reason(exc)}"
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
            registry.broken[path.stem] = f"template file {path} failed to load: {_reason(exc)}"
    if entry_points:
        from importlib.metadata import entry_points as found

        for point in found(group=ENTRY_POINT_GROUP):
            try:
                _add(registry, _as_template(point.load(), origin=f"entry point {point.value}"))
            except CONTAINED as exc:
                registry.broken[point.name] = f"entry point {point.name} = {point.value}: {_reason(exc)}"
    return registry


def is_file_template(template: Template) -> bool:
    """Loaded from the data scientists' folder (its origin is the file's path)."""
    return template.origin.endswith(".py") and Path(template.origin).is_file()


def check_builds(registry: Registry, specs: list[LoadedSpec]) -> None:
    """Try each folder template's build() on its specs in a child process (cached by content):
    the specs it exits or hangs on are recorded in ``registry.unbuildable``."""
    from model_factory.airflow.template_check import TemplateCheckUnavailableError, check_template

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


def check_params(
    template: Template, spec: ModelSpec, settings: FactorySettings
) -> tuple[BaseModel | None, list[tuple[str, str]]]:
    """The spec's ``template_params`` as the template's Params, or the problems (field, reason)."""
    from pydantic import ValidationError

    problems: list[tuple[str, str]] = []
    params = None
    try:
        params = template.params.model_validate(spec.template_params, context={"settings": settings})
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            reason = (
                "unknown field"
                if err["type"] == "extra_forbidden"
                else err["msg"].removeprefix("Value error, ")
            )
            problems.append((f"template_params.{where}" if where else "template_params", reason))
    if template.check is not None:
        problems += template.check(spec)
    return params, problems
