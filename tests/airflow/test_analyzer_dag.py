"""The Analyzer inside Airflow: the weekly DAG run by Airflow, spec errors recorded at parse time."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from model_factory.io import storage
from model_factory.settings import FactorySettings
from model_factory_dev.event_history import write_history

from tests.conftest import REPO, event_store


def _dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_weekly_dag_shape() -> None:
    from model_factory.airflow.analyzer import DAG_ID, analyzer_dags

    dag = analyzer_dags()[DAG_ID]
    assert "0 6 * * 1" in repr(dag.schedule) and dag.catchup is False and dag.max_active_runs == 1
    assert {"model-factory", "analyzer"} <= set(dag.tags) and dag.doc_md
    (task,) = dag.tasks
    assert task.owner == "platform-team" and task.retries >= 1 and task.execution_timeout is not None


def test_opted_out_installation_has_no_analyzer_dag(monkeypatch) -> None:
    from model_factory.airflow.analyzer import analyzer_dags

    monkeypatch.setenv("FACTORY_ANALYZER", "off")
    assert analyzer_dags() == {}


def test_invalid_spec_found_at_parse_time_is_recorded_once_with_its_git_author(
    tmp_path, monkeypatch, factory_home
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(REPO / "include" / "models" / "churn.yaml", specs / "churn.yaml")
    text = (REPO / "include" / "models" / "demand.yaml").read_text().replace("name: demand", "name: broken")
    (specs / "broken.yaml").write_text(text.replace("HistGradientBoostingRegressor", "DeepMagicRegressor"))
    git = ["git", "-C", str(specs), "-c", "user.name=Eli", "-c", "user.email=eli@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "specs"], check=True)
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(specs))

    bag = _dagbag()
    assert "invalid_spec__broken" in bag.dag_ids and "model_factory_analyzer" in bag.dag_ids
    _dagbag()  # the DAG processor parses again
    events = event_store().events()
    assert len(events) == 1
    (event,) = events
    assert (event.user, event.action, event.source) == ("eli@example.com", "spec.parse", "dag_parse")
    assert event.model == "broken"
    assert event.error_kind == "spec: estimator not allowed" and event.stage == "training"


@pytest.mark.usefixtures("airflow_db")
def test_weekly_dag_run_by_airflow_writes_the_report(factory_home, monkeypatch) -> None:
    from model_factory.airflow.analyzer import DAG_ID, analyzer_dags
    from model_factory_dev.stack import free_port

    monkeypatch.setenv("FACTORY_AIRFLOW_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    history = write_history(event_store())
    # the report covers the 13 weeks before the run's logical date: the history's whole span
    run = analyzer_dags()[DAG_ID].test(logical_date=datetime(2026, 11, 2, 6, tzinfo=UTC))
    assert str(run.state) == "success"
    settings = FactorySettings.from_env()
    reports = [
        u
        for u in storage.list_uris(storage.join(settings.store_uri, "analyzer", "reports"))
        if u.endswith("report.json")
    ]
    assert len(reports) == 1
    report = storage.read_json(reports[0])
    assert any("unreachable" in lack for lack in report["lacks"])
    assert storage.read_bytes(reports[0].replace("report.json", "report.txt")).decode().startswith("Analyzer")
    assert report["window"] == {"since": "2026-08-03T06:00:00", "until": "2026-11-02T06:00:00"}
    assert report["events"]["total"] == len(history.events)
    assert {f["error_kind"]: f["class"] for f in report["findings"]} == history.planted
