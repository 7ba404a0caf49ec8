"""The demo's DAG runs carry the batch date in their conf and start now: Airflow's durations are true.

(``dag.test`` starts a run at its logical date; a DAG for it must live in a DAG bundle, so this
checks what the demo hands ``dag.test`` and what the factory's DAGs read from it.)
"""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

from model_factory_dev import demo


class _RecordingDag:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def test(self, **kwargs):
        self.calls.append(kwargs)
        ti = SimpleNamespace(task_id="ingest", state="success")
        return SimpleNamespace(state="success", get_task_instances=lambda: [ti])


def test_the_demo_passes_the_batch_date_as_conf_and_leaves_the_logical_date_to_airflow():
    dag = _RecordingDag()
    state, tasks, _ = demo.run_dag(dag, date(2026, 1, 5))
    assert (state, tasks) == ("success", {"ingest": "success"})
    (call,) = dag.calls
    assert call == {"run_conf": {"ds": "2026-01-05"}}  # no logical_date: dag.test uses now


def test_the_factorys_dags_take_the_batch_date_from_conf_before_the_logical_date(monkeypatch):
    from datetime import UTC, datetime

    from model_factory.airflow import common

    run = SimpleNamespace(conf={"ds": "2026-01-05"}, run_after=datetime(2026, 12, 4, tzinfo=UTC))
    context = {"dag_run": run, "logical_date": datetime(2026, 12, 4, 4, 5, tzinfo=UTC)}
    monkeypatch.setattr(common, "get_current_context", lambda: context)
    monkeypatch.setattr(common, "triggering_extras", lambda: [])
    assert common.run_ds() == "2026-01-05"
