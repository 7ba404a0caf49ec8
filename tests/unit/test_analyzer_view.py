"""The Analyzer's page in the "Model factory" view (the console app without Airflow)."""

from __future__ import annotations

import pytest
from fastapi import Header, HTTPException
from fastapi.testclient import TestClient
from model_factory.analyzer.report import build_report, write_report
from model_factory.analyzer.store import EventStore
from model_factory.console.app import ConsoleConfig, create_app
from model_factory.settings import FactorySettings
from model_factory_dev.event_history import write_history


def _login(x_user: str | None = Header(default=None)) -> str:
    if not x_user:
        raise HTTPException(401, "Not authenticated")
    return x_user


@pytest.fixture
def client(factory_home) -> TestClient:
    return TestClient(create_app(ConsoleConfig(require_user=_login)), raise_server_exceptions=False)


def test_the_analyzer_page_needs_the_hosts_login(client: TestClient) -> None:
    assert client.get("/analyzer").status_code == 401
    assert client.get("/api/analyzer").status_code == 401


def test_no_events_yet_is_said(client: TestClient) -> None:
    page = client.get("/analyzer", headers={"x-user": "platform"})
    assert page.status_code == 200 and 'id="no-events"' in page.text and "no events recorded yet" in page.text


def test_the_page_shows_segments_findings_and_the_weekly_report(client: TestClient) -> None:
    history = write_history(EventStore())
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
