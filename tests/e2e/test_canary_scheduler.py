"""Canary rollout driven by live outcomes, end to end: real scheduler + api-server (LocalExecutor,
SQLite), the serving gateway under uvicorn, the traffic simulator sending requests and delayed
feedback over HTTP.

A retrain that registers a blessed challenger emits ``churn__challenger``; the scheduler starts
``churn__canary``, which ramps and promotes a good challenger. A challenger trained while an
upstream feed shuffled two features looks fine on its own (equally broken) holdout, is blessed,
loses live, and is rolled back automatically.
"""

from __future__ import annotations

import io
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from model_factory.io import storage
from model_factory_dev import demo_data
from model_factory_dev.simulator import TrafficLoop
from model_factory_dev.stack import Stack

from tests.e2e.conftest import quick_churn_spec, retrain, scheduler_stack, until

pytestmark = pytest.mark.e2e

MODEL = "churn"
START = date(2026, 5, 4)
BROKEN_FEED = ["tenure_months", "support_calls"]


def _test_spec(folder: Path) -> Path:
    """The shipped churn spec with a quick rollout (2 stages, 150 outcomes per arm, counted by the
    stage's trigger every second); each version trains on its own day, and the gates are loose so
    the broken-feed challenger gets blessed."""
    # alpha 0.01: two equally good models are rolled back well under 1% of the time (helper-measured
    # rates in canary's tests), while the broken-feed challenger (~30% worse) is caught at 150 outcomes.
    canary = {
        "ramp": [0.5, 1.0],
        "min_samples": 150,
        "alpha": 0.01,
        "max_stage_minutes": 8,
        # the full analysis every 20 s: a stage judged sooner was resumed by the trigger's count
        "poke_seconds": 20,
    }
    return quick_churn_spec(
        folder, {"threshold": 0.55, "max_regression": 0.5, "too_good_jump": None}, canary=canary
    )


def _put_batch(stack: Stack, day: date, shuffle: list[str] | None = None) -> None:
    df = demo_data.generate_batch(MODEL, day, rows=4000)
    rng = np.random.default_rng(day.toordinal())
    for col in shuffle or []:
        df[col] = rng.permutation(df[col].to_numpy())
    buffer = io.StringIO()
    df.to_csv(buffer, index=False)
    with stack.environ():
        storage.write_bytes(storage.join(stack.data_root, MODEL, f"{day}.csv"), buffer.getvalue().encode())


def _retrain(api, day: date) -> dict:
    return retrain(api, MODEL, day, timeout_s=300)[1]


def _canary_run(api, after: set[str], timeout_s: float = 120) -> str:
    def fresh() -> list[str]:
        runs = [r for r in api.runs(f"{MODEL}__canary") if r["run_type"] == "asset_triggered"]
        return [r["dag_run_id"] for r in runs if r["dag_run_id"] not in after]

    return until(f"the scheduler starting a {MODEL}__canary run", fresh, timeout_s, poll_s=1)[-1]


def _task_state(api, run_id: str, task_id: str) -> str | None:
    return api.task_instance(f"{MODEL}__canary", run_id, task_id)["state"]


def _task_log(api, run_id: str, task_id: str) -> str:
    try_number = api.task_instance(f"{MODEL}__canary", run_id, task_id)["try_number"]
    return api.task_log(f"{MODEL}__canary", run_id, task_id, try_number)


def test_canary_promotes_a_good_challenger_and_rolls_back_a_bad_one(tmp_path):
    env = {"FACTORY_GATEWAY_REFRESH_SECONDS": "1"}
    config = scheduler_stack(tmp_path, _test_spec(tmp_path / "specs"), gateway=True, env=env)
    with Stack(config) as stack:
        api = stack.client()
        for kind in ("retrain", "canary"):
            api.wait_for_dag(f"{MODEL}__{kind}")
            api.unpause(f"{MODEL}__{kind}")
        for offset, shuffle in enumerate([None, None, BROKEN_FEED]):
            _put_batch(stack, START + timedelta(days=offset), shuffle)

        assert _retrain(api, START)["alias"] == "champion"  # v1
        # v2: a healthy challenger -> canary 50% -> 100% -> promoted. Its first stage waits on the
        # triggerer (no traffic yet); the triggerer restarts meanwhile: the new one re-creates the
        # trigger from the metadata DB, and it resumes the stage once the outcomes are there.
        assert _retrain(api, START + timedelta(days=1))["alias"] == "challenger"
        good = _canary_run(api, set())
        until("stage 1 deferred", lambda: _task_state(api, good, "stage_1_wait") == "deferred", 120, 0.5)
        stack.restart("triggerer")
        # live traffic from the same week the models were trained on (the generator is seasonal)
        rows = demo_data.generate_batch(MODEL, START + timedelta(days=1), rows=4000, seed=7)
        rows["customer_id"] = [f"c{i}" for i in range(len(rows))]
        with TrafficLoop(
            stack.gateway_url, MODEL, rows, label_column="churned", entity_column="customer_id", concurrency=4
        ) as traffic:
            done = api.wait_for_run(f"{MODEL}__canary", good, timeout_s=600)
            assert done["state"] == "success", stack.diagnostics()
            states = {t["task_id"]: t["state"] for t in api.task_instances(f"{MODEL}__canary", good)}
            assert states["manual_action"] == "skipped" and states["start"] == "success"
            final = api.xcom(f"{MODEL}__canary", good, "stage_2_act")
            assert final["action"] == "canary_promoted", final
            stage_1 = _task_log(api, good, "stage_1_wait")
            assert "resumed by the trigger (samples)" in stage_1, stage_1[-3000:]

            # v3: trained on a broken feed; blessed on its own holdout, worse live -> rolled back
            registered = _retrain(api, START + timedelta(days=2))
            assert registered["alias"] == "challenger", registered
            bad = _canary_run(api, {good})
            done = api.wait_for_run(f"{MODEL}__canary", bad, timeout_s=600)
            assert done["state"] == "success", stack.diagnostics()
            states = {t["task_id"]: t["state"] for t in api.task_instances(f"{MODEL}__canary", bad)}
            acts = [
                api.xcom(f"{MODEL}__canary", bad, f"stage_{i}_act")
                for i in (1, 2)
                if states[f"stage_{i}_act"] == "success"
            ]
            assert acts[-1]["action"] == "canary_rolled_back", (acts, states)
        assert traffic.sent >= 600 and traffic.by_arm["canary"] > 0, (traffic.by_arm, traffic.failures)
        # alias moves and version swaps under load drop no request
        assert not [code for code in traffic.errors if code.startswith("5")], traffic.errors

        with stack.environ():
            from model_factory.io.tracking import connect
            from model_factory.pipeline.registry import current_alias_version
            from model_factory.serving.predlog import decisions
            from model_factory.serving.settings import prediction_db_uri
            from model_factory.settings import FactorySettings

            settings = FactorySettings.from_env()
            client = connect(settings)
            assert current_alias_version(client, MODEL, "champion") == "2"
            assert current_alias_version(client, MODEL, "previous_champion") == "1"
            assert current_alias_version(client, MODEL, "canary") is None
            tags = client.get_model_version(MODEL, "3").tags
            assert tags["factory.canary_rolled_back.by"].startswith("airflow:churn__canary/")
            actions = [d["action"] for d in decisions(prediction_db_uri(settings), MODEL)]
        assert actions.count("canary_started") == 2 and "canary_promoted" in actions
        assert "canary_rolled_back" in actions
