"""Issue 18 finding 9: the review DAG's form is typed, and whatever a reviewer's answer holds (a
number as the reason, a misspelt field, an unknown option, a huge text) the review task returns
an answer ``apply`` can record: it never fails on every try leaving the version held."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from model_factory.airflow.build import build_all

from tests.conftest import REPO


@pytest.fixture(scope="module")
def review_task():
    dags = build_all(REPO / "include" / "models", REPO / "nonexistent", only_dag_id="churn__review")
    return dags["churn__review"].get_task("review")


def _answer(review_task, chosen, params_input):
    event = {
        "chosen_options": chosen,
        "params_input": params_input,
        "responded_at": datetime(2026, 12, 3, tzinfo=UTC),
        "responded_by_user": {"id": "1", "name": "ana"},
    }
    return review_task.execute_complete(context={}, event=event)


def test_the_form_fields_are_typed_and_a_good_answer_is_unchanged(review_task):
    schema = {k: review_task.params.get_param(k).schema for k in review_task.params}
    assert schema["reason"]["type"] == "string" and schema["reason"]["maxLength"] == 2000
    assert schema["actor"]["type"] == "string"


@pytest.mark.parametrize(
    ("chosen", "given", "expect_option", "reason_words"),
    [
        (["Approve"], {"reason": 123, "actor": ""}, "Approve", ["123", "reason was int"]),
        (["Approve"], {"reason": ["a", "b"]}, "Approve", ['["a", "b"]', "reason was list"]),
        (["Reject"], {"reasn": "typo", "actor": None}, "Reject", ["unknown form fields ['reasn']", "typo"]),
        (["Aprove"], {"reason": "ok"}, "Reject", ["ok", '["Aprove"]', "recorded as Reject"]),
        (["Approve", "Reject"], {"reason": "both"}, "Reject", ["recorded as Reject"]),
        ("Approve", None, "Reject", ["recorded as Reject"]),
        (["Reject"], {"reason": "x" * 10_000}, "Reject", ["(truncated)"]),
    ],
)
def test_any_answer_is_recorded_never_a_failed_task(review_task, chosen, given, expect_option, reason_words):
    result = _answer(review_task, chosen, given)
    assert result["chosen_options"] == [expect_option]
    assert set(result["params_input"]) == {"reason", "actor"}
    assert all(isinstance(v, str) for v in result["params_input"].values())
    reason = result["params_input"]["reason"]
    assert len(reason) <= 2000
    for word in reason_words:
        assert word in reason, (word, reason)

    # a good answer passes through unchanged
    result = _answer(review_task, ["Approve"], {"reason": "looks right", "actor": "bo"})
    assert result["chosen_options"] == ["Approve"]
    assert result["params_input"] == {"reason": "looks right", "actor": "bo"}


def test_the_specs_reviewers_are_the_hitl_tasks_assigned_users(tmp_path):
    """Airflow lets only ``assigned_users`` answer a HITL task (its auth manager's
    ``is_authorized_hitl_task``). The task writes them into its HITL detail when it runs, from
    the operator the worker parses (the serialized DAG does not carry them; the e2e review test
    reads them back from the REST API); the reviewer's notification names them."""
    import yaml
    from model_factory.airflow.notify import FactoryNotifier

    raw = yaml.safe_load((REPO / "include" / "models" / "churn.yaml").read_text())
    raw["review"] = {**raw.get("review", {}), "reviewers": ["alice", "bob@example.com"]}
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(raw))
    dag = build_all(tmp_path, REPO / "nonexistent", only_dag_id="churn__review")["churn__review"]
    assigned = [{"id": "alice", "name": "alice"}, {"id": "bob@example.com", "name": "bob@example.com"}]
    task = dag.get_task("review")
    assert task.assigned_users == assigned
    assert task.hitl_summary["assigned_users"] == assigned
    [notifier] = [n for n in task.notifiers if isinstance(n, FactoryNotifier)]
    assert notifier.lines == ["Reviewers: alice, bob@example.com"]
    assert "Reviewers (spec `review.reviewers`): alice, bob@example.com." in dag.doc_md


def test_without_reviewers_anyone_airflow_allows_may_answer(review_task):
    assert review_task.assigned_users is None
