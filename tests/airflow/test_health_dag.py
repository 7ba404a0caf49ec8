"""The ``<model>__health`` DAG: built by the shared retraining block when ``outcomes.enabled``."""

from __future__ import annotations

from model_factory.airflow.build import build_all

from tests.airflow.test_templates import _spec, specs  # noqa: F401 - fixture


def test_health_dag_is_built_when_outcomes_are_enabled(specs):  # noqa: F811
    (specs / "watched.yaml").write_text(_spec("watched", **{"outcomes.enabled": True}))
    scored = {"outcomes.enabled": True, "outcomes.schedule": "0 6 * * *"}
    (specs / "scored.yaml").write_text(_spec("scored", template="batch_scoring", **scored))
    (specs / "plain.yaml").write_text(_spec("plain", outcomes=None))
    dags = build_all(specs, specs.parent / "none")
    health = dags["watched__health"]
    assert [t.task_id for t in health.tasks] == ["check", "fire_retrain"]
    assert [o.name for o in health.get_task("fire_retrain").outlets] == ["watched__drift"]
    assert "health" in health.tags and health.catchup is False
    assert health.schedule == "@daily" and dags["scored__health"].schedule == "0 6 * * *"
    assert "plain__health" not in dags  # off by default (no outcomes: section)
