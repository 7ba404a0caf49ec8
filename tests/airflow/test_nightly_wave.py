"""Issue 22 item 2: a fleet's nightly retrains spread over the spec's hour (a stable per-model
minute) instead of one cron minute; tier-1 models' tasks weigh more, so they are queued first."""

from __future__ import annotations

import yaml
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
    assert urgent.priority_weight == 100 and plain.priority_weight == 1
