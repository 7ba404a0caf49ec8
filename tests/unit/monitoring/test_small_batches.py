"""Issue 23 item 5: a batch under drift.min_rows is pooled with the earlier validated days until
the rule can decide, the report says which dates were pooled, and a check that makes no decision
calls no feature drifted or not."""

from __future__ import annotations

from datetime import date, timedelta

from model_factory.io import storage
from model_factory.monitoring import drift
from model_factory.monitoring.drift_report import render_html
from model_factory.monitoring.watch import check_batch
from model_factory_dev import demo_data

from tests.unit.monitoring.test_watch import _source, champion  # noqa: F401 (the fixture)
from tests.unit.pipeline.test_training_evaluation import _validated

WATCHED = date(2026, 3, 12)  # a week after the champion's training days, which are validated too


def _small_days(settings, days, rows=200, validated=True):
    for day in days:
        _source(settings, "churn", day, demo_data.generate_batch("churn", day, rows=rows))
        if validated:
            _validated(settings, "churn", day, rows=rows)


def test_a_small_batch_is_pooled_with_earlier_validated_days_until_it_can_decide(champion):  # noqa: F811
    spec, settings = champion
    before = [WATCHED - timedelta(days=k) for k in (1, 2, 3)]
    _small_days(settings, before[:1])
    _small_days(settings, before[1:2], validated=False)  # quarantined that day: never pooled
    _small_days(settings, before[2:])
    _source(settings, "churn", WATCHED, demo_data.generate_batch("churn", WATCHED, rows=200))

    checked = check_batch(spec, str(WATCHED), settings)

    assert checked["status"] == "no_drift", checked["reasons"]
    assert checked["rows"] == 600
    assert checked["pooled_dates"] == [str(before[0]), str(before[2])]
    assert checked["reasons"][0] == (
        f"the batch of {WATCHED} has 200 rows, under drift.min_rows: pooled with the validated "
        f"batches of {before[0]} (200), {before[2]} (200), 600 rows in all"
    )
    report = storage.read_json(checked["report_json_uri"])
    assert report["pooled_dates"] == checked["pooled_dates"]
    assert (
        f'pooled with</td><td class="text">{before[0]}, {before[2]}'
        in storage.read_bytes(checked["report_uri"]).decode()
    )


def test_pooling_stops_at_pool_days_and_says_there_is_no_decision(champion):  # noqa: F811
    spec, settings = champion
    # small_min_rows = min_rows: no small-sample regime, so 400 rows make no decision
    drift_spec = spec.drift.model_copy(update={"pool_days": 1, "small_min_rows": 500})
    spec = spec.model_copy(update={"drift": drift_spec})
    _small_days(settings, [WATCHED - timedelta(days=1), WATCHED - timedelta(days=2)])
    _source(settings, "churn", WATCHED, demo_data.generate_batch("churn", WATCHED, rows=200))

    checked = check_batch(spec, str(WATCHED), settings)

    assert checked["status"] == "insufficient_data"
    assert checked["pooled_dates"] == [str(WATCHED - timedelta(days=1))]
    assert "only 400 rows" in checked["reasons"][1]
    assert checked["drifted_features"] == []
    report = storage.read_json(checked["report_json_uri"])
    assert all(f["drifted"] is None and f["why"] == [] for f in report["data_drift"]["features"].values())


def test_no_decision_means_no_per_feature_verdict():
    reference = demo_data.generate_batch("churn", date(2026, 3, 2), rows=3000)
    shifted = demo_data.generate_batch("churn", date(2026, 3, 3), rows=120, covariate_shift=1.0)
    from model_factory.pipeline.profile import build_baseline

    numeric = [c for c in reference.columns if c in ("tenure_months", "monthly_charges")]
    baseline = build_baseline(reference, numeric, [])
    decided = drift.check_drift(baseline, shifted, drift.DriftRule(min_rows=100))
    assert decided.status == "drift" and decided.drifted_features  # the shift is visible at 120 rows

    undecided = drift.check_drift(baseline, shifted, drift.DriftRule(min_rows=500, small_min_rows=500))

    assert undecided.status == "insufficient_data" and undecided.drifted_features == []
    assert {f["drifted"] for f in undecided.features.values()} == {None}
    assert all(f["why"] == [] and f["psi"] is not None for f in undecided.features.values())  # stats stay
    html = render_html(undecided, baseline, title="t")
    assert "no decision" in html and "drifted: PSI" not in html
