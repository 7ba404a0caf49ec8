"""The view's pages without Airflow: bad input gets a page, never a 500 (the Airflow wiring and the
browser are in tests/e2e/test_ui_console.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import Header, HTTPException
from fastapi.testclient import TestClient
from model_factory.console.app import ConsoleConfig, create_app
from model_factory.settings import FactorySettings

REPO = Path(__file__).resolve().parents[3]


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
    config = ConsoleConfig(
        require_user=_login,
        settings=FactorySettings.from_env,
        airflow=DownAirflow,
        can_run=lambda user, dag: user == "ops",
    )
    return TestClient(create_app(config), raise_server_exceptions=False)


def test_every_page_needs_the_hosts_login(client: TestClient) -> None:
    for path in (
        "/",
        "/api/fleet",
        "/models/churn",
        "/api/models/churn",
        "/models/churn/drift/2026-01-01",
        "/models/churn/versions/1/card",
        "/mlflow/runs/" + "0" * 32,
        "/icon.svg",
    ):
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


class PausedAirflow:
    """Airflow where every factory DAG exists and is paused (Airflow's default for a new DAG)."""

    def dag_states(self, dag_ids: list[str]) -> dict:
        return {dag: {"next_run": None, "is_paused": True} for dag in dag_ids}

    def latest_runs(self, dag_ids: list[str]) -> dict:
        return {}


@pytest.fixture
def paused_client(client: TestClient) -> TestClient:
    config = ConsoleConfig(
        require_user=_login,
        settings=FactorySettings.from_env,
        airflow=PausedAirflow,
        can_run=lambda user, dag: user in ("ops", "oncall"),
        can_unpause=lambda user, dag: user == "ops",
    )
    return TestClient(create_app(config), raise_server_exceptions=False)


def test_a_paused_dag_disables_its_button_and_offers_unpause_to_who_may(paused_client: TestClient) -> None:
    ops = paused_client.get("/models/churn", headers={"x-user": "ops"}).text
    assert '<button id="trigger" data-dag="churn__retrain" disabled>' in ops
    assert "churn__retrain is paused</b>: a run started now would wait" in ops
    assert '<button class="unpause" data-dag="churn__retrain">' in ops
    assert '<button class="unpause" data-dag="churn__canary">' in ops
    oncall = paused_client.get("/models/churn", headers={"x-user": "oncall"}).text
    assert "churn__retrain is paused" in oncall and 'class="unpause"' not in oncall
    assert "ask someone who may edit that DAG to unpause it" in oncall


def test_promote_is_off_without_a_canary_and_says_why(paused_client: TestClient) -> None:
    page = paused_client.get("/models/churn", headers={"x-user": "ops"}).text
    assert 'data-action="promote" data-dag="churn__canary" disabled>' in page
    assert "Promote is off: no canary is running" in page
    assert "prompt(" not in page  # blocked inside Airflow's frame: the reason is asked in a <dialog>
    assert '<dialog id="ask">' in page


def model_detail(**fields) -> dict:
    """What ``fleet.model_detail`` gives the model page for churn (retrain, classification, owned
    by growth, champion v1 at 0.9, nothing else going on), ``fields`` replacing."""
    return {
        "model": "churn",
        "status": "ok",
        "template": "retrain",
        "task": "classification",
        "owner": "growth",
        "metric": "roc_auc",
        "champion": "1",
        "champion_metric": 0.9,
        "canary": None,
        "challenger": None,
        "pinned": None,
        "held": [],
        "next_run": None,
        "dags": {},
        "sources": {},
        "versions_detail": [],
        "rollouts": [],
        "drift_checks": [],
        "quarantines": [],
        "all_alerts": [],
        **fields,
    }


def test_checklist_items_are_drawn_pass_or_fail(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from model_factory.rollout import fleet

    version = {
        "version": "3",
        "created": None,
        "decision": "promoted",
        "reason": "",
        "metric": 0.9,
        "aliases": ["champion"],
        "run_id": None,
        "checklist": "failed",
        "review": None,
        "checklist_items": {"owner": "pass", "gates_passed": "pass", "lineage": "fail"},
    }
    detail = model_detail(champion="3", versions_detail=[version])
    monkeypatch.setattr(fleet, "model_detail", lambda settings, model, airflow: detail)
    page = client.get("/models/churn", headers={"x-user": "viewer"}).text
    assert '<div class="small item-pass" data-item="owner">✓ owner</div>' in page
    assert '<div class="small item-pass" data-item="gates_passed">✓ gates_passed</div>' in page
    assert '<div class="small item-fail" data-item="lineage">✗ lineage: fail</div>' in page


def test_links_work_inside_airflows_frame(client: TestClient) -> None:
    """Airflow's frame blocks target=_top and _blank: Airflow pages are data-airflow links (its
    router is asked), new tabs data-outside (opened from the host page); see the e2e test."""
    for path in ("/", "/models/churn", "/models/typo"):
        page = client.get(path, headers={"x-user": "ops"}).text
        assert 'target="_top"' not in page, path
        assert "<a data-airflow " in page and "host.history.pushState" in page, path


def test_artifacts_get_a_way_back_and_keep_their_sandbox() -> None:
    from model_factory.console.app import ARTIFACT_CSP, artifact_page

    page = artifact_page(
        b"<html><BODY class='x'><h1>card</h1></body></html>", back=("/factory/models/a", "a")
    )
    assert page.headers["content-security-policy"] == ARTIFACT_CSP
    html = page.body.decode()
    assert (
        html.index("<BODY class='x'>")
        < html.index('id="factory-back" href="/factory/models/a"')
        < html.index("<h1>card</h1>")
    )
    bare = artifact_page("<h1>no body tag</h1>", back=("/f/<x>", "<x>")).body.decode()
    assert bare.startswith("<p style=") and 'href="/f/&lt;x&gt;"' in bare and "&larr; &lt;x&gt;" in bare


def test_the_fleet_page_filters_and_pages(client: TestClient) -> None:
    who = {"x-user": "viewer"}
    broken = client.get("/api/fleet?state=broken", headers=who).json()
    assert [r["model"] for r in broken["models"]] == ["typo"] and broken["matched"] == 1
    assert broken["total"] == 2
    first = client.get("/api/fleet?per_page=1", headers=who).json()
    second = client.get("/api/fleet?per_page=1&page=2", headers=who).json()
    assert first["pages"] == 2 and [r["model"] for r in first["models"] + second["models"]] == [
        "churn",
        "typo",
    ]
    attention = client.get("/api/fleet?attention=1", headers=who).json()
    assert [(r["model"], r["attention"]) for r in attention["models"]] == [("typo", ["broken spec"])]
    page = client.get("/?owner=nobody", headers=who).text
    assert "0 of 2 models" in page and "no model matches this filter" in page
    bad_filters = [
        ("state=weird", "state='weird'"),
        ("page=0", "page='0'"),
        ("per_page=x", "per_page='x'"),
        ("attention=maybe", "attention='maybe'"),
    ]
    for bad, named in bad_filters:
        html = client.get(f"/?{bad}", headers=who)
        assert html.status_code == 400 and named in html.text.replace("&#39;", "'"), bad
        assert client.get(f"/api/fleet?{bad}", headers=who).status_code == 400, bad


def test_the_fleet_page_reads_only_its_page_of_models(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Server-side pages: the sources are read for the page's models, not the fleet's."""
    from model_factory.rollout import fleet as fleet_module

    specs = Path(fleet_module.FactorySettings.from_env().specs_dir)
    churn = (specs / "churn.yaml").read_text()
    for name in ("churn_b", "churn_c"):
        (specs / f"{name}.yaml").write_text(churn.replace("name: churn\n", f"name: {name}\n"))
    asked: list[object] = []
    read = fleet_module._read_fleet

    def spy(settings, airflow, only):
        asked.append(only)
        return read(settings, airflow, only)

    monkeypatch.setattr(fleet_module, "_read_fleet", spy)
    who = {"x-user": "viewer"}
    second = client.get("/api/fleet?per_page=2&page=2", headers=who).json()
    assert [r["model"] for r in second["models"]] == ["churn_c", "typo"] and second["total"] == 4
    assert asked == [["churn_c", "typo"]]
    page = client.get("/?per_page=2", headers=who).text
    assert 'data-model="churn_b"' in page and 'data-model="churn_c"' not in page and "4 models" in page
    assert asked[-1] == ["churn", "churn_b"]
    client.get("/api/fleet?attention=1", headers=who)
    assert asked[-1] is None  # needs every model's state: the whole fleet


def test_fleet_selection_at_ten_thousand_models() -> None:
    from model_factory.console.fleet_page import FleetFilter, select

    rows = [
        {
            "model": f"m{i:05d}",
            "status": "ok",
            "owner": f"team{i % 7}",
            "template": "retrain",
            "champion": "1",
            "versions": 1,
            "quarantined": 1 if i % 100 == 0 else 0,
        }
        for i in range(10_000)
    ]
    shown = select(rows, FleetFilter(owner="team3", attention=True, per_page=5, page=2))
    assert shown.total == 10_000 and shown.attention_total == 100
    expected = [r["model"] for r in rows if r["owner"] == "team3" and r["quarantined"]]
    assert shown.matched == len(expected) and [r["model"] for r in shown.rows] == expected[5:10]
    assert shown.pages == -(-len(expected) // 5) and shown.owners == [f"team{i}" for i in range(7)]
    assert FleetFilter(owner="a", page=3).query(page=4) == {"owner": "a", "page": "4"}


def test_artifacts_open_in_a_view_page_with_the_way_back(client: TestClient) -> None:
    """Inside Airflow's frame a link in the sandboxed artifact cannot come back (its opaque origin
    sends no session cookie), so the view links a page of its own that frames the artifact."""
    who = {"x-user": "viewer"}
    page = client.get("/models/churn/versions/1/card/page", headers=who).text
    assert 'id="factory-back" href="/factory/models/churn"' in page
    framed = 'sandbox="" src="/factory/models/churn/versions/1/card?embedded=1"'
    assert '<iframe id="artifact" title="Model card of churn v1"' in page and framed in page
    drift = client.get("/models/churn/drift/2026-01-05/page", headers=who).text
    assert 'src="/factory/models/churn/drift/2026-01-05?embedded=1"' in drift
    assert client.get("/models/churn/versions/x/card/page", headers=who).status_code == 400
    assert client.get("/models/churn/drift/yesterday/page", headers=who).status_code == 400
