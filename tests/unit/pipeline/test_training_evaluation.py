"""Training, evaluation gates and registration, without Airflow (real MLflow on SQLite)."""

from __future__ import annotations

import io
import json
import time
from datetime import date

import numpy as np
import pandas as pd
import pytest
from model_factory.io import storage
from model_factory.io.tracking import TrackingUnavailableError, connect
from model_factory.pipeline.evaluation import compute_metrics, decide, evaluate_candidate
from model_factory.pipeline.features import MISSING_CATEGORY, prepare_features
from model_factory.pipeline.registry import register_version
from model_factory.pipeline.training import (
    build_pipeline,
    split_holdout,
    train_model,
)
from model_factory.settings import FactorySettings
from model_factory.spec import ESTIMATORS, GatesSpec, ModelSpec, load_spec
from model_factory_dev import demo_data

from tests.conftest import REPO

DAY = date(2026, 2, 2)


def spec_for(model: str, **changes) -> ModelSpec:
    spec = load_spec(REPO / "include" / "models" / f"{model}.yaml", FactorySettings.from_env())
    data = spec.model_dump(by_alias=True)
    for dotted, value in changes.items():
        target = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            target = target[key]
        target[leaf] = value
    return ModelSpec.model_validate(data)


# --- gates -----------------------------------------------------------------------------

AUC_GATES = GatesSpec(primary_metric="roc_auc", threshold=0.7, max_regression=0.02, too_good_jump=0.15)
RMSE_GATES = GatesSpec(primary_metric="rmse", threshold=40, max_regression=0.03, too_good_jump=0.5)


@pytest.mark.parametrize(
    ("gates", "candidate", "champion", "status", "words"),
    [
        (AUC_GATES, 0.65, None, "rejected", "misses the bar: must be at least 0.7"),
        (AUC_GATES, 0.80, None, "blessed", "no champion yet"),
        (AUC_GATES, 0.80, 0.80, "blessed", "+0.0%"),
        (AUC_GATES, 0.79, 0.80, "blessed", "-1.3%"),
        (AUC_GATES, 0.77, 0.80, "rejected", "3.8% worse than champion v3"),
        (AUC_GATES, 0.95, 0.80, "held_for_review", "too good to be true"),
        (
            AUC_GATES.model_copy(update={"too_good_score": 0.999}),
            0.9995,
            None,
            "held_for_review",
            "too-good score",
        ),
        (AUC_GATES, float("nan"), None, "rejected", "could not be computed"),
        (RMSE_GATES, 45.0, None, "rejected", "must be at most 40"),
        (RMSE_GATES, 10.0, 10.2, "blessed", "+2.0%"),
        (RMSE_GATES, 10.5, 10.0, "rejected", "5.0% worse"),
        (RMSE_GATES, 4.0, 10.0, "held_for_review", "60.0% better"),
    ],
)
def test_decide(gates, candidate, champion, status, words):
    decision = decide(gates, candidate, champion, "3" if champion is not None else None)
    assert decision.status == status
    assert words in decision.reason


def test_lower_is_better_direction_is_respected():
    better = decide(RMSE_GATES, 9.0, 10.0, "1")
    worse = decide(RMSE_GATES, 11.0, 10.0, "1")
    assert better.relative_change == pytest.approx(0.1)
    assert worse.relative_change == pytest.approx(-0.1)


# --- features, split, pipelines ----------------------------------------------------------


def test_prepare_features_makes_missing_categories_explicit_and_numbers_float():
    spec = spec_for("churn")
    df = demo_data.generate_batch("churn", DAY, rows=20)
    df.loc[0, "plan"] = None
    df["age"] = df["age"].astype("int64")
    X = prepare_features(df, spec)
    assert list(X.columns) == spec.features.all
    assert X.loc[0, "plan"] == MISSING_CATEGORY
    assert X["age"].dtype == np.float64
    assert spec.target not in X


def test_time_split_holds_out_the_latest_rows():
    spec = spec_for("churn")
    df = demo_data.generate_batch("churn", DAY, rows=200).sample(frac=1, random_state=1)
    train, holdout = split_holdout(df, spec)
    assert len(holdout) == 50 and len(train) == 150
    assert pd.to_datetime(train["event_time"]).max() <= pd.to_datetime(holdout["event_time"]).min()


def test_random_split_is_seeded():
    spec = spec_for("demand")
    df = demo_data.generate_batch("demand", DAY, rows=200)
    first, second = split_holdout(df, spec), split_holdout(df, spec)
    assert first[1].index.equals(second[1].index)
    other = split_holdout(df, spec_for("demand", **{"split.seed": 99}))
    assert not first[1].index.equals(other[1].index)


def test_split_refuses_too_few_rows():
    spec = spec_for("demand")
    with pytest.raises(ValueError, match="too few to train"):
        split_holdout(demo_data.generate_batch("demand", DAY, rows=2), spec)


SMALL_PARAMS = {"n_estimators": 5, "max_iter": 20}


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_every_allowed_estimator_trains_and_predicts(estimator):
    task = ESTIMATORS[estimator]["task"]
    model = "churn" if task == "classification" else "demand"
    params = {k: v for k, v in SMALL_PARAMS.items() if k in ESTIMATORS[estimator]["params"]}
    spec = spec_for(model, **{"estimator.class": estimator, "estimator.params": params})
    df = demo_data.generate_batch(model, DAY, rows=300)
    df.loc[:5, spec.features.numeric[0]] = np.nan  # imputation is part of the pipeline
    pipeline = build_pipeline(spec).fit(prepare_features(df, spec), df[spec.target])
    metrics = compute_metrics(pipeline, df, spec)
    key = "roc_auc" if task == "classification" else "r2"
    assert np.isfinite(metrics[key])
    assert pipeline.named_steps["model"].get_params().get("random_state", spec.split.seed) == spec.split.seed


def test_metrics_match_sklearn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    spec = spec_for("churn", **{"features.categorical": [], "validation.categories": {}})
    df = demo_data.generate_batch("churn", DAY, rows=400)
    X = prepare_features(df, spec)
    model = LogisticRegression(max_iter=500).fit(X, df["churned"])
    ours = compute_metrics(model, df, spec)
    assert ours["roc_auc"] == pytest.approx(roc_auc_score(df["churned"], model.predict_proba(X)[:, 1]))


# --- MLflow: train, evaluate, register ----------------------------------------------------


def _validated(settings: FactorySettings, model: str, day: date, rows: int = 400, **shift) -> str:
    df = demo_data.generate_batch(model, day, rows=rows, **shift)
    uri = storage.join(settings.store_uri, "validated", model, str(day), "data.parquet")
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return storage.write_bytes(uri, buffer.getvalue())


def _retrain(spec, settings, day, uris, **kwargs):
    trained = train_model(spec, str(day), uris, settings, {"airflow.dag_id": "test"}, **kwargs)
    evaluated = evaluate_candidate(spec, trained, settings)
    return trained, evaluated, register_version(spec, evaluated, settings)


def test_train_evaluate_register_lineage_and_idempotence(factory_home):
    settings = FactorySettings.from_env()
    spec = spec_for("churn")
    first_uri = _validated(settings, "churn", DAY)

    trained, evaluated, registered = _retrain(spec, settings, DAY, [first_uri])
    assert registered["version"] == "1" and registered["alias"] == "champion"
    assert evaluated["status"] == "blessed" and evaluated["champion"] is None

    client = connect(settings)
    run = client.get_run(trained["run_id"])
    for tag in (
        "factory.spec_hash",
        "factory.git_revision",
        "factory.data.sha256",
        "factory.requirements_sha256",
        "factory.airflow.dag_id",
        "factory.run_key",
    ):
        assert run.data.tags[tag], tag
    lineage = json.loads(storage.read_bytes(f"{run.info.artifact_uri}/lineage.json"))
    assert lineage["inputs"][0]["uri"] == first_uri
    assert pd.read_parquet(io.BytesIO(storage.read_bytes(trained["holdout_uri"]))).shape[0] == 100

    again, _, registered_again = _retrain(spec, settings, DAY, [first_uri])
    assert again["reused"] is True and again["run_id"] == trained["run_id"]
    assert registered_again["version"] == "1"
    assert len(client.search_model_versions("name = 'churn'")) == 1

    forced, _, registered_forced = _retrain(spec, settings, DAY, [first_uri], force=True)
    assert forced["run_id"] != trained["run_id"]
    assert registered_forced["version"] == "2"


def test_champion_is_scored_on_the_candidates_holdout(factory_home):
    settings = FactorySettings.from_env()
    spec = spec_for("churn")
    _retrain(spec, settings, DAY, [_validated(settings, "churn", DAY)])
    later = date(2026, 2, 3)
    trained, evaluated, registered = _retrain(spec, settings, later, [_validated(settings, "churn", later)])

    holdout = pd.read_parquet(io.BytesIO(storage.read_bytes(trained["holdout_uri"])))
    import mlflow.sklearn

    champion = mlflow.sklearn.load_model("models:/churn@champion")
    expected = compute_metrics(champion, holdout, spec)["roc_auc"]
    assert evaluated["champion"] == pytest.approx(expected)
    assert evaluated["champion_version"] == "1"
    client = connect(settings)
    version = client.get_model_version("churn", registered["version"])
    assert version.tags["factory.decision"] == evaluated["status"]
    assert version.tags["factory.decision_reason"] == evaluated["reason"]
    if evaluated["status"] == "blessed":
        assert registered["alias"] == "challenger"
    else:
        assert registered["alias"] is None


def test_a_model_below_the_bar_is_registered_without_alias(factory_home):
    settings = FactorySettings.from_env()
    spec = spec_for("demand", **{"gates.threshold": 0.5})  # rmse must be <= 0.5: impossible
    _, evaluated, registered = _retrain(spec, settings, DAY, [_validated(settings, "demand", DAY)])
    assert evaluated["status"] == "rejected"
    assert registered["alias"] is None and registered["champion_version"] is None
    client = connect(settings)
    assert client.get_model_version("demand", "1").tags["factory.decision"] == "rejected"


def test_unreachable_tracking_server_fails_clearly_after_retries(factory_home, monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = FactorySettings.from_env()
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError) as excinfo:
        connect(settings, attempts=3, delay_s=0.01)
    message = str(excinfo.value)
    assert f"127.0.0.1:{port}" in message and "after 3 attempts" in message
    assert "MLFLOW_TRACKING_URI" in message
    assert time.monotonic() - started < 60


def test_connect_leaves_the_environment_alone(factory_home, monkeypatch):
    """MLflow writes its URI into os.environ; the factory must not read that copy back later."""
    import os

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    connect(FactorySettings.from_env())
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("FACTORY_HOME", str(factory_home.parent / "elsewhere"))
    assert "elsewhere" in FactorySettings.from_env().tracking_uri


def test_training_batches_are_the_runs_mlflow_datasets(factory_home):
    """Issue 21 item 4: the MLflow UI's Datasets tab shows what a version was trained on."""
    from model_factory.io.tracking import connect

    settings = FactorySettings.from_env()
    spec = spec_for("churn")
    days = [DAY, DAY.replace(day=DAY.day + 1)]
    uris = [_validated(settings, "churn", day) for day in days]
    trained = train_model(spec, str(days[-1]), uris, settings, {"airflow.dag_id": "test"})
    run = connect(settings).get_run(trained["run_id"])
    logged = run.inputs.dataset_inputs
    by_source = {json.loads(d.dataset.source)["uri"]: d for d in logged}
    assert set(by_source) == set(uris)
    for uri in uris:
        entry = by_source[uri]
        tags = {tag.key: tag.value for tag in entry.tags}
        assert tags["mlflow.data.context"] == "training"
        assert entry.dataset.digest == tags["sha256"][:32] and len(tags["sha256"]) == 64
        assert tags["rows"] == "400" and entry.dataset.name == f"churn/{uri.split('/')[-2]}"
        assert "tenure_months" in entry.dataset.schema
