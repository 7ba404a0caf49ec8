"""What a template is: a named pipeline shape a spec picks with ``template:``.

A template is a module (or a :class:`Template` object) with

- ``NAME``: what specs write in ``template:``;
- ``DESCRIPTION``: one line;
- ``Params``: a pydantic model for the spec's ``template_params:`` (checked at parse time,
  ``check_params``);
- ``build(loaded, params) -> list[DAG]``: the model's DAGs, every id starting ``<model>__``
  (``validate_built``);
- optionally ``check(spec) -> list[(field, reason)]``: what else the template needs of a spec.

Found in three places, later ones unable to replace earlier names: the factory's own
(this package), the data scientists' folder (``FACTORY_TEMPLATES_DIR``, default
``include/templates/``: every ``*.py`` there, loaded by file path, never by import path,
``load_file``), and installed packages through the ``model_factory.templates`` entry-point group.
``template_registry.discover`` finds them.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from model_factory.errors import ErrorKind
from model_factory.settings import FactorySettings
from model_factory.spec import LoadedSpec, ModelSpec, SpecError
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


def is_file_template(template: Template) -> bool:
    """Loaded from the data scientists' folder (its origin is the file's path)."""
    return template.origin.endswith(".py") and Path(template.origin).is_file()


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


def validate_built(loaded: LoadedSpec, template: Template, built_dags: object) -> list:
    """What a template's build returned, checked: DAGs only, each id ``<model>__...``."""
    from airflow.sdk import (
        DAG,  # here, not at the top: the scaffold's commands read this module without Airflow
    )

    spec = loaded.spec
    dags = list(built_dags)  # type: ignore[call-overload]
    for built in dags:
        if not isinstance(built, DAG):
            raise SpecError(
                loaded.path,
                [("template", f"template {template.name!r} returned {type(built).__name__}, not a DAG")],
                [ErrorKind.TEMPLATE_RAISED],
            )
        if not built.dag_id.startswith(f"{spec.name}__"):
            why = f"built DAG {built.dag_id!r}; a model's DAG ids start {spec.name + '__'!r}"
            raise SpecError(
                loaded.path, [("template", f"template {template.name!r} {why}")], [ErrorKind.TEMPLATE_RAISED]
            )
    return dags
