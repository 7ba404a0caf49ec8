"""`model-factory new-model` / `new-template`: what they learn from a sample, what they write,
and that what they write loads, validates and builds."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from model_factory.airflow.build import build_all
from model_factory.scaffold import ScaffoldError, infer, new_template
from model_factory.settings import FactorySettings
from model_factory.spec import load_spec

from tests.conftest import REPO
from tests.unit.scaffold import new_model


def _sample(n: int = 120) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": [f"O{i:05d}" for i in range(n)],
            "placed_at": pd.date_range("2026-01-01", periods=n, freq="h").astype(str),
            "amount": [10.0 + (i % 37) * 3.5 for i in range(n)],
            "items": [1 + i % 5 for i in range(n)],
            "channel": ["web", "app", "store"] * (n // 3),
            "express": [i % 2 == 0 for i in range(n)],
            "segment": ["bronze", "silver", "gold", "platinum"] * (n // 4),
        }
    )


def test_infer_learns_kinds_ranges_categories_classes_and_the_time_column():
    learnt = infer(_sample(), target="segment")
    assert learnt["task"] == "classification"
    assert learnt["classes"] == ["bronze", "gold", "platinum", "silver"]
    assert learnt["numeric"] == ["amount", "items"]
    assert learnt["categorical"] == ["channel", "express"] and "express" not in learnt["categories"]
    assert learnt["categories"]["channel"] == ["app", "store", "web"]
    assert learnt["ranges"]["amount"] == {"min": 0.0}  # a physical bound: never negative
    assert learnt["soft_ranges"]["amount"]["min"] <= 10.0 and learnt["soft_ranges"]["amount"]["max"] >= 136.0
    assert learnt["time_column"] == "placed_at"
    assert any("order_id" in note and "left out" in note for note in learnt["notes"])


def test_infer_regression_and_errors():
    assert infer(_sample(), target="amount")["task"] == "regression"
    with pytest.raises(ScaffoldError, match="--target"):
        infer(_sample(), target="nope")
    one_class = _sample().assign(segment="gold")
    with pytest.raises(ScaffoldError, match="one class"):
        infer(one_class, target="segment")


@pytest.mark.parametrize("template", ["retrain", "tuned_retrain", "batch_scoring", "custom_training"])
def test_new_model_without_a_sample_writes_a_spec_that_builds(tmp_path, template):
    models = tmp_path / "models"
    result = new_model("my_model", template, models, owner="ds-anna")
    spec = load_spec(models / "my_model.yaml", FactorySettings.from_env())
    assert spec.template == template and spec.owner == "ds-anna"
    if template == "custom_training":
        assert (models / "code" / "my_model.py") in result.written
        assert spec.estimator.factory == "my_model:build"
    dags = build_all(models, tmp_path / "no-templates")
    assert "my_model__retrain" in dags and not [d for d in dags if d.startswith("invalid_spec")]
    assert any("model-factory validate" in step for step in result.next_steps)


def test_new_model_from_a_sample_validates_it(tmp_path):
    sample = tmp_path / "orders.csv"
    _sample().to_csv(sample, index=False)
    result = new_model("orders", "retrain", tmp_path / "models", owner="ds", sample=sample, target="segment")
    spec = load_spec(tmp_path / "models" / "orders.yaml", FactorySettings.from_env())
    assert spec.target_classes == ["bronze", "gold", "platinum", "silver"]
    assert spec.gates.primary_metric == "roc_auc" and spec.gates.baseline_margin == 0.05  # vs a dummy
    assert spec.split.strategy == "time" and spec.split.time_column == "placed_at"
    assert result.validation == ["the sample passes the spec's validation"]


def test_new_model_refuses_bad_names_templates_and_overwrites(tmp_path):
    with pytest.raises(ScaffoldError, match="lower_snake_case"):
        new_model("My Model", "retrain", tmp_path, owner="x")
    with pytest.raises(ScaffoldError, match="unknown template 'nope'"):
        new_model("m1", "nope", tmp_path, owner="x")
    new_model("m1", "retrain", tmp_path, owner="x")
    with pytest.raises(ScaffoldError, match="exists"):
        new_model("m1", "retrain", tmp_path, owner="x")


def test_new_template_writes_a_module_whose_own_test_passes(tmp_path):
    templates, tests = tmp_path / "templates", tmp_path / "tests" / "templates"
    result = new_template("quick_check", templates, tests)
    assert result.written == [templates / "quick_check.py", tests / "test_quick_check.py"]
    models = tmp_path / "models"
    models.mkdir()
    raw = yaml.safe_load((REPO / "include" / "models" / "churn.yaml").read_text())
    raw.update(name="mine", template="quick_check")
    (models / "mine.yaml").write_text(yaml.safe_dump(raw))
    dags = build_all(models, templates)
    dag = dags["mine__quick_check"]
    assert [t.task_id for t in dag.topological_sort()] == ["ingest", "validate", "report"]
    # the scaffolded test itself, against the scaffolded module
    env = {**os.environ, "FACTORY_TEMPLATES_DIR": str(templates)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_cli_new_model_and_templates(tmp_path, monkeypatch, capsys):
    from model_factory.cli.main import main

    monkeypatch.setenv("FACTORY_SPECS_DIR", str(tmp_path))
    assert main(["new-model", "cli_model", "--template", "batch_scoring", "--owner", "ds-bob"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'cli_model.yaml'}" in out and "next:" in out
    assert main(["new-model", "cli_model", "--owner", "ds-bob"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["templates"]) == 0
    listed = capsys.readouterr().out
    for name in ("retrain", "tuned_retrain", "batch_scoring", "custom_training"):
        assert name in listed


def test_every_scaffolded_gate_field_matches_model_yaml(tmp_path):
    shown = yaml.safe_load((REPO / "include" / "templates" / "model.yaml").read_text())["gates"]
    sample = tmp_path / "orders.csv"
    _sample().to_csv(sample, index=False)
    new_model("orders", "retrain", tmp_path / "models", owner="ds", sample=sample, target="segment")
    written = yaml.safe_load((tmp_path / "models" / "orders.yaml").read_text())["gates"]
    assert written == shown  # every field, every value
    assert set(written) == set(
        load_spec(tmp_path / "models" / "orders.yaml", FactorySettings.from_env()).gates.model_dump()
    )


@pytest.mark.parametrize("form", [False, {"enabled": False}])
def test_data_budget_switch_forms(form):
    from model_factory.spec import ModelSpec

    raw = yaml.safe_load((REPO / "include" / "models" / "churn.yaml").read_text())
    raw["evaluation"] = {**raw.get("evaluation", {}), "data_budget": form}
    assert ModelSpec.model_validate(raw).evaluation.data_budget.enabled is False


def test_data_budget_bad_form_names_the_accepted_ones():
    from model_factory.spec import ModelSpec

    raw = yaml.safe_load((REPO / "include" / "models" / "churn.yaml").read_text())
    raw["evaluation"] = {**raw.get("evaluation", {}), "data_budget": "off"}
    with pytest.raises(ValueError, match=r"accepted forms: false, true, or a mapping \{enabled: false\}"):
        ModelSpec.model_validate(raw)
