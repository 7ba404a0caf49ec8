"""The Analyzer's page in the "Model factory" view (the console app without Airflow)."""

from __future__ import annotations

import pytest
from fastapi import Header, HTTPException
from fastapi.testclient import TestClient
from model_factory.analyzer.events import Event
from model_factory.analyzer.report import build_report, write_report
from model_factory.console.app import ConsoleConfig, create_app
from model_factory.settings import FactorySettings
from model_factory_dev.event_history import write_history

from tests.conftest import event_store


def _login(x_user: str | None = Header(default=None)) -> str:
    if not x_user:
        raise HTTPException(401, "Not authenticated")
    return x_user


@pytest.fixture
def client(factory_home) -> TestClient:
    return TestClient(
        create_app(ConsoleConfig(require_user=_login, settings=FactorySettings.from_env)),
        raise_server_exceptions=False,
    )


def test_the_analyzer_page_needs_the_hosts_login(client: TestClient) -> None:
    assert client.get("/analyzer").status_code == 401
    assert client.get("/api/analyzer").status_code == 401


def test_no_events_yet_is_said(client: TestClient) -> None:
    page = client.get("/analyzer", headers={"x-user": "platform"})
    assert page.status_code == 200 and 'id="no-events"' in page.text and "no events recorded yet" in page.text


def test_the_page_shows_segments_findings_and_the_weekly_report(client: TestClient) -> None:
    history = write_history(event_store())
    page = client.get("/analyzer", headers={"x-user": "platform"})
    assert page.status_code == 200 and "computed now from the stored events" in page.text
    assert page.text.count('data-class="SoP"') == 3 and page.text.count('data-class="ET"') == 4
    assert 'id="segments"' in page.text and "Expert" in page.text
    assert "-10 points (40%/55%/70%)" in page.text

    settings = FactorySettings.from_env()
    uri = write_report(build_report(settings, collect=False), settings.store_uri)
    data = client.get("/api/analyzer", headers={"x-user": "platform"}).json()
    assert data["read_from"] == uri
    assert {f["error_kind"]: f["class"] for f in data["findings"]} == history.planted
    fleet = client.get("/", headers={"x-user": "platform"}).text
    assert 'id="analyzer-link"' in fleet


# --- who sees what (issue 18 finding 7) ---------------------------------------------------------


@pytest.fixture
def guarded(factory_home) -> TestClient:
    config = ConsoleConfig(
        require_user=_login,
        settings=FactorySettings.from_env,
        sees_people=lambda user: user == "platform",
        readable_dag_ids=lambda user: None if user == "platform" else {"churn__retrain", "churn__canary"},
    )
    return TestClient(create_app(config), raise_server_exceptions=False)


def test_only_the_platform_team_sees_who_did_what(guarded: TestClient, monkeypatch) -> None:
    monkeypatch.setenv("FACTORY_ANALYZER_SYSTEM_USERS", "svc-batch")
    history = write_history(event_store())
    odd = [Event(user="svc-batch", action="cli.status"), Event(user="ana.lone", action="cli.status")]
    event_store().add(odd)  # a service account and a user too thin to segment: named to no viewer
    viewer = guarded.get("/api/analyzer", headers={"x-user": "viewer"})
    platform = guarded.get("/api/analyzer", headers={"x-user": "platform"}).json()
    assert viewer.status_code == 200
    for user in [*history.skills, "svc-batch", "ana.lone"]:  # no name of anyone, anywhere a viewer looks
        assert user not in viewer.text
        assert user.split("@")[0] + "@" not in viewer.text
    data = viewer.json()
    assert "user_signals" not in data and "segments" not in data["segmentation"]
    assert data["segmentation"]["sizes"] == platform["segmentation"]["sizes"]  # the aggregate stays
    assert {f["error_kind"]: f["class"] for f in data["findings"]} == history.planted
    examples = [e for f in data["findings"] for e in f["examples"]]
    assert examples and all(set(e) == {"at", "action", "model"} for e in examples)
    assert {e["model"] for e in examples} <= {"churn", None}
    page = guarded.get("/analyzer", headers={"x-user": "viewer"}).text
    assert 'id="redacted"' in page and not any(user in page for user in history.skills)

    assert data["excluded_users"] == {"count": 1} and data["not_segmented"] == {"count": 1}
    assert platform["excluded_users"] == {"svc-batch": "service account (1 events)"}
    assert len(platform["user_signals"]) == 35 and platform["segmentation"]["segments"]
    assert any(e.get("user") in history.skills for f in platform["findings"] for e in f["examples"])
    assert 'id="redacted"' not in guarded.get("/analyzer", headers={"x-user": "platform"}).text


def test_the_fleet_lists_only_models_the_user_may_read(guarded: TestClient) -> None:
    viewer = guarded.get("/api/fleet", headers={"x-user": "viewer"}).json()
    platform = guarded.get("/api/fleet", headers={"x-user": "platform"}).json()
    assert [row["model"] for row in viewer["models"]] == ["churn"]
    assert len(platform["models"]) > 1
    assert guarded.get("/api/models/demand", headers={"x-user": "viewer"}).status_code == 404
    assert guarded.get("/api/models/churn", headers={"x-user": "viewer"}).status_code == 200


def test_the_platform_team_is_who_airflow_lets_edit_connections(monkeypatch) -> None:
    """The rule, asked of Airflow 3.3's own (simple) auth manager: OP and ADMIN see people."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import (
        SimpleAuthManager,
        SimpleAuthManagerUser,
    )
    from model_factory.airflow import plugin

    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", lambda: SimpleAuthManager())
    seen = {
        role: plugin.is_platform_team(SimpleAuthManagerUser(username="x", role=role))
        for role in ("VIEWER", "USER", "OP", "ADMIN")
    }
    assert seen == {"VIEWER": False, "USER": False, "OP": True, "ADMIN": True}
