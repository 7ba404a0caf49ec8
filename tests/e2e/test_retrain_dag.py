"""Whole retrain DAGs executed by Airflow (``dag.test``), then checked in MLflow and the store.

One module-scoped scenario: three days of batches for both demo models, the second churn
batch has nulls in the target. Later tests re-run dates and check nothing is duplicated.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from model_factory.settings import FactorySettings
from model_factory.spec import load_spec
from model_factory_dev import demo_data

from tests.conftest import REPO, factory_env

pytestmark = pytest.mark.e2e

START = date(2026, 3, 2)
BAD_DAY = 1


def _run(dag, day: date, conf: dict | None = None):
    run = dag.test(logical_date=datetime(day.year, day.month, day.day, tzinfo=UTC), run_conf=conf)
    return str(run.state), {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def scenario(airflow_db, tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e") / "factory"
    with factory_env(home) as settings:
        demo_data.write_demo_batches(
            home / "source", START, days=3, rows=600, faults={("churn", BAD_DAY): "target_nulls"}
        )
        source_before = _files(home / "source")

        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(REPO / "dags"))
        results = {}
        for offset in range(3):
            day = START + timedelta(days=offset)
            for model in ("churn", "demand"):
                results[(model, offset)] = _run(bag.dags[f"{model}__retrain"], day)

        from model_factory.io import tracking

        client = tracking.connect(settings)
        yield {
            "bag": bag,
            "home": home,
            "results": results,
            "client": client,
            "source_before": source_before,
            "settings": settings,
        }


def test_good_days_succeed_and_the_bad_batch_fails_at_validation(scenario):
    results = scenario["results"]
    for offset in range(3):
        assert results[("demand", offset)][0] == "success", results[("demand", offset)]
    assert results[("churn", 0)][0] == "success"
    assert results[("churn", 2)][0] == "success"
    state, tasks = results[("churn", BAD_DAY)]
    assert state == "failed"
    assert tasks["ingest"] == "success"
    assert tasks["validate"] == "failed"
    assert {tasks["train"], tasks["evaluate"], tasks["register"]} == {"upstream_failed"}


def test_bad_batch_is_quarantined_with_reason_and_nothing_is_lost(scenario):
    home = scenario["home"]
    bad_ds = str(START + timedelta(days=BAD_DAY))
    folders = list((home / "store" / "quarantine" / "churn" / bad_ds).iterdir())
    assert len(folders) == 1
    reason = (folders[0] / "REASON.txt").read_text()
    assert "churned" in reason and "not_be_null" in reason
    json.loads((folders[0] / "validation.json").read_text())
    source = home / "source" / "churn" / f"{bad_ds}.csv"
    assert (folders[0] / source.name).read_bytes() == source.read_bytes()
    assert not (home / "store" / "validated" / "churn" / bad_ds).exists()
    assert _files(home / "source") == scenario["source_before"], "source files must never change"


def test_store_holds_raw_and_validated_batches(scenario):
    store = scenario["home"] / "store"
    for model in ("churn", "demand"):
        raw_days = sorted(p.name for p in (store / "raw" / model).iterdir())
        assert raw_days == [str(START + timedelta(days=i)) for i in range(3)]
    validated = sorted(p.name for p in (store / "validated" / "churn").iterdir())
    assert validated == [str(START), str(START + timedelta(days=2))]
    manifest = json.loads(next((store / "raw" / "churn" / str(START)).glob("*/manifest.json")).read_text())
    source = scenario["home"] / "source" / "churn" / f"{START}.csv"
    assert manifest["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert manifest["rows"] == 600


def test_registry_versions_aliases_and_lineage(scenario):
    client = scenario["client"]
    versions = sorted(client.search_model_versions("name = 'churn'"), key=lambda v: int(v.version))
    assert [str(v.version) for v in versions] == ["1", "2"]
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"
    assert versions[0].tags["factory.decision"] == "blessed"
    second = versions[1].tags["factory.decision"]
    assert second in ("blessed", "rejected", "held_for_review")
    if second == "blessed":
        assert str(client.get_model_version_by_alias("churn", "challenger").version) == "2"

    run = client.get_run(versions[1].run_id)
    tags = run.data.tags
    assert tags["factory.airflow.dag_id"] == "churn__retrain"
    assert tags["factory.airflow.run_id"].startswith("manual__")
    assert tags["factory.ds"] == str(START + timedelta(days=2))
    assert len(tags["factory.spec_hash"]) == 64 and tags["factory.git_revision"]
    uris = json.loads(tags["factory.data.uris"])
    assert [u.rsplit("/", 2)[-2] for u in uris] == [str(START), str(START + timedelta(days=2))]
    assert int(tags["factory.data.rows"]) == 1200
    for metric in (
        "holdout_roc_auc",
        "holdout_f1",
        "holdout_accuracy",
        "holdout_log_loss",
        "champion_holdout_roc_auc",
        "train_wall_seconds",
        "train_cpu_seconds",
        "process_peak_rss_mb",
    ):
        assert metric in run.data.metrics, metric
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"decision.json", "lineage.json", "spec.json", "environment"} <= artifacts
    env_files = {a.path for a in client.list_artifacts(run.info.run_id, "environment")}
    assert env_files == {"environment/requirements.txt"}

    import mlflow

    info = mlflow.models.get_model_info(tags["factory.model_uri"])
    churn = load_spec(REPO / "include" / "models" / "churn.yaml", FactorySettings.from_env())
    assert {c.name for c in info.signature.inputs} == set(churn.features.all)
    assert info.saved_input_example_info is not None


def test_regression_metrics_for_demand(scenario):
    client = scenario["client"]
    versions = client.search_model_versions("name = 'demand'")
    assert len(versions) == 3
    run = client.get_run(versions[0].run_id)
    assert {"holdout_rmse", "holdout_mae", "holdout_r2"} <= set(run.data.metrics)


def test_rerun_of_a_date_duplicates_nothing(scenario):
    client, home = scenario["client"], scenario["home"]
    store_before = _files(home / "store" / "raw")
    experiment = client.get_experiment_by_name("model-factory/churn").experiment_id
    runs_before = len(client.search_runs([experiment]))

    state, _ = _run(scenario["bag"].dags["churn__retrain"], START + timedelta(days=2))

    assert state == "success"
    assert len(client.search_model_versions("name = 'churn'")) == 2
    assert len(client.search_runs([experiment])) == runs_before
    assert _files(home / "store" / "raw") == store_before


def test_force_retrain_trains_a_new_version(scenario):
    client = scenario["client"]
    state, _ = _run(scenario["bag"].dags["demand__retrain"], START, conf={"force_retrain": True})
    assert state == "success"
    assert len(client.search_model_versions("name = 'demand'")) == 4


def test_missing_batch_skips_the_run_with_the_path(scenario, capsys):
    client = scenario["client"]
    state, tasks = _run(scenario["bag"].dags["churn__retrain"], START + timedelta(days=30))
    assert state == "success"
    assert tasks["ingest"] == "skipped"
    assert set(tasks.values()) == {"skipped"}
    out = capsys.readouterr()
    missing = str(scenario["home"] / "source" / "churn" / f"{START + timedelta(days=30)}.csv")
    assert missing in out.out + out.err
    assert len(client.search_model_versions("name = 'churn'")) == 2


def test_bad_ds_in_trigger_conf_fails_the_run(scenario):
    state, tasks = _run(scenario["bag"].dags["churn__retrain"], START, conf={"ds": "03/02/2026"})
    assert state == "failed"
    assert tasks["ingest"] == "failed"
