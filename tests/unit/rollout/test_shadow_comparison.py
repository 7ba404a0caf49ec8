"""The shadow comparison (agreement, output difference and drift, latency) as a pure function."""

from __future__ import annotations

import pytest
from model_factory.rollout.shadow import ShadowPair, compare_shadow


def _classifier(label: int, score: float) -> dict:
    return {"label": label, "score": score, "probabilities": {"0": 1 - score, "1": score}}


def test_classifier_agreement_score_difference_and_latency_percentiles():
    pairs = [
        ShadowPair(_classifier(1, 0.9), _classifier(1, 0.8), 1.0, 2.0),
        ShadowPair(_classifier(0, 0.2), _classifier(0, 0.3), 2.0, 4.0),
        ShadowPair(_classifier(1, 0.6), _classifier(0, 0.4), 3.0, 6.0),
        ShadowPair(_classifier(0, 0.1), _classifier(0, 0.1), 4.0, 8.0),
    ]
    result = compare_shadow(pairs, "churn", "2", ["1"])
    assert (result.requests, result.scored, result.errors, result.kind) == (4, 4, 0, "classification")
    assert result.agreement == pytest.approx(0.75)
    # |diff|: 0.1, 0.1, 0.2, 0  -> mean 0.1, max 0.2; signed: -0.1, +0.1, -0.2, 0 -> mean -0.05
    assert result.mean_abs_diff == pytest.approx(0.1)
    assert result.max_abs_diff == pytest.approx(0.2)
    assert result.mean_shift == pytest.approx(-0.05)
    assert result.champion_latency_ms["p50"] == pytest.approx(2.5)
    assert result.shadow_latency_ms["p50"] == pytest.approx(5.0)
    assert result.shadow_latency_ms["p95"] == pytest.approx(7.7)
    line = result.summary()
    assert "shadow v2 vs champion v1: 4 requests" in line and "agreement 75.0%" in line


def test_regressor_has_difference_and_drift_but_no_agreement():
    pairs = [ShadowPair({"value": v}, {"value": v + 2.0}, 1.0, 1.0) for v in (10.0, 20.0, 30.0)]
    result = compare_shadow(pairs, "demand", "3", ["1"])
    assert result.kind == "regression" and result.agreement is None
    assert result.mean_abs_diff == pytest.approx(2.0) and result.mean_shift == pytest.approx(2.0)


def test_shadow_failures_are_errors_not_disagreements():
    pairs = [
        ShadowPair(_classifier(1, 0.9), _classifier(1, 0.9), 1.0, 1.0),
        ShadowPair(_classifier(1, 0.9), None, 1.0, None, "RuntimeError: boom"),
        ShadowPair(_classifier(0, 0.1), None, 1.0, None, "RuntimeError: boom"),
    ]
    result = compare_shadow(pairs, "churn", "2", ["1"])
    assert (result.requests, result.scored, result.errors) == (3, 1, 2)
    assert result.agreement == 1.0 and result.error_rate == pytest.approx(2 / 3)
    assert result.last_errors == ["RuntimeError: boom"]
    assert result.as_dict()["error_rate"] == pytest.approx(2 / 3)


def test_no_pairs_yet_says_so():
    result = compare_shadow([], "churn", "2")
    assert result.requests == 0 and result.agreement is None and result.mean_abs_diff is None
    assert result.shadow_latency_ms == {"p50": None, "p95": None}
    assert result.summary() == "shadow v2: no request scored yet"


def test_a_non_numeric_or_missing_score_is_left_out_of_the_difference():
    pairs = [
        ShadowPair({"label": "a"}, {"label": "a"}, 1.0, 1.0),  # multiclass: no score
        ShadowPair({"label": "b", "score": float("nan")}, {"label": "c", "score": 0.5}, 1.0, 1.0),
    ]
    result = compare_shadow(pairs)
    assert result.agreement == 0.5 and result.mean_abs_diff is None
