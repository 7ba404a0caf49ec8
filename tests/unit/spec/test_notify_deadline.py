"""``notify.retrain_deadline``: an HH:MM (UTC) a nightly retrain must have finished by."""

from __future__ import annotations

import pytest
import yaml
from model_factory.settings import FactorySettings
from model_factory.spec import SpecError, daily_time, load_spec

from tests.conftest import REPO


def _load(tmp_path, **changes):
    raw = yaml.safe_load((REPO / "include" / "models" / "churn.yaml").read_text())
    raw.update(changes)
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path, FactorySettings.from_env())


def test_a_deadline_on_a_daily_schedule_is_kept(tmp_path):
    spec = _load(tmp_path, notify={"retrain_deadline": "06:00"})
    assert spec.notify.retrain_deadline == "06:00"


@pytest.mark.parametrize("bad", ["6:00", "24:00", "06:60", "06:00:00", "six"])
def test_a_deadline_that_is_not_hh_mm_is_refused_naming_the_field(tmp_path, bad):
    with pytest.raises(SpecError, match=r"notify\.retrain_deadline"):
        _load(tmp_path, notify={"retrain_deadline": bad})


@pytest.mark.parametrize("schedule", ["@hourly", "0 */6 * * *", "0 2 * * 1", None])
def test_a_deadline_without_a_daily_schedule_is_refused_naming_both(tmp_path, schedule):
    with pytest.raises(SpecError, match=r"retrain_deadline '06:00' needs a daily `schedule`") as caught:
        _load(tmp_path, schedule=schedule, notify={"retrain_deadline": "06:00"})
    assert repr(schedule) in str(caught.value)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("0 2 * * *", (2, 0)),
        ("30 23 * * *", (23, 30)),
        ("@daily", (0, 0)),
        ("@hourly", None),
        ("0 2 * * 1-5", None),
        ("0,30 2 * * *", None),
        (None, None),
    ],
)
def test_daily_time_reads_only_once_a_day_crons(schedule, expected):
    assert daily_time(schedule) == expected
