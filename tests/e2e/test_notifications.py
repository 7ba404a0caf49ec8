"""Issue 21 item 3: a retrain made to fail (a bad batch date in its conf, so ``ingest`` fails for
good) runs the factory's notifier from Airflow's ``on_failure_callback``: the channel chosen by the
spec's Airflow connection receives the run's link, a second channel that fails (an SMTP server
that refuses) fails nothing, and the factory's own alert record keeps both outcomes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import yaml
from model_factory.settings import FactorySettings

from tests.conftest import REPO, PostCollector

pytestmark = pytest.mark.e2e


def _connections(monkeypatch, webhook: PostCollector) -> None:
    down = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": 9,
        "extra": {"disable_ssl": True, "retry_limit": 0, "timeout": 2},
    }
    monkeypatch.setenv("AIRFLOW_CONN_FACTORY_HOOK", webhook.connection())
    monkeypatch.setenv("AIRFLOW_CONN_FACTORY_SMTP_DOWN", json.dumps(down))


def test_a_failed_retrain_notifies_with_the_runs_link(
    airflow_db, factory_home, tmp_path, monkeypatch, webhook
):
    from model_factory.airflow.build import build_all
    from model_factory.monitoring.alerts import read_alerts

    specs = tmp_path / "models"
    specs.mkdir()
    raw = yaml.safe_load((REPO / "include" / "models" / "churn.yaml").read_text())
    raw["notify"] = {
        "webhook_conn_id": "factory_hook",
        "smtp_conn_id": "factory_smtp_down",
        "email": ["ops@example.com"],
    }
    (specs / "churn.yaml").write_text(yaml.safe_dump(raw))
    _connections(monkeypatch, webhook)
    dag = build_all(specs, tmp_path / "none", only_dag_id="churn__retrain")["churn__retrain"]

    run = dag.test(logical_date=datetime(2026, 3, 2, tzinfo=UTC), run_conf={"ds": "03/02/2026"})

    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "failed" and states["ingest"] == "failed", states
    run_link = f"/dags/churn__retrain/runs/{run.run_id.replace(':', '%3A').replace('+', '%2B')}"
    assert len(webhook.received) == 1, webhook.received
    posted = webhook.received[0]
    assert run_link in posted["text"] and "churn__retrain.ingest" in posted["text"]
    assert posted["alert"]["kind"] == "task_failed" and posted["alert"]["model"] == "churn"
    recorded = [a for a in read_alerts(FactorySettings.from_env(), "churn") if a["kind"] == "task_failed"]
    assert len(recorded) == 1
    details = recorded[0]["details"]
    details = json.loads(details) if isinstance(details, str) else details
    assert run_link in details["links"]["run"]
    assert details["channels"]["factory_hook"] == "sent (_WebhookPost)"
    assert details["channels"]["factory_smtp_down"].startswith("failed:")


def test_the_reviewer_is_told_and_a_missing_connection_fails_nothing(factory_home, monkeypatch, webhook):
    """The review DAG's HITL task calls its notifiers before it waits; they must never raise."""
    from model_factory.airflow.build import build_all
    from model_factory.monitoring.alerts import read_alerts

    _connections(monkeypatch, webhook)
    dag = build_all(REPO / "include" / "models", REPO / "none", only_dag_id="churn__review")["churn__review"]
    [notifier] = dag.get_task("review").notifiers
    notifier.conn_ids = ["factory_hook", "factory_smtp_down", "no_such_connection"]
    notifier.email = ["reviewer@example.com"]
    notifier({"dag": dag, "run_id": "asset_triggered__2026-03-02"})  # Airflow's own call: never raises
    assert len(webhook.received) == 1
    assert webhook.received[0]["alert"]["kind"] == "held_for_review"
    assert "/dags/churn__review/runs/asset_triggered__2026-03-02" in webhook.received[0]["text"]
    [record] = [a for a in read_alerts(FactorySettings.from_env(), "churn") if a["kind"] == "held_for_review"]
    details = json.loads(record["details"]) if isinstance(record["details"], str) else record["details"]
    assert details["channels"]["factory_hook"].startswith("sent")
    assert details["channels"]["no_such_connection"].startswith("failed:")
    assert details["channels"]["factory_smtp_down"].startswith("failed:")
