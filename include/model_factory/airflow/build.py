"""Every model's DAGs from its spec and template; any failure for one model becomes that
model's ``invalid_spec__<file>`` DAG with the reason, never a DAG-file import error.

Airflow parses the DAG file again in every task's process, naming the DAG it wants
(``get_parsing_context().dag_id``); then only the spec files that can build that DAG are read
(:func:`dag_file_dags`), so a task's start-up does not grow with the number of models.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import re
import traceback
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from model_factory.airflow.analyzer import DAG_ID as ANALYZER_DAG_ID
from model_factory.airflow.analyzer import analyzer_dags
from model_factory.airflow.template_check import CONTAINED, describe
from model_factory.airflow.template_registry import Registry, check_builds, discover
from model_factory.airflow.templates import check_params, validate_built
from model_factory.errors import ErrorKind
from model_factory.settings import FactorySettings
from model_factory.spec import LoadedSpec, SpecError, load_spec

from airflow.sdk import DAG, task
from airflow.sdk.definitions._internal.contextmanager import DagContext
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger("model_factory.airflow")

DAG_ID_MAX = 250  # Airflow's ID_LEN
INVALID_PREFIX = "invalid_spec__"


def safe_id(path: Path | str) -> str:
    """A DAG id fragment from any file name: spaces, dots, non-ASCII become ``_``."""
    stem = Path(path).name.removesuffix(".yaml")
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)[: DAG_ID_MAX - len(INVALID_PREFIX)] or "_"


def invalid_spec_dag(error: SpecError) -> DAG:
    """A visible stand-in for a model that cannot be built: the UI shows why; a run fails saying it."""
    message = str(error)
    with DAG(
        dag_id=f"{INVALID_PREFIX}{safe_id(error.path)}",
        description=f"Spec {Path(error.path).name} is invalid: fix it; see the DAG docs"[:1000],
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["model-factory", "invalid-spec"],
        default_args={"owner": "model-factory", "retries": 0},
        doc_md=f"```\n{message}\n```",
        auto_register=False,
    ) as built:

        @task
        def explain() -> None:
            raise AirflowFailException(message)

        explain()
    return built


def _where(exc: BaseException) -> str:
    """The innermost frame of a traceback: where a template raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def build_model(loaded: LoadedSpec, registry: Registry, settings: FactorySettings) -> list[DAG]:
    """One model's DAGs, or SpecError naming the file, field and reason."""
    spec = loaded.spec
    if spec.template in registry.broken:
        broken = [ErrorKind.TEMPLATE_RAISED]
        raise SpecError(loaded.path, [("template", registry.broken[spec.template])], broken)
    template = registry.templates.get(spec.template)
    if template is None:
        unknown = [ErrorKind.SPEC_UNKNOWN_TEMPLATE]
        raise SpecError(
            loaded.path,
            [("template", f"unknown template {spec.template!r}; known: {sorted(registry.templates)}")],
            unknown,
        )
    if str(loaded.path) in registry.unbuildable.get(template.name, {}):
        why = registry.unbuildable[template.name][str(loaded.path)]
        raise SpecError(
            loaded.path,
            [("template", f"template {template.name!r} ({template.origin}) {why}")],
            [ErrorKind.TEMPLATE_RAISED],
        )
    params, problems = check_params(template, spec, settings)
    if problems:
        raise SpecError(loaded.path, problems)
    try:
        dags = validate_built(loaded, template, template.build(loaded, params))
    except SpecError:
        raise
    except CONTAINED as exc:  # sys.exit() or KeyboardInterrupt too: one template never ends the parse
        why = f"({template.origin}) raised while building: {describe(exc)}{_where(exc)}"
        raise SpecError(
            loaded.path, [("template", f"template {template.name!r} {why}")], [ErrorKind.TEMPLATE_RAISED]
        ) from exc
    for built in dags:
        if f"template:{spec.template}" not in built.tags:
            built.tags.add(f"template:{spec.template}")
    return dags


def _load(path: Path, settings: FactorySettings) -> LoadedSpec:
    try:
        return LoadedSpec(path, load_spec(path, settings))
    except SpecError:
        raise
    except UnicodeDecodeError as exc:
        raise SpecError(path, [("", f"not UTF-8 text (byte {exc.start}): save the file as UTF-8")]) from exc
    except RecursionError as exc:
        raise SpecError(path, [("", "YAML nested too deeply to be a spec")]) from exc
    except Exception as exc:
        raise SpecError(path, [("", f"cannot load: {type(exc).__name__}: {exc}")]) from exc


def spec_files_for(dag_id: str, paths: list[Path]) -> list[Path]:
    """The spec files that can build ``dag_id``: a model's DAG ids start ``<name>__`` and a spec's
    name is its file's stem (else the file gets ``invalid_spec__<file>``), so the file names
    decide without reading any file. Empty when no file fits."""
    return [
        path
        for path in paths
        if dag_id.startswith(f"{path.stem}__") or dag_id == f"{INVALID_PREFIX}{safe_id(path)}"
    ]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while the DAGs are built: every object made is kept, and at
    500 specs (~11,000 tasks) the collector's passes over the growing heap cost ~12% of the parse."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_all(
    specs_dir: Path | None = None,
    templates_dir: Path | None = None,
    only_dag_id: str | None = None,
    only_specs: Callable[[Path], bool] | None = None,
) -> dict[str, DAG]:
    """Every good spec's DAGs; a bad one a warning and an ``invalid_spec__`` DAG naming file,
    field and reason, so one bad spec or template never hides the other models' DAGs.

    ``only_dag_id``: build just the models whose spec files can give that DAG (every model
    when no file name fits); other files are not read. ``only_specs``: only the spec files it
    accepts (a shard's)."""
    settings = FactorySettings.from_env()
    paths = sorted(Path(specs_dir or settings.specs_dir).glob("*.yaml"))
    if only_specs is not None:
        paths = [path for path in paths if only_specs(path)]
    if only_dag_id is not None:
        paths = spec_files_for(only_dag_id, paths) or paths
    with _gc_paused():
        return _build_models(paths, discover(templates_dir), settings)


def _build_models(paths: list[Path], registry: Registry, settings: FactorySettings) -> dict[str, DAG]:
    dags: dict[str, DAG] = {}
    errors: list[SpecError] = []
    loaded: dict[Path, LoadedSpec | SpecError] = {}
    for path in paths:
        try:
            loaded[path] = _load(path, settings)
        except SpecError as exc:
            loaded[path] = exc
    # Data scientists' templates are first tried on these specs in a child process (cached).
    check_builds(registry, [item for item in loaded.values() if isinstance(item, LoadedSpec)])
    for path, item in loaded.items():
        error: SpecError | None = None
        before = set(DagContext.autoregistered_dags)
        try:
            if isinstance(item, SpecError):
                raise item
            built = build_model(item, registry, settings)
            clash = sorted(d.dag_id for d in built if d.dag_id in dags)
            if clash:
                raise SpecError(path, [("name", f"DAG ids {clash} are already taken by another spec")])
        except SpecError as exc:
            error = exc
        except CONTAINED as exc:  # never let one model's failure take the DAG file down
            error = SpecError(path, [("", describe(exc))])
        finally:
            # DAGs a template made with `with DAG(...)` register themselves; only returned ones count.
            DagContext.autoregistered_dags.difference_update(set(DagContext.autoregistered_dags) - before)
        if error is not None:
            log.error("%s", error)
            warnings.warn(str(error), stacklevel=1)
            errors.append(error)
            built = [invalid_spec_dag(error)]
        dags.update((d.dag_id, d) for d in built)
    if errors:
        from model_factory.analyzer.hooks import record_spec_errors

        # The Analyzer's events (who last changed each spec, from git), once per spec version; one
        # call per parse, so the already-recorded check is one query, not one per bad spec.
        record_spec_errors(errors, settings)
    return dags


def dag_file_dags(parsing_dag_id: str | None = None) -> dict[str, DAG]:
    """What dags/model_factory_dags.py defines: every model's DAGs and the Analyzer's; only those
    that can be ``parsing_dag_id`` when Airflow parses the file to run one of its tasks."""
    if parsing_dag_id == ANALYZER_DAG_ID:
        return analyzer_dags()
    dags = build_all(only_dag_id=parsing_dag_id)
    return dags if parsing_dag_id is not None else dags | analyzer_dags()
