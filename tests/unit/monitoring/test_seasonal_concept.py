"""Issue 20: the drift watch's concept check honours the seasonal ``drift.reference``.

The demo's ``demand`` sells more at weekends and its RMSE (in units) moves with the level and with
the day's weather. Against the champion's holdout the concept check fired on demo days 01-08,
01-10 and 01-11 (the last ``make demo``); against the same weekday's days it compares a day with
its own kind, and the reference days' spread is its noise. Rates are measured over fixed seeds;
the numbers are in the asserts' messages and in docs/drift_watch.md.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from model_factory.monitoring.drift import ConceptPolicy, check_concept_drift
from model_factory.monitoring.references import DayMetric, check_seasonal_concept, reference_days
from model_factory.pipeline.evaluation import metric_standard_error, metric_value, predict_holdout
from model_factory.pipeline.training import default_fit, split_holdout
from model_factory.settings import FactorySettings
from model_factory.spec import load_spec
from model_factory_dev import demo, demo_data

SPEC = load_spec(
    Path(__file__).resolve().parents[3] / "include" / "models" / "demand.yaml", FactorySettings.from_env()
)
FEATURES = SPEC.features.all
POLICY = ConceptPolicy.of(SPEC)
MAX_DROP = POLICY.max_drop


def _fit(days: list[dt.date], rows: int, seed: int = 0):
    """The champion the retrain DAG trains on these days' batches, and its holdout (RMSE, rows)."""
    frame = pd.concat(
        [demo_data.generate_batch("demand", d, rows=rows, seed=seed) for d in days], ignore_index=True
    )
    train, holdout = split_holdout(frame, SPEC)
    model = default_fit(SPEC, train[FEATURES], train[SPEC.target]).model
    return model, metric_value("rmse", predict_holdout(model, holdout, SPEC)), len(holdout)


def _day(model, day: dt.date, rows: int = 2000, seed: int = 0, concept_shift: float = 0.0) -> DayMetric:
    batch = demo_data.generate_batch("demand", day, rows=rows, seed=seed, concept_shift=concept_shift)
    predictions = predict_holdout(model, batch, SPEC)
    se = metric_standard_error("rmse", predictions, resamples=100)
    return DayMetric(day, metric_value("rmse", predictions), len(batch), se)


def _vs_holdout(live: DayMetric, holdout_rmse: float, holdout_rows: int) -> str:
    return check_concept_drift(
        live.value,
        holdout_rmse,
        higher_is_better=False,
        n_labelled=live.n,
        policy=POLICY,
        live_se=live.se,
        reference_rows=holdout_rows,
    )["status"]


def _vs_same_weekday(live: DayMetric, stored: dict[dt.date, DayMetric], weeks: int = 4) -> dict:
    """The watch's concept check under same_weekday: the reference days, and every stored day of
    the 4 weeks before for the day-to-day spread (what ``watch.seasonal_reference`` reads)."""
    choice = reference_days("same_weekday", live.day, set(stored), weeks=weeks, min_days=0)
    window = reference_days("rolling", live.day, set(stored), window_days=28, min_days=0)
    assert choice is not None and window is not None
    return check_seasonal_concept(
        live,
        [stored[d] for d in choice.days],
        spread_days=[stored[d] for d in window.days if d not in choice.days],
        higher_is_better=False,
        policy=POLICY,
    )


def test_the_demo_champion_fires_against_its_holdout_and_not_against_the_same_weekday() -> None:
    """The demo's first champion: trained on 01-05's batch (a Monday); the demo's days, each with
    the reference days the watch finds in the demo's history (two weeks before START)."""
    model, holdout_rmse, holdout_rows = _fit([demo.START], rows=2000)
    stored = {demo.START - dt.timedelta(days=k) for k in range(1, demo.SEASONAL_HISTORY_DAYS + 1)}
    cache: dict[dt.date, DayMetric] = {}

    def metric(day: dt.date) -> DayMetric:
        if day not in cache:
            cache[day] = _day(model, day)
        return cache[day]

    vs_holdout, vs_weekday = {}, {}
    for offset in range(demo.DAYS + 1):  # the demo's days and its production day
        day = demo.START + dt.timedelta(days=offset)
        for d in stored | {demo.START + dt.timedelta(days=k) for k in range(offset)}:
            metric(d)
        vs_holdout[day] = _vs_holdout(metric(day), holdout_rmse, holdout_rows)
        vs_weekday[day] = _vs_same_weekday(metric(day), {d: m for d, m in cache.items() if d < day})
    fired = sorted(str(d) for d, s in vs_holdout.items() if s in ("concept_drift", "too_good"))
    # the cause, reproduced: the holdout of one Monday says nothing of Thursday's weather or the
    # weekend's level, so a weekend's RMSE is 1.5-3x the holdout's
    assert {"2026-01-08", "2026-01-10", "2026-01-11"} <= set(fired), fired
    alarms = {str(d): r["reasons"] for d, r in vs_weekday.items() if r["status"] != "ok"}
    assert not alarms, alarms
    for result in vs_weekday.values():
        assert result["reference_kind"] == "same_weekday" and len(result["reference_days"]) == 2


SEEDS = range(3)
START = dt.date(2026, 2, 2)  # a Monday
CHECKED_DAYS = 14  # two of every weekday
WEEKS = 4


def _series(seed: int) -> tuple[float, int, dict[dt.date, DayMetric], dict[dt.date, DayMetric]]:
    """A champion trained on the 14 days before START (every weekday), its per-day RMSE on 4 weeks
    of history and 14 checked days, and on the checked days under a concept shift (the price
    elasticity eroded by 80%: the same features, another target)."""
    model, holdout_rmse, holdout_rows = _fit(
        [START - dt.timedelta(days=k) for k in range(1, 15)], rows=600, seed=seed
    )
    days = {
        START + dt.timedelta(days=k): _day(model, START + dt.timedelta(days=k), rows=1000, seed=seed)
        for k in range(-7 * WEEKS, CHECKED_DAYS)
    }
    shifted = {
        START + dt.timedelta(days=k): _day(model, START + dt.timedelta(days=k), 1000, seed, concept_shift=1.0)
        for k in range(CHECKED_DAYS)
    }
    return holdout_rmse, holdout_rows, days, shifted


@pytest.fixture(scope="module")
def series() -> list[tuple[float, int, dict[dt.date, DayMetric], dict[dt.date, DayMetric]]]:
    return [_series(seed) for seed in SEEDS]


def _checked(days: dict[dt.date, DayMetric], day: dt.date, live: DayMetric) -> dict:
    result = _vs_same_weekday(live, {d: m for d, m in days.items() if d < day}, weeks=WEEKS)
    assert len(result["reference_days"]) == WEEKS
    return result


def test_same_weekday_concept_check_raises_no_false_alarm_where_the_holdout_fires(series) -> None:
    holdout_alarms = seasonal_alarms = checked = 0
    for holdout_rmse, holdout_rows, days, _ in series:
        for k in range(CHECKED_DAYS):
            day = START + dt.timedelta(days=k)
            holdout_alarms += _vs_holdout(days[day], holdout_rmse, holdout_rows) != "ok"
            seasonal_alarms += _checked(days, day, days[day])["status"] != "ok"
            checked += 1
    # measured: the holdout fires on 11 of 42 stable days (weekends), same_weekday on 0
    assert holdout_alarms >= len(SEEDS) * 2, f"holdout reference: {holdout_alarms} alarms in {checked} days"
    assert seasonal_alarms == 0, f"same_weekday reference: {seasonal_alarms} false alarms in {checked} days"


def test_same_weekday_concept_check_catches_an_eroded_price_elasticity(series) -> None:
    caught = checked = 0
    for _, _, days, shifted in series:
        for k in range(CHECKED_DAYS):
            day = START + dt.timedelta(days=k)
            result = _checked(days, day, shifted[day])
            assert result["relative_change"] < -MAX_DROP  # the shift is a real loss on every day
            caught += result["status"] == "concept_drift"
            checked += 1
    # measured: caught on 29 of 42 shifted days (the day the shift starts; RMSE up ~50%), so a
    # shift that lasts is caught within 2 days on ~90%
    assert caught >= 0.6 * checked, f"caught {caught} of {checked} shifted days"


def test_seasonal_concept_check_needs_two_reference_days_with_labels() -> None:
    day = dt.date(2026, 3, 5)
    live = DayMetric(day, 10.0, 500, 0.3)
    one = _weeks(day, [9.0, 9.0])
    second = day - dt.timedelta(weeks=2)
    one[second] = DayMetric(second, 9.0, 50)  # too few labels to count
    result = _vs_same_weekday(live, one)
    assert result["status"] == "insufficient_data"
    assert "1 reference day(s) with at least 200 labelled rows" in result["reasons"][0]
    few = _vs_same_weekday(DayMetric(day, 10.0, 150, 0.3), one)
    assert few["status"] == "insufficient_data" and "only 150 labelled rows" in few["reasons"][0]


def _weeks(day: dt.date, values: list[float]) -> dict[dt.date, DayMetric]:
    """The same weekday in the weeks before ``day``, with these RMSEs (1,000 labelled rows each)."""
    days = [day - dt.timedelta(weeks=w) for w in range(1, len(values) + 1)]
    return {d: DayMetric(d, v, 1000, 0.2) for d, v in zip(days, values, strict=True)}


def test_seasonal_concept_check_states_what_it_cannot_see() -> None:
    day = dt.date(2026, 3, 5)
    result = _vs_same_weekday(DayMetric(day, 12.0, 1000, 0.2), _weeks(day, [8.0, 10.0]))
    # 34% worse than the geometric mean of two days 8 and 10: with one degree of freedom, within
    # their spread, and the reason says how large a loss it would take
    assert result["status"] == "ok" and result["relative_change"] == pytest.approx(1 - 12 / 80**0.5)
    assert result["smallest_visible_drop"] > 1 and "goes unseen here" in result["reasons"][0]
    assert result["spread_df"] == 1
    tight = _weeks(day, [9.0, 9.1, 8.9, 9.0])
    assert _vs_same_weekday(DayMetric(day, 12.0, 1000, 0.2), tight)["status"] == "concept_drift"
    assert _vs_same_weekday(DayMetric(day, 4.0, 1000, 0.2), tight)["status"] == "too_good"
    # the spread of the other weekdays counts: Fridays that vary widely make Thursday's 12 noise
    fridays = {
        d + dt.timedelta(days=1): DayMetric(d + dt.timedelta(days=1), v, 1000, 0.2)
        for d, v in zip(tight, [6.0, 12.0, 7.0, 13.0], strict=True)
    }
    wide = _vs_same_weekday(DayMetric(day, 12.0, 1000, 0.2), tight | fridays)
    assert wide["status"] == "ok" and wide["spread_df"] == 6, wide["reasons"]
