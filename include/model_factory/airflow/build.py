"""Every model's DAGs from its spec and template; any failure for one model becomes that
model's ``invalid_spec__<file>`` DAG with the reason, never a DAG-file import error."""

from __future__ import annotations

import logging
import re
import traceback
import warnings
from datetime import datetime
from pathlib import Path

from model_factory.airflow.templates import Registry, check_params, discover
from model_factory.settings import FactorySettings
from model_factory.spec import LoadedSpec, SpecError, load_spec

from airflow.sdk import DAG, task
from airflow.sdk.definitions._internal.contextmanager import DagContext
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger("model_factory.airflow")

DAG_ID_MAX = 250  # Airflow's ID_LEN


def safe_id(path: Path | str) -> str:
    """A DAG id fragment from any file name: spaces, dots, non-ASCII become ``_``."""
    stem = Path(path).name.removesuffix(".yaml")
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)[: DAG_ID_MAX - len("invalid_spec__")] or "_"


def invalid_spec_dag(error: SpecError) -> DAG:
    """A visible stand-in for a model that cannot be built: the UI shows why; a run fails saying it."""
    from model_factory.analyzer.events import record_spec_errors

    record_spec_errors([error])  # the Analyzer's event: who last changed the spec (git), once per version
    message = str(error)
    with DAG(
        dag_id=f"invalid_spec__{safe_id(error.path)}",
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


def build_model(loaded: LoadedSpec, registry: Registry) -> list[DAG]:
    """One model's DAGs, or SpecError naming the file, field and reason."""
    spec = loaded.spec
    if spec.template in registry.broken:
        raise SpecError(loaded.path, [("template", registry.broken[spec.template])])
    template = registry.templates.get(spec.template)
    if template is None:
        raise SpecError(loaded.path, [("template", f"unknown template {spec.template!r}; known: "
                                       f"{sorted(registry.templates)}")])  # fmt: skip
    params, problems = check_params(template, spec)
    if problems:
        raise SpecError(loaded.path, problems)
    try:
        dags = list(template.build(loaded, params))
    except Exception as exc:
        why = f"({template.origin}) raised while building: {type(exc).__name__}: {exc}{_where(exc)}"
        raise SpecError(loaded.path, [("template", f"template {template.name!r} {why}")]) from exc
    for built in dags:
        if not isinstance(built, DAG):
            raise SpecError(loaded.path, [("template", f"template {template.name!r} returned "
                                           f"{type(built).__name__}, not a DAG")])  # fmt: skip
        if not built.dag_id.startswith(f"{spec.name}__"):
            why = f"built DAG {built.dag_id!r}; a model's DAG ids start {spec.name + '__'!r}"
            raise SpecError(loaded.path, [("template", f"template {template.name!r} {why}")])
        if f"template:{spec.template}" not in built.tags:
            built.tags.add(f"template:{spec.template}")
    return dags


def _load(path: Path) -> LoadedSpec:
    try:
        return LoadedSpec(path, load_spec(path))
    except SpecError:
        raise
    except UnicodeDecodeError as exc:
        raise SpecError(path, [("", f"not UTF-8 text (byte {exc.start}): save the file as UTF-8")]) from exc
    except RecursionError as exc:
        raise SpecError(path, [("", "YAML nested too deeply to be a spec")]) from exc
    except Exception as exc:
        raise SpecError(path, [("", f"cannot load: {type(exc).__name__}: {exc}")]) from exc


def build_all(specs_dir: Path | None = None, templates_dir: Path | None = None) -> dict[str, DAG]:
    """Every good spec's DAGs; a bad one a warning and an ``invalid_spec__`` DAG naming file,
    field and reason, so one bad spec or template never hides the other models' DAGs."""
    registry = discover(templates_dir)
    dags: dict[str, DAG] = {}
    for path in sorted(Path(specs_dir or FactorySettings.from_env().specs_dir).glob("*.yaml")):
        before = set(DagContext.autoregistered_dags)
        try:
            built = build_model(_load(path), registry)
            clash = sorted(d.dag_id for d in built if d.dag_id in dags)
            if clash:
                raise SpecError(path, [("name", f"DAG ids {clash} are already taken by another spec")])
        except SpecError as error:
            log.error("%s", error)
            warnings.warn(str(error), stacklevel=1)
            built = [invalid_spec_dag(error)]
        except Exception as exc:  # never let one model's failure take the DAG file down
            error = SpecError(path, [("", f"{type(exc).__name__}: {exc}")])
            log.error("%s", error)
            warnings.warn(str(error), stacklevel=1)
            built = [invalid_spec_dag(error)]
        finally:
            # DAGs a template made with `with DAG(...)` register themselves; only returned ones count.
            DagContext.autoregistered_dags.difference_update(set(DagContext.autoregistered_dags) - before)
        dags.update((d.dag_id, d) for d in built)
    return dags
