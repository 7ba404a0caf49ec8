"""Gates that hold on small data: paired interval, too small to decide, too-good vs the champion,
a newer blessed version vs a waiting challenger."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from model_factory.io.tracking import connect
from model_factory.pipeline import evaluation
from model_factory.pipeline.evaluation import (
    Predictions,
    decide,
    metric_value,
    paired_interval,
    resample_counts,
    weighted_metric,
)
from model_factory.pipeline.registry import register_version
from model_factory.settings import FactorySettings
from model_factory.spec import GatesSpec

from tests.unit.review.test_registry import retrain, spec_for

AUC = GatesSpec(
    primary_metric="roc_auc",
    threshold=0.6,
    max_regression=0.02,
    too_good_jump=0.15,
    too_good_score=0.999,
    min_holdout_rows=100,
)


def test_a_small_holdout_is_too_small_to_decide_against_a_champion():
    # issue 23: "too small to decide" is its own decision (not a rejection), for the first
    # version too (no champion from a handful of rows with a perfect score)
    d = decide(AUC, 0.70, 0.74, "3", holdout_rows=13)
    assert d.status == "undecided"
    assert d.reason.startswith("too small to decide: 13 rows of evidence < gates.min_holdout_rows 100")
    assert "champion v3 stays" in d.reason and d.evidence == "a holdout of 13 rows"
    first = decide(AUC, 1.0, None, holdout_rows=5)
    assert first.status == "undecided" and "no champion yet" in first.reason
    cv = decide(AUC, 0.70, None, holdout_rows=150, evidence="5-fold cross-validation ... 150 rows")
    assert cv.status == "blessed" and cv.evidence.startswith("5-fold")


def test_the_bar_is_relative_to_a_dummy_baseline():
    gates = AUC.model_copy(update={"baseline_margin": 0.05, "threshold": 0.5})
    assert decide(gates, 0.53, None, holdout_rows=400, baseline=0.5).status == "rejected"
    assert "does not beat a dummy model" in decide(gates, 0.53, None, holdout_rows=400, baseline=0.5).reason
    assert decide(gates, 0.56, None, holdout_rows=400, baseline=0.5).status == "blessed"


def test_worse_must_be_significant_and_noise_is_said_to_be_noise():
    noise = decide(AUC, 0.70, 0.74, "3", holdout_rows=400, interval=(-0.04, -0.10, 0.02))
    assert noise.status == "blessed" and "not significantly worse" in noise.reason
    assert "the canary decides on live traffic" in noise.reason
    worse = decide(AUC, 0.70, 0.74, "3", holdout_rows=400, interval=(-0.04, -0.06, -0.02))
    assert worse.status == "rejected" and "5.4% worse than champion v3" in worse.reason
    assert "on the same 400 rows" in worse.reason


def test_too_good_is_judged_against_the_champion_and_the_holdout_size():
    both_perfect = decide(AUC, 1.0, 1.0, "3", holdout_rows=400, interval=(0.0, 0.0, 0.0))
    assert both_perfect.status == "blessed"  # a separable dataset, not a leak
    only_new = decide(AUC, 1.0, 0.80, "3", holdout_rows=400, interval=(0.2, 0.15, 0.25))
    assert only_new.status == "held_for_review" and "while champion v3 scores 0.8000" in only_new.reason
    tiny_first = decide(AUC, 1.0, None, holdout_rows=20)
    assert tiny_first.status == "undecided"  # 20 rows prove nothing either way
    off = decide(AUC.model_copy(update={"too_good_score": None}), 1.0, None, holdout_rows=400)
    assert off.status == "blessed"
    jump_noise = decide(AUC, 0.95, 0.80, "3", holdout_rows=400, interval=(0.15, -0.01, 0.3))
    assert jump_noise.status == "blessed"
    jump = decide(AUC, 0.95, 0.80, "3", holdout_rows=400, interval=(0.15, 0.1, 0.2))
    assert jump.status == "held_for_review" and "too good to be true" in jump.reason


def test_paired_interval_is_on_the_same_rows():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    good = np.clip(y * 0.6 + rng.random(500) * 0.4, 0, 1)
    bad = rng.random(500)
    p = lambda s: Predictions("classification", y, (s > 0.5).astype(int), np.c_[1 - s, s], (0, 1))  # noqa: E731
    same = paired_interval("roc_auc", p(good), p(good), resamples=200)
    assert same == (0.0, 0.0, 0.0)
    point, low, high = paired_interval("roc_auc", p(good), p(bad), resamples=200)
    assert low > 0 and low <= point <= high
    rmse = Predictions("regression", np.zeros(50), np.ones(50))
    better = Predictions("regression", np.zeros(50), np.full(50, 0.5))
    assert paired_interval("rmse", better, rmse, resamples=50)[0] == pytest.approx(0.5)  # lower is better


def _classifier(rng, n: int, labels: list, signal: float) -> Predictions:
    """Probabilities rounded to 2 places, so scores tie as real models' often do."""
    y = rng.choice(labels, n)
    logits = rng.normal(size=(n, len(labels))) + signal * (y[:, None] == np.array(labels)[None, :])
    proba = np.clip(np.round(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 2), 0.01, None)
    proba /= proba.sum(1, keepdims=True)
    return Predictions("classification", y, np.array(labels)[proba.argmax(1)], proba, tuple(labels))


def _regressor(rng, n: int, noise: float) -> Predictions:
    y = rng.normal(size=n)
    return Predictions("regression", y, y + rng.normal(scale=noise, size=n))


@pytest.mark.parametrize(
    ("kind", "metrics"),
    [
        ("binary", ["roc_auc", "f1", "accuracy", "log_loss"]),
        ("multiclass", ["roc_auc", "f1", "accuracy", "log_loss"]),
        ("regression", ["rmse", "mae", "r2"]),
    ],
)
def test_weighted_resamples_give_the_metric_of_the_resampled_rows(kind, metrics):
    rng, n = np.random.default_rng(1), 400
    p = {
        "binary": lambda: _classifier(rng, n, [0, 1], 1.0),
        "multiclass": lambda: _classifier(rng, n, ["a", "b", "c"], 1.0),
        "regression": lambda: _regressor(rng, n, 1.0),
    }[kind]()
    for metric in metrics:
        counts = next(resample_counts(np.random.default_rng(5), n, 30))
        draws = np.random.default_rng(5)
        indexed = [metric_value(metric, p.take(draws.integers(0, n, n))) for _ in range(30)]
        np.testing.assert_allclose(weighted_metric(metric, p, counts), indexed, rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy", "log_loss", "rmse", "mae"])
def test_the_large_holdout_interval_agrees_with_the_bootstrap(metric, monkeypatch):
    rng, n = np.random.default_rng(2), 30_000
    if metric in ("rmse", "mae"):
        a, b = _regressor(rng, n, 1.0), _regressor(rng, n, 1.0)
        b = Predictions("regression", a.y, a.y + rng.normal(scale=1.03, size=n))
    else:
        a = _classifier(rng, n, [0, 1], 1.0)
        logits = np.log(a.proba) + rng.normal(scale=0.5, size=a.proba.shape)
        proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        b = Predictions("classification", a.y, np.array([0, 1])[proba.argmax(1)], proba, (0, 1))
    analytic = paired_interval(metric, a, b)
    monkeypatch.setattr(evaluation, "BOOTSTRAP_MAX_ROWS", n)
    boot = paired_interval(metric, a, b)
    assert analytic[0] == boot[0]
    width = boot[2] - boot[1]
    assert width > 0
    assert abs(analytic[1] - boot[1]) < 0.15 * width and abs(analytic[2] - boot[2]) < 0.15 * width


def test_a_newer_blessed_version_vs_a_waiting_challenger_keeps_the_better(factory_home):
    settings = FactorySettings.from_env()
    spec = spec_for(gates={"max_regression": 0.5, "too_good_jump": None})
    retrain(spec, settings, carded=False)  # v1 champion
    second = retrain(spec, settings, date(2026, 2, 3), carded=False)
    assert second["alias"] == "challenger"
    third = retrain(spec, settings, date(2026, 2, 4), carded=False)  # compared with waiting v2
    client = connect(settings)
    challenger = str(client.get_model_version_by_alias("churn", "challenger").version)
    if challenger == third["version"]:
        assert f"replaces waiting challenger v{second['version']}" in third["reason"]
        assert client.get_model_version("churn", second["version"]).tags["factory.superseded_by"] == "3"
    else:
        assert challenger == second["version"] and third["alias"] is None
        assert f"waiting challenger v{second['version']} scores better on the same rows" in third["reason"]

    # the losing side, forced: a newer version that is worse than the waiting challenger
    evaluated = {
        "run_id": third["run_id"],
        "model_uri": f"runs:/{third['run_id']}/model",
        "status": "blessed",
        "reason": "roc_auc 0.70 vs champion v1 0.69",
        "metric": "roc_auc",
        "candidate": 0.70,
        "waiting_challenger": {
            "version": challenger,
            "gain": [-0.03, -0.05, -0.01],
            "candidate_better": False,
        },
    }
    kept = register_version(spec, evaluated, settings)
    assert kept["alias"] is None and f"v{challenger} scores better on the same rows" in kept["reason"]
    assert str(client.get_model_version_by_alias("churn", "challenger").version) == challenger
