"""The shipped templates' DAGs executed by Airflow (``dag.test``) on the demo specs, then
checked in MLflow and the store: tuned_retrain, custom_training, batch_scoring, and a
custom_training model whose code returns something that is not an estimator.

(``retrain`` itself: tests/e2e/test_retrain_dag.py.)
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, date, datetime, timedelta

import pytest
from model_factory.io import storage
from model_factory_dev import demo_data

from tests.conftest import REPO, factory_env

pytestmark = pytest.mark.e2e

START = date(2026, 4, 6)
MODELS = REPO / "include" / "models"


def _run(dag, day: date, conf: dict | None = None):
    run = dag.test(logical_date=datetime(day.year, day.month, day.day, tzinfo=UTC), run_conf=conf)
    return str(run.state), {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _retrain_blessed(scenario: dict, model: str):
    """Run ``model``'s retrain DAG on START: it must succeed and bless the model's only version."""
    state, tasks = _run(scenario["bag"].dags[f"{model}__retrain"], START)
    assert state == "success", tasks
    (version,) = scenario["client"].search_model_versions(f"name = '{model}'")
    assert version.tags["factory.decision"] == "blessed"
    return version


BAD_CODE = """
def not_an_estimator():
    return {"fit": "no"}
"""


@pytest.fixture(scope="module")
def scenario(airflow_db, tmp_path_factory):
    root = tmp_path_factory.mktemp("templates")
    home, specs = root / "factory", root / "models"
    specs.mkdir()
    for name in ("churn_tuned", "churn_custom", "churn_scoring"):
        shutil.copy(MODELS / f"{name}.yaml", specs / f"{name}.yaml")
    shutil.copytree(MODELS / "code", specs / "code")
    (specs / "code" / "bad_code.py").write_text(BAD_CODE)
    (specs / "churn_badcode.yaml").write_text(
        (MODELS / "churn_custom.yaml")
        .read_text()
        .replace("name: churn_custom", "name: churn_badcode")
        .replace('"churn_features:build"', '"bad_code:not_an_estimator"')
        .replace("params: {n_estimators: 150, max_depth: 8}", "params: {}")
    )
    with factory_env(home, FACTORY_SPECS_DIR=str(specs)) as settings:
        demo_data.write_demo_batches(
            home / "source", START, days=2, rows=600, faults={("churn", 1): "dropped_column"}
        )

        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        from model_factory.io import tracking

        yield {
            "bag": bag,
            "home": home,
            "specs": specs,
            "settings": settings,
            "client": tracking.connect(settings),
        }


def test_tuned_retrain_logs_every_trial_as_a_nested_run_and_gates_the_best(scenario):
    version = _retrain_blessed(scenario, "churn_tuned")
    client = scenario["client"]
    parent = client.get_run(version.run_id)
    experiment = parent.info.experiment_id
    trials = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert 1 <= len(trials) <= 6
    assert len(trials) == int(parent.data.params["tuning.trials_run"])
    assert all("cv_roc_auc_mean" in t.data.metrics for t in trials)
    best = max(trials, key=lambda t: t.data.metrics["cv_roc_auc_mean"])
    assert float(parent.data.tags["factory.tuning.best_cv"]) == pytest.approx(
        best.data.metrics["cv_roc_auc_mean"], abs=1e-6
    )
    assert parent.data.params["best.C"] == best.data.params["estimator.C"]
    assert "holdout_roc_auc" in parent.data.metrics  # the holdout judged the refit, not the CV


def test_custom_training_records_the_code_hash_and_registers_a_loadable_version(scenario):
    version = _retrain_blessed(scenario, "churn_custom")
    client = scenario["client"]
    tags = client.get_run(version.run_id).data.tags
    code = scenario["specs"] / "code" / "churn_features.py"
    assert tags["factory.code.sha256"] == hashlib.sha256(code.read_bytes()).hexdigest()
    assert tags["factory.code.file"] == "churn_features.py"

    import mlflow.sklearn
    from model_factory.pipeline.custom_code import install_code_package

    install_code_package(scenario["specs"] / "code")
    model = mlflow.sklearn.load_model(f"models:/churn_custom/{version.version}")
    assert type(model.named_steps["model"]).__name__ == "ExtraTreesClassifier"
    assert type(model.named_steps["ratios"]).__module__ == "model_factory_code.churn_features"


def test_custom_code_that_returns_no_estimator_fails_train_once_with_file_and_reason(scenario, capsys):
    state, tasks = _run(scenario["bag"].dags["churn_badcode__retrain"], START)
    assert state == "failed"
    assert tasks["validate"] == "success" and tasks["train"] == "failed"
    out = capsys.readouterr()
    text = out.out + out.err
    assert "bad_code.py" in text and "not a scikit-learn estimator" in text
    assert "estimator.factory" in text
    assert scenario["client"].search_model_versions("name = 'churn_badcode'") == []


def test_batch_scoring_skips_without_a_champion_then_scores_idempotently(scenario):
    bag, settings = scenario["bag"], scenario["settings"]
    state, tasks = _run(bag.dags["churn_scoring__score"], START)
    assert state == "success" and tasks["champion"] == "skipped"
    assert set(tasks.values()) == {"skipped"}

    assert _run(bag.dags["churn_scoring__retrain"], START)[0] == "success"
    state, tasks = _run(bag.dags["churn_scoring__score"], START)
    assert state == "success", tasks
    import pandas as pd
    from model_factory.pipeline.scoring import predictions_uri

    uri = predictions_uri(settings.store_uri, "churn_scoring", str(START))
    with storage.local_file(uri) as path:
        first = pd.read_parquet(path)
    assert len(first) == 600 and first["row_id"].str.startswith("C").all()
    assert set(first["model_version"]) == {"1"}
    assert {"prediction", "proba_0", "proba_1"} <= set(first.columns)

    assert _run(bag.dags["churn_scoring__score"], START)[0] == "success"  # same date again
    folder = scenario["home"] / "store" / "predictions" / "churn_scoring" / str(START)
    assert [p.name for p in folder.iterdir()] == ["predictions.parquet"]
    with storage.local_file(uri) as path:
        pd.testing.assert_frame_equal(pd.read_parquet(path), first)


def test_batch_scoring_quarantines_a_batch_outside_the_champion_contract(scenario):
    day = START + timedelta(days=1)  # support_calls dropped from this batch
    state, tasks = _run(scenario["bag"].dags["churn_scoring__score"], day)
    assert state == "failed"
    assert tasks["check_input"] == "failed" and tasks["score"] == "upstream_failed"
    quarantined = list((scenario["home"] / "store" / "quarantine" / "churn_scoring" / str(day)).iterdir())
    assert len(quarantined) == 1
    assert "support_calls" in (quarantined[0] / "REASON.txt").read_text()
    assert not (scenario["home"] / "store" / "predictions" / "churn_scoring" / str(day)).exists()
