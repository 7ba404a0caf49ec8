"""Notifications through Airflow's notifier classes, and the factory's own record of each.

:class:`FactoryNotifier` is an Airflow ``BaseNotifier``: every factory task carries one as its
``on_failure_callback`` (it fires once a task has failed for good, after its retries), and the
review DAG's HITL task carries one in ``notifiers`` (the reviewer is told a version is held).

Where it goes is chosen by Airflow connection, from the spec's ``notify`` section: the
connection's type picks the notifier class (``smtp``/``email``: the SMTP provider's
``SmtpNotifier`` to ``notify.email``; ``slackwebhook``: the Slack provider's
``SlackWebhookNotifier``; ``apprise``: the Apprise provider's ``AppriseNotifier`` (Teams,
Discord, PagerDuty...); anything else with a URL: a JSON POST). A provider that is not
installed, a connection that is missing or a channel that fails is logged and written into the
alert's record, never raised: a notification never fails a task. Every alert is recorded by
``model_factory.monitoring.alerts`` (the alerts file and database) with each channel's outcome
and the run's link.

Also sent the same way: a nightly retrain still running at the spec's
``notify.retrain_deadline`` (an Airflow ``DeadlineAlert`` on the retrain DAG, whose callback is
:func:`retrain_late`), and every promoted or rolled-back version (:func:`version_event`, called
where the canary DAG records a rollout decision, and by the CLI's ``promote``/``rollback``/``pin``
with a context that names the CLI instead of a run).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from model_factory.spec import ModelSpec, daily_time

from airflow.sdk.bases.notifier import BaseNotifier

if TYPE_CHECKING:
    from model_factory.monitoring.alerts import Alert

log = logging.getLogger("model_factory.airflow")


def run_links(context: Any) -> dict[str, str]:
    """The run's page in the Airflow UI and, for a task, its log."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    dag_id = getattr(context.get("dag"), "dag_id", None) or context.get("dag_id", "")
    run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", "")
    if not dag_id:  # not from a run (the CLI): no run to link to
        return {}
    links = {"run": f"{base}/dags/{quote(dag_id)}/runs/{quote(str(run_id))}"}
    ti = context.get("ti") or context.get("task_instance")
    with contextlib.suppress(Exception):  # a context without a full task instance (DAG-level)
        links["log"] = ti.log_url if ti is not None else ""
    return {k: v for k, v in links.items() if v}


def _channel(conn_id: str, spec_email: list[str], subject: str, body: str):
    """The Airflow notifier for a connection, by its type; raises when none fits."""
    from airflow.sdk import Connection

    conn = Connection.get(conn_id)
    kind = (conn.conn_type or "").lower()
    if kind in ("smtp", "email"):
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        if not spec_email:
            raise ValueError(f"connection {conn_id!r} is SMTP but notify.email lists no recipient")
        return SmtpNotifier(
            to=spec_email, smtp_conn_id=conn_id, subject=subject, html_content=f"<pre>{body}</pre>"
        )
    if kind == "slackwebhook":
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        return SlackWebhookNotifier(slack_webhook_conn_id=conn_id, text=f"*{subject}*\n{body}")
    if kind == "apprise":
        from airflow.providers.apprise.notifications.apprise import AppriseNotifier

        return AppriseNotifier(title=subject, body=body, apprise_conn_id=conn_id)
    return _WebhookPost(conn.extra_dejson.get("url") or conn.get_uri())


class _WebhookPost:
    """A connection of any other type: the alert as JSON to its URL (the factory's webhook)."""

    def __init__(self, url: str):
        self.url = url
        self.alert: Alert | None = None  # set by FactoryNotifier before notify

    def notify(self, context: Any) -> None:
        from model_factory.monitoring.alerts import post_webhook

        if self.alert is None:
            raise ValueError(f"no alert to post to the webhook {self.url}")
        post_webhook(self.alert, self.url)


def notify_conn_ids(spec: ModelSpec) -> list[str]:
    """The Airflow connections a spec's alerts go through, in order."""
    return [c for c in (spec.notify.smtp_conn_id, spec.notify.webhook_conn_id) if c]


class FactoryNotifier(BaseNotifier):
    """Tell a model's owner (or reviewer) about a run; never raises."""

    def __init__(
        self, model: str, owner: str, kind: str, subject: str, email: list[str], conn_ids: list[str]
    ):
        super().__init__()
        self.model, self.owner, self.kind, self.subject = model, owner, kind, subject
        self.email, self.conn_ids = list(email), list(conn_ids)
        self.lines: list[str] = []  # shown under the run's links

    @classmethod
    def for_spec(cls, spec: ModelSpec, kind: str, subject: str) -> FactoryNotifier:
        return cls(spec.name, spec.owner, kind, subject, list(spec.notify.email), notify_conn_ids(spec))

    def notify(self, context: Any) -> None:
        try:
            self.send(context, self.lines)
        except Exception:  # the record itself failed: log it, never fail the task
            log.exception("notification for %s (%s) failed", self.model, self.kind)

    def send(self, context: Any, lines: list[str] | None = None, details: dict | None = None) -> dict:
        """Send on every channel and record the alert; ``lines`` go under the run's links."""
        from model_factory.monitoring.alerts import Alert, deliver
        from model_factory.settings import FactorySettings

        links = run_links(context)
        ti = context.get("ti")
        task = getattr(ti, "task_id", None)
        error = context.get("exception")
        dag_id = getattr(context.get("dag"), "dag_id", None) or context.get("dag_id", "")
        # Outside a run (the CLI) the context names where the event came from instead.
        where = dag_id + (f".{task}" if task else "") or str(context.get("where", ""))
        subject = f"{self.subject}: {where}" if where else self.subject
        head = [f"Run: {links['run']}"] if "run" in links else []
        head += [f"Log: {links['log']}"] if "log" in links else []
        tail = [f"Error: {type(error).__name__}: {error}"] if error else []
        body = "\n".join(head + (lines or []) + tail)
        alert = Alert(
            model=self.model,
            owner=self.owner,
            kind=self.kind,
            subject=subject,
            body=body,
            details={**(details or {}), "links": links, "task_id": task, "run_id": context.get("run_id")},
        )
        channels: dict[str, str] = {}
        for conn_id in self.conn_ids:
            try:
                channel = _channel(conn_id, self.email, subject, body)
                if isinstance(channel, _WebhookPost):
                    channel.alert = alert
                channel.notify(context)
                channels[conn_id] = f"sent ({type(channel).__name__})"
            except Exception as exc:  # a channel that fails never fails the task
                channels[conn_id] = f"failed: {type(exc).__name__}: {exc}"
                log.error("alert channel %s for %s failed: %s", conn_id, self.model, exc)
        recorded = Alert(**{**alert.__dict__, "details": {**alert.details, "channels": channels}})
        settings = FactorySettings.from_env()
        outcome = deliver(recorded, settings)
        failed = {conn_id: why for conn_id, why in channels.items() if why.startswith("failed")}
        if failed:  # its own alert, the newest: `status` and `show` name the broken connection
            subject = f"notify connection {', '.join(failed)} failed ({self.kind} for {where} not sent there)"
            broken = Alert(
                model=self.model,
                owner=self.owner,
                kind="notify_channel_failed",
                subject=subject,
                body="\n".join(f"{conn_id}: {why}" for conn_id, why in failed.items()),
                details={"channels": failed, "alert_kind": self.kind, "links": links},
            )
            deliver(broken, settings)
        return outcome | {"channels": channels}


def failure_notifier(spec: ModelSpec) -> FactoryNotifier:
    return FactoryNotifier.for_spec(spec, "task_failed", f"{spec.name}: a task failed")


def held_notifier(spec: ModelSpec) -> FactoryNotifier:
    subject = f"{spec.name}: a version waits for your review"
    notifier = FactoryNotifier.for_spec(spec, "held_for_review", subject)
    if spec.review.reviewers:  # the HITL task's assigned users: say who may answer
        notifier.lines = [f"Reviewers: {', '.join(spec.review.reviewers)}"]
    return notifier


# ---- promoted and rolled-back versions -------------------------------------------------------


# Rollout decisions (``action`` of a recorded decision) that change what serves, by event kind.
VERSION_EVENTS = {
    "canary_promoted": "version_promoted",
    "promoted": "version_promoted",
    "pinned": "version_promoted",
    "canary_rolled_back": "version_rolled_back",
    "rolled_back": "version_rolled_back",
}


def version_event(spec: ModelSpec, decision: dict, context: Any) -> dict | None:
    """Tell the owner a version was promoted or rolled back (None: not such a decision, or a
    retry that changed nothing). Never raises."""
    kind = VERSION_EVENTS.get(str(decision.get("action")))
    if kind is None or not decision.get("changed", True):
        return None
    version = decision.get("version")
    verb = "promoted to champion" if kind == "version_promoted" else "rolled back"
    notifier = FactoryNotifier.for_spec(spec, kind, f"{spec.name}: v{version} {verb}")
    lines = [f"{decision['action']} by {decision.get('actor')}: {decision.get('reason')}"]
    details = {key: decision.get(key) for key in ("version", "action", "actor", "reason")}
    try:
        return notifier.send(context, lines, details)
    except Exception:
        log.exception("version event for %s v%s failed", spec.name, version)
        return None


# ---- the nightly retrain's deadline ----------------------------------------------------------


def deadline_interval(cron: str | None, deadline: str) -> timedelta:
    """From a daily cron's start (its run's logical date) to the next ``HH:MM`` deadline."""
    start = daily_time(cron)
    if start is None:
        raise ValueError(f"a retrain deadline needs a daily cron, not {cron!r}")
    hour, minute = (int(part) for part in deadline.split(":"))
    minutes = (hour * 60 + minute - start[0] * 60 - start[1]) % (24 * 60)
    return timedelta(minutes=minutes or 24 * 60)


def retrain_deadline_alert(spec: ModelSpec, cron: str | None):
    """The retrain DAG's ``DeadlineAlert`` (None without ``notify.retrain_deadline``): measured
    from the run's logical date, so it applies to the scheduled nightly run; an asset-triggered
    or manual run without a logical date gets none."""
    if not spec.notify.retrain_deadline:
        return None
    # airflow.sdk exports these lazily (module __getattr__), which mypy cannot see
    from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback  # type: ignore[attr-defined]

    recipients = {
        "model": spec.name,
        "owner": spec.owner,
        "email": list(spec.notify.email),
        "conn_ids": notify_conn_ids(spec),
        "deadline": spec.notify.retrain_deadline,
    }
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=deadline_interval(cron, spec.notify.retrain_deadline),
        callback=SyncCallback(retrain_late, kwargs=recipients),
        name=f"{spec.name} retrain by {spec.notify.retrain_deadline} UTC",
    )


def retrain_late(
    context: dict, model: str, owner: str, email: list[str], conn_ids: list[str], deadline: str
) -> dict | None:
    """The deadline's callback (Airflow runs it by path, with the run in ``context``): the retrain
    is still running past ``deadline``. Never raises."""
    try:
        subject = f"{model}: retrain not finished by {deadline} UTC"
        notifier = FactoryNotifier(model, owner, "retrain_late", subject, email, conn_ids)
        run = context.get("dag_run") or {}
        at = (context.get("deadline") or {}).get("deadline_time")
        run_id = run.get("dag_run_id") or run.get("run_id", "")
        run_context = {"dag_id": run.get("dag_id", ""), "run_id": run_id}
        lines = [f"Deadline: {deadline} UTC ({at}); run state {run.get('state')}"]
        return notifier.send(run_context, lines, {"deadline": deadline, "deadline_time": str(at)})
    except Exception:
        log.exception("retrain deadline alert for %s failed", model)
        return None
