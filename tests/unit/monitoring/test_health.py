"""Model health over time (issue 20's core library), tested with numbers over seeds.

Measured when written (the asserted bars in brackets):
* CBPE accuracy / ROC AUC interval covers the realized metric in 38/40 and 38/40 stable-calibration
  seeds [>= 36/40, 90%] (the holdout check flags 2/40 of those calibrated models [<= 2]); a broken
  calibration (scores cubed) is flagged in 40/40 seeds and, corrected by isotonic, covered in 39/40
  [>= 36]; the uncorrected estimate covers 0/40 [<= 4]. The regressor's direct loss estimate covers
  the realized RMSE in 38/40 [>= 36].
* Output drift: 0 false alarms in 50 stable days [<= 1]; a 0.5 sigma shift caught 20/20 days.
* Seasonal reference: the training reference fires on 14/14 days of a weekly-pattern series,
  same_weekday on 0/14 [0].
* Expiry forecast made 7 days ahead lands within +-2 days of the true crossing in 43/50 seeds [>= 40].
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from model_factory.monitoring import drift
from model_factory.monitoring import performance as perf
from model_factory.monitoring.expiry import forecast_expiry, suggest_cadence
from model_factory.monitoring.health import HealthPolicy, Holdout, check_health
from model_factory.monitoring.health_history import HealthRow, history, record
from model_factory.monitoring.outcomes import OutcomeInputError, join_outcomes
from model_factory.monitoring.output_drift import check_output_drift
from model_factory.monitoring.references import reference_days
from model_factory.monitoring.stability import effect_stability
from model_factory.monitoring.system_health import system_health, system_health_by_day
from model_factory.pipeline.profile import build_baseline

from tests.unit.monitoring.health_rows import health_row

T0 = pd.Timestamp("2026-03-01 00:00")


# ------------------------------------------------------------------------------------------------
# Outcomes joined with predictions


def _predictions(ids: list[str], at: list[pd.Timestamp], version: str = "3") -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "version": version, "predicted_at": at, "prediction": 1, "score": 0.7})


def test_every_join_rule_is_applied_and_counted() -> None:
    day = pd.Timedelta(days=1)
    preds = pd.concat(
        [
            _predictions(["a", "b", "c", "d", "e", "f", "g"], [T0] * 7),
            _predictions(["a"], [T0 + 2 * day]),  # repeated: the later one judges a's outcome
            _predictions(["h"], [T0 + 30 * day]),  # after as_of: a skewed clock
            _predictions(["p"], [T0 + 9 * day]),  # young, no outcome yet: pending
        ]
    )
    outcomes = pd.DataFrame(
        {
            "id": ["a", "b", "b", "c", "c", "d", "zz", "e", "f"],
            "outcome": [1, 0, 0, 1, 0, 1, 1, "cat", 1],
            "event_time": [
                T0 + 3 * day,
                T0 + day,
                T0 + day,
                T0 + day,
                T0 + day,
                T0 - day,
                T0 + day,
                T0 + day,
                T0 + day,
            ],
            "arrived_at": [
                T0 + 4 * day,
                T0 + 2 * day,
                T0 + 3 * day,
                T0 + 2 * day,
                T0 + 2 * day,
                T0 + day,
                T0 + day,
                T0 + day,
                T0 + 8 * day,
            ],
        }
    )
    joined = join_outcomes(preds, outcomes, as_of=T0 + 10 * day, max_delay_days=3, classes=[0, 1])
    c = joined.counts
    assert (c.predictions, c.outcomes) == (10, 9)
    assert c.clock_skewed == 1 and c.repeated_predictions == 1
    assert c.unknown_id == 1 and c.invalid == 1  # "zz" never predicted; "cat" is no class
    assert c.duplicate == 1 and c.conflicting == 2  # b twice the same; c with 1 and 0
    assert c.before_prediction == 1  # d happened before it was predicted
    assert c.late == 1  # f arrived 8 days after its prediction (limit 3): used, counted
    assert c.out_of_order == 1  # f (event day 1) arrived after a (event day 3)
    assert sorted(joined.joined["id"]) == ["a", "b", "f"]
    a = joined.joined.set_index("id").loc["a"]
    assert a["predicted_at"] == T0 + 2 * day  # the latest prediction before the event
    assert c.pending == 1 and c.expired == 4  # p young; c, d, e, g matured without a usable outcome
    assert joined.matured_predictions == 7 and joined.label_coverage == pytest.approx(3 / 7)
    every_outcome = c.matched + c.unknown_id + c.invalid + c.duplicate + c.conflicting + c.before_prediction
    assert every_outcome == c.outcomes  # nothing lost or silently dropped


def test_a_missing_column_names_what_and_where() -> None:
    preds = _predictions(["a"], [T0]).drop(columns=["version"])
    with pytest.raises(OutcomeInputError, match=r"predictions lack column\(s\) \['version'\]"):
        no_outcomes = pd.DataFrame(columns=["id", "outcome", "event_time"])
        join_outcomes(preds, no_outcomes, as_of=T0, max_delay_days=1)
    with pytest.raises(OutcomeInputError, match=r"outcomes lack column\(s\) \['event_time'\]"):
        join_outcomes(
            _predictions(["a"], [T0]), pd.DataFrame({"id": [], "outcome": []}), as_of=T0, max_delay_days=1
        )


def test_a_day_without_outcomes_gives_no_metric_and_says_so() -> None:
    preds = _predictions(["a", "b"], [T0, T0])
    empty = pd.DataFrame({"id": [], "outcome": [], "event_time": pd.to_datetime([])})
    joined = join_outcomes(preds, empty, as_of=T0 + pd.Timedelta(days=5), max_delay_days=2, classes=[0, 1])
    assert joined.counts.matched == 0 and joined.counts.expired == 2 and joined.label_coverage == 0.0
    result = perf.realized("accuracy", np.array([]), np.array([]))
    assert result.value is None and result.reason == "no matured outcomes"


# ------------------------------------------------------------------------------------------------
# Realized and estimated performance


def _classifier_day(rng: np.random.Generator, n: int, power: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """True P(positive) from a logistic model; the model reports it raised to ``power`` (1: calibrated)."""
    p = 1 / (1 + np.exp(-1.5 * rng.normal(size=n)))
    return p**power, rng.random(n) < p


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc"])
def test_cbpe_interval_covers_the_realized_metric_when_calibrated(metric: str) -> None:
    covered = flagged = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        calibration = perf.check_calibration(*_classifier_day(rng, 3_000))
        flagged += not calibration.calibrated
        scores, truth = _classifier_day(rng, 2_000)
        estimate = perf.estimate_classifier(metric, scores, calibration)
        actual = perf.realized(metric, truth.astype(int), (scores >= 0.5).astype(int), scores)
        covered += estimate.covers(actual.value)
    assert covered >= 36, covered
    assert flagged <= 2, flagged  # the holdout check at alpha 0.01 rarely cries wolf


def test_broken_calibration_is_said_and_corrected() -> None:
    corrected = naive = flagged = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        calibration = perf.check_calibration(*_classifier_day(rng, 3_000, power=3))
        flagged += not calibration.calibrated
        scores, truth = _classifier_day(rng, 2_000, power=3)
        actual = perf.realized("accuracy", truth.astype(int), (scores >= 0.5).astype(int))
        corrected += perf.estimate_classifier("accuracy", scores, calibration).covers(actual.value)
        naive += perf.estimate_classifier("accuracy", scores, None).covers(actual.value)
    assert flagged == 40
    assert "miscalibrated" in calibration.reason
    assert corrected >= 36 and naive <= 4, (corrected, naive)


def test_no_probabilities_no_estimate_and_it_says_why() -> None:
    result = perf.estimate_classifier("accuracy", None)
    assert result.value is None and "no probabilities" in result.reason


def test_direct_loss_estimate_covers_the_realized_rmse() -> None:
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)

        def day(n: int, rng: np.random.Generator = rng) -> tuple[np.ndarray, np.ndarray]:
            x = rng.normal(size=n)
            return x + rng.normal(0, 0.5 + 0.5 * np.abs(x), n), x  # heteroscedastic: loss grows with |x|

        model = perf.fit_loss_model(*day(4_000))
        truth, pred = day(2_000)
        estimate = perf.estimate_regressor("rmse", pred, model)
        covered += estimate.covers(perf.realized("rmse", truth, pred).value)
    assert covered >= 36, covered


# ------------------------------------------------------------------------------------------------
# Output drift, seasonal references


def test_output_drift_false_alarms_and_power() -> None:
    rng = np.random.default_rng(7)
    holdout = rng.normal(0, 1, 2_000)
    stable = [check_output_drift(holdout, rng.normal(0, 1, 800)).status for _ in range(50)]
    shifted = [check_output_drift(holdout, rng.normal(0.5, 1, 800)).status for _ in range(20)]
    false_alarms, caught = stable.count("drift"), shifted.count("drift")
    assert false_alarms <= 1 and caught == 20, (false_alarms, caught)
    few = check_output_drift(holdout, rng.normal(0, 1, 20))
    assert few.status == "insufficient_data" and "at least 100" in few.reason


def _weekly_day(rng: np.random.Generator, day: date, n: int = 600) -> pd.DataFrame:
    level = [10, 11, 12, 12, 15, 25, 22][day.weekday()]  # a weekly pattern (weekend peak)
    return pd.DataFrame(
        {
            "orders": rng.poisson(level, n).astype("float64"),
            "basket": rng.gamma(2, level / 2, n),
            "kind": pd.array(rng.choice(["a", "b"], n, p=[0.4 + level / 100, 0.6 - level / 100]), "str"),
        }
    )


def test_same_weekday_reference_raises_no_false_alarm_where_training_fires_daily() -> None:
    rng = np.random.default_rng(3)
    start = date(2026, 1, 5)
    frames = {start + timedelta(days=k): _weekly_day(rng, start + timedelta(days=k)) for k in range(42)}
    numeric, categorical = ["orders", "basket"], ["kind"]
    training = build_baseline(pd.concat([frames[d] for d in list(frames)[:28]]), numeric, categorical)
    checked = list(frames)[28:]
    fired = {"training": 0, "same_weekday": 0}
    for day in checked:
        fired["training"] += drift.check_drift(training, frames[day]).status == "drift"
        choice = reference_days("same_weekday", day, set(frames))
        assert choice is not None and len(choice.days) == 4
        reference = build_baseline(pd.concat([frames[d] for d in choice.days]), numeric, categorical)
        fired["same_weekday"] += drift.check_drift(reference, frames[day]).status == "drift"
    assert fired == {"training": len(checked), "same_weekday": 0}, fired


def test_reference_days_of_each_kind_and_too_little_history() -> None:
    day = date(2026, 12, 24)
    history_days = {day - timedelta(days=k) for k in range(1, 400)}
    assert reference_days("rolling", day, history_days, window_days=7).days[-1] == day - timedelta(days=1)
    last_year = reference_days("same_period_last_year", day, history_days)
    assert min(last_year.days) == date(2025, 12, 22) and len(last_year.days) == 7
    assert reference_days("same_weekday", day, {day - timedelta(days=1)}) is None
    with pytest.raises(ValueError, match=r"drift\.reference must be one of"):
        reference_days("yesterday", day, history_days)


# ------------------------------------------------------------------------------------------------
# Models of models


def test_expiry_forecast_seven_days_ahead_lands_within_two_days() -> None:
    start, slope, threshold, n = 0.86, -0.003, 0.78, 2_000
    crossing_t = (threshold - start) / slope  # the true crossing, 26.7 days in
    origin = date(2026, 1, 1)
    truth = origin + timedelta(days=crossing_t)
    hits = 0
    for seed in range(50):
        rng = np.random.default_rng(seed)
        t = np.arange(round(crossing_t - 7) + 1)  # the forecast is made 7 days before the crossing
        observed = rng.binomial(n, start + slope * t) / n
        days = [origin + timedelta(days=int(k)) for k in t]
        forecast = forecast_expiry(
            days, observed.tolist(), [n] * len(t), threshold=threshold, higher_is_better=True, seed=seed
        )
        assert forecast.status == "expiring" and forecast.retrain_by <= forecast.crossing
        hits += abs((forecast.crossing - truth).days) <= 2
    assert hits >= 40, hits


def test_no_decline_no_expiry_date_and_cadence_from_decay() -> None:
    rng = np.random.default_rng(1)
    days = [date(2026, 1, 1) + timedelta(days=k) for k in range(20)]
    flat = forecast_expiry(
        days, (0.85 + rng.normal(0, 0.005, 20)).tolist(), None, threshold=0.8, higher_is_better=True
    )
    assert flat.status == "stable" and flat.crossing is None
    few = forecast_expiry(days[:3], [0.9, 0.8, 0.7], None, threshold=0.5, higher_is_better=True)
    assert few.status == "insufficient_data" and "at least 5" in few.reason
    rising = [1.0 + 0.01 * k for k in range(20)]
    rmse = forecast_expiry(days, rising, None, threshold=1.3, higher_is_better=False)
    assert rmse.status == "expiring" and rmse.crossing == date(2026, 1, 31)
    assert suggest_cadence(0.86, 0.78, -0.002, higher_is_better=True) == 28  # 0.7 * 40 days of runway
    assert suggest_cadence(0.86, 0.78, 0.001, higher_is_better=True) is None


def test_effect_stability_flags_volatile_features() -> None:
    effects = {
        "1": {"tenure": -0.50, "charges": 0.30, "support": 0.10},
        "2": {"tenure": -0.52, "charges": 0.31, "support": -0.12},
        "3": {"tenure": -0.49, "charges": 0.05, "support": 0.09},
    }
    verdict = {s.feature: s for s in effect_stability(effects)}
    assert not verdict["tenure"].volatile
    assert verdict["support"].volatile and verdict["support"].sign_changes == 2
    assert verdict["charges"].volatile and "spread" in verdict["charges"].reason


def test_system_health_per_version() -> None:
    log = pd.DataFrame(
        {
            "version": ["1"] * 4 + ["2"] * 2,
            "status": ["ok", "ok", "ok", "error", "ok", "ok"],
            "latency_ms": [10.0, 20.0, 30.0, None, 5.0, 7.0],
            "created_at": [T0 + pd.Timedelta(minutes=k) for k in range(6)],
        }
    )
    one, two = system_health(log, T0, T0 + pd.Timedelta(minutes=60))
    assert (one.requests, one.error_rate, one.p50_ms) == (4, 0.25, 20.0)
    assert one.requests_per_minute == pytest.approx(4 / 60) and two.p95_ms == pytest.approx(6.9)


def test_system_health_of_every_version_and_day_in_one_pass_equals_the_per_day_windows() -> None:
    rng = np.random.default_rng(5)
    n = 3_000
    log = pd.DataFrame(
        {
            "version": rng.choice(["1", "2", "10"], n),
            "status": rng.choice(["ok", "error"], n, p=[0.9, 0.1]),
            "latency_ms": np.where(rng.random(n) < 0.05, np.nan, rng.gamma(2, 5, n)),
            "created_at": T0 + pd.to_timedelta(rng.integers(0, 5 * 86_400, n), unit="s"),
        }
    )
    by_day = system_health_by_day(log)
    assert len(by_day) == 3 * 5
    for (version, day), found in by_day.items():
        start = pd.Timestamp(day)
        (expected,) = system_health(log[log["version"] == version], start, start + pd.Timedelta(days=1))
        assert found == expected


def test_expected_roc_auc_over_value_buckets_stays_within_its_bound_of_the_sorted_walk() -> None:
    rng = np.random.default_rng(11)
    spread = 1 / (1 + np.exp(-1.5 * rng.normal(size=300_000)))  # many rows: the bucketed walk
    crowded = np.round(spread, 3)  # 1,001 distinct values: pairs per bucket too many, the sort
    for p in (spread, crowded):
        n_pos = float(p.sum())
        fast = perf._expected_auc(p, n_pos, len(p) - n_pos)
        descending = np.sort(p)[::-1]
        tp = np.concatenate([[0.0], np.cumsum(descending)])
        fp = np.concatenate([[0.0], np.cumsum(1 - descending)])
        exact = float(np.trapezoid(tp / tp[-1], fp / fp[-1]))  # the threshold walk, as first written
        assert abs(fast - exact) <= perf.AUC_BUCKET_TOLERANCE, (fast, exact)


def test_health_history_rows_are_replaced_per_version_and_day(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'predictions.db'}")

    def row(day: date, realized: float | None) -> HealthRow:
        return health_row(
            day=day,
            metric="accuracy",
            realized=realized,
            outcomes=10,
            label_coverage=0.01,
            output_drift_ks=0.04,
        )

    record(engine, [row(date(2026, 3, 1), None), row(date(2026, 3, 2), None)])
    record(engine, [row(date(2026, 3, 1), 0.79)])  # late outcomes recomputed the first day
    rows = history(engine, "churn")
    assert [(r.day, r.realized) for r in rows] == [(date(2026, 3, 1), 0.79), (date(2026, 3, 2), None)]
    assert history(engine, "demand") == []


# ------------------------------------------------------------------------------------------------
# The whole check on a simulated champion: gradual concept shift, outcomes two days late


def _decaying_champion(seed: int, days: int, decay: float, n: int = 400) -> tuple:
    """A calibrated classifier whose world drifts away: each day the true P(positive) moves from
    the model's score toward a coin flip by ``decay`` more (a gradual concept shift)."""
    rng = np.random.default_rng(seed)
    holdout_scores, holdout_truth = _classifier_day(rng, 3_000)
    preds, outs = [], []
    for k in range(days):
        scores, _ = _classifier_day(rng, n)
        true_p = (1 - decay * k) * scores + decay * k * 0.5
        truth = rng.random(n) < true_p
        at = T0 + pd.Timedelta(days=k) + pd.to_timedelta(rng.uniform(0, 86_000, n), unit="s")
        ids = [f"{k}-{i}" for i in range(n)]
        preds.append(
            pd.DataFrame(
                {
                    "id": ids,
                    "version": "4",
                    "predicted_at": at,
                    "prediction": (scores >= 0.5).astype(int),
                    "score": scores,
                }
            )
        )
        outs.append(
            pd.DataFrame(
                {
                    "id": ids,
                    "outcome": truth.astype(int),
                    "event_time": at,
                    "arrived_at": at + pd.Timedelta(days=2),
                }
            )
        )
    holdout = Holdout(
        holdout_truth.astype(int),
        (holdout_scores >= 0.5).astype(int),
        holdout_scores,
        float(np.mean((holdout_scores >= 0.5) == holdout_truth)),
    )
    return pd.concat(preds, ignore_index=True), pd.concat(outs, ignore_index=True), holdout


def test_health_check_sees_decay_decides_and_writes_history(tmp_path) -> None:
    preds, outs, holdout = _decaying_champion(seed=5, days=30, decay=0.02)
    policy = HealthPolicy(
        metric="accuracy",
        threshold=0.68,
        higher_is_better=True,
        task="classification",
        max_delay_days=3,
        min_outcomes=500,
    )
    as_of = (T0 + pd.Timedelta(days=30)).to_pydatetime()
    # Outcomes arrive two days late: only those that have arrived by as_of are known.
    known = outs[outs["arrived_at"] <= as_of]
    report = check_health("churn", preds, known, holdout, policy, as_of, classes=[0, 1])
    assert report.counts.matched == len(known) and report.calibration.calibrated
    assert report.decision.action == "retrain" and report.decision.reason.startswith("performance:")
    assert report.expiry.status in ("expiring", "expired") and report.expiry.slope_per_day < 0
    late_days = [d for d in report.days if d.day >= (T0 + pd.Timedelta(days=28)).date()]
    assert all(d.realized.value is None for d in late_days)  # no outcome yet: the estimate stands alone
    assert all(d.estimated.value is not None for d in late_days)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'predictions.db'}")
    assert record(engine, report.rows()) == 30 and len(history(engine, "churn")) == 30


def test_health_check_without_enough_outcomes_makes_no_decision_and_says_how_many() -> None:
    preds, outs, holdout = _decaying_champion(seed=6, days=3, decay=0.0, n=50)
    policy = HealthPolicy(
        metric="accuracy", threshold=0.6, higher_is_better=True, task="classification", max_delay_days=1
    )
    report = check_health("churn", preds, outs, holdout, policy, (T0 + pd.Timedelta(days=4)).to_pydatetime())
    assert report.decision.action == "no_decision"
    assert report.decision.reason == "150 matured outcomes in the last 7 days; a decision needs at least 200"


# ------------------------------------------------------------------------------------------------
# Where it shows: the CLI


def test_cli_health_prints_the_history_as_table_and_json(factory_home, capsys) -> None:
    from model_factory.cli.main import main
    from model_factory.serving.settings import prediction_db_uri
    from model_factory.settings import FactorySettings

    today = date.today()
    engine = sa.create_engine(prediction_db_uri(FactorySettings.from_env()))
    (factory_home / "serving").mkdir(parents=True)
    row = health_row(
        day=today - timedelta(days=1),
        realized=0.81,
        realized_low=0.79,
        realized_high=0.83,
        label_coverage=0.9,
        p95_ms=14.5,
    )
    record(engine, [row])
    assert main(["health", "churn", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["days"][0]["realized"] == 0.81 and shown["days"][0]["version"] == "3"
    assert main(["health", "churn"]) == 0
    table = capsys.readouterr().out
    assert "0.8100 [0.7900, 0.8300]" in table and "90%" in table and "14.5" in table
    assert main(["health", "demand"]) == 0
    assert "no health history yet" in capsys.readouterr().out
    assert main(["health", "nope"]) == 2
    assert "no model 'nope'" in capsys.readouterr().err


def test_latest_health_figures_as_prometheus_gauges(tmp_path) -> None:
    from model_factory.monitoring.health_history import latest_gauges
    from model_factory.serving.metrics import Metrics

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'predictions.db'}")
    assert latest_gauges(engine) == []

    def row(day: date, realized: float | None, version: str = "3") -> HealthRow:
        return health_row(
            version=version, day=day, realized=realized, outcomes=10, label_coverage=0.5, output_drift_ks=0.04
        )

    record(
        engine, [row(date(2026, 3, 1), 0.79), row(date(2026, 3, 2), None), row(date(2026, 3, 1), 0.7, "4")]
    )
    gauges = latest_gauges(engine)
    labels = {"model": "churn", "version": "3", "metric": "roc_auc"}
    assert ("factory_model_estimated_metric", gauges[0][1], labels, 0.8) in gauges
    assert not any(
        g[0] == "factory_model_realized_metric" and g[2]["version"] == "3" for g in gauges
    )  # latest day
    assert any(
        g[0] == "factory_model_realized_metric" and g[2]["version"] == "4" and g[3] == 0.7 for g in gauges
    )
    text = Metrics().render(gauges)
    assert 'factory_model_label_coverage{model="churn",version="3",metric="roc_auc"} 0.5' in text


def test_feature_effects_are_coefficients_for_linear_models_and_permutation_importance_otherwise() -> None:
    from model_factory.monitoring.stability import feature_effects
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {"strong": rng.normal(size=500), "weak": rng.normal(size=500), "none": rng.normal(size=500)}
    )
    y = 3 * X["strong"] - 0.5 * X["weak"] + rng.normal(0, 0.1, 500)
    linear = make_pipeline(FunctionTransformer(), LinearRegression()).fit(X, y)
    coefficients = feature_effects(linear, X, y, list(X.columns))
    assert coefficients["strong"] == pytest.approx(3, abs=0.05) and coefficients["weak"] == pytest.approx(
        -0.5, abs=0.05
    )
    tree = DecisionTreeRegressor(max_depth=4, random_state=0).fit(X, y)
    importance = feature_effects(tree, X, y, list(X.columns))
    assert importance["strong"] > importance["weak"] > abs(importance["none"])
