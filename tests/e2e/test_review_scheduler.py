"""A held version approved through Airflow's REST API starts its canary: real scheduler,
dag-processor, triggerer and api-server (LocalExecutor, SQLite).

v1 is trained on a broken feed (two features shuffled) and becomes champion; v2, trained on good
data, is so much better on the same rows that the gates hold it ("too good to be true"). The
retrain emits ``churn__held``; the scheduler starts ``churn__review``, whose human-in-the-loop task
waits. Answering it through the REST API records who/why on the version, makes v2 challenger and
emits ``churn__challenger``: the scheduler starts ``churn__canary`` and v2 becomes the canary.

Notifications (issue 21 item 3): the spec's ``notify.webhook_conn_id`` names an Airflow connection
(an ``AIRFLOW_CONN_`` variable of the stack) to a collector on 127.0.0.1: the reviewer is told
when the review task starts waiting, with the review run's link (the task's assigned users are
the spec's ``review.reviewers``), and ops rolling the canary back
through the canary DAG's conf is an event with that run's link.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from model_factory.contracts import Attribution
from model_factory.io.tracking import connect
from model_factory.review.approval import review_in_airflow
from model_factory.settings import FactorySettings
from model_factory_dev.stack import Stack

from tests.e2e.conftest import quick_churn_spec, retrain, scheduler_stack, until
from tests.e2e.test_canary_scheduler import _put_batch

pytestmark = pytest.mark.e2e

MODEL = "churn"
START = date(2026, 5, 4)


def _test_spec(folder: Path) -> Path:
    return quick_churn_spec(
        folder,
        {"threshold": 0.55, "max_regression": 0.5, "too_good_jump": 0.1},
        canary={"ramp": [0.5, 1.0], "min_samples": 5000, "max_stage_minutes": 30, "poke_seconds": 5},
        evaluation={"slices": ["region"], "data_budget": {"shares": [0.25, 1.0]}},
        notify={"webhook_conn_id": "review_hook"},
        review={"reviewers": ["admin"]},  # the stack's user, who answers below
    )


def _retrain(api, day: date) -> tuple[str, dict]:
    return retrain(api, MODEL, day, timeout_s=400)


def test_approving_a_held_version_through_the_rest_api_starts_its_canary(tmp_path, webhook):
    hook = {"AIRFLOW_CONN_REVIEW_HOOK": webhook.connection()}
    config = scheduler_stack(tmp_path, _test_spec(tmp_path / "specs"), gateway=False, env=hook)
    with Stack(config) as stack:
        api = stack.client()
        for kind in ("retrain", "review", "canary"):
            api.wait_for_dag(f"{MODEL}__{kind}")
            api.unpause(f"{MODEL}__{kind}")
        _put_batch(stack, START, ["tenure_months", "support_calls"])
        _put_batch(stack, START + timedelta(days=1))

        _, first = _retrain(api, START)
        assert first["alias"] == "champion", first
        run_id, held = _retrain(api, START + timedelta(days=1))
        assert held["status"] == "held_for_review" and "too good to be true" in held["reason"], held
        tasks = {t["task_id"]: t["state"] for t in api.task_instances(f"{MODEL}__retrain", run_id)}
        assert tasks["announce_held"] == "success" and tasks["announce_challenger"] == "skipped", tasks
        assert tasks["model_card"] == "success" and tasks["data_budget"] == "success", tasks

        review_run = until(
            "the scheduler starting churn__review",
            lambda: [r for r in api.runs(f"{MODEL}__review") if r["run_type"] == "asset_triggered"],
        )[0]
        detail = until(
            "the review task waiting for a person",
            lambda: [
                d
                for d in api.get(f"/api/v2/dags/{MODEL}__review/dagRuns/~/hitlDetails")["hitl_details"]
                if not d["response_received"]
            ],
        )[0]
        assert detail["subject"] == f"Review {MODEL} v{held['version']}" and detail["options"] == [
            "Approve",
            "Reject",
        ]
        assert "Model card: " in detail["body"] and "too good to be true" in detail["body"]
        assert detail["assigned_users"] == [{"id": "admin", "name": "admin"}]  # spec review.reviewers
        [told] = until("the reviewer being told", lambda: webhook.of_kind("held_for_review"))
        assert f"/dags/{MODEL}__review/runs/{quote(review_run['dag_run_id'])}" in told["text"], told["text"]
        assert "Reviewers: admin" in told["text"]

        # Airflow 3.3 race (seen here under load): an answer that lands before the scheduler has
        # processed the executor's event for the task's deferral makes the scheduler mark the
        # resumed task UP_FOR_RETRY, and the retry waits for a new answer. A person never answers
        # within seconds; the test waits as long as a few scheduler loops take on a busy machine.
        time.sleep(15)
        why = "jump explained: v1 had a broken feed"
        answered = review_in_airflow(api, MODEL, held["version"], True, Attribution("alice", why))
        assert answered and answered["run_id"] == review_run["dag_run_id"]
        done = api.wait_for_run(f"{MODEL}__review", review_run["dag_run_id"], timeout_s=180)
        assert done["state"] == "success", stack.diagnostics()
        applied = api.xcom(f"{MODEL}__review", review_run["dag_run_id"], "apply")
        assert applied["version"] == held["version"] and "approved by alice" in applied["reason"]

        canary = until(
            "the scheduler starting churn__canary",
            lambda: [r for r in api.runs(f"{MODEL}__canary") if r["run_type"] == "asset_triggered"],
        )[0]
        until(
            "the canary start task succeeding",
            lambda: any(
                t["task_id"] == "start" and t["state"] == "success"
                for t in api.task_instances(f"{MODEL}__canary", canary["dag_run_id"])
            ),
        )
        with stack.environ():
            client = connect(FactorySettings.from_env())
            mv = client.get_model_version(MODEL, held["version"])
            assert client.get_model_version_by_alias(MODEL, "canary").version == mv.version
        assert mv.tags["factory.review.status"] == "approved"
        assert mv.tags["factory.review.by"].startswith("alice (via admin)"), mv.tags["factory.review.by"]
        assert mv.tags["factory.review.reason"] == why
        assert mv.tags["factory.decision"] == "blessed" and mv.tags["factory.checklist"] == "passed"
        assert f"/factory/models/{MODEL}/versions/{mv.version}/card) (artifact `file://" in mv.description

        # Ops roll the canary back through the canary DAG: an event with that run's link.
        drill = {"action": "rollback", "reason": "ops drill", "actor": "bob"}
        ops = api.trigger(f"{MODEL}__canary", conf=drill)
        assert api.wait_for_run(f"{MODEL}__canary", ops["dag_run_id"], timeout_s=180)["state"] == "success"
        [event] = until("the rollback event", lambda: webhook.of_kind("version_rolled_back"))
        assert f"v{held['version']} rolled back" in event["text"] and "ops drill" in event["text"]
        assert f"/dags/{MODEL}__canary/runs/{quote(ops['dag_run_id'])}" in event["text"], event["text"]
