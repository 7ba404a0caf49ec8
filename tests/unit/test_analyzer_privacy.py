"""Issue 18 finding 7: pseudonymised events keep no name or free text, details are bounded, and the
Analyzer page shows per-user detail to the platform team only and models only to who may read them."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi import Header, HTTPException
from fastapi.testclient import TestClient
from model_factory.analyzer.events import Event
from model_factory.analyzer.privacy import MAX_DETAILS_CHARS, MAX_MESSAGE_CHARS
from model_factory.analyzer.store import EVENTS, EventStore
from model_factory.cli.main import main
from model_factory.console.app import ConsoleConfig, create_app
from model_factory_dev.event_history import write_history


def _stored_text(store: EventStore) -> str:
    """Every stored cell of every event, as one text (what someone reading the table sees)."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(EVENTS)).all()
    return "\n".join(" | ".join(str(cell) for cell in row) for row in rows)


def test_pseudonymised_events_keep_no_name_and_no_free_text(factory_home, monkeypatch) -> None:
    monkeypatch.setenv("FACTORY_ANALYZER_PSEUDONYMIZE", "true")
    monkeypatch.setenv("FACTORY_ACTOR", "ana.smith")
    reason = "Bea Jones okayed it on the phone"
    main(["promote", "churn", "--actor", "Carl Dunn", "--reason", reason])
    main(["rollback", "churn", "--actor=Carl Dunn", f"--reason={reason}"])
    main(["validate", "/home/ana.smith/specs/churn.yaml"])
    EventStore().add(
        [
            Event(
                user="dee@example.com",
                action="canary.rolled_back",
                source="decisions",
                outcome="error",
                message="Dee: rolled back, the customer called",
                details={"actor": "dee@example.com via airflow", "reason": "the customer called"},
            ),
            Event(
                user="eve",
                action="task.ingest",
                source="airflow",
                outcome="error",
                message="cannot read /home/eve/data/2026-01-01.csv for eve",
            ),
        ]
    )
    stored = _stored_text(EventStore())
    for personal in ("ana.smith", "Carl Dunn", "Bea Jones", "phone", "dee@example.com", "customer called",
                     "/home/eve", "for eve"):  # fmt: skip
        assert personal not in stored, personal
    events = EventStore().events()
    assert len(events) == 5 and all(e.user.startswith("u-") for e in events)
    promote = events[0]
    assert "--actor" in promote.details["argv"] and "<dropped>" in promote.details["argv"]
    assert events[3].details["actor"].endswith(" via airflow")  # who acted stays countable, unnamed


def test_details_and_messages_are_bounded(factory_home) -> None:
    """A 100 KB reason was stored whole in ``details`` (the command line)."""
    main(["promote", "churn", "--reason", "x" * 100_000])
    big = Event(user="a", action="cli.x", message="y" * 100_000, details={"k": ["z" * 1000] * 500})
    EventStore().add([big])
    with EventStore().engine.connect() as conn:
        rows = conn.execute(sa.select(EVENTS.c.details, EVENTS.c.message)).all()
    assert len(rows) == 2
    for details, message in rows:
        assert len(details) <= MAX_DETAILS_CHARS
        assert message is None or len(message) <= MAX_MESSAGE_CHARS


def _login(x_user: str | None = Header(default=None)) -> str:
    if not x_user:
        raise HTTPException(401, "Not authenticated")
    return x_user


@pytest.fixture
def client(factory_home) -> TestClient:
    config = ConsoleConfig(
        require_user=_login,
        sees_people=lambda user: user == "platform",
        readable_dag_ids=lambda user: None if user == "platform" else {"churn__retrain", "churn__canary"},
    )
    return TestClient(create_app(config), raise_server_exceptions=False)


def test_only_the_platform_team_sees_who_did_what(client: TestClient) -> None:
    history = write_history(EventStore())
    viewer = client.get("/api/analyzer", headers={"x-user": "viewer"})
    platform = client.get("/api/analyzer", headers={"x-user": "platform"}).json()
    assert viewer.status_code == 200
    for user in history.skills:  # no name of anyone, anywhere in what a viewer gets
        assert user not in viewer.text
        assert user.split("@")[0] + "@" not in viewer.text
    data = viewer.json()
    assert "user_signals" not in data and "segments" not in data["segmentation"]
    assert data["segmentation"]["sizes"] == platform["segmentation"]["sizes"]  # the aggregate stays
    assert {f["error_kind"]: f["class"] for f in data["findings"]} == history.planted
    examples = [e for f in data["findings"] for e in f["examples"]]
    assert examples and all(set(e) == {"at", "action", "model"} for e in examples)
    assert {e["model"] for e in examples} <= {"churn", None}
    page = client.get("/analyzer", headers={"x-user": "viewer"}).text
    assert 'id="redacted"' in page and not any(user in page for user in history.skills)

    assert len(platform["user_signals"]) == 34 and platform["segmentation"]["segments"]
    assert any(e.get("user") in history.skills for f in platform["findings"] for e in f["examples"])
    assert 'id="redacted"' not in client.get("/analyzer", headers={"x-user": "platform"}).text


def test_the_fleet_lists_only_models_the_user_may_read(client: TestClient) -> None:
    viewer = client.get("/api/fleet", headers={"x-user": "viewer"}).json()
    platform = client.get("/api/fleet", headers={"x-user": "platform"}).json()
    assert [row["model"] for row in viewer["models"]] == ["churn"]
    assert len(platform["models"]) > 1
    assert client.get("/api/models/demand", headers={"x-user": "viewer"}).status_code == 404
    assert client.get("/api/models/churn", headers={"x-user": "viewer"}).status_code == 200


def test_the_platform_team_is_who_airflow_lets_edit_connections(monkeypatch) -> None:
    """The rule, asked of Airflow 3.3's own (simple) auth manager: OP and ADMIN see people."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import (
        SimpleAuthManager,
        SimpleAuthManagerUser,
    )
    from model_factory.airflow import plugin

    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", lambda: SimpleAuthManager())
    seen = {role: plugin.is_platform_team(SimpleAuthManagerUser(username="x", role=role))
            for role in ("VIEWER", "USER", "OP", "ADMIN")}  # fmt: skip
    assert seen == {"VIEWER": False, "USER": False, "OP": True, "ADMIN": True}
