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

from tests.unit.pipeline.test_training_evaluation import _retrain, _validated, spec_for

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
    assert report["status"] == "no_drift" and report["batch_uri"] == watched_uri(spec, str(WATCHED), settings)
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
    _source(settings, "churn", WATCHED, demo_data.generate_batch("churn", WATCHED, rows=80))
    checked = check_batch(spec, str(WATCHED), settings)
    assert checked["status"] == "insufficient_data"  # under drift.small_min_rows (100), nothing pooled
    assert any("only 80 rows" in reason and "at least 100" in reason for reason in checked["reasons"])


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
        False,
        "churn__retrain already has 1 run(s) queued or running",
    )
    now = datetime(2026, 3, 5, 8, tzinfo=UTC)
    record_retrain_trigger(spec, checked, settings, now=now)
    fire, why = retrain_gate(spec, checked, settings, 0, now=now + timedelta(hours=11))
    assert not fire and why.startswith("cooldown: a drift retrain was fired at 2026-03-05T08:00:00+00:00")
    assert retrain_gate(spec, checked, settings, 0, now=now + timedelta(hours=12, seconds=1))[0]


def test_a_batch_read_in_chunks_gives_the_same_verdict(champion):
    """Large batches stream chunk by chunk; CSV types that change between chunks (an int column
    with a null only in a later chunk) still stack, and the statistics do not change."""
    spec, settings = champion
    df = demo_data.generate_batch("churn", WATCHED, rows=2000, covariate_shift=0.5)
    df.loc[1900:, "support_calls"] = None
    _source(settings, "churn", WATCHED, df)
    whole = storage.read_json(check_batch(spec, str(WATCHED), settings)["report_json_uri"])
    in_chunks = settings.model_copy(update={"chunk_rows": 300})  # FACTORY_CHUNK_ROWS=300
    chunked = storage.read_json(check_batch(spec, str(WATCHED), in_chunks)["report_json_uri"])
    assert chunked["status"] == whole["status"] and chunked["reasons"] == whole["reasons"]
    for name, feature in whole["data_drift"]["features"].items():
        assert chunked["data_drift"]["features"][name]["psi"] == pytest.approx(feature["psi"], rel=1e-9)


def test_seasonal_reference_compares_with_past_weekdays_and_never_falls_back_silently(champion):
    spec, settings = champion
    spec = spec.model_copy(update={"drift": spec.drift.model_copy(update={"reference": "same_weekday"})})
    _source(settings, "churn", WATCHED, demo_data.generate_batch("churn", WATCHED, rows=2000))
    checked = check_batch(spec, str(WATCHED), settings)
    assert checked["status"] == "insufficient_data"  # no Thursday stored before 2026-03-05
    assert checked["reasons"][0].startswith("drift.reference 'same_weekday': fewer than 2 reference days")
    for weeks in (1, 2):
        day = WATCHED - timedelta(weeks=weeks)
        _source(settings, "churn", day, demo_data.generate_batch("churn", day, rows=2000))
    checked = check_batch(spec, str(WATCHED), settings)
    assert checked["status"] == "no_drift", checked["reasons"]
    report = storage.read_json(checked["report_json_uri"])
    assert report["data_drift"]["baseline"]["rows"] == 4000  # the two past Thursdays, not training


def test_seasonal_concept_check_compares_with_past_weekdays_and_skips_a_broken_day(champion):
    """The concept check under same_weekday: the champion's metric on the two past Thursdays is
    the reference, and a day of the 4 weeks before that lost a feature (a data-quality day) is
    left out of the spread instead of failing the check (the demo's 01-10 after 01-09)."""
    spec, settings = champion
    spec = spec.model_copy(update={"drift": spec.drift.model_copy(update={"reference": "same_weekday"})})
    for day in (WATCHED - timedelta(weeks=1), WATCHED - timedelta(weeks=2), WATCHED - timedelta(days=1)):
        _source(settings, "churn", day, demo_data.generate_batch("churn", day, rows=2000))
    broken = WATCHED - timedelta(days=2)
    _source(
        settings,
        "churn",
        broken,
        demo_data.generate_batch("churn", broken, rows=2000).drop(columns="tenure_months"),
    )
    _source(settings, "churn", WATCHED, demo_data.generate_batch("churn", WATCHED, rows=2000))
    checked = check_batch(spec, str(WATCHED), settings)
    concept = storage.read_json(checked["report_json_uri"])["concept_drift"]
    assert concept["reference_kind"] == "same_weekday" and concept["status"] == "ok", concept["reasons"]
    assert [d["day"] for d in concept["reference_days"]] == ["2026-02-19", "2026-02-26"]
    assert concept["spread_df"] == 1  # the two Thursdays; the broken Tuesday is no reference


def test_health_check_joins_the_log_with_an_outcome_file_and_records_history(champion, tmp_path):
    """The whole path without Airflow: a real champion and holdout, the gateway's prediction log
    (SQLite), an outcome file from another system a day later (one unknown id, a wrong class),
    a missing day and an unreadable day named in the summary, the history row written."""
    import json

    import numpy as np
    import pandas as pd
    import sqlalchemy as sa
    from model_factory.monitoring.health_history import history
    from model_factory.monitoring.health_watch import run_health_check
    from model_factory.serving.predlog import FEEDBACK, PREDICTIONS, engine_for, ensure_schema
    from model_factory.spec import OutcomeSourceSpec, OutcomesSpec

    spec, settings = champion
    db = f"sqlite:///{tmp_path / 'predictions.db'}"
    engine = engine_for(db)
    ensure_schema(engine)
    served_at = datetime(2026, 3, 5, 12)
    scores = np.random.default_rng(0).random(300)
    rows = [
        {
            "request_id": f"r{i}",
            "entity_id": f"c{i}",
            "model": "churn",
            "version": "1",
            "arm": "champion",
            "status": "ok",
            "error": None,
            "latency_ms": float(5 + i % 10),
            "score": float(s),
            "prediction": json.dumps({"label": int(s >= 0.5)}),
            "inputs": None,
            "inputs_hash": None,
            "created_at": served_at,
        }
        for i, s in enumerate(scores)
    ]
    with engine.begin() as conn:
        conn.execute(PREDICTIONS.insert(), rows)
        conn.execute(FEEDBACK.insert(), [{"request_id": "r250", "outcome": "1", "received_at": served_at}])
    folder = Path(urlparse(settings.data_root).path) / "crm_outcomes"  # under the data roots
    folder.mkdir(parents=True)
    truth = (scores[:200] >= 0.5).astype(int)
    truth[:20] = 1 - truth[:20]  # 90% accurate
    pd.DataFrame(
        {
            "customer": [f"c{i}" for i in range(200)] + ["stranger", "c201"],
            "churned": [*truth.tolist(), 1, "maybe"],
            "at": ["2026-03-05 18:00"] * 202,
        }
    ).to_csv(folder / "2026-03-06.csv", index=False)
    (folder / "2026-03-04.csv").write_text("customer,churned\nc1")  # no event-time column
    source = OutcomeSourceSpec(
        uri=f"{folder.as_uri()}/{{ds}}.csv",
        id_column="customer",
        outcome_column="churned",
        event_time_column="at",
    )
    outcomes = OutcomesSpec(source=source, max_delay_days=2, min_outcomes=100)
    spec = spec.model_copy(update={"outcomes": outcomes})

    summary = run_health_check(spec, "2026-03-06", settings, db)

    counts = summary["counts"]
    assert counts["matched"] == 201 and counts["unknown_id"] == 1 and counts["invalid"] == 1
    unreadable = summary["sources"]["unreadable"]
    assert len(unreadable) == 1 and "2026-03-04.csv lacks column(s) ['at']" in unreadable[0]
    assert "2026-03-05" in summary["sources"]["outcome_days_missing"]
    from sklearn.metrics import roc_auc_score

    assert summary["metric"] == "roc_auc"  # the file's 200 outcomes and r250's gateway feedback
    expected = roc_auc_score([*truth.tolist(), 1], [*scores[:200].tolist(), scores[250]])
    assert summary["realized"] == pytest.approx(expected, rel=1e-9)
    assert summary["action"] in ("none", "alert", "retrain") and summary["champion_version"] == "1"
    assert storage.exists(summary["report_uri"])
    (row,) = history(sa.create_engine(db), "churn")
    assert (row.day, row.version, row.predictions, row.outcomes) == (date(2026, 3, 5), "1", 300, 201)
    assert row.p95_ms == pytest.approx(14.0) and row.error_rate == 0.0


def test_the_health_check_writes_its_history_in_a_fresh_home_without_a_serving_folder(tmp_path):
    """No gateway ever ran (the demo's first part): the prediction DB's folder does not exist."""
    import sqlalchemy as sa
    from model_factory.monitoring.health_history import history
    from model_factory.monitoring.health_watch import history_engine

    db = tmp_path / "fresh" / "serving" / "predictions.db"
    engine = history_engine(f"sqlite:///{db}")
    assert history(engine, "churn") == [] and db.parent.is_dir()
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE probe (x INTEGER)"))
    assert db.exists()
