"""Every DAG imports cleanly and carries what ops rely on; a bad spec hides no other model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from model_factory.settings import FactorySettings
from model_factory.spec import load_specs

from tests.conftest import REPO


def _dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture(scope="module")
def dagbag():
    return _dagbag()


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.captured_warnings == {}


KINDS = ("retrain", "drift_watch", "canary", "review", "health")
SPECS = [loaded.spec for loaded in load_specs(REPO / "include" / "models", FactorySettings.from_env())[0]]
ENABLED = {
    "retrain": lambda s: True,
    "drift_watch": lambda s: s.drift.enabled,
    "canary": lambda s: s.canary.enabled,
    "score": lambda s: s.template == "batch_scoring",
    "review": lambda s: True,
    "health": lambda s: s.outcomes.enabled,
}
SHIPPED = sorted(f"{s.name}__{kind}" for s in SPECS for kind in ENABLED if ENABLED[kind](s))
TEMPLATE_OF = {f"{s.name}__{kind}": s.template for s in SPECS for kind in ENABLED}


def test_every_spec_gets_its_dags(dagbag):
    assert set(SHIPPED) == set(dagbag.dag_ids) - {"model_factory_analyzer"}  # the Analyzer's weekly DAG
    assert len(SPECS) >= 2
    assert "churn__health" in SHIPPED  # churn's outcomes arrive from its CRM file (the demo's story)
    demand = next(s for s in SPECS if s.name == "demand")  # its weekly pattern: a seasonal reference
    assert "demand__drift_watch" in SHIPPED and demand.drift.reference == "same_weekday"


@pytest.mark.parametrize("dag_id", SHIPPED)
def test_dag_has_owner_retries_tags_and_safe_scheduling(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags and "model-factory" in dag.tags
    assert f"template:{TEMPLATE_OF[dag_id]}" in dag.tags
    review = 16 if dag_id.endswith("__review") else 3  # one run per held version, waiting
    assert dag.max_active_runs == (1 if dag_id.endswith(("__retrain", "__score")) else review)
    assert dag.doc_md
    assert dag.catchup is False
    assert dag.schedule is not None
    for task in dag.tasks:
        assert task.owner not in ("", "airflow"), f"{dag_id}.{task.task_id} has no real owner"
        assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
        assert task.execution_timeout is not None, f"{dag_id}.{task.task_id} has no execution_timeout"


def test_every_shipped_template_has_a_demo_model():
    from model_factory.airflow.templates import SHIPPED as TEMPLATES

    assert {s.template for s in SPECS} >= set(TEMPLATES)


def test_retrain_shape_and_assets(dagbag):
    dag = dagbag.dags["churn__retrain"]
    assert "retrain" in dag.tags
    order = [t.task_id for t in dag.topological_sort()]
    assert [t for t in order if t not in ("data_budget", "announce_held", "model_card")] == [
        "ingest",
        "validate",
        "train",
        "evaluate",
        "register",
        "announce_challenger",
    ]
    upstream = {t: dag.get_task(t).upstream_task_ids for t in ("data_budget", "announce_held", "model_card")}
    assert upstream == {"data_budget": {"train"}, "announce_held": {"register"}, "model_card": {"register"}}
    assert dag.get_task("announce_challenger").upstream_task_ids == {"register", "model_card"}
    assert [a.name for a in dag.get_task("announce_challenger").outlets] == ["churn__challenger"]
    # nightly cron OR the drift asset
    assert type(dag.schedule).__name__ == "AssetOrTimeSchedule"
    assert "churn__drift" in repr(dag.schedule)


def test_canary_shape(dagbag):
    dag = dagbag.dags["churn__canary"]
    ramp = load_specs(REPO / "include" / "models", FactorySettings.from_env())[0][0].spec.canary.ramp
    stages = [f"stage_{i}_{step}" for i in range(1, len(ramp) + 1) for step in ("wait", "act")]
    assert {t.task_id for t in dag.tasks} == {"manual_action", "start", *stages}
    assert "churn__challenger" in repr(dag.schedule)
    for i in range(1, len(ramp) + 1):
        sensor = dag.get_task(f"stage_{i}_wait")
        # deferred to the triggerer; reschedule mode only if built with deferrable=False
        assert sensor.deferrable and sensor.mode == "reschedule"
        assert dag.get_task(f"stage_{i}_act").upstream_task_ids == {f"stage_{i}_wait"}


def test_drift_watch_shape(dagbag):
    dag = dagbag.dags["churn__drift_watch"]
    assert [t.task_id for t in dag.topological_sort()] == ["wait_for_batch", "check", "fire_retrain"]
    sensor = dag.get_task("wait_for_batch")
    assert sensor.mode == "reschedule" and sensor.soft_fail
    assert [a.name for a in dag.get_task("fire_retrain").outlets] == ["churn__drift"]


def test_owner_and_schedule_come_from_the_spec(dagbag):
    spec = load_specs(REPO / "include" / "models", FactorySettings.from_env())[0][0].spec
    dag = dagbag.dags[f"{spec.name}__retrain"]
    assert dag.default_args["owner"] == spec.owner
    assert dag.default_args["retries"] == spec.retries
    from model_factory.airflow.common import spread_cron

    assert f"expression='{spread_cron(spec.schedule, spec.name)}'" in repr(dag.schedule)
    assert dagbag.dags[f"{spec.name}__drift_watch"].schedule == spread_cron(spec.drift.schedule, spec.name)


def test_bad_spec_is_reported_and_other_dags_still_load(tmp_path, monkeypatch):
    shutil.copy(REPO / "include" / "models" / "churn.yaml", tmp_path / "churn.yaml")
    (tmp_path / "broken.yaml").write_text(
        (REPO / "include" / "models" / "demand.yaml")
        .read_text()
        .replace("name: demand", "name: broken")
        .replace("HistGradientBoostingRegressor", "DeepMagicRegressor")
    )
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(tmp_path))

    bag = _dagbag()

    assert bag.import_errors == {}
    assert set(bag.dag_ids) - {"model_factory_analyzer"} == {f"churn__{kind}" for kind in KINDS} | {
        "invalid_spec__broken"
    }
    assert bag.dags["churn__retrain"].get_task("train").execution_timeout.total_seconds() == 120 * 60
    warnings = " ".join(w for ws in bag.captured_warnings.values() for w in ws)
    assert "broken.yaml" in warnings and "estimator" in warnings and "DeepMagicRegressor" in warnings
    placeholder = bag.dags["invalid_spec__broken"]
    assert "invalid-spec" in placeholder.tags
    assert "DeepMagicRegressor" in placeholder.doc_md


def test_dag_file_parses_without_heavy_imports():
    """The DAG processor parses often: sklearn, MLflow and GX must only load inside tasks."""
    code = (
        "import sys, json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "heavy = ['sklearn', 'mlflow', 'great_expectations', 'boto3', 'pandas', 'scipy']\n"
        "print(json.dumps({'dags': sorted(bag.dag_ids), 'loaded': [m for m in heavy if m in sys.modules]}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert [d for d in result["dags"] if d != "model_factory_analyzer"] == SHIPPED
    assert result["loaded"] == []


def test_each_models_dags_come_from_its_shard_file(dagbag):
    from model_factory.airflow.shards import active_count, shard_of

    count = active_count(REPO / "dags")
    assert count and count > 1
    for dag_id in SHIPPED:
        model = dag_id.split("__")[0]
        expected = f"model_factory_shard_{shard_of(model + '.yaml', count)}_of_{count}.py"
        assert dagbag.dags[dag_id].fileloc.endswith(expected), (dag_id, dagbag.dags[dag_id].fileloc)
