"""FACTORY_SENSOR_POKE_MAX_SECONDS caps every sensor's poke interval (the demo's live stack sets
it); unset, each spec's own interval stands."""

from __future__ import annotations

from model_factory.airflow import blocks
from model_factory.spec import load_specs

from tests.conftest import REPO


def _pokes(loaded) -> dict[str, float]:
    dags = [blocks.canary_dag(loaded), blocks.drift_watch_dag(loaded)]
    return {
        task.task_id: task.poke_interval
        for dag in dags
        for task in dag.tasks
        if hasattr(task, "poke_interval")
    }


def test_the_cap_lowers_every_sensors_interval_and_unset_keeps_the_specs(factory_home, monkeypatch):
    loaded = next(s for s in load_specs(REPO / "include" / "models")[0] if s.spec.name == "churn")
    spec = loaded.spec
    monkeypatch.delenv("FACTORY_SENSOR_POKE_MAX_SECONDS", raising=False)
    own = _pokes(loaded)
    assert own["stage_1_wait"] == spec.canary.poke_seconds
    assert own["wait_for_batch"] == spec.drift.sensor_poke_seconds

    monkeypatch.setenv("FACTORY_SENSOR_POKE_MAX_SECONDS", "5")
    capped = _pokes(loaded)
    assert set(capped) == set(own) and all(interval == min(own[t], 5) for t, interval in capped.items())
    assert capped["stage_3_wait"] == 5
