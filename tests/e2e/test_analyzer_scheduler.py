"""The Analyzer reads what people did through Airflow's REST API: a real scheduler, dag-processor and
api-server (LocalExecutor, SQLite); runs triggered over the API by a logged-in user.

A good batch, a batch with a missing column (quarantined) and a bad trigger conf: the collected
events name the triggering user, the failing task and its reason (read from the task log), and the
quarantine and gate verdicts are attributed to that user; collecting again adds nothing.
"""

from __future__ import annotations

import io
from datetime import date

import pytest
from model_factory.analyzer.collect import collect_all
from model_factory.analyzer.report import analyze
from model_factory.io import storage
from model_factory.settings import FactorySettings
from model_factory_dev import demo_data
from model_factory_dev.stack import Stack, StackConfig

from tests.conftest import event_store

pytestmark = pytest.mark.e2e

DAY = date(2026, 5, 4)
BAD_DAY = date(2026, 5, 5)
MODEL = "churn"


def _put(stack: Stack, day: date, fault: str | None = None) -> None:
    df = demo_data.generate_batch(MODEL, day, rows=1500)
    if fault:
        df = demo_data.inject_fault(df, MODEL, fault)
    buffer = io.StringIO()
    df.to_csv(buffer, index=False)
    with stack.environ():
        storage.write_bytes(storage.join(stack.data_root, MODEL, f"{day}.csv"), buffer.getvalue().encode())


def test_runs_people_triggered_become_events_with_their_user(tmp_path) -> None:
    config = StackConfig(home=tmp_path / "stack", mlflow_server=False, s3=False)
    with Stack(config) as stack:
        api = stack.client()
        dag_id = f"{MODEL}__retrain"
        api.wait_for_dag(dag_id)
        api.unpause(dag_id)
        _put(stack, DAY)
        _put(stack, BAD_DAY, fault="dropped_column")
        runs = {}
        for name, conf in (
            ("good", {"ds": str(DAY)}),
            ("quarantined", {"ds": str(BAD_DAY)}),
            ("bad_conf", {"ds": "2026/05/06"}),
        ):
            runs[name] = api.trigger(dag_id, conf=conf)["dag_run_id"]
        # one at a time (max_active_runs=1); a retrain with its card takes minutes on a busy box
        runs = {name: api.wait_for_run(dag_id, run_id, timeout_s=1200) for name, run_id in runs.items()}
        assert [runs[n]["state"] for n in ("good", "quarantined", "bad_conf")] == [
            "success",
            "failed",
            "failed",
        ], stack.diagnostics()
        user = runs["good"]["triggering_user_name"]
        assert user

        with stack.environ():
            store = event_store()
            statuses = {s.source: s for s in collect_all(store, FactorySettings.from_env(), api=api)}
            assert all(s.ok for s in statuses.values()), statuses
            assert statuses["airflow"].new_events >= 3
            events = store.events()
            again = {s.source: s.new_events for s in collect_all(store, FactorySettings.from_env(), api=api)}
        assert again == {"airflow": 0, "quarantines": 0, "gates": 0, "canary": 0}

    by_run = {(e.action, e.details.get("run_id")): e for e in events if e.source == "airflow"}
    good = by_run[("dag_run.retrain", runs["good"]["dag_run_id"])]
    assert (good.user, good.outcome, good.stage, good.model) == (user, "ok", "training", MODEL)
    assert good.duration_s and good.details["ds"] == str(DAY)
    bad = by_run[("dag_run.retrain", runs["quarantined"]["dag_run_id"])]
    assert (bad.outcome, bad.error_kind) == ("error", "validation: column missing")
    validate = by_run[("task.validate", runs["quarantined"]["dag_run_id"])]
    assert validate.stage == "data" and "quarantined" in validate.message
    conf = by_run[("dag_run.retrain", runs["bad_conf"]["dag_run_id"])]
    assert conf.error_kind == "trigger: bad conf"

    quarantined = [e for e in events if e.action == "batch.quarantined"]
    assert quarantined and all(
        e.user == user and e.error_kind == "validation: column missing" for e in quarantined
    )
    (gate,) = [e for e in events if e.action.startswith("gate.")]
    assert (gate.action, gate.user, gate.details["user_from"]) == ("gate.blessed", user, "triggering user")

    report = analyze(events)
    assert report["users"] == 1 and "one user" in report["segmentation"]["reason"]
