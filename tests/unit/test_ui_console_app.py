"""The view's pages without Airflow: bad input gets a page, never a 500 (the Airflow wiring and the
browser are in tests/e2e/test_ui_console.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import Header, HTTPException
from fastapi.testclient import TestClient
from model_factory.console.app import ConsoleConfig, create_app

REPO = Path(__file__).resolve().parents[2]


class DownAirflow:
    def dag_states(self, dag_ids: list[str]) -> dict:
        raise ConnectionError("metadata DB unreachable")

    def latest_runs(self, dag_ids: list[str]) -> dict:
        raise ConnectionError("metadata DB unreachable")


def _login(x_user: str | None = Header(default=None)) -> str:
    if not x_user:
        raise HTTPException(401, "Not authenticated")
    return x_user


@pytest.fixture
def client(factory_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "churn.yaml").write_text((REPO / "include" / "models" / "churn.yaml").read_text())
    (specs / "typo.yaml").write_text("name: typo\nownr: growth\n")
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(specs))
    config = ConsoleConfig(require_user=_login, airflow=DownAirflow, can_run=lambda user, dag: user == "ops")
    return TestClient(create_app(config), raise_server_exceptions=False)


def test_every_page_needs_the_hosts_login(client: TestClient) -> None:
    for path in ("/", "/api/fleet", "/models/churn", "/api/models/churn", "/models/churn/drift/2026-01-01",
                 "/models/churn/versions/1/card", "/mlflow/runs/" + "0" * 32, "/icon.svg"):  # fmt: skip
        assert client.get(path).status_code == 401, path


def test_the_fleet_shows_what_it_can_and_names_what_is_down(client: TestClient) -> None:
    page = client.get("/", headers={"x-user": "viewer"})
    assert page.status_code == 200
    assert 'data-model="churn"' in page.text and "broken spec" in page.text and "ownr" in page.text
    assert 'data-source="airflow"' in page.text and "metadata DB unreachable" in page.text
    fleet = client.get("/api/fleet", headers={"x-user": "viewer"}).json()
    assert fleet["sources"]["airflow"].startswith("unreachable")
    assert [row["can_trigger"] for row in fleet["models"] if row["status"] == "ok"] == [False]


def test_buttons_only_for_users_airflow_lets_trigger(client: TestClient) -> None:
    assert 'id="trigger"' not in client.get("/models/churn", headers={"x-user": "viewer"}).text
    ops = client.get("/models/churn", headers={"x-user": "ops"}).text
    assert 'id="trigger"' in ops and 'data-dag="churn__retrain"' in ops and 'data-action="promote"' in ops


def test_bad_input_gets_a_page_not_a_500(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from model_factory_dev.stack import free_port

    who = {"x-user": "viewer"}
    assert client.get("/models/nope", headers=who).status_code == 404
    assert client.get("/api/models/nope", headers=who).json() == {"detail": "no model 'nope'"}
    assert client.get("/models/..%2Fetc", headers=who).status_code == 404
    assert client.get("/models/churn/drift/yesterday", headers=who).status_code == 400
    assert client.get("/models/churn/drift/2026-01-01", headers=who).status_code == 404
    assert client.get("/models/churn/versions/x/card", headers=who).status_code == 400
    assert client.get("/mlflow/runs/not-a-run", headers=who).status_code == 400
    broken = client.get("/models/typo", headers=who)
    assert broken.status_code == 200 and "broken spec" in broken.text and "invalid_spec__typo" in broken.text

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # MLflow down
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    page = client.get("/models/churn", headers=who)
    assert page.status_code == 200 and 'data-source="mlflow"' in page.text
    card = client.get("/models/churn/versions/1/card", headers=who)
    assert card.status_code == 503 and "Could not build this page" in card.text
