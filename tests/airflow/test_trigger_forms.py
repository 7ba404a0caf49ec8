"""Issue 21 item 5: the retrain, drift-watch, canary and review DAGs declare typed ``params``, so
"Trigger DAG" shows a form, and a conf that does not fit is refused by Airflow (the same check
its REST API and form run when a run is created: ``params.deep_merge(conf).validate()``) with
the field named. The CLI, the demo and the tasks use the same names."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import ParamValidationError
from model_factory.airflow.build import build_all
from model_factory.airflow.common import CANARY_ACTIONS

from tests.conftest import REPO


@pytest.fixture(scope="module")
def dags():
    return build_all(REPO / "include" / "models", REPO / "nonexistent")


def _check(dag, conf: dict) -> dict:
    """What Airflow's API server does with a trigger's conf: on the serialized DAG (as stored)."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).params.deep_merge(conf).validate()


FORMS = {
    "retrain": {"ds", "force_retrain"},
    "drift_watch": {"ds", "force"},
    "canary": {"version", "action", "share", "reason", "actor"},
    "review": {"version"},
}


@pytest.mark.parametrize("kind", FORMS)
def test_each_kind_declares_its_form_and_a_run_without_conf_fits(dags, kind):
    dag = dags[f"churn__{kind}"]
    assert set(dag.params) == FORMS[kind]
    for name in dag.params:
        assert dag.params.get_param(name).schema.get("type"), (kind, name)
    _check(dag, {})  # scheduled and asset-triggered runs carry no conf


@pytest.mark.parametrize(
    ("kind", "conf"),
    [
        ("retrain", {"ds": "2026-03-02", "force_retrain": True}),  # what `model-factory retrain` sends
        ("drift_watch", {"ds": "2026-03-02", "force": True}),  # what the demo sends
        ("canary", {"version": "3", "actor": "ana", "reason": "approved: fine"}),  # `model-factory approve`
        ("canary", {"action": "rollback", "reason": "bad latency", "version": 4}),
        ("canary", {"action": "shadow", "version": "2", "share": 0.5, "reason": "compare first"}),
        ("canary", {"action": "shadow_stop", "reason": "seen enough"}),
        ("review", {"version": "7"}),
    ],
)
def test_what_the_cli_and_the_demo_send_fits(dags, kind, conf):
    resolved = _check(dags[f"churn__{kind}"], conf)
    assert set(resolved) == FORMS[kind]  # every field of the form, the given ones as given
    assert {k: resolved[k] for k in conf} == conf


@pytest.mark.parametrize(
    ("kind", "conf", "field"),
    [
        ("retrain", {"force_retrain": "yes please"}, "force_retrain"),
        ("drift_watch", {"force": 1}, "force"),
        ("canary", {"action": "promot"}, "action"),
        ("canary", {"version": "v3"}, "version"),
        ("canary", {"reason": ["not", "text"]}, "reason"),
        ("canary", {"action": "shadow", "version": "2", "share": 1.5}, "share"),
        ("canary", {"action": "shadow", "version": "2", "share": 0}, "share"),
        ("review", {"version": "latest"}, "version"),
    ],
)
def test_a_value_that_does_not_fit_is_refused_naming_the_field(dags, kind, conf, field):
    with pytest.raises(ParamValidationError, match=f"param {field}"):
        _check(dags[f"churn__{kind}"], conf)


def test_the_canary_forms_actions_are_the_rollouts():
    from model_factory.rollout.canary import OPS_ACTIONS

    assert tuple(CANARY_ACTIONS) == tuple(OPS_ACTIONS)
