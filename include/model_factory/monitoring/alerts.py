"""Alerts to a model's owner: always a log line, a row in the ``alerts`` table of the prediction
DB (the durable place the CLI and the Airflow view read; Postgres in compose, so it survives a
container restart) and a JSON-lines log under FACTORY_HOME, plus e-mail and a Slack-style webhook
when the spec's ``notify`` section names Airflow connections for them.

This module only delivers; resolving Airflow connections into :class:`SmtpTarget` and a webhook
URL is the DAG's job, so everything here is testable without Airflow.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from model_factory.settings import FactorySettings

log = logging.getLogger(__name__)

METADATA = sa.MetaData()
ALERTS = sa.Table(
    "alerts",
    METADATA,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("owner", sa.String(256)),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text),
    sa.Column("details", sa.Text),  # JSON
    sa.Column("at", sa.String(40), nullable=False),  # ISO 8601 UTC, as on the Alert
    sa.Index("ix_alerts_model_at", "model", "at"),
)
_schema_ready: set[int] = set()


@dataclass(frozen=True)
class Alert:
    model: str
    owner: str
    kind: str  # drift | concept_drift | too_good | data_quality | quarantine | canary | ...
    subject: str
    body: str
    details: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    sender: str
    recipients: list[str]
    login: str | None = None
    password: str | None = None
    starttls: bool = False


def alerts_file(home: Path, model: str) -> Path:
    return home / "alerts" / f"{model}.jsonl"


def _engine(db: str) -> sa.engine.Engine:
    from model_factory.serving.predlog import engine_for

    engine = engine_for(db)
    if id(engine) not in _schema_ready:
        METADATA.create_all(engine, checkfirst=True)
        _schema_ready.add(id(engine))
    return engine


def write_alert(alert: Alert, home: Path) -> Path:
    """Append the alert to ``<home>/alerts/<model>.jsonl`` (the always-on log)."""
    path = alerts_file(home, alert.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(asdict(alert), sort_keys=True, default=str) + "\n")
    return path


def store_alert(alert: Alert, db: str) -> None:
    """Insert the alert into the ``alerts`` table of ``db``."""
    with _engine(db).begin() as conn:
        conn.execute(
            ALERTS.insert().values(
                model=alert.model,
                owner=alert.owner,
                kind=alert.kind,
                subject=alert.subject,
                body=alert.body,
                details=json.dumps(alert.details, default=str, sort_keys=True),
                at=alert.at,
            )
        )


def stored_alerts(db: str, models: list[str] | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Alerts from the table, newest first (of ``models`` if given; at most ``limit``)."""
    query = sa.select(ALERTS).order_by(ALERTS.c.at.desc(), ALERTS.c.id.desc())
    if models is not None:
        query = query.where(ALERTS.c.model.in_(models))
    if limit is not None:
        query = query.limit(limit)
    with _engine(db).connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    for row in rows:
        row["details"] = json.loads(row["details"]) if row["details"] else {}
    return rows


def read_alerts(settings: FactorySettings, model: str) -> list[dict[str, Any]]:
    """A model's alerts, oldest first: the table (in the prediction DB), else (alerts from before it
    existed) the JSONL log under the factory's home."""
    stored = stored_alerts(settings.prediction_db, [model])
    if stored:
        return [{k: v for k, v in row.items() if k != "id"} for row in reversed(stored)]
    path = alerts_file(settings.home, model)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def send_email(alert: Alert, target: SmtpTarget, timeout_s: float = 10.0) -> None:
    message = EmailMessage()
    message["Subject"] = f"[model-factory] {alert.subject}"
    message["From"] = target.sender
    message["To"] = ", ".join(target.recipients)
    message.set_content(f"{alert.body}\n\nModel: {alert.model} (owner {alert.owner})\nAt: {alert.at}\n")
    with smtplib.SMTP(target.host, target.port, timeout=timeout_s) as smtp:
        if target.starttls:
            smtp.starttls()
        if target.login:
            smtp.login(target.login, target.password or "")
        smtp.send_message(message)


def post_webhook(alert: Alert, url: str, timeout_s: float = 10.0) -> int:
    """POST a Slack-compatible ``{"text": ...}`` payload (plus the structured alert)."""
    payload = {"text": f"*{alert.subject}*\n{alert.body}", "alert": asdict(alert)}
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, default=str).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.status


def deliver(
    alert: Alert,
    settings: FactorySettings,
    smtp: SmtpTarget | None = None,
    webhook_url: str | None = None,
) -> dict[str, str]:
    """Send on every configured channel; a failing channel is reported, never raised, so an
    alert outage cannot fail the pipeline step that raised the alert."""
    log.warning("ALERT for %s (owner %s): %s\n%s", alert.model, alert.owner, alert.subject, alert.body)
    outcome = {"file": str(write_alert(alert, settings.home))}
    db = settings.prediction_db
    try:
        store_alert(alert, db)
        outcome["db"] = "stored"
    except Exception as exc:
        outcome["db"] = f"failed: {exc}"
        log.error(
            "alert for %s not stored in %s: %s", alert.model, sa.engine.make_url(db).render_as_string(), exc
        )
    if smtp is not None:
        try:
            send_email(alert, smtp)
            outcome["email"] = "sent to " + ", ".join(smtp.recipients)
        except (OSError, smtplib.SMTPException) as exc:
            outcome["email"] = f"failed: {exc}"
            log.error("alert e-mail to %s via %s:%s failed: %s", smtp.recipients, smtp.host, smtp.port, exc)
    if webhook_url:
        try:
            outcome["webhook"] = f"HTTP {post_webhook(alert, webhook_url)}"
        except OSError as exc:
            outcome["webhook"] = f"failed: {exc}"
            log.error("alert webhook %s failed: %s", webhook_url, exc)
    return outcome
