"""Hardening (issue 10 item 3, issue 9 "Labels"): non-finite values, labels that are not classes,
unseen classes, and string class names with more than two classes, through validation (real GX),
training, evaluation and the registry (real MLflow on SQLite)."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import yaml
from model_factory.errors import LabelError, PermanentError
from model_factory.io import batches, storage
from model_factory.io.tracking import connect
from model_factory.pipeline import labels, validation
from model_factory.pipeline.evaluation import evaluate_candidate
from model_factory.pipeline.features import target_values
from model_factory.pipeline.registry import register_version
from model_factory.pipeline.training import train_model
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec, load_spec
from model_factory_dev import demo_data as dd

from tests.conftest import REPO

DAY = date(2026, 3, 2)
SPECIES = ["setosa", "versicolor", "virginica"]
# An iris-like three-class spec (no shipped spec has string classes).
FLOWERS = {
    "name": "flowers",
    "owner": "botany",
    "description": "Species from measurements.",
    "task": "classification",
    "source": {"uri": "${FACTORY_DATA_ROOT}/flowers/{ds}.csv"},
    "target": "species",
    "features": {"numeric": ["petal", "sepal"], "categorical": ["site"]},
    "estimator": {"class": "LogisticRegression", "params": {"max_iter": 500}},
    "gates": {"primary_metric": "f1", "threshold": 0.5, "too_good_jump": None},
    "training": {"window_batches": 3},
}


def spec_file(folder: Path, name: str, **changes) -> ModelSpec:
    """A copy of a shipped spec (or ``FLOWERS``) with changes, loaded from a file."""
    if name == "flowers":
        raw = copy.deepcopy(FLOWERS)
    else:
        raw = yaml.safe_load((REPO / "include" / "models" / f"{name}.yaml").read_text())
    raw.update(changes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path, FactorySettings.from_env())


def flowers(day: date, rows: int = 300, species: list[str] = SPECIES) -> pd.DataFrame:
    rng = np.random.default_rng(day.toordinal())
    kind = rng.integers(0, len(species), rows)
    return pd.DataFrame(
        {
            "petal": kind * 1.5 + rng.normal(0, 0.6, rows),
            "sepal": kind * -0.8 + rng.normal(0, 0.6, rows),
            "site": rng.choice(["north", "south"], rows),
            "species": np.asarray(species, dtype=object)[kind],
        }
    )


def csv(df: pd.DataFrame) -> pd.DataFrame:
    return batches.parse_batch(df.to_csv(index=False).encode(), "csv", "memory")


def ingest_validate(spec: ModelSpec, df: pd.DataFrame, day: date, settings: FactorySettings) -> dict:
    dd.write_batch(df, Path(settings.data_root.removeprefix("file://")) / spec.name / f"{day}.csv")
    ingested = batches.ingest_batch(spec, str(day), settings)
    return validation.validate_batch(spec, ingested, settings)


# --- non-finite values ---------------------------------------------------------------------


def test_inf_in_a_feature_without_range_is_quarantined_with_a_reason(tmp_path):
    spec = spec_file(tmp_path, "churn")
    df = csv(dd.generate_batch("churn", DAY, rows=200)).astype({"support_calls": "float64"})
    df.loc[:2, "usage_gb"] = np.inf  # usage_gb has no validation range
    df.loc[3, "support_calls"] = -np.inf
    outcome = validation.validate_frame(df, spec)
    assert outcome.success is False
    reasons = " | ".join(outcome.reasons)
    assert "column 'usage_gb': 3 of 200 rows are non-finite (inf/-inf)" in reasons
    assert "column 'support_calls': 1 of 200 rows are non-finite" in reasons


def test_inf_as_csv_text_and_in_a_regression_target_is_quarantined(tmp_path):
    spec = spec_file(tmp_path, "demand")
    text = dd.generate_batch("demand", DAY, rows=100).to_csv(index=False)
    lines = text.splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("units_sold")] = "inf"
    cells[header.index("temperature")] = "-Infinity"
    df = batches.parse_batch("\n".join([lines[0], ",".join(cells), *lines[2:]]).encode(), "csv", "x")
    outcome = validation.validate_frame(df, spec)
    reasons = " | ".join(outcome.reasons)
    assert "column 'units_sold': 1 of 100 rows are non-finite" in reasons
    assert "column 'temperature': 1 of 100 rows are non-finite" in reasons


def test_allow_non_finite_is_a_spec_flag(tmp_path):
    spec = spec_file(tmp_path, "churn", validation={"allow_non_finite": ["usage_gb"]})
    df = csv(dd.generate_batch("churn", DAY, rows=200))
    df.loc[:2, "usage_gb"] = np.inf
    assert validation.validate_frame(df, spec).success is True
    with pytest.raises(Exception, match="allow_non_finite names columns that are not numeric"):
        spec_file(tmp_path, "churn", validation={"allow_non_finite": ["plan"]})


def test_a_bad_rerun_of_a_date_leaves_the_training_window(factory_home):
    settings = FactorySettings.from_env()
    spec = spec_file(factory_home.parent, "churn")
    first = ingest_validate(spec, dd.generate_batch("churn", DAY, rows=200), DAY, settings)
    assert first["status"] == "validated"
    later = DAY + timedelta(days=1)
    window = batches.recent_validated_batches(settings.store_uri, "churn", str(later), 3)
    assert window == [first["validated_uri"]]

    bad = dd.generate_batch("churn", DAY, rows=200)
    bad.loc[:4, "usage_gb"] = np.inf
    again = ingest_validate(spec, bad, DAY, settings)
    assert again["status"] == "quarantined"
    assert any("non-finite" in r for r in again["reasons"])
    assert batches.recent_validated_batches(settings.store_uri, "churn", str(later), 3) == []


def test_a_validated_batch_with_inf_is_withdrawn_from_the_window_not_failing_every_night(factory_home):
    """A batch validated before the finite check (or written by hand) is taken out of the
    training window with the reason beside it; training goes on with the others, and the next
    night's window no longer holds it. A window with nothing left fails at once, before any run."""
    settings = FactorySettings.from_env()
    spec = spec_file(factory_home.parent, "churn")
    bad = dd.generate_batch("churn", DAY, rows=300)
    bad.loc[:2, "usage_gb"] = np.inf
    bad_uri = _validated(settings, spec, bad, DAY)
    with pytest.raises(PermanentError, match=r"the window was withdrawn .*'usage_gb' has non-finite"):
        train_model(spec, str(DAY), [bad_uri], settings)
    client = connect(settings)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []

    bad_uri = _validated(settings, spec, bad, DAY)
    later = DAY + timedelta(days=1)
    good_uri = _validated(settings, spec, dd.generate_batch("churn", later, rows=300), later)
    window = batches.recent_validated_batches(settings.store_uri, "churn", str(later), 3)
    assert window == [bad_uri, good_uri]
    trained = train_model(spec, str(later), window, settings)
    tags = client.get_run(trained["run_id"]).data.tags
    assert "usage_gb" in tags["factory.withdrawn_batches"] and bad_uri in tags["factory.withdrawn_batches"]
    assert not storage.exists(bad_uri)
    withdrawn = storage.read_json(bad_uri.rsplit("/", 1)[0] + "/withdrawn.json")
    assert "column 'usage_gb' has non-finite values" in withdrawn["reason"]
    assert batches.recent_validated_batches(settings.store_uri, "churn", str(later), 3) == [good_uri]


# --- labels ----------------------------------------------------------------------------------


def test_fractional_labels_are_refused_not_truncated(tmp_path):
    spec = spec_file(tmp_path, "churn")
    df = dd.generate_batch("churn", DAY, rows=50).astype({"churned": "float64"})
    df.loc[0, "churned"] = 0.9
    with pytest.raises(LabelError, match=r"not class labels, e.g. \[0.9\]"):
        target_values(df, spec)
    df.loc[0, "churned"] = 1.0  # a whole number written as float is a label
    assert target_values(df, spec).dtype == "int64"


@pytest.mark.parametrize(("relabel", "bad"), [({0: -1, 1: 1}, "[-1]"), ({0: 0, 1: 2}, "[2]")])
def test_labels_the_spec_classes_do_not_fit_are_a_validation_reason(tmp_path, relabel, bad):
    spec = spec_file(tmp_path, "churn", target={"name": "churned", "classes": [0, 1]})
    df = csv(dd.generate_batch("churn", DAY, rows=200))
    df["churned"] = df["churned"].map(relabel)
    outcome = validation.validate_frame(df, spec)
    assert outcome.success is False
    reason = " | ".join(outcome.reasons)
    assert "have a class the model does not know" in reason and bad in reason
    assert "known classes [0, 1] (target.classes in the spec)" in reason


def test_spec_target_mapping_is_checked(tmp_path):
    assert spec_file(tmp_path, "churn", target={"name": "churned", "classes": [0, 1]}).target == "churned"
    with pytest.raises(Exception, match="two or more distinct classes"):
        spec_file(tmp_path, "churn", target={"name": "churned", "classes": [1]})
    with pytest.raises(Exception, match="a mapping needs 'name'"):
        spec_file(tmp_path, "churn", target={"column": "churned"})
    with pytest.raises(Exception, match="unquoted yes/no/true/false are YAML booleans"):
        spec_file(tmp_path, "churn", target={"name": "churned", "classes": [False, True]})
    assert spec_file(tmp_path, "churn", target={"name": "churned", "classes": ["no", "yes"]}).target_classes
    with pytest.raises(Exception, match="classification only"):
        spec_file(tmp_path, "demand", target={"name": "units_sold", "classes": [1, 2]})


def _validated(settings, spec, df, day) -> str:
    uri = batches.validated_uri(settings.store_uri, spec.name, str(day))
    return batches.write_parquet(df, uri)


def test_string_multiclass_end_to_end_and_a_learnt_class_set(factory_home):
    """Three string classes, no target.classes: validated (no "expected int"), trained, evaluated
    with multiclass metrics, registered, loaded from the registry; the class set is learnt at
    the first training and a batch with a fourth class is then quarantined with the reason."""
    settings = FactorySettings.from_env()
    spec = spec_file(factory_home.parent, "flowers")
    first = ingest_validate(spec, flowers(DAY), DAY, settings)
    assert first["status"] == "validated", first.get("reasons")

    trained = train_model(spec, str(DAY), [first["validated_uri"]], settings)
    evaluated = evaluate_candidate(spec, trained, settings)
    metrics = evaluated["candidate_metrics"]
    assert 0.5 < metrics["f1"] <= 1.0 and 0.5 < metrics["roc_auc"] <= 1.0
    assert 0.0 < metrics["log_loss"] < 1.5
    registered = register_version(spec, evaluated, settings)
    assert registered["status"] == "blessed" and registered["alias"] == "champion"

    model = mlflow.sklearn.load_model(f"models:/flowers/{registered['version']}")
    assert list(model.classes_) == SPECIES
    from model_factory.pipeline.features import prepare_features

    predicted = set(model.predict(prepare_features(flowers(DAY, rows=50), spec)))
    assert predicted <= set(SPECIES) and len(predicted) > 1

    learnt = storage.read_json(labels.classes_uri(settings.store_uri, "flowers"))
    assert learnt["classes"] == SPECIES and learnt["ds"] == str(DAY)
    later = DAY + timedelta(days=1)
    unseen = ingest_validate(spec, flowers(later, species=[*SPECIES, "unicorn"]), later, settings)
    assert unseen["status"] == "quarantined"
    reason = " | ".join(unseen["reasons"])
    assert "'unicorn'" in reason and "learnt at the first training (2026-03-02)" in reason


def test_multiclass_auc_is_one_vs_rest_over_the_classes_present():
    from model_factory.pipeline.evaluation import Predictions, metric_value

    y = np.array(["a", "b", "a", "b"])  # class "c" absent from this holdout
    proba = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.3, 0.6, 0.1]])
    p = Predictions("classification", y, np.array(["a", "b", "a", "b"]), proba, ("a", "b", "c"))
    assert metric_value("roc_auc", p) == pytest.approx(1.0)
    assert np.isfinite(metric_value("log_loss", p))
    unknown = Predictions(
        "classification", np.array(["a", "d"]), np.array(["a", "a"]), proba[:2], ("a", "b", "c")
    )
    assert np.isnan(metric_value("log_loss", unknown))


def test_a_class_only_in_the_holdout_fails_training_before_a_run(factory_home):
    settings = FactorySettings.from_env()
    spec = spec_file(
        factory_home.parent,
        "flowers",
        split={"strategy": "time", "time_column": "t", "holdout_fraction": 0.2},
    )
    df = flowers(DAY, rows=200, species=SPECIES[:2])
    df["t"] = pd.date_range("2026-03-02", periods=200, freq="min")
    df.loc[195:, "species"] = "virginica"  # only the latest rows: all in the holdout
    storage.write_json(
        labels.classes_uri(settings.store_uri, "flowers"), {"classes": SPECIES, "ds": "2026-03-01"}
    )
    uri = _validated(settings, spec, df, DAY)
    with pytest.raises(LabelError, match=r"\['virginica'\] .* in the holdout but not in the training"):
        train_model(spec, str(DAY), [uri], settings)
    client = connect(settings)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_class_names_and_numbers_read_back_the_same(tmp_path):
    assert labels.canonical(1) == labels.canonical(1.0) == labels.canonical("1") == "1"
    assert labels.canonical(0.9) is None and labels.canonical(float("inf")) is None
    values = pd.Series([1, 2, 3])
    assert labels.outside(values, ["1", "2"]).tolist() == [False, False, True]


def test_an_evaluation_that_raises_leaves_its_reason_on_the_run(factory_home):
    """No trained run is left without a decision: a failing evaluate tags why, then raises."""
    settings = FactorySettings.from_env()
    spec = spec_file(factory_home.parent, "flowers")
    uri = _validated(settings, spec, flowers(DAY), DAY)
    trained = train_model(spec, str(DAY), [uri], settings)
    storage.delete(trained["holdout_uri"])  # e.g. the store lost the holdout
    with pytest.raises(storage.ObjectNotFoundError):
        evaluate_candidate(spec, trained, settings)
    tags = connect(settings).get_run(trained["run_id"]).data.tags
    assert tags["factory.decision"] == "failed"
    assert "evaluation failed: ObjectNotFoundError: no file at" in tags["factory.decision_reason"]
