"""Drift fires retraining through Airflow itself: a real scheduler, dag-processor, triggerer and
api-server (LocalExecutor, SQLite), DAGs triggered over the REST API only.

The watch DAG sees a covariate-shifted batch, emits the ``churn__drift`` asset event, and the
*scheduler* creates the asset-triggered ``churn__retrain`` run, which succeeds. A second drifted
batch inside the cooldown is detected and alerted but fires nothing.
"""

from __future__ import annotations

import io
import time
from datetime import date, timedelta

import pytest
from model_factory.io import storage
from model_factory_dev import demo_data
from model_factory_dev.stack import Stack, StackConfig

pytestmark = pytest.mark.e2e

START = date(2026, 4, 6)
MODEL = "churn"


def _put_batch(stack: Stack, day: date, **shift) -> None:
    df = demo_data.generate_batch(MODEL, day, rows=2000, **shift)
    buffer = io.StringIO()
    df.to_csv(buffer, index=False)
    with stack.environ():
        storage.write_bytes(storage.join(stack.data_root, MODEL, f"{day}.csv"), buffer.getvalue().encode())


def _asset_runs(api, dag_id: str) -> list[dict]:
    return [r for r in api.runs(dag_id) if r["run_type"] == "asset_triggered"]


def test_drift_watch_fires_retrain_through_the_scheduler(tmp_path):
    config = StackConfig(home=tmp_path / "stack", mlflow_server=False, s3=False)
    with Stack(config) as stack:
        api = stack.client()
        for kind in ("retrain", "drift_watch"):
            api.wait_for_dag(f"{MODEL}__{kind}")
            api.unpause(f"{MODEL}__{kind}")

        # A champion with a baseline: the first day's retrain, run by the scheduler.
        _put_batch(stack, START)
        first = api.trigger(f"{MODEL}__retrain", conf={"ds": str(START)})
        assert api.wait_for_run(f"{MODEL}__retrain", first["dag_run_id"], timeout_s=240)["state"] == "success"

        # The next day's production data moved: the watch must see it and fire the asset.
        drifted_day = START + timedelta(days=1)
        _put_batch(stack, drifted_day, covariate_shift=0.8)
        watch = api.trigger(f"{MODEL}__drift_watch", conf={"ds": str(drifted_day)})
        done = api.wait_for_run(f"{MODEL}__drift_watch", watch["dag_run_id"], timeout_s=240)
        tasks = api.task_instances(f"{MODEL}__drift_watch", watch["dag_run_id"])
        states = {t["task_id"]: t["state"] for t in tasks}
        assert done["state"] == "success" and states == {
            "wait_for_batch": "success",
            "check": "success",
            "fire_retrain": "success",
        }, stack.diagnostics()

        # ... and the scheduler (not this test) starts the retrain on the asset event.
        asset_runs: list[dict] = []
        for _ in range(120):
            asset_runs = _asset_runs(api, f"{MODEL}__retrain")
            if asset_runs:
                break
            time.sleep(1)
        assert len(asset_runs) == 1, f"no asset-triggered retrain: {api.runs(f'{MODEL}__retrain')}"
        fired = api.wait_for_run(f"{MODEL}__retrain", asset_runs[0]["dag_run_id"], timeout_s=240)
        assert fired["state"] == "success", stack.diagnostics()
        ingest_log = api.task_log(f"{MODEL}__retrain", fired["dag_run_id"], "ingest", 1)
        assert f"{drifted_day}.csv" in ingest_log  # it trained on the drifted batch the event named

        # Cooldown: the day after drifts too; detected and alerted, no second retrain.
        third_day = drifted_day + timedelta(days=1)
        _put_batch(stack, third_day, covariate_shift=0.8)
        again = api.trigger(f"{MODEL}__drift_watch", conf={"ds": str(third_day)})
        again_done = api.wait_for_run(f"{MODEL}__drift_watch", again["dag_run_id"], timeout_s=240)
        assert again_done["state"] == "success"
        fire = api.task_instance(f"{MODEL}__drift_watch", again["dag_run_id"], "fire_retrain")
        assert fire["state"] == "skipped"
        log = api.task_log(f"{MODEL}__drift_watch", again["dag_run_id"], "fire_retrain", 1)
        assert "no retrain fired: cooldown: a drift retrain was fired at" in log
        time.sleep(10)  # give the scheduler the chance to (wrongly) create a run
        assert len(_asset_runs(api, f"{MODEL}__retrain")) == 1

        with stack.environ():
            from model_factory.monitoring.alerts import read_alerts
            from model_factory.settings import FactorySettings

            alerts = read_alerts(FactorySettings.from_env(), MODEL)
        assert [a["kind"] for a in alerts].count("drift") == 2
