"""Collectors: quarantines from the store (real GX validation), canary outcomes from the decisions
table, attribution to the triggering user or the spec's git author, and an unreachable Airflow."""

from __future__ import annotations

import subprocess
from datetime import date, datetime

import pytest
from model_factory.analyzer.collect import (
    Attribution,
    collect_airflow,
    collect_decisions,
    collect_quarantines,
)
from model_factory.analyzer.events import Event
from model_factory.io import batches
from model_factory.io.airflow_api import AirflowClient
from model_factory.pipeline.validation import validate_batch
from model_factory.serving.predlog import write_decision
from model_factory.serving.settings import prediction_db_uri
from model_factory.settings import FactorySettings
from model_factory.spec import load_spec
from model_factory_dev import demo_data
from model_factory_dev.stack import free_port

from tests.conftest import REPO, event_store

DAY = date(2026, 3, 2)


def _git_author(path) -> str:
    done = subprocess.run(
        ["git", "log", "-1", "--format=%ae", "--", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def quarantined(factory_home) -> FactorySettings:
    """One churn batch with a dropped column, ingested and validated for real (GX)."""
    settings = FactorySettings.from_env()
    spec = load_spec(REPO / "include" / "models" / "churn.yaml", FactorySettings.from_env())
    df = demo_data.inject_fault(demo_data.generate_batch("churn", DAY, rows=300), "churn", "dropped_column")
    demo_data.write_batch(df, factory_home / "source" / "churn" / f"{DAY}.csv")
    manifest = batches.ingest_batch(spec, str(DAY), settings)
    assert validate_batch(spec, manifest, settings)["status"] == "quarantined"
    return settings


def test_quarantines_become_data_errors_of_the_specs_git_author(quarantined) -> None:
    store = event_store()
    status = collect_quarantines(store, quarantined, Attribution(store, quarantined))
    assert status.ok and status.new_events >= 1
    events = store.events()
    assert {e.error_kind for e in events} == {"validation: column missing"}
    author = _git_author(REPO / "include" / "models" / "churn.yaml")
    assert all(e.user == author and e.details["user_from"] == "git" for e in events)
    assert all(e.stage == "data" and e.model == "churn" and e.details["ds"] == str(DAY) for e in events)
    assert collect_quarantines(store, quarantined, Attribution(store, quarantined)).new_events == 0


def test_quarantines_belong_to_who_triggered_that_date(quarantined) -> None:
    store = event_store()
    store.add(
        [
            Event(
                user="ana",
                action="dag_run.retrain",
                source="airflow",
                model="churn",
                outcome="error",
                details={"run_id": "manual__x", "ds": str(DAY)},
                origin="airflow:run:churn__retrain:x",
            )
        ]
    )
    collect_quarantines(store, quarantined, Attribution(store, quarantined))
    (event,) = [e for e in store.events() if e.action == "batch.quarantined"][:1]
    assert event.user == "ana" and event.details["user_from"] == "triggering user (same model and date)"


def test_canary_outcomes_from_the_decisions_table(factory_home) -> None:
    settings = FactorySettings.from_env()
    db = prediction_db_uri(settings)
    at = datetime(2026, 3, 3, 12).isoformat()
    for action, actor in (
        ("canary_rolled_back", "airflow:churn__canary/scheduled__1"),
        ("canary_promoted", "dee via churn__canary/manual__2"),
        ("canary_rolled_back", "bo via cli"),
        ("canary_ramped", "airflow:churn__canary/x"),
    ):
        write_decision(
            db, {"model": "churn", "version": "3", "action": action, "actor": actor, "reason": "r", "at": at}
        )
    store = event_store()
    status = collect_decisions(store, settings, Attribution(store, settings))
    assert status.ok and status.new_events == 2
    rolled, promoted = store.events()
    assert (rolled.action, rolled.outcome, rolled.error_kind, rolled.stage) == (
        "canary.rolled_back",
        "error",
        "canary: rolled back",
        "deployment",
    )
    assert rolled.user == _git_author(REPO / "include" / "models" / "churn.yaml")
    assert (promoted.user, promoted.outcome) == ("dee", "ok")
    assert collect_decisions(store, settings, Attribution(store, settings)).new_events == 0


def test_unreachable_or_absent_airflow_is_named_and_earlier_runs_kept(factory_home) -> None:
    store = event_store()
    url = f"http://127.0.0.1:{free_port()}"
    status = collect_airflow(store, AirflowClient(url, password="x", timeout_s=5))
    assert not status.ok and url in status.message and "collected earlier are used" in status.message
    store.add(
        [Event(user="ana", action="dag_run.retrain", source="airflow", origin="airflow:run:a__retrain:1")]
    )
    absent = collect_airflow(store, None)
    assert not absent.ok and "the 1 runs collected earlier are used" in absent.message
