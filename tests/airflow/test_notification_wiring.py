"""How notifications are wired into the factory's DAGs (issue 21 item 3): every task of every
model DAG fails into the factory's notifier, a nightly retrain carries Airflow's deadline alert
for ``notify.retrain_deadline``, and that alert's callback, run the way Airflow runs it (by
path, with the run in ``context``), reaches the owner's channel with the run's link; the CLI's
promote and rollback send the canary DAG's events."""

from __future__ import annotations

from datetime import timedelta

import pytest
import structlog
import yaml
from model_factory.settings import FactorySettings

from tests.conftest import REPO
from tests.unit.pipeline.test_registry import two_versions  # noqa: F401 - fixture


@pytest.fixture
def hook(webhook, monkeypatch):
    """The collector, as the Airflow connection ``factory_hook``."""
    monkeypatch.setenv("AIRFLOW_CONN_FACTORY_HOOK", webhook.connection())
    return webhook


def _spec_dir(tmp_path, **notify):
    raw = yaml.safe_load((REPO / "include" / "models" / "churn.yaml").read_text())
    raw["notify"] = {**raw.get("notify", {}), **notify}
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "churn.yaml").write_text(yaml.safe_dump(raw))
    return folder


def test_every_task_of_every_model_dag_fails_into_the_factory_notifier():
    from model_factory.airflow.build import build_all
    from model_factory.airflow.notify import FactoryNotifier

    dags = {
        dag_id: dag
        for dag_id, dag in build_all(REPO / "include" / "models").items()
        if not dag_id.startswith("invalid_spec__")
    }
    assert len(dags) > 10, sorted(dags)

    def notified(task) -> bool:
        callbacks = task.on_failure_callback or []
        return any(isinstance(cb, FactoryNotifier) and cb.kind == "task_failed" for cb in callbacks)

    missing = [
        f"{dag_id}.{task.task_id}" for dag_id, dag in dags.items() for task in dag.tasks if not notified(task)
    ]
    assert missing == []


def test_a_retrain_deadline_becomes_the_retrain_dags_deadline_alert(tmp_path):
    from airflow.serialization.serialized_objects import DagSerialization
    from model_factory.airflow.build import build_all
    from model_factory.airflow.common import spread_cron
    from model_factory.airflow.notify import retrain_late

    dags = build_all(_spec_dir(tmp_path, retrain_deadline="06:00"), tmp_path / "none")
    retrain = dags["churn__retrain"]
    [alert] = retrain.deadline
    minute = int(spread_cron("0 2 * * *", "churn").split()[0])  # the nightly start, spread in its hour
    assert alert.interval == timedelta(hours=4, minutes=-minute)
    assert alert.callback.path == f"{retrain_late.__module__}.retrain_late"
    assert alert.callback.kwargs["deadline"] == "06:00" and alert.callback.kwargs["model"] == "churn"
    assert DagSerialization.to_dict(retrain)  # the DAG processor can store it
    assert all(not dag.deadline for dag_id, dag in dags.items() if dag_id != "churn__retrain")


def test_without_a_retrain_deadline_no_dag_has_one():
    from model_factory.airflow.build import build_all

    dags = build_all(REPO / "include" / "models", REPO / "none", only_dag_id="churn__retrain")
    assert not dags["churn__retrain"].deadline


def test_the_deadline_callback_run_as_airflow_runs_it_tells_the_owner_with_the_runs_link(
    factory_home, hook, monkeypatch
):
    from airflow.sdk.execution_time.callback_supervisor import execute_callback
    from model_factory.airflow.build import build_all
    from model_factory.monitoring.alerts import read_alerts

    dags = build_all(
        _spec_dir(factory_home.parent, retrain_deadline="06:00", webhook_conn_id="factory_hook"),
        REPO / "none",
        only_dag_id="churn__retrain",
    )
    [alert] = dags["churn__retrain"].deadline
    run_id = "scheduled__2026-03-02T02:17:00+00:00"
    context = {
        "dag_run": {"dag_id": "churn__retrain", "dag_run_id": run_id, "state": "running"},
        "deadline": {"id": "d1", "deadline_time": "2026-03-02T06:00:00+00:00"},
    }
    ok, error = execute_callback(
        alert.callback.path,
        {**alert.callback.kwargs, "context": context},
        None,
        None,
        structlog.get_logger("test"),
    )
    assert ok, error
    [posted] = hook.received
    assert "/dags/churn__retrain/runs/scheduled__2026-03-02T02%3A17%3A00%2B00%3A00" in posted["text"]
    assert posted["alert"]["kind"] == "retrain_late" and "not finished by 06:00 UTC" in posted["text"]
    [recorded] = [a for a in read_alerts(FactorySettings.from_env(), "churn") if a["kind"] == "retrain_late"]
    assert recorded["details"]["channels"]["factory_hook"].startswith("sent")


def test_a_missing_notify_connection_fails_nothing_and_is_named_where_status_looks(factory_home):
    """``status`` shows each model's newest alert (``show`` all of them): a connection that is
    missing is named there, not only in the log."""
    from model_factory.airflow.notify import retrain_late
    from model_factory.monitoring.alerts import stored_alerts

    context = {"dag_run": {"dag_id": "churn__retrain", "dag_run_id": "r1"}, "deadline": {}}
    outcome = retrain_late(context, "churn", "ml-team", [], ["no_such_connection"], "06:00")
    assert outcome["channels"]["no_such_connection"].startswith("failed:")
    db = FactorySettings.from_env().prediction_db
    newest, recorded = stored_alerts(db, ["churn"])  # newest first, as status reads
    assert recorded["kind"] == "retrain_late"
    assert recorded["details"]["channels"]["no_such_connection"].startswith("failed:")
    assert newest["kind"] == "notify_channel_failed"
    assert "no_such_connection" in newest["subject"] and "retrain_late" in newest["subject"]
    assert "not defined" in newest["body"] or "NotFound" in newest["body"], newest["body"]


@pytest.mark.parametrize(
    ("decision", "kind", "words"),
    [
        (
            {"action": "canary_promoted", "version": "3", "actor": "airflow:x", "reason": "won"},
            "version_promoted",
            "v3 promoted to champion",
        ),
        (
            {"action": "rolled_back", "version": "2", "actor": "ana via cli", "reason": "bad"},
            "version_rolled_back",
            "v2 rolled back",
        ),
    ],
)
def test_a_promoted_or_rolled_back_version_is_an_event_with_the_runs_link(
    factory_home, hook, tmp_path, decision, kind, words
):
    from model_factory.airflow.notify import version_event
    from model_factory.spec import load_spec

    spec = load_spec(
        _spec_dir(tmp_path, webhook_conn_id="factory_hook") / "churn.yaml", FactorySettings.from_env()
    )
    version_event(spec, decision, {"dag_id": "churn__canary", "run_id": "manual__1"})
    [posted] = hook.received
    assert posted["alert"]["kind"] == kind and words in posted["text"]
    assert "/dags/churn__canary/runs/manual__1" in posted["text"] and decision["reason"] in posted["text"]


def test_other_decisions_and_retries_that_changed_nothing_are_no_event(factory_home, hook, tmp_path):
    from model_factory.airflow.notify import version_event
    from model_factory.spec import load_spec

    spec = load_spec(
        _spec_dir(tmp_path, webhook_conn_id="factory_hook") / "churn.yaml", FactorySettings.from_env()
    )
    context = {"dag_id": "churn__canary", "run_id": "manual__1"}
    assert version_event(spec, {"action": "canary_ramped", "version": "3"}, context) is None
    retried = {"action": "canary_promoted", "version": "3", "changed": False}
    assert version_event(spec, retried, context) is None
    assert hook.received == []


def test_the_clis_promote_and_rollback_send_the_canary_dags_events(
    two_versions,  # noqa: F811 - the fixture imported above
    hook,
    tmp_path,
    monkeypatch,
    capsys,
):
    """``model-factory promote|rollback`` go through the same ``version_event`` as the canary
    DAG: the spec's connection gets the event and the factory's alert record keeps it."""
    from model_factory.cli.main import main
    from model_factory.monitoring.alerts import read_alerts

    monkeypatch.setenv("FACTORY_SPECS_DIR", str(_spec_dir(tmp_path, webhook_conn_id="factory_hook")))
    assert main(["promote", "churn", "2", "--reason", "looked good", "--actor", "ana"]) == 0
    [promoted] = hook.of_kind("version_promoted")
    assert promoted["alert"]["subject"] == "churn: v2 promoted to champion: model-factory CLI"
    assert "promoted by ana via cli: looked good" in promoted["text"] and "Run:" not in promoted["text"]
    assert main(["rollback", "churn", "--reason", "live AUC dropped", "--actor", "bob"]) == 0
    [rolled_back] = hook.of_kind("version_rolled_back")
    assert "v1 rolled back" in rolled_back["alert"]["subject"]  # the decision names the champion now
    assert "rolled_back by bob via cli: live AUC dropped" in rolled_back["text"]
    assert len(hook.received) == 2 and capsys.readouterr().err == ""
    recorded = {a["kind"]: a for a in read_alerts(two_versions, "churn")}
    assert recorded["version_promoted"]["details"]["channels"]["factory_hook"].startswith("sent")
    assert recorded["version_rolled_back"]["details"]["actor"] == "bob via cli"


def test_a_cli_event_whose_connection_is_missing_is_named_and_the_promotion_stands(
    two_versions,  # noqa: F811 - the fixture imported above
    tmp_path,
    monkeypatch,
    capsys,
):
    from model_factory.cli.main import main
    from model_factory.io.registry_state import read_serving_state

    monkeypatch.setenv("FACTORY_SPECS_DIR", str(_spec_dir(tmp_path, webhook_conn_id="no_such_hook")))
    assert main(["promote", "churn", "2", "--reason", "looked good"]) == 0
    err = capsys.readouterr().err
    assert "event not delivered through connection 'no_such_hook'" in err and "isn't defined" in err
    assert read_serving_state("churn", two_versions).champion == "2"


@pytest.mark.parametrize(
    ("cron", "deadline", "expected"),
    [
        ("17 2 * * *", "06:00", timedelta(hours=3, minutes=43)),
        ("30 23 * * *", "01:00", timedelta(hours=1, minutes=30)),  # past midnight: the next day
        ("0 6 * * *", "06:00", timedelta(hours=24)),
    ],
)
def test_the_deadline_is_measured_from_the_nightly_start(cron, deadline, expected):
    from model_factory.airflow.notify import deadline_interval

    assert deadline_interval(cron, deadline) == expected
