"""Alerts to a model's owner: always a log line and a JSON-lines file, plus e-mail and a
Slack-style webhook when the spec's ``notify`` section names Airflow connections for them.

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

log = logging.getLogger(__name__)


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


def write_alert(alert: Alert, home: Path) -> Path:
    """Append the alert to ``<home>/alerts/<model>.jsonl`` (the default, always-on channel)."""
    path = alerts_file(home, alert.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(asdict(alert), sort_keys=True, default=str) + "\n")
    return path


def read_alerts(home: Path, model: str) -> list[dict[str, Any]]:
    path = alerts_file(home, model)
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
    home: Path,
    smtp: SmtpTarget | None = None,
    webhook_url: str | None = None,
) -> dict[str, str]:
    """Send on every configured channel; a failing channel is reported, never raised, so an
    alert outage cannot fail the pipeline step that raised the alert."""
    log.warning("ALERT for %s (owner %s): %s\n%s", alert.model, alert.owner, alert.subject, alert.body)
    outcome = {"file": str(write_alert(alert, home))}
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
