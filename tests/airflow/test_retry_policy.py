"""Hardening (issue 10 item 11): an error no retry can fix fails the task at once. Every task of
every factory DAG carries a retry policy that fails model_factory.errors.PermanentError (bad
labels, refused sources, untrusted model types) immediately and leaves other errors to retries;
the scheduler sees it after DAG serialization."""

from __future__ import annotations

import pytest
from model_factory.errors import LabelError, PermanentError, UntrustedModelError
from model_factory.io.batches import SourceUriError

from tests.conftest import REPO

PERMANENT = (PermanentError("x"), LabelError("0.9"), SourceUriError("x"), UntrustedModelError("x"))


@pytest.fixture(scope="module")
def dags(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    factory = {
        dag_id: dag
        for dag_id, dag in bag.dags.items()
        if "__" in dag_id and not dag_id.startswith("invalid_spec__")
    }
    assert factory
    return factory


def test_every_task_fails_permanent_errors_at_once_and_retries_others(dags):
    from airflow.sdk.definitions.retry_policy import RetryAction

    for dag_id, dag in dags.items():
        for task in dag.tasks:
            policy = task.retry_policy
            assert policy is not None, f"{dag_id}.{task.task_id} has no retry policy"
            for error in PERMANENT:
                assert policy.evaluate(error, 1, 3).action == RetryAction.FAIL, (dag_id, task.task_id)
            assert policy.evaluate(ConnectionError("tracking down"), 1, 3).action == RetryAction.DEFAULT


def test_the_scheduler_sees_the_policy_after_serialization(dags):
    """The scheduler reads a flag; the worker evaluates the policy from the parsed DAG file."""
    from airflow.serialization.serialized_objects import DagSerialization

    restored = DagSerialization.from_dict(DagSerialization.to_dict(dags["churn__retrain"]))
    assert all(restored.get_task(t).has_retry_policy for t in ("ingest", "validate", "train", "evaluate"))
