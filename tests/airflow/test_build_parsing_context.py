"""A task's process parses the DAG file with Airflow's parsing context naming its DAG: only the
spec files that can build that DAG are read, so start-up does not grow with the number of models,
and another model's broken spec is not even opened."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
from airflow.sdk import get_parsing_context
from airflow.sdk.definitions._internal.dag_parsing_context import _airflow_parsing_context_manager
from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID, _AIRFLOW_PARSING_CONTEXT_TASK_ID
from model_factory.airflow import build
from model_factory.airflow.analyzer import DAG_ID as ANALYZER_DAG_ID
from model_factory.airflow.build import dag_file_dags, spec_files_for
from model_factory.airflow.shards import shard_of

from tests.conftest import REPO

MODELS = REPO / "include" / "models"
CHURN = {
    "churn__retrain",
    "churn__drift_watch",
    "churn__canary",
    "churn__review",
    "churn__health",
}  # churn reads its outcomes


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """churn and demand, a broken spec and a file that is not even UTF-8; no parsing context
    left over (Airflow's context manager only restores variables that were set before)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("churn", "demand"):
        shutil.copy(MODELS / f"{name}.yaml", folder / f"{name}.yaml")
    (folder / "broken.yaml").write_text("name: broken\nowner: x\n")
    (folder / "garbage.yaml").write_bytes(b"\xff\xfe not a spec")
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(folder))
    monkeypatch.setenv("FACTORY_ANALYZER", "on")
    for variable in (_AIRFLOW_PARSING_CONTEXT_DAG_ID, _AIRFLOW_PARSING_CONTEXT_TASK_ID):
        monkeypatch.delenv(variable, raising=False)
    return folder


@pytest.fixture
def files_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The spec files build.py loads, by name."""
    read: list[str] = []
    real = build.load_spec

    def spy(path, settings):
        read.append(Path(path).name)
        return real(path, settings)

    monkeypatch.setattr(build, "load_spec", spy)
    return read


def parse_for_task(dag_id: str, task_id: str = "some_task") -> dict:
    """What the DAG file defines when a task's process parses it, the way Airflow's task runner
    sets the context (airflow.sdk.execution_time.task_runner)."""
    with _airflow_parsing_context_manager(dag_id=dag_id, task_id=task_id):
        assert get_parsing_context().dag_id == dag_id
        return dag_file_dags(get_parsing_context().dag_id)


def test_a_task_of_one_model_builds_only_that_model(specs, files_read):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a bad spec read would warn
        dags = parse_for_task("churn__retrain", "train")
    assert set(dags) == CHURN
    assert files_read == ["churn.yaml"]  # broken.yaml and garbage.yaml are not even opened


def test_without_a_context_every_model_and_the_analyzer_are_built(specs, files_read):
    with pytest.warns(UserWarning):
        dags = dag_file_dags(get_parsing_context().dag_id)
    assert CHURN | {"demand__retrain", ANALYZER_DAG_ID} <= set(dags)
    assert {"invalid_spec__broken", "invalid_spec__garbage"} <= set(dags)
    assert files_read == ["broken.yaml", "churn.yaml", "demand.yaml", "garbage.yaml"]


def test_the_analyzer_task_reads_no_spec(specs, files_read):
    assert set(parse_for_task(ANALYZER_DAG_ID, "report")) == {ANALYZER_DAG_ID}
    assert files_read == []


def test_an_invalid_spec_dag_is_built_alone(specs, files_read):
    with pytest.warns(UserWarning, match="broken.yaml"):
        dags = parse_for_task("invalid_spec__broken", "explain")
    assert set(dags) == {"invalid_spec__broken"}
    assert files_read == ["broken.yaml"]


def test_a_dag_no_file_name_fits_falls_back_to_every_spec(specs, files_read):
    with pytest.warns(UserWarning):
        dags = parse_for_task("renamed_model__retrain")
    assert CHURN | {"demand__retrain", "invalid_spec__broken"} <= set(dags)
    assert ANALYZER_DAG_ID not in dags
    assert len(files_read) == 4


def test_model_names_that_prefix_each_other(specs, files_read):
    text = (specs / "churn.yaml").read_text().replace("name: churn\n", "name: churn__eu\n")
    (specs / "churn__eu.yaml").write_text(text)
    dags = parse_for_task("churn__eu__canary")
    assert "churn__eu__canary" in dags and set(dags) >= CHURN  # both files can hold that id
    assert files_read == ["churn.yaml", "churn__eu.yaml"]


def test_spec_files_for_uses_file_names_only():
    paths = [Path("a.yaml"), Path("a__b.yaml"), Path("my model.yaml"), Path("b.yaml")]
    assert spec_files_for("a__retrain", paths) == [Path("a.yaml")]
    assert spec_files_for("a__b__retrain", paths) == [Path("a.yaml"), Path("a__b.yaml")]
    assert spec_files_for("invalid_spec__my_model", paths) == [Path("my model.yaml")]
    assert spec_files_for("c__retrain", paths) == []


def test_the_dag_a_task_gets_equals_the_dag_processors(monkeypatch):
    """Same DAG, task for task, whether built alone or with every other model (shipped specs)."""
    from airflow.serialization.serialized_objects import DagSerialization

    monkeypatch.setenv("FACTORY_SPECS_DIR", str(MODELS))
    for variable in (_AIRFLOW_PARSING_CONTEXT_DAG_ID, _AIRFLOW_PARSING_CONTEXT_TASK_ID):
        monkeypatch.delenv(variable, raising=False)
    everything = dag_file_dags(None)
    for dag_id in sorted(everything):
        alone = parse_for_task(dag_id)
        assert dag_id in alone
        assert DagSerialization.to_dict(alone[dag_id]) == DagSerialization.to_dict(everything[dag_id])


def test_the_dag_file_honours_the_context_in_a_dagbag(specs):
    """The real DAG file through Airflow's DagBag, as the task runner loads it."""
    from airflow.dag_processing.dagbag import DagBag

    with _airflow_parsing_context_manager(dag_id="demand__canary", task_id="start"):
        shard_file = f"model_factory_shard_{shard_of('demand.yaml', 4)}_of_4.py"
        bag = DagBag(dag_folder=str(REPO / "dags" / shard_file))
    assert bag.import_errors == {}
    assert "demand__canary" in bag.dag_ids
    assert all(dag_id.startswith("demand__") for dag_id in bag.dag_ids), bag.dag_ids
