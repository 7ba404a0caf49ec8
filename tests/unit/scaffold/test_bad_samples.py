"""Issue 23 "bad input": a sample the scaffold cannot learn from is said at scaffold time, with
what and where, not found by a failing task days later. (Too few rows, an all-null target and
late classes: tests/unit/scaffold/test_hostile_samples.py.)"""

from __future__ import annotations

import pandas as pd
import pytest
from model_factory.scaffold import ScaffoldError

from tests.unit.scaffold import new_model


def _scaffold(tmp_path, frame: pd.DataFrame):
    sample = tmp_path / "sample.csv"
    frame.to_csv(sample, index=False)
    return new_model("bad", "retrain", tmp_path / "models", owner="ds", sample=sample, target="label")


def _refused(tmp_path, frame: pd.DataFrame, match: str) -> None:
    with pytest.raises(ScaffoldError, match=match):
        _scaffold(tmp_path, frame)
    assert not (tmp_path / "models" / "bad.yaml").exists()


def test_a_target_with_one_class_is_refused_naming_the_class(tmp_path):
    _refused(
        tmp_path,
        pd.DataFrame({"x": range(40), "label": ["yes"] * 40}),
        r"target 'label' has one class in the sample \(\['yes'\]\): need two",
    )


def test_a_time_column_with_unparseable_values_is_refused_with_examples(tmp_path):
    when = pd.date_range("2026-01-01", periods=40, freq="D").astype(str).tolist()
    when[5], when[9], when[20] = "31/02/2026", "yesterday", "2026-13-45"
    frame = pd.DataFrame({"event_time": when, "x": range(40), "label": [0, 1] * 20})
    said = (
        r"column 'event_time' looks like a time column, but 3 of its first 40 values do not read as "
        r"dates, e.g. '31/02/2026', 'yesterday', '2026-13-45': fix them"
    )
    _refused(tmp_path, frame, said)


def test_a_column_named_like_time_with_no_dates_at_all_is_not_a_time_column(tmp_path):
    frame = pd.DataFrame({"products": ["apple", "pear"] * 20, "x": range(40), "label": [0, 1] * 20})
    result = _scaffold(tmp_path, frame)  # 'products' holds "ts": still a plain categorical feature
    assert result.validation == ["the sample passes the spec's validation"]
    assert not any("time column" in note for note in result.notes)


def test_a_sample_all_on_one_day_says_so(tmp_path):
    when = pd.date_range("2026-05-04 00:00", periods=40, freq="30min").astype(str)
    frame = pd.DataFrame({"event_time": when, "x": range(40), "label": [0, 1] * 20})
    result = _scaffold(tmp_path, frame)
    assert any(note.startswith("event_time: every row is on one day (2026-05-04)") for note in result.notes)
