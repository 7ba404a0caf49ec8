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
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from model_factory.spec import ModelSpec

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
        return SmtpNotifier(to=spec_email, smtp_conn_id=conn_id, subject=subject,
                            html_content=f"<pre>{body}</pre>")  # fmt: skip
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


class FactoryNotifier(BaseNotifier):
    """Tell a model's owner (or reviewer) about a run; never raises."""

    def __init__(self, spec: ModelSpec, kind: str, subject: str):
        super().__init__()
        self.model, self.owner, self.kind, self.subject = spec.name, spec.owner, kind, subject
        self.email = list(spec.notify.email)
        self.conn_ids = [c for c in (spec.notify.smtp_conn_id, spec.notify.webhook_conn_id) if c]

    def notify(self, context: Any) -> None:
        try:
            self.send(context)
        except Exception:  # the record itself failed: log it, never fail the task
            log.exception("notification for %s (%s) failed", self.model, self.kind)

    def send(self, context: Any) -> dict:
        from model_factory.monitoring.alerts import Alert, deliver
        from model_factory.settings import FactorySettings

        links = run_links(context)
        ti = context.get("ti")
        task = getattr(ti, "task_id", None)
        error = context.get("exception")
        where = getattr(context.get("dag"), "dag_id", "") + (f".{task}" if task else "")
        subject = f"{self.subject}: {where}"
        lines = [f"Run: {links.get('run', '?')}"] + ([f"Log: {links['log']}"] if "log" in links else [])
        body = "\n".join(lines + ([f"Error: {type(error).__name__}: {error}"] if error else []))
        alert = Alert(model=self.model, owner=self.owner, kind=self.kind, subject=subject, body=body,
                      details={"links": links, "task_id": task, "run_id": context.get("run_id")})  # fmt: skip
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
        outcome = deliver(recorded, FactorySettings.from_env().home)
        return outcome | {"channels": channels}


def failure_notifier(spec: ModelSpec) -> FactoryNotifier:
    return FactoryNotifier(spec, "task_failed", f"{spec.name}: a task failed")


def held_notifier(spec: ModelSpec) -> FactoryNotifier:
    return FactoryNotifier(spec, "held_for_review", f"{spec.name}: a version waits for your review")
