"""demand's drift watch in the demo: a same-weekday reference raises no false alarm on its days."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import yaml
from model_factory.monitoring.drift import DriftRule, check_drift
from model_factory.monitoring.references import reference_days
from model_factory.pipeline.profile import build_baseline
from model_factory_dev import demo, demo_data

MODELS = Path(__file__).resolve().parents[3] / "include" / "models"


def _rule() -> tuple[DriftRule, list[str], list[str]]:
    drift = yaml.safe_load((MODELS / "demand.yaml").read_text())["drift"]
    rule = DriftRule(
        psi_threshold=0.2, drifted_share=0.3, min_rows=500, ignore_features=tuple(drift["ignore_features"])
    )
    assert drift["reference"] == "same_weekday"
    return rule, list(demo_data.NUMERIC_FEATURES["demand"]), list(demo_data.CATEGORICAL_FEATURES["demand"])


def _profile(days: list[dt.date], numeric: list[str], categorical: list[str]) -> dict:
    frame = pd.concat([demo_data.generate_batch("demand", d) for d in days], ignore_index=True)
    return build_baseline(frame, numeric, categorical)


@pytest.mark.parametrize("offset", range(demo.DAYS + 1))  # the demo's days and its production day
def test_same_weekday_reference_raises_no_false_alarm_on_the_demo_days(offset: int) -> None:
    rule, numeric, categorical = _rule()
    day = demo.START + dt.timedelta(days=offset)
    history = {demo.START - dt.timedelta(days=k) for k in range(1, demo.SEASONAL_HISTORY_DAYS + 1)}
    history |= {demo.START + dt.timedelta(days=k) for k in range(offset)}
    choice = reference_days("same_weekday", day, history)
    assert choice is not None and len(choice.days) >= 2  # the history the demo writes suffices
    reference = _profile(list(choice.days), numeric, categorical)
    columns = numeric + categorical
    assert check_drift(reference, demo_data.generate_batch("demand", day)[columns], rule).status == "no_drift"
    shifted = demo_data.generate_batch("demand", day, covariate_shift=0.5)[columns]
    assert check_drift(reference, shifted, rule).status == "drift"  # a real shift is still caught


def test_the_days_before_as_reference_fire_around_the_demo_weekend() -> None:
    rule, numeric, categorical = _rule()
    fired = []
    for offset in range(demo.DAYS + 1):
        day = demo.START + dt.timedelta(days=offset)
        reference = _profile([day - dt.timedelta(days=k) for k in (1, 2, 3)], numeric, categorical)
        current = demo_data.generate_batch("demand", day)[numeric + categorical]
        if check_drift(reference, current, rule).status == "drift":
            fired.append(day.weekday())
    assert 5 in fired and len(fired) >= 3  # the weekend and the days whose window holds it
