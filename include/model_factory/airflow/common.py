"""What every factory DAG shares: DAG arguments, the run's batch date, assets, alerts, S3 options.

Thin glue around Airflow; the logic each task runs lives in the core library.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from model_factory.airflow.notify import failure_notifier
from model_factory.errors import ErrorKind, error_kind_line
from model_factory.settings import FactorySettings
from model_factory.spec import CRON_PRESETS, LoadedSpec, ModelSpec

from airflow.sdk import Asset, Param, XComArg, get_current_context, task
from airflow.sdk.definitions.dag import TAG_MAX_LEN  # a longer tag fails the whole DAG file
from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

log = logging.getLogger("model_factory.airflow")


def drift_asset(spec: ModelSpec) -> Asset:
    return Asset(name=f"{spec.name}__drift", uri=f"x-model-factory://{spec.name}/drift")


def challenger_asset(spec: ModelSpec) -> Asset:
    return Asset(name=f"{spec.name}__challenger", uri=f"x-model-factory://{spec.name}/challenger")


def announce_task(
    task_id: str, asset: Asset, registered: XComArg, skip_reason: Callable[[dict], str | None]
) -> XComArg:
    """A task that emits ``asset`` for the version ``register`` returned (its version, batch date
    and reason as the event's extra: what the DAG the asset schedules reads), or skips saying
    ``skip_reason`` when that is not None (the version is not one this asset announces)."""

    @task(task_id=task_id, multiple_outputs=True, outlets=[asset])
    def announce(registered: dict) -> dict:
        reason = skip_reason(registered)
        if reason is not None:
            raise AirflowSkipException(reason)
        extra = {"version": registered["version"], "ds": run_ds(), "reason": registered["reason"]}
        get_current_context()["outlet_events"][asset].extra = extra
        return extra

    return announce(registered)  # type: ignore[arg-type]


def triggering_extras() -> list[dict]:
    """The ``extra`` of each asset event that triggered this run, oldest first."""
    events = get_current_context().get("triggering_asset_events") or {}
    extras = [dict(event.extra or {}) for evs in events.values() for event in evs]
    return sorted(extras, key=lambda extra: str(extra.get("ds", "")))


def run_ds() -> str:
    """The batch date of this run: ``conf.ds`` if given, else the date an asset event names
    (a drift-fired retrain trains on the drifted batch), else the run's logical date."""
    from model_factory.io.batches import check_ds

    context = get_current_context()
    conf = context["dag_run"].conf or {}
    event_ds = [extra["ds"] for extra in triggering_extras() if extra.get("ds")]
    ds = conf.get("ds") or (event_ds[-1] if event_ds else None)
    if ds:
        try:
            return check_ds(str(ds))
        except ValueError as exc:
            log.error(error_kind_line(ErrorKind.BAD_TRIGGER_CONF))  # the Analyzer reads the kind here
            raise AirflowFailException(f"bad trigger conf or asset event: {exc}") from exc
    logical = context.get("logical_date") or context["dag_run"].run_after
    return logical.strftime("%Y-%m-%d")


def conf() -> dict[str, Any]:
    return dict(get_current_context()["dag_run"].conf or {})


def alert(spec: ModelSpec, kind: str, subject: str, body: str, details: dict | None = None) -> dict:
    """Alert the model's owner: log + alerts file always; e-mail and webhook through the
    Airflow connections the spec's ``notify`` section names."""
    from model_factory.monitoring.alerts import Alert, SmtpTarget, deliver

    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    smtp, webhook_url = None, None
    try:
        if spec.notify.smtp_conn_id and spec.notify.email:
            conn = Connection.get(spec.notify.smtp_conn_id)
            extra = conn.extra_dejson
            smtp = SmtpTarget(
                host=conn.host or "localhost",
                port=conn.port or 25,
                sender=extra.get("from_email", f"model-factory@{conn.host or 'localhost'}"),
                recipients=list(spec.notify.email),
                login=conn.login or None,
                password=conn.password or None,
                starttls=bool(extra.get("starttls", False)),
            )
        if spec.notify.webhook_conn_id:
            conn = Connection.get(spec.notify.webhook_conn_id)
            webhook_url = conn.extra_dejson.get("url") or conn.get_uri()
    except AirflowNotFoundException as exc:
        log.error("notify connection missing for %s: %s (alert goes to the log/file only)", spec.name, exc)
    message = Alert(
        model=spec.name, owner=spec.owner, kind=kind, subject=subject, body=body, details=details or {}
    )
    return deliver(message, FactorySettings.from_env(), smtp=smtp, webhook_url=webhook_url)


def s3_options(conn_id: str | None):
    """Endpoint and credentials from an Airflow connection; None means boto3's environment."""
    if not conn_id:
        return None
    from model_factory.io.storage import S3Options

    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException as exc:
        raise AirflowFailException(
            f"source.aws_conn_id {conn_id!r} names no Airflow connection: create it "
            '(login/password = access key/secret, extra {"endpoint_url": ...}) or remove the field'
        ) from exc
    extra = conn.extra_dejson
    return S3Options(
        endpoint_url=extra.get("endpoint_url") or (conn.host or None),
        access_key_id=conn.login or None,
        secret_access_key=conn.password or None,
        region_name=extra.get("region_name"),
    )


def dag_tags(spec: ModelSpec, kind: str) -> list[str]:
    """``model-factory``, the DAG kind, the task, ``template:<name>`` and the spec's tags.

    A spec tag longer than Airflow allows is refused here (with the field), not by Airflow
    while the DAG file imports (which would drop every model's DAGs)."""
    tags = ["model-factory", kind, spec.task, f"template:{spec.template}"]
    for key, value in spec.tags.items():
        tag = f"{key}:{value}"
        if len(tag) > TAG_MAX_LEN:
            raise ValueError(
                f"tags.{key}: '{key}:{value[:20]}...' is {len(tag)} characters; Airflow allows "
                f"{TAG_MAX_LEN} per tag"
            )
        tags.append(tag)
    return tags


# Spec tag ``tier`` -> the priority weight of the model's tasks: when the wave is larger than the
# workers, the scheduler queues tier-1 models' tasks first (Airflow orders by priority weight).
# Tiers lie 100x apart: under the "upstream" rule a task weighs up to (tasks in its DAG) x its
# tier's weight, and no factory DAG has 100 tasks, so a tier never overtakes the one above it.
TIER_PRIORITY = {"1": 10_000, "2": 100}
DEFAULT_PRIORITY = 1


def priority_of(spec: ModelSpec) -> int:
    return TIER_PRIORITY.get(spec.tags.get("tier", "").strip().removeprefix("tier"), DEFAULT_PRIORITY)


def spread_cron(expression: str | None, name: str) -> str | None:
    """A cron at minute 0 (``0 2 * * *``, ``@daily``, ``@hourly``) moved to a stable per-model
    minute inside the same hour, so a fleet's nightly runs spread over the hour instead of all
    starting at 02:00. Any other minute (``30 2 * * *``; ``0-0 2 * * *`` for exactly on the hour)
    is kept as written."""
    if expression is None:
        return None
    fields = CRON_PRESETS.get(expression.strip(), expression).split()
    if len(fields) != 5 or fields[0] != "0":
        return expression
    return " ".join([str(zlib.crc32(name.encode()) % 60), *fields[1:]])


# The trigger form of each DAG kind (Airflow's "Trigger DAG" renders and validates it; the REST
# API refuses a conf that does not fit, naming the field). The CLI and the demo send these names.
# Kept in step with model_factory.rollout.canary.OPS_ACTIONS (a test checks).
CANARY_ACTIONS = ("promote", "rollback", "abort", "pin", "unpin", "shadow", "shadow_stop")
_TEXT = ["null", "string"]
_VERSION: dict[str, Any] = {
    "type": ["null", "string", "integer"],
    "pattern": r"^[0-9]+$",
    "minimum": 1,
    "title": "Version",
    "description": "A registered version; empty: the one announced",
}
# A batch date stays free text here: a bad one fails `ingest` naming the conf (and the Analyzer
# counts it); the form still says what is expected.
_DS: dict[str, Any] = {
    "type": _TEXT,
    "maxLength": 40,
    "title": "Batch date",
    "description": "YYYY-MM-DD; empty: the run's own date",
}


def trigger_params(kind: str) -> dict[str, Param]:
    """The typed ``params`` of a factory DAG kind: retrain, drift_watch, canary or review."""
    reason = Param(None, type=_TEXT, maxLength=2000, title="Reason", description="Why (recorded)")
    actor = Param(None, type=_TEXT, maxLength=200, title="On behalf of", description="Who asked (optional)")
    forms = {
        "retrain": lambda: {
            "ds": Param(None, **_DS),
            "force_retrain": Param(
                False, type="boolean", title="Force retrain", description="Train again on unchanged data"
            ),
        },
        "drift_watch": lambda: {
            "ds": Param(None, **_DS),
            "force": Param(
                False, type="boolean", title="Force", description="Check a batch that was already checked"
            ),
        },
        "canary": lambda: {
            "version": Param(None, **_VERSION),
            "action": Param(
                None,
                type=_TEXT,
                enum=[None, *CANARY_ACTIONS],
                title="Action",
                description="Ops action instead of a rollout (empty: roll out)",
            ),
            "share": Param(
                None,
                type=["null", "number"],
                exclusiveMinimum=0,
                maximum=1,
                title="Shadow share",
                description="Action shadow: share it scores (empty: all)",
            ),
            "reason": reason,
            "actor": actor,
        },
        "review": lambda: {"version": Param(None, **_VERSION)},
    }
    return forms[kind]()


def common_dag_args(spec: ModelSpec, kind: str) -> dict[str, Any]:
    """What every factory DAG of a model shares: owner, retries with backoff, a per-task
    execution timeout, tags, no catchup, the tier's priority (depth-first within a tier)."""
    return {
        "start_date": datetime(2026, 1, 1),
        "catchup": False,
        "tags": dag_tags(spec, kind),
        "default_args": {
            "owner": spec.owner,
            "retries": spec.retries,
            "retry_delay": timedelta(seconds=30),
            "retry_exponential_backoff": 2.0,  # a multiplier in Airflow 3.3 (True would mean 1.0: constant)
            "execution_timeout": timedelta(minutes=spec.task_timeout_minutes),
            "retry_policy": PERMANENT_FAILS_AT_ONCE,
            "priority_weight": priority_of(spec),
            # Depth-first: a task weighs its own and its upstream tasks' weight, so a run that has
            # started goes on before another run starts. Airflow's default ("downstream") runs a
            # fleet's wave breadth-first: every run's first task before any run's second, and a
            # wave that overruns its night ends with no model of the tier done.
            "weight_rule": "upstream",
            "on_failure_callback": [failure_notifier(spec)],  # once a task failed for good
        },
    }


# What no retry can fix (a bad label, a refused source URI, an untrusted model type) fails the
# task at once, whatever the task; named by path so DAG parsing imports nothing more.
PERMANENT_FAILS_AT_ONCE = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception="model_factory.errors.PermanentError",
            action=RetryAction.FAIL,
            reason="model_factory.errors.PermanentError: the same input fails on every retry",
        )
    ]
)


def code_dir(loaded: LoadedSpec) -> Path:
    """The data scientists' code folder: ``code/`` beside the specs."""
    return loaded.path.parent / "code"


def spec_doc(loaded: LoadedSpec, extra: str = "") -> str:
    spec = loaded.spec
    return (
        f"**{spec.name}** ({spec.task}, template `{spec.template}`), owned by `{spec.owner}`.\n\n"
        f"{spec.description}\n\nSpec: `{loaded.path.name}`. {extra}"
    )
