"""Issue 22 item 2: a fleet's nightly retrains spread over the spec's hour (a stable per-model
minute) instead of one cron minute; tier-1 models' tasks weigh more, so they are queued first."""

from __future__ import annotations

from types import SimpleNamespace

import yaml
from airflow.task.priority_strategy import validate_and_load_priority_weight_strategy
from model_factory.airflow.build import build_all
from model_factory.airflow.common import spread_cron

from tests.conftest import REPO

MODELS = REPO / "include" / "models"


def test_a_fleet_at_0200_spreads_over_the_hour_stably():
    minutes = [int(spread_cron("0 2 * * *", f"model_{i}").split()[0]) for i in range(1000)]
    assert all(0 <= m < 60 for m in minutes)
    assert len(set(minutes)) == 60  # every minute of the hour used
    assert max(minutes.count(m) for m in set(minutes)) < 1000 / 60 * 2  # no minute takes a herd
    assert spread_cron("0 2 * * *", "churn") == spread_cron("0 2 * * *", "churn")  # stable
    assert spread_cron("0 2 * * *", "churn").split()[1:] == ["2", "*", "*", "*"]  # same hour


def test_presets_spread_and_a_chosen_minute_is_kept():
    assert spread_cron("@daily", "churn").split()[1:] == ["0", "*", "*", "*"]
    assert spread_cron("@hourly", "churn").split()[1:] == ["*", "*", "*", "*"]
    assert spread_cron("30 2 * * *", "churn") == "30 2 * * *"
    assert spread_cron("0-0 2 * * *", "churn") == "0-0 2 * * *"
    assert spread_cron(None, "churn") is None


def test_the_built_dags_use_the_spread_schedule_and_the_tiers_priority(tmp_path):
    specs = tmp_path / "models"
    specs.mkdir()
    raw = yaml.safe_load((MODELS / "churn.yaml").read_text())
    for name, tier in (("urgent", "1"), ("plain", "3")):
        (specs / f"{name}.yaml").write_text(yaml.safe_dump(raw | {"name": name, "tags": {"tier": tier}}))
    dags = build_all(specs, tmp_path / "none")
    for name in ("plain", "urgent"):
        cron = spread_cron("0 2 * * *", name)
        assert cron != "0 2 * * *"
        assert f"expression='{cron}'" in repr(dags[f"{name}__retrain"].schedule)
    assert dags["plain__retrain"].schedule != dags["urgent__retrain"].schedule
    urgent, plain = dags["urgent__retrain"].get_task("train"), dags["plain__retrain"].get_task("train")
    assert urgent.priority_weight == 10_000 and plain.priority_weight == 1


def _scheduler_weights(dag) -> dict[str, int]:
    """The weight the scheduler orders a DAG's tasks by: Airflow's own strategy for their rule."""
    strategy = validate_and_load_priority_weight_strategy
    return {t.task_id: strategy(t.weight_rule).get_weight(SimpleNamespace(task=t)) for t in dag.tasks}


def test_a_started_run_goes_before_a_new_one_and_tiers_never_cross(tmp_path):
    """Depth-first inside a tier: every task weighs more than its upstream tasks, so a run that has
    started finishes before another run's first task is queued; across tiers, the heaviest task of
    any DAG of a lower tier weighs less than the lightest of the tier above."""
    specs = tmp_path / "models"
    specs.mkdir()
    tiers = {"urgent": "1", "middle": "2", "plain": "3"}
    for name in sorted(MODELS.glob("*.yaml")):
        raw = yaml.safe_load(name.read_text())
        for prefix, tier in tiers.items():
            (specs / f"{prefix}_{name.stem}.yaml").write_text(
                yaml.safe_dump(raw | {"name": f"{prefix}_{raw['name']}", "tags": {"tier": tier}})
            )
    dags = build_all(specs, tmp_path / "none")
    weights = {dag_id: _scheduler_weights(dag) for dag_id, dag in dags.items()}
    for dag_id, dag in dags.items():
        for task in dag.tasks:
            for down in task.get_flat_relative_ids(upstream=False):
                assert weights[dag_id][down] > weights[dag_id][task.task_id], (dag_id, task.task_id, down)
    by_tier = {
        prefix: [w for dag_id, ws in weights.items() if dag_id.startswith(prefix + "_") for w in ws.values()]
        for prefix in tiers
    }
    assert max(by_tier["plain"]) < min(by_tier["middle"])
    assert max(by_tier["middle"]) < min(by_tier["urgent"])
