"""The template registry and the build of every model's DAGs: whatever one spec, template or
code file does wrong, that model gets an ``invalid_spec__`` DAG naming file, field and reason,
and every other model's DAGs still load."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from model_factory.airflow.build import build_all, safe_id
from model_factory.airflow.template_registry import discover
from model_factory.airflow.templates import SHIPPED

from tests.conftest import REPO

MODELS = REPO / "include" / "models"


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    """A specs folder holding the good churn spec (its DAGs must survive every bad neighbour)."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(MODELS / "churn.yaml", folder / "churn.yaml")
    return folder


def _spec(name: str, **changes) -> str:
    raw = yaml.safe_load((MODELS / "churn.yaml").read_text())
    raw["name"] = name
    for dotted, value in changes.items():
        node = raw
        *path, last = dotted.split(".")
        for part in path:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return yaml.safe_dump(raw)


def _invalid(dags: dict, key: str) -> str:
    assert {"churn__retrain", "churn__drift_watch", "churn__canary"} <= set(dags), sorted(dags)
    dag = dags[f"invalid_spec__{key}"]
    assert "invalid-spec" in dag.tags
    return dag.doc_md


def test_registry_lists_the_four_shipped_templates():
    registry = discover(Path("/nonexistent"), entry_points=False)
    assert set(SHIPPED) == {"retrain", "tuned_retrain", "batch_scoring", "custom_training"}
    assert set(registry.templates) == set(SHIPPED) and registry.broken == {}
    assert all(desc for _, _, desc in registry.describe())


@pytest.mark.parametrize(
    ("filename", "content", "key", "words"),
    [
        ("latin1.yaml", b"name: latin1\nowner: j\xe9r\xf4me\n", "latin1", ["UTF-8"]),
        ("deep.yaml", ("[" * 5000 + "]" * 5000).encode(), "deep", ["nested"]),
        ("my model.yaml", _spec("my_model").encode(), "my_model", ["name", "my model"]),
        (
            "long_tag.yaml",
            _spec("long_tag", tags={"team": "x" * 200}).encode(),
            "long_tag",
            ["tags.team", "100"],
        ),
        (
            "unknown_tpl.yaml",
            _spec("unknown_tpl", template="deep_magic").encode(),
            "unknown_tpl",
            ["template", "deep_magic", "known"],
        ),
        (
            "bad_params.yaml",
            _spec(
                "bad_params",
                template="tuned_retrain",
                template_params={"search": {"C": {"low": 5, "high": 1}}},
            ).encode(),
            "bad_params",
            ["template_params.search.C", "low must be below high"],
        ),
        (
            "empty_search.yaml",
            _spec("empty_search", template="tuned_retrain", template_params={"search": {}}).encode(),
            "empty_search",
            ["template_params", "search is empty"],
        ),
        (
            "zero_budget.yaml",
            _spec(
                "zero_budget",
                template="tuned_retrain",
                template_params={"search": {"C": {"values": [1]}}, "trials": 0},
            ).encode(),
            "zero_budget",
            ["template_params.trials", "greater than or equal to 1"],
        ),
        (
            "unknown_param.yaml",
            _spec(
                "unknown_param",
                template="tuned_retrain",
                template_params={"search": {"depth": {"values": [1]}}},
            ).encode(),
            "unknown_param",
            ["template_params.search.depth", "no parameter"],
        ),
        (
            "no_factory.yaml",
            _spec("no_factory", template="custom_training").encode(),
            "no_factory",
            ["estimator.factory", "custom_training needs"],
        ),
        (
            "factory_in_retrain.yaml",
            _spec("factory_in_retrain", estimator={"factory": "churn_features:build"}).encode(),
            "factory_in_retrain",
            ["estimator.factory", "custom_training"],
        ),
        (
            "dotted_factory.yaml",
            _spec(
                "dotted_factory", template="custom_training", estimator={"factory": "os.path:join"}
            ).encode(),
            "dotted_factory",
            ["estimator.factory", "pattern"],
        ),
        (
            "stray_param.yaml",
            _spec("stray_param", template_params={"x": 1}).encode(),
            "stray_param",
            ["template_params.x", "unknown field"],
        ),
        (
            "huge_timeout.yaml",
            _spec("huge_timeout", task_timeout_minutes=10**6).encode(),
            "huge_timeout",
            ["task_timeout_minutes"],
        ),
    ],
)
def test_a_bad_spec_gets_its_own_invalid_dag(specs, filename, content, key, words):
    (specs / filename).write_bytes(content)
    with pytest.warns(UserWarning):
        dags = build_all(specs, specs.parent / "none")
    doc = _invalid(dags, key)
    assert filename in doc
    for word in words:
        assert word in doc, (word, doc)


def test_safe_id_from_any_file_name():
    assert safe_id("a b/c d.yaml") == "c_d"
    assert safe_id("ünï.yaml") == "_n_"
    assert len("invalid_spec__" + safe_id("x" * 400 + ".yaml")) <= 250


def _template_file(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


GOOD_TEMPLATE = """
    from airflow.sdk import DAG, task
    from model_factory.airflow import blocks
    from model_factory.airflow.common import common_dag_args
    from pydantic import BaseModel

    NAME = "{name}"
    DESCRIPTION = "ingest and validate only"

    class Params(BaseModel):
        note: str = "hi"

    def build(loaded, params):
        with DAG(dag_id=f"{{loaded.spec.name}}__{suffix}", schedule=None,
                 **common_dag_args(loaded.spec, "{name}")) as dag:
            blocks.validate(loaded, blocks.ingest(loaded))
        return [dag]
"""


def test_a_folder_template_is_found_and_builds(specs, tmp_path):
    templates = tmp_path / "templates"
    _template_file(templates, "check_only", GOOD_TEMPLATE.format(name="check_only", suffix="check"))
    (specs / "mine.yaml").write_text(_spec("mine", template="check_only", template_params={"note": "x"}))
    dags = build_all(specs, templates)
    dag = dags["mine__check"]
    assert [t.task_id for t in dag.topological_sort()] == ["ingest", "validate"]
    assert "template:check_only" in dag.tags and dag.default_args["owner"] == "growth-data-science"
    assert "churn__retrain" in dags


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            "NAME = 'boom'\nDESCRIPTION = 'x'\ndef build(loaded, params):\n    raise RuntimeError('kaput')\n",
            ["raised while building", "RuntimeError: kaput", "boom.py:4"],
        ),
        (
            "NAME = 'boom'\nDESCRIPTION = 'x'\ndef build(loaded, params):\n    return ['not a dag']\n",
            ["returned str, not a DAG"],
        ),
        (
            GOOD_TEMPLATE.format(name="boom", suffix="x").replace(
                'f"{loaded.spec.name}__x"', '"churn__retrain"'
            ),
            ["a model's DAG ids start 'mine__'"],
        ),
        ("import nonexistent_module_xyz\n", ["failed to load", "nonexistent_module_xyz"]),
    ],
)
def test_a_broken_template_only_breaks_its_models(specs, tmp_path, body, words):
    templates = tmp_path / "templates"
    _template_file(templates, "boom", body)
    (specs / "mine.yaml").write_text(_spec("mine", template="boom"))
    with pytest.warns(UserWarning):
        dags = build_all(specs, templates)
    doc = _invalid(dags, "mine")
    for word in words:
        assert word in doc, (word, doc)
    assert dags["churn__retrain"].get_task("train")  # the good model is untouched


def test_entry_point_templates_are_found(monkeypatch, specs, tmp_path):
    import importlib.metadata
    import types

    module = types.ModuleType("ds_pkg_template")
    exec(textwrap.dedent(GOOD_TEMPLATE.format(name="from_pkg", suffix="pkg")), module.__dict__)

    class Point:
        name, value = "from_pkg", "ds_pkg_template"

        def load(self):
            return module

    real = importlib.metadata.entry_points

    def entry_points(**kw):
        return [Point()] if kw.get("group") == "model_factory.templates" else real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    (specs / "mine.yaml").write_text(_spec("mine", template="from_pkg"))
    dags = build_all(specs, tmp_path / "none")
    assert "mine__pkg" in dags
    assert "entry point" in discover(tmp_path / "none").templates["from_pkg"].origin


def test_a_template_cannot_take_a_shipped_name(specs, tmp_path):
    templates = tmp_path / "templates"
    _template_file(templates, "retrain", GOOD_TEMPLATE.format(name="retrain", suffix="x"))
    registry = discover(templates, entry_points=False)
    assert registry.templates["retrain"].origin == "factory"
    assert "taken by factory" in registry.broken["retrain"]


def test_execution_timeout_comes_from_the_spec(specs):
    (specs / "quick.yaml").write_text(_spec("quick", task_timeout_minutes=7))
    dags = build_all(specs, specs.parent / "none")
    assert all(t.execution_timeout.total_seconds() == 7 * 60 for t in dags["quick__retrain"].tasks)
    assert dags["churn__retrain"].get_task("train").execution_timeout.total_seconds() == 120 * 60


def test_hostile_files_leave_the_dag_file_importable(specs, tmp_path, monkeypatch):
    """Through Airflow's own DagBag: no import error, every good DAG, one invalid DAG per bad file."""
    from airflow.dag_processing.dagbag import DagBag

    (specs / "latin1.yaml").write_bytes(b"name: \xff\xfe\n")
    (specs / "deep.yaml").write_text("[" * 5000 + "]" * 5000)
    (specs / "with space.yaml").write_text(_spec("with_space"))
    (specs / "long_tag.yaml").write_text(_spec("long_tag", tags={"t": "y" * 300}))
    templates = tmp_path / "templates"
    _template_file(templates, "boom", "NAME='boom'\nDESCRIPTION='x'\ndef build(s, p):\n    raise OSError\n")
    (specs / "raises.yaml").write_text(_spec("raises", template="boom"))
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(specs))
    monkeypatch.setenv("FACTORY_TEMPLATES_DIR", str(templates))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    invalid = {d for d in bag.dag_ids if d.startswith("invalid_spec__")}
    assert invalid == {f"invalid_spec__{k}" for k in ("latin1", "deep", "with_space", "long_tag", "raises")}
    assert {"churn__retrain", "churn__drift_watch", "churn__canary"} <= set(bag.dag_ids)
