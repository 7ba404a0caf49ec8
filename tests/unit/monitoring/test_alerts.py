"""Owner alerts: the file channel always, e-mail and webhook over real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from model_factory.monitoring.alerts import Alert, SmtpTarget, deliver, read_alerts
from model_factory.settings import FactorySettings


def _alert() -> Alert:
    return Alert(
        model="churn",
        owner="growth",
        kind="drift",
        subject="churn: drift on 2026-01-11",
        body="tenure_months PSI 0.41",
        details={"psi": 0.41},
    )


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@pytest.fixture
def smtp_server():
    """A minimal SMTP peer that speaks enough of RFC 5321 for smtplib and keeps the message."""
    messages: list[str] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"220 test ESMTP\r\n")
            while line := self.rfile.readline():
                cmd = line.decode().strip().upper()
                if cmd.startswith(("EHLO", "HELO")):
                    self.wfile.write(b"250 test\r\n")
                elif cmd == "DATA":
                    self.wfile.write(b"354 go\r\n")
                    body = []
                    while (data := self.rfile.readline()) not in (b".\r\n", b""):
                        body.append(data.decode())
                    messages.append("".join(body))
                    self.wfile.write(b"250 queued\r\n")
                elif cmd == "QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:
                    self.wfile.write(b"250 ok\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], messages
    server.shutdown()
    server.server_close()


def test_file_channel_always_written(tmp_path: Path) -> None:
    outcome = deliver(_alert(), FactorySettings(home=tmp_path))
    assert outcome == {"file": str(tmp_path / "alerts" / "churn.jsonl"), "db": "stored"}
    [stored] = read_alerts(FactorySettings(home=tmp_path), "churn")
    assert stored["kind"] == "drift" and stored["details"] == {"psi": 0.41}


def test_alerts_live_in_the_prediction_db_and_survive_a_restart(tmp_path: Path) -> None:
    """The table is the durable copy: a fresh process (new engine) without the JSONL still reads it."""
    import sqlalchemy as sa
    from model_factory.monitoring.alerts import ALERTS, alerts_file

    settings = FactorySettings(home=tmp_path)
    deliver(_alert(), settings)
    alerts_file(tmp_path, "churn").unlink()  # the container-local log is gone
    with sa.create_engine(settings.prediction_db).connect() as conn:  # another process's view
        [row] = conn.execute(sa.select(ALERTS)).mappings().all()
    assert (row["model"], row["kind"], row["owner"]) == ("churn", "drift", "growth")
    assert read_alerts(FactorySettings(home=tmp_path), "churn")[0]["subject"] == "churn: drift on 2026-01-11"


def test_an_unwritable_db_is_reported_and_the_log_still_has_the_alert(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACTORY_PREDICTION_DB_URI", "postgresql+psycopg2://nobody@127.0.0.1:1/none")
    outcome = deliver(_alert(), FactorySettings(home=tmp_path))
    assert outcome["db"].startswith("failed:")
    assert '"kind": "drift"' in (tmp_path / "alerts" / "churn.jsonl").read_text()


def test_email_and_webhook_delivered(tmp_path: Path, smtp_server, webhook) -> None:
    port, messages = smtp_server
    url, received = webhook
    target = SmtpTarget(
        host="127.0.0.1", port=port, sender="mf@example.org", recipients=["owner@example.org"]
    )
    outcome = deliver(_alert(), FactorySettings(home=tmp_path), smtp=target, webhook_url=url)
    assert outcome["email"] == "sent to owner@example.org" and outcome["webhook"] == "HTTP 200"
    assert "Subject: [model-factory] churn: drift on 2026-01-11" in messages[0]
    assert "tenure_months PSI 0.41" in messages[0]
    assert received[0]["text"].startswith("*churn: drift on 2026-01-11*")
    assert received[0]["alert"]["owner"] == "growth"


def test_a_dead_channel_is_reported_not_raised(tmp_path: Path) -> None:
    from tests.integration.conftest import free_port

    port = free_port()  # nothing listens there
    target = SmtpTarget(host="127.0.0.1", port=port, sender="a@b", recipients=["c@d"])
    outcome = deliver(
        _alert(), FactorySettings(home=tmp_path), smtp=target, webhook_url=f"http://127.0.0.1:{port}/x"
    )
    assert outcome["email"].startswith("failed:") and outcome["webhook"].startswith("failed:")
    assert len(read_alerts(FactorySettings(home=tmp_path), "churn")) == 1
