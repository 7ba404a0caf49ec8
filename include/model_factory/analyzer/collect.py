"""Events read from where they happened: Airflow's REST API, the store, the registry, the decisions table.

Each collector is idempotent (every event carries an ``origin`` key, stored once) and reports
what it read or why it could not; an unreachable source never stops the others.

Who an automated outcome (a quarantine, a gate verdict, a canary outcome) belongs to: the person
who triggered the run it came from when Airflow told us (matched by run id, else by model and
batch date), else whoever last changed the model's spec in git, else the spec's ``owner``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlparse

from model_factory.analyzer.classify import kind_stage, logged_kinds, validation_kinds
from model_factory.analyzer.events import DAG_KIND_STAGES, UNKNOWN, Event, task_stage
from model_factory.analyzer.hooks import spec_author
from model_factory.analyzer.store import EventStore
from model_factory.errors import ErrorKind
from model_factory.io import storage, tag_schema
from model_factory.settings import FactorySettings

log = logging.getLogger(__name__)


@dataclass
class SourceStatus:
    source: str
    ok: bool
    new_events: int = 0
    message: str = ""

    def to_dict(self) -> dict:
        return {"source": self.source, "ok": self.ok, "new_events": self.new_events, "message": self.message}


class ApiGetter(Protocol):
    """What the collector needs of ``model_factory.io.airflow_api.AirflowClient``."""

    base_url: str

    def get(self, path: str, **params: Any) -> Any: ...

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str: ...


# ---- Airflow ----------------------------------------------------------------------------------

TERMINAL = ("success", "failed")
MAX_LOGS = 30
"""Failed tasks whose log is read for the reason, per collection (the rest keep the task id)."""


def dag_model_kind(dag_id: str) -> tuple[str | None, str | None]:
    """``churn__retrain`` -> (churn, retrain); ``invalid_spec__churn`` -> (churn, invalid_spec)."""
    if dag_id.startswith("invalid_spec__"):
        return dag_id.removeprefix("invalid_spec__"), "invalid_spec"
    if "__" in dag_id:
        model, kind = dag_id.split("__", 1)
        return model, kind
    return None, None


def failure_reason(log_text: str) -> str | None:
    """The task's own explanation: the Airflow*Exception message and its ``- `` reason lines."""
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        match = re.search(r"Airflow\w*Exception: (.*)", line)
        if match:
            reasons = [r.strip() for r in lines[i + 1 : i + 6] if r.strip().startswith("- ")]
            return "\n".join([match.group(1).strip(), *reasons])
    return None


def quarantine_kinds(store_uri: str, model: str, ds: str | None) -> list[str]:
    """The kinds of the failed checks of a model's batch quarantined on ``ds`` (its GX result)."""
    if not ds:
        return []
    kinds: list[str] = []
    with contextlib.suppress(Exception):  # no quarantine for that date: the task's own kind holds
        for uri in storage.list_uris(storage.join(store_uri, "quarantine", model, ds)):
            if uri.endswith("/validation.json"):
                kinds += validation_kinds(storage.read_json(uri))
    return kinds


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def collect_airflow(
    store: EventStore, api: ApiGetter | None, limit: int = 1000, store_uri: str | None = None
) -> SourceStatus:
    """DAG runs a person triggered (run type manual) and their task outcomes, with the triggering user.

    A failed task's kind is the one it logged (``factory.error_kind=``), else for ``validate`` the
    kinds of the checks its quarantined batch failed (the GX result in ``store_uri``), else
    ``task <id> failed``; the message (the task's own explanation) is kept for reading only."""
    if api is None:
        earlier = len(store.origins("airflow:run:"))
        return SourceStatus(
            "airflow",
            False,
            message=(
                "no Airflow API to read: new DAG runs people triggered and their task outcomes are left out"
                + (f"; the {earlier} runs collected earlier are used" if earlier else "")
            ),
        )
    try:
        runs = api.get("/api/v2/dags/~/dagRuns", run_type="manual", limit=limit, order_by="-run_after")[
            "dag_runs"
        ]
    except Exception as exc:
        return SourceStatus(
            "airflow",
            False,
            message=(
                f"Airflow API at {api.base_url} unreachable ({type(exc).__name__}: {str(exc)[:400]}): "
                "DAG runs people triggered and their task outcomes since the last collection are missing; "
                "events collected earlier are used"
            ),
        )
    known = store.origins("airflow:run:")
    events: list[Event] = []
    logs_read = 0
    for run in runs:
        model, kind = dag_model_kind(run["dag_id"])
        origin = f"airflow:run:{run['dag_id']}:{run['dag_run_id']}"
        if model is None or run["state"] not in TERMINAL or origin in known:
            continue
        run_events, read = _run_events(
            api,
            run,
            model=model,
            kind=kind,
            origin=origin,
            store_uri=store_uri,
            logs_left=MAX_LOGS - logs_read,
        )
        events += run_events
        logs_read += read
    written = store.add(events)
    return SourceStatus("airflow", True, written, f"{len(runs)} manual runs read from {api.base_url}")


def _run_events(
    api: ApiGetter,
    run: dict,
    *,
    model: str,
    kind: str | None,
    origin: str,
    store_uri: str | None,
    logs_left: int,
) -> tuple[list[Event], int]:
    """The events of one finished run, one per task outcome and one for the run itself, and how
    many task logs were read for them (at most ``logs_left``)."""
    conf = run.get("conf") or {}
    user = run.get("triggering_user_name") or conf.get("actor") or "unknown"
    started = _parse_time(run.get("start_date")) or _parse_time(run.get("run_after")) or datetime.now()
    ds = conf.get("ds") or (run.get("logical_date") or "")[:10] or None
    common = {
        "dag_id": run["dag_id"],
        "run_id": run["dag_run_id"],
        "ds": ds,
        "triggered_by": run.get("triggered_by"),
    }
    events: list[Event] = []
    logs_read = 0
    first_failure: str | None = None
    first_kind: str | None = None
    for ti in _task_instances(api, run):
        if ti.get("state") not in ("success", "failed", "upstream_failed"):
            continue
        failed = ti["state"] != "success"
        message, error_kind, stage = None, None, task_stage(ti["task_id"])
        if ti["state"] == "failed":
            read_log = logs_read < logs_left
            if read_log:
                logs_read += 1
            message, kinds = _task_failure(
                api, run, ti, read_log=read_log, model=model, ds=ds, store_uri=store_uri
            )
            error_kind = kinds[0] if kinds else f"task {ti['task_id']} failed"
            stage = stage if stage != UNKNOWN else (kind_stage(error_kind) or UNKNOWN)
            first_failure = first_failure or message
            first_kind = first_kind or (error_kind if kinds else None)
        elif failed:
            continue  # upstream_failed: the failure is the upstream task's
        events.append(
            Event(
                user=user,
                action=f"task.{ti['task_id']}",
                stage=stage,
                outcome="error" if failed else "ok",
                at=_parse_time(ti.get("start_date")) or started,
                source="airflow",
                model=model,
                error_kind=error_kind,
                message=message,
                duration_s=ti.get("duration"),
                details={**common, "try_number": ti.get("try_number")},
                origin=f"airflow:ti:{run['dag_id']}:{run['dag_run_id']}:{ti['task_id']}:{ti.get('try_number')}",
            )
        )
    failed_run = run["state"] == "failed"
    kind_error = (first_kind or f"dag run {kind} failed") if failed_run else None
    events.append(
        Event(
            user=user,
            action=f"dag_run.{kind}",
            stage=DAG_KIND_STAGES.get(kind or "", UNKNOWN),
            outcome="error" if failed_run else "ok",
            at=started,
            source="airflow",
            model=model,
            error_kind=kind_error,
            message=first_failure if failed_run else None,
            duration_s=run.get("duration"),
            details=common,
            origin=origin,
        )
    )
    return events, logs_read


def _task_instances(api: ApiGetter, run: dict) -> list[dict]:
    """The run's task instances; none when Airflow does not list them (logged)."""
    try:
        return api.get(
            f"/api/v2/dags/{quote(run['dag_id'])}/dagRuns/{quote(run['dag_run_id'])}/taskInstances",
            limit=1000,
        )["task_instances"]
    except Exception as exc:
        log.warning("analyzer: task instances of %s/%s unreadable: %s", run["dag_id"], run["dag_run_id"], exc)
        return []


def _task_failure(
    api: ApiGetter, run: dict, ti: dict, *, read_log: bool, model: str, ds: str | None, store_uri: str | None
) -> tuple[str, list[str]]:
    """A failed task's message and error kinds: its own explanation and the kinds it logged (when
    ``read_log``), else for ``validate`` the kinds of the checks its quarantined batch failed."""
    message = f"task {ti['task_id']} failed"
    kinds: list[str] = []
    if read_log:
        try:
            text = api.task_log(
                run["dag_id"], run["dag_run_id"], ti["task_id"], int(ti.get("try_number") or 1)
            )
        except Exception:
            text = ""
        message = failure_reason(text) or message
        kinds = logged_kinds(text)
    if not kinds and ti["task_id"].rsplit(".", 1)[-1] == "validate" and store_uri:
        kinds = quarantine_kinds(store_uri, model, ds)
    return message, kinds


# ---- store, registry, decisions ----------------------------------------------------------------


class Attribution:
    """Whose outcome is it: the run's triggering user, else the spec's last git author, else its owner."""

    def __init__(self, store: EventStore, settings: FactorySettings):
        self.by_run: dict[str, str] = {}
        self.by_ds: dict[tuple[str, str], str] = {}
        for event in store.events():
            if (
                event.source != "airflow"
                or not event.action.startswith("dag_run.")
                or event.user == "unknown"
            ):
                continue
            if event.details.get("run_id"):
                self.by_run[event.details["run_id"]] = event.user
            if event.model and event.details.get("ds"):
                self.by_ds[(event.model, str(event.details["ds"]))] = event.user
        self.specs_dir = settings.specs_dir
        self._owners: dict[str, tuple[str, str]] = {}

    def owner(self, model: str) -> tuple[str, str]:
        if model not in self._owners:
            path = self.specs_dir / f"{model}.yaml"
            self._owners[model] = spec_author(path) if path.exists() else ("unknown", "unknown")
        return self._owners[model]

    def __call__(self, model: str, run_id: str | None = None, ds: str | None = None) -> tuple[str, str]:
        if run_id and run_id in self.by_run:
            return self.by_run[run_id], "triggering user"
        if ds and (model, ds) in self.by_ds:
            return self.by_ds[(model, ds)], "triggering user (same model and date)"
        return self.owner(model)


def _models(settings: FactorySettings) -> list[str]:
    return sorted(path.stem for path in settings.specs_dir.glob("*.yaml"))


def collect_quarantines(
    store: EventStore, settings: FactorySettings, attribution: Attribution
) -> SourceStatus:
    """One error event per reason of each quarantined batch (``quarantine/<model>/<ds>/REASON.txt``)."""
    from model_factory.rollout.summary import quarantined_batches

    events = []
    try:
        for model in _models(settings):
            for batch in quarantined_batches(settings, model):
                user, user_from = attribution(model, ds=batch["ds"])
                folder = batch["folder"]
                at = (
                    datetime.fromisoformat(batch["ds"])
                    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", batch["ds"])
                    else None
                )
                if folder.startswith("file://"):
                    reason_file = Path(urlparse(folder).path) / "REASON.txt"
                    if reason_file.exists():
                        at = datetime.fromtimestamp(reason_file.stat().st_mtime, UTC).replace(tzinfo=None)
                kinds = _folder_validation_kinds(folder)
                for index, reason in enumerate(batch["reasons"] or ["no reason recorded"]):
                    kind = kinds[index] if index < len(kinds) else ErrorKind.VALIDATION_FAILED.value
                    events.append(
                        Event(
                            user=user,
                            action="batch.quarantined",
                            stage=kind_stage(kind) or "data",
                            outcome="error",
                            at=at or datetime.now(UTC).replace(tzinfo=None),
                            source="store",
                            model=model,
                            error_kind=kind,
                            message=reason,
                            details={"ds": batch["ds"], "folder": folder, "user_from": user_from},
                            origin=f"store:quarantine:{folder}:{index}",
                        )
                    )
    except Exception as exc:
        return SourceStatus("quarantines", False, message=f"store {settings.store_uri} unreadable: {exc}")
    return SourceStatus(
        "quarantines", True, store.add(events), f"{len(events)} quarantine reasons in the store"
    )


def _folder_validation_kinds(folder: str) -> list[str]:
    """The kinds of the failed checks in a quarantine folder's ``validation.json``."""
    try:
        return validation_kinds(storage.read_json(storage.join(folder, "validation.json")))
    except Exception:  # an older quarantine without its GX result: the generic kind
        return []


def gate_kind(status: str, reason: str) -> str | None:
    """The error kind of a gate verdict (None when blessed)."""
    low = reason.lower()
    if status == "blessed":
        return None
    if "too-good" in low or "too good" in low:
        return "gate: too good to be true (held)"
    if "holdout too small" in low:
        return "gate: holdout too small (held)"
    if "misses the bar" in low:
        return "gate: below the threshold"
    if "worse than" in low:
        return "gate: worse than the champion"
    if "could not be computed" in low:
        return "gate: metric not computable"
    return f"gate: {status.replace('_', ' ')}"


def collect_gates(store: EventStore, settings: FactorySettings, attribution: Attribution) -> SourceStatus:
    """Every registered version's gate verdict (tags ``factory.decision``/``_reason``) from MLflow."""
    events = []
    try:
        from model_factory.io import tracking

        client = tracking.connect(settings)
        for model in _models(settings):
            for version in client.search_model_versions(f"name = '{model}'"):
                status = version.tags.get(tag_schema.DECISION)
                if not status:
                    continue
                reason = version.tags.get(tag_schema.DECISION_REASON, "")
                ds = version.tags.get(tag_schema.DS)
                run_id = None
                with contextlib.suppress(Exception):  # the run may be gone; the verdict stands
                    run = client.get_run(tracking.version_run_id(version))
                    tags = run.data.tags  # train_model's context tags
                    run_id = tags.get(tag_schema.AIRFLOW_RUN_ID) or tags.get("airflow.run_id")
                user, user_from = attribution(model, run_id=run_id, ds=ds)
                events.append(
                    Event(
                        user=user,
                        action=f"gate.{status}",
                        stage="training",
                        outcome="ok" if status == "blessed" else "error",
                        at=datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).replace(
                            tzinfo=None
                        ),
                        source="registry",
                        model=model,
                        error_kind=gate_kind(status, reason),
                        message=reason,
                        details={
                            "version": str(version.version),
                            "ds": ds,
                            "run_id": run_id,
                            "user_from": user_from,
                        },
                        origin=f"registry:gate:{model}:{version.version}",
                    )
                )
    except Exception as exc:
        return SourceStatus(
            "gates",
            False,
            message=(
                f"MLflow registry at {settings.tracking_uri} unreadable "
                f"({type(exc).__name__}: {str(exc)[:160]}): gate verdicts are missing"
            ),
        )
    return SourceStatus("gates", True, store.add(events), f"{len(events)} gate verdicts in the registry")


CANARY_OUTCOMES = {
    "canary_promoted": ("ok", None),
    "canary_rolled_back": ("error", "canary: rolled back"),
    "canary_aborted": ("error", "canary: aborted"),
    "load_failed": ("error", "serving: version failed to load"),
}


def collect_decisions(store: EventStore, settings: FactorySettings, attribution: Attribution) -> SourceStatus:
    """Canary outcomes from the decisions table (CLI actions are recorded by the CLI itself)."""
    from model_factory.serving.predlog import decisions

    events = []
    try:
        for model in _models(settings):
            for row in decisions(store.engine, model):
                if row["action"] not in CANARY_OUTCOMES or str(row["actor"]).endswith(" via cli"):
                    continue
                outcome, kind = CANARY_OUTCOMES[row["action"]]
                actor = str(row["actor"])
                if " via " in actor:
                    user, user_from = actor.split(" via ", 1)[0], "actor recorded with the decision"
                else:
                    user, user_from = attribution.owner(model)
                events.append(
                    Event(
                        user=user,
                        action=f"canary.{row['action'].removeprefix('canary_')}",
                        stage="deployment",
                        outcome=outcome,
                        at=row["at"],
                        source="decisions",
                        model=model,
                        error_kind=kind,
                        message=row["reason"],
                        details={"version": row["version"], "actor": actor, "user_from": user_from},
                        origin=f"decisions:{row['id']}",
                    )
                )
    except Exception as exc:
        return SourceStatus(
            "canary", False, message=f"decisions table unreadable ({type(exc).__name__}: {exc})"
        )
    return SourceStatus(
        "canary", True, store.add(events), f"{len(events)} canary outcomes in the decisions table"
    )


def collect_all(
    store: EventStore,
    settings: FactorySettings,
    api: ApiGetter | None = None,
    registry: bool = True,
) -> list[SourceStatus]:
    """Every source, Airflow first (its triggering users attribute the other sources' outcomes)."""
    statuses = [collect_airflow(store, api, store_uri=settings.store_uri)]
    attribution = Attribution(store, settings)
    statuses.append(collect_quarantines(store, settings, attribution))
    if registry:
        statuses.append(collect_gates(store, settings, attribution))
    statuses.append(collect_decisions(store, settings, attribution))
    return statuses
