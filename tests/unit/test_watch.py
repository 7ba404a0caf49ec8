"""The drift watch against a real champion in a real MLflow registry (SQLite), without Airflow."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
from model_factory.io import storage
from model_factory.io.batches import MissingBatchError
from model_factory.monitoring.watch import (
    NoBaselineError,
    check_batch,
    record_retrain_trigger,
    retrain_gate,
    watched_uri,
)
from model_factory.settings import FactorySettings
from model_factory_dev import demo_data

from tests.unit.test_training_evaluation import _retrain, _validated, spec_for

DAYS = [date(2026, 3, 2) + timedelta(days=i) for i in range(3)]
WATCHED = date(2026, 3, 5)


def _source(settings: FactorySettings, model: str, day: date, df) -> Path:
    path = Path(urlparse(settings.data_root).path) / model / f"{day}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def champion(factory_home):
    """churn v1, trained on three days, is the champion with a stored baseline."""
    settings = FactorySettings.from_env()
    spec = spec_for("churn")
    uris = [_validated(settings, "churn", day, rows=1500) for day in DAYS]
    _, _, registered = _retrain(spec, settings, DAYS[-1], uris)
    assert registered["alias"] == "champion"
    return spec, settings


def test_unchanged_data_is_no_drift_and_the_report_is_stored(champion):
    spec, settings = champion
    _source(settings, "churn", WATCHED, demo_data.generate_batch("churn", WATCHED, rows=2000))
    checked = check_batch(spec, str(WATCHED), settings)
    assert checked["status"] == "no_drift", checked["reasons"]
    assert checked["champion_version"] == "1"
    html = storage.read_bytes(checked["report_uri"]).decode()
    report = storage.read_json(checked["report_json_uri"])
    assert report["status"] == "no_drift" and report["batch_uri"] == watched_uri(spec, str(WATCHED))
    assert "NO DRIFT" in html and "tenure_months" in html
    assert report["concept_drift"]["status"] == "ok"  # labelled batch: live AUC close to holdout


def test_covariate_shift_is_drift_with_reasons(champion):
    spec, settings = champion
    shifted = demo_data.generate_batch("churn", WATCHED, rows=2000, covariate_shift=0.8)
    _source(settings, "churn", WATCHED, shifted)
    checked = check_batch(spec, str(WATCHED), settings)
    assert checked["status"] == "drift"
    assert checked["drifted_features"]
    assert any("PSI" in reason for reason in checked["reasons"])
    fire, why = retrain_gate(spec, checked, settings, active_retrains=0)
    assert fire and why.startswith("drift on 2026-03-05")


def test_concept_shift_alone_is_concept_drift(champion):
    spec, settings = champion
    moved = demo_data.generate_batch("churn", WATCHED, rows=2000, concept_shift=1.0)
    _source(settings, "churn", WATCHED, moved)
    checked = check_batch(spec, str(WATCHED), settings)
    assert checked["status"] == "concept_drift", checked["reasons"]
    assert any("concept" in reason for reason in checked["reasons"])


def test_missing_feature_is_data_quality_not_drift(champion):
    spec, settings = champion
    df = demo_data.generate_batch("churn", WATCHED, rows=2000).drop(columns=["usage_gb"])
    _source(settings, "churn", WATCHED, df)
    checked = check_batch(spec, str(WATCHED), settings)
    assert checked["status"] == "data_quality"
    assert any("usage_gb" in reason for reason in checked["reasons"])
    assert retrain_gate(spec, checked, settings, active_retrains=0)[0] is False


def test_all_null_column_and_unseen_category_flood_are_data_quality(champion):
    spec, settings = champion
    df = demo_data.generate_batch("churn", WATCHED, rows=2000)
    df["support_calls"] = None
    df["plan"] = "enterprise"
    _source(settings, "churn", WATCHED, df)
    checked = check_batch(spec, str(WATCHED), settings)
    assert checked["status"] == "data_quality"
    text = " ".join(checked["reasons"])
    assert "support_calls" in text and "plan" in text


def test_too_few_rows_makes_no_decision(champion):
    spec, settings = champion
    _source(settings, "churn", WATCHED, demo_data.generate_batch("churn", WATCHED, rows=100))
    checked = check_batch(spec, str(WATCHED), settings)
    assert checked["status"] == "insufficient_data"
    assert any("100" in reason and "500" in reason for reason in checked["reasons"])


def test_no_champion_says_so(factory_home):
    settings = FactorySettings.from_env()
    with pytest.raises(NoBaselineError, match="has no champion yet"):
        check_batch(spec_for("churn"), str(WATCHED), settings)


def test_champion_without_baseline_says_how_to_fix(factory_home, monkeypatch):
    """A version trained before baselines were logged: a clear message, no crash."""
    from model_factory.pipeline import training

    monkeypatch.setattr(training, "log_baseline", lambda X, spec: {})
    settings = FactorySettings.from_env()
    spec = spec_for("churn")
    _retrain(spec, settings, DAYS[0], [_validated(settings, "churn", DAYS[0])])
    with pytest.raises(NoBaselineError, match=r"has no baseline profile .*force_retrain"):
        check_batch(spec, str(WATCHED), settings)


def test_missing_batch_names_the_uri(champion):
    spec, settings = champion
    with pytest.raises(MissingBatchError, match="nothing at file://"):
        check_batch(spec, str(WATCHED), settings)


def test_cooldown_and_running_retrain_hold_the_trigger(champion):
    spec, settings = champion
    checked = {"status": "drift", "ds": str(WATCHED), "reasons": ["x"], "report_uri": "file:///r"}
    assert retrain_gate(spec, checked, settings, active_retrains=1) == (
        False, "churn__retrain already has 1 run(s) queued or running",
    )  # fmt: skip
    now = datetime(2026, 3, 5, 8, tzinfo=UTC)
    record_retrain_trigger(spec, checked, settings, now=now)
    fire, why = retrain_gate(spec, checked, settings, 0, now=now + timedelta(hours=11))
    assert not fire and why.startswith("cooldown: a drift retrain was fired at 2026-03-05T08:00:00+00:00")
    assert retrain_gate(spec, checked, settings, 0, now=now + timedelta(hours=12, seconds=1))[0]


def test_a_batch_read_in_chunks_gives_the_same_verdict(champion, monkeypatch):
    """Large batches stream chunk by chunk; CSV types that change between chunks (an int column
    with a null only in a later chunk) still stack, and the statistics do not change."""
    spec, settings = champion
    df = demo_data.generate_batch("churn", WATCHED, rows=2000, covariate_shift=0.5)
    df.loc[1900:, "support_calls"] = None
    _source(settings, "churn", WATCHED, df)
    whole = storage.read_json(check_batch(spec, str(WATCHED), settings)["report_json_uri"])
    monkeypatch.setenv("FACTORY_CHUNK_ROWS", "300")
    chunked = storage.read_json(check_batch(spec, str(WATCHED), settings)["report_json_uri"])
    assert chunked["status"] == whole["status"] and chunked["reasons"] == whole["reasons"]
    for name, feature in whole["data_drift"]["features"].items():
        assert chunked["data_drift"]["features"][name]["psi"] == pytest.approx(feature["psi"], rel=1e-9)
