"""Tests for model specs (model_factory.spec) and the ``validate-specs`` CLI command."""

from __future__ import annotations

import copy
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from model_factory.cli.main import main
from model_factory.settings import FactorySettings
from model_factory.spec import (
    ESTIMATORS,
    METRICS,
    LoadedSpec,
    ModelSpec,
    SpecError,
    load_spec,
    load_specs,
)
from pydantic import ValidationError

MODELS_DIR = Path(__file__).resolve().parents[3] / "include" / "models"
# Params the factory sets itself (seed from split.seed, categorical handling from features...);
# a spec may never set them, and they are the only get_params() keys left off the allow-lists.
FACTORY_CONTROLLED = {"random_state", "categorical_features", "verbose", "warm_start", "init"}
DELETE = object()


@pytest.fixture(scope="module")
def churn_raw() -> dict[str, Any]:
    return yaml.safe_load((MODELS_DIR / "churn.yaml").read_text())


@pytest.fixture(scope="module")
def demand_raw() -> dict[str, Any]:
    return yaml.safe_load((MODELS_DIR / "demand.yaml").read_text())


def write_spec(folder: Path, raw: Any, name: str = "churn") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def mutated(raw: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of raw with dotted paths set (or removed with DELETE)."""
    out = copy.deepcopy(raw)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return out


def load_error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(path, FactorySettings.from_env())
    err = info.value
    assert err.path == str(path)
    assert str(err).startswith(f"invalid model spec {path}:")
    return err


# --- the shipped specs ---------------------------------------------------------------


# What each shipped spec parses to, field by dotted path (a mapping's key is a step too).
SHIPPED = {
    "churn": {
        "name": "churn",
        "task": "classification",
        "target": "churned",
        "source.uri": "${FACTORY_DATA_ROOT}/churn/{ds}.csv",
        "source.format": "csv",
        "estimator.class_": "LogisticRegression",
        "estimator.params": {"C": 1.0, "max_iter": 1000},
        "features.all": [
            "tenure_months",
            "monthly_charges",
            "support_calls",
            "usage_gb",
            "age",
            "plan",
            "region",
            "payment_method",
        ],
        "split.strategy": "time",
        "split.time_column": "event_time",
        "validation.ranges.age.min": 18,
        "validation.ranges.age.max": 100,
        "validation.max_null_fraction": 0.02,
        "gates.primary_metric": "roc_auc",
        "higher_is_better": True,
        "registered_model_name": "churn",
    },
    "demand": {
        "name": "demand",
        "task": "regression",
        "target": "units_sold",
        "estimator.class_": "HistGradientBoostingRegressor",
        "split.strategy": "random",
        "split.time_column": None,
        # Fields the file leaves out take their documented defaults.
        "training.window_batches": 3,
        "validation.max_null_fraction": 0.05,
        "validation.min_rows": 1,
        "validation.ranges.price.max": None,
        "source.on_missing": "skip",
        "retries": 2,
        "gates.primary_metric": "rmse",
        "higher_is_better": False,
    },
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_spec_parses(name: str) -> None:
    spec = load_spec(MODELS_DIR / f"{name}.yaml", FactorySettings.from_env())
    for path, expected in SHIPPED[name].items():
        value: Any = spec
        for step in path.split("."):
            value = value[step] if isinstance(value, dict) else getattr(value, step)
        if expected is None or isinstance(expected, bool):
            assert value is expected, (path, value)
        assert value == expected, (path, value)


def test_load_specs_on_shipped_folder_gives_all_good_zero_bad() -> None:
    good, bad = load_specs(MODELS_DIR, FactorySettings.from_env())
    assert bad == []
    names = [loaded.spec.name for loaded in good]
    assert {"churn", "demand"} <= set(names) and names == sorted(names)
    assert all(isinstance(loaded, LoadedSpec) for loaded in good)
    assert [loaded.path for loaded in good] == [MODELS_DIR / f"{name}.yaml" for name in names]


def test_specs_are_frozen() -> None:
    spec = load_spec(MODELS_DIR / "churn.yaml", FactorySettings.from_env())
    with pytest.raises(ValidationError, match="frozen"):
        spec.target = "other"  # type: ignore[misc]


# --- bad specs: every error names the file, the field and the reason -------------------

BAD_FIELDS = [
    pytest.param({"ownr": "growth"}, "ownr", ["ownr: unknown field"], id="unknown-top-level-field"),
    pytest.param(
        {"source.fromat": "csv"}, "source.fromat", ["source.fromat: unknown field"], id="unknown-nested-field"
    ),
    pytest.param(
        {"estimator.class": "XGBClassifier"},
        "estimator",
        ["estimator: estimator 'XGBClassifier' is not allowed; choose one of ["]
        + [f"'{name}'" for name in ESTIMATORS],
        id="unknown-estimator-class",
    ),
    pytest.param(
        {"estimator.params.fit_bias": True},
        "estimator",
        ["estimator: unknown params ['fit_bias'] for LogisticRegression", "allowed: ['C',"],
        id="unknown-estimator-param",
    ),
    pytest.param(
        {"estimator.params.random_state": 3},
        "estimator",
        ["unknown params ['random_state'] for LogisticRegression"],
        id="factory-controlled-param",
    ),
    pytest.param(
        {"estimator.class": "Ridge", "estimator.params": {"alpha": 1.0}},
        "(top level)",
        ["estimator Ridge is for regression, task is classification"],
        id="estimator-for-wrong-task",
    ),
    pytest.param(
        {"gates.primary_metric": "rmse"},
        "(top level)",
        ["gates.primary_metric rmse is a regression metric"],
        id="metric-for-wrong-task",
    ),
    pytest.param(
        {"gates.primary_metric": "auc"},
        "gates.primary_metric",
        ["gates.primary_metric: unknown metric 'auc'; choose one of ["] + [f"'{name}'" for name in METRICS],
        id="unknown-metric",
    ),
    pytest.param(
        {"source.uri": "file:///data/churn/latest.csv"},
        "source.uri",
        ["source.uri: must contain {ds} or {ds_nodash}"],
        id="uri-without-ds",
    ),
    pytest.param(
        {"source.uri": "http://example.com/churn/{ds}.csv"},
        "source.uri",
        ["source.uri: must start with file:// or s3://", "'http://example.com/churn/{ds}.csv'"],
        id="uri-http-scheme",
    ),
    pytest.param(
        {"source.format": "xlsx"},
        "source.format",
        ["source.format: Input should be 'csv' or 'parquet'"],
        id="unknown-format",
    ),
    pytest.param(
        {"name": "churn_v2"}, "name", ["name: must match the file name 'churn'"], id="name-not-file-stem"
    ),
    pytest.param(
        {"features.numeric": ["tenure_months", "age", "churned"]},
        "(top level)",
        ["target 'churned' is also listed as a feature"],
        id="target-is-a-feature",
    ),
    pytest.param(
        {"features.categorical": ["plan", "region", "payment_method", "plan"]},
        "features",
        ["features: features listed more than once: ['plan']"],
        id="duplicate-feature",
    ),
    pytest.param(
        {"features": {"numeric": [], "categorical": []}},
        "features",
        ["features: at least one numeric or categorical feature is required"],
        id="no-features",
    ),
    pytest.param(
        {"validation.ranges.plan": {"min": 0, "max": 3}},
        "(top level)",
        ["validation.ranges given for non-numeric features: ['plan']"],
        id="range-on-categorical-column",
    ),
    pytest.param(
        {"validation.ranges.height": {"min": 0}},
        "(top level)",
        ["validation.ranges names columns that are not features: ['height']"],
        id="range-on-unknown-column",
    ),
    pytest.param(
        {"validation.categories.colour": ["red"]},
        "(top level)",
        ["validation.categories names columns that are not features: ['colour']"],
        id="categories-on-unknown-column",
    ),
    pytest.param(
        {"validation.max_null_fraction": 1.5},
        "validation.max_null_fraction",
        ["validation.max_null_fraction: Input should be less than or equal to 1"],
        id="null-fraction-above-one",
    ),
    pytest.param(
        {"split.time_column": DELETE},
        "split",
        ["split: strategy 'time' needs time_column"],
        id="time-split-without-time-column",
    ),
    pytest.param({"owner": DELETE}, "owner", ["owner: Field required"], id="missing-required-field"),
]


@pytest.mark.parametrize(("changes", "field", "fragments"), BAD_FIELDS)
def test_bad_spec_names_file_field_and_reason(
    tmp_path: Path, churn_raw: dict, changes: dict, field: str, fragments: list[str]
) -> None:
    path = write_spec(tmp_path, mutated(churn_raw, changes))
    err = load_error(path)
    message = str(err)
    assert field in [f for f, _ in err.problems], err.problems
    for fragment in fragments:
        assert fragment in message
    # The field names in the message, not only in .problems.
    assert all(part in message for part in field.split("."))


def test_several_problems_are_all_reported(tmp_path: Path, churn_raw: dict) -> None:
    raw = mutated(churn_raw, {"ownr": "x", "tags.tier": 1, "retries": 99})
    err = load_error(write_spec(tmp_path, raw))
    fields = [f for f, _ in err.problems]
    assert "ownr" in fields
    assert "tags.tier" in fields
    assert "retries" in fields
    assert "retries: Input should be less than or equal to 10" in str(err)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "churn.yaml"
    path.write_text("name: churn\nowner: growth\nfeatures: [plan, region\ntask: classification\n")
    err = load_error(path)
    assert len(err.problems) == 1
    assert "malformed YAML: line 4, column" in str(err)
    assert isinstance(err.__cause__, yaml.YAMLError)


@pytest.mark.parametrize(
    "text", ["- churn\n- demand\n", "just a string\n", "42\n", ""], ids=["list", "str", "int", "empty"]
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "churn.yaml"
    path.write_text(text)
    err = load_error(path)
    assert err.problems == [("", "top level must be a mapping of fields")]
    assert "top level must be a mapping of fields" in str(err)


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    err = load_error(path)
    assert "cannot read file: No such file or directory" in str(err)


def test_name_must_match_pattern(tmp_path: Path, churn_raw: dict) -> None:
    path = write_spec(tmp_path, mutated(churn_raw, {"name": "Churn"}), name="Churn")
    err = load_error(path)
    assert err.problems[0][0] == "name"
    assert "String should match pattern" in str(err)


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


@pytest.mark.parametrize(
    "uri",
    [
        "file:///data/churn/{ds_nodash}.csv",
        "s3://bucket/churn/{ds}.csv",
        "${FACTORY_DATA_ROOT}/churn/dt={ds}/part.parquet",
    ],
)
def test_accepted_source_uris(tmp_path: Path, churn_raw: dict, uri: str) -> None:
    spec = load_spec(
        write_spec(tmp_path, mutated(churn_raw, {"source.uri": uri})), FactorySettings.from_env()
    )
    assert spec.source.uri == uri


def test_every_estimator_class_is_accepted_for_its_task(
    tmp_path: Path, churn_raw: dict, demand_raw: dict
) -> None:
    metric_for = {"classification": "roc_auc", "regression": "rmse"}
    for name, info in ESTIMATORS.items():
        raw = churn_raw if info["task"] == "classification" else demand_raw
        stem = "churn" if raw is churn_raw else "demand"
        changes = {
            "estimator": {"class": name, "params": {}},
            "gates.primary_metric": metric_for[info["task"]],
        }
        spec = load_spec(
            write_spec(tmp_path / name, mutated(raw, changes), name=stem), FactorySettings.from_env()
        )
        assert spec.estimator.class_ == name


# --- load_specs: one bad spec stops no other -----------------------------------------------


def test_load_specs_keeps_good_specs_beside_bad_ones(tmp_path: Path, churn_raw: dict) -> None:
    write_spec(tmp_path, churn_raw, name="churn")
    # Sorts before churn.yaml, so it is read first and must not stop the others.
    (tmp_path / "broken.yaml").write_text("name: broken\nowner: [x\n")
    (tmp_path / "README.md").write_text("not a spec")
    good, bad = load_specs(tmp_path, FactorySettings.from_env())
    assert [loaded.spec.name for loaded in good] == ["churn"]
    assert good[0].path == tmp_path / "churn.yaml"
    assert len(bad) == 1
    assert bad[0].path == str(tmp_path / "broken.yaml")
    assert "malformed YAML" in str(bad[0])


def test_load_specs_one_good_one_bad(tmp_path: Path, churn_raw: dict, demand_raw: dict) -> None:
    write_spec(tmp_path, churn_raw, name="churn")
    write_spec(tmp_path, mutated(demand_raw, {"ownr": "x"}), name="demand")
    good, bad = load_specs(tmp_path, FactorySettings.from_env())
    assert [loaded.spec.name for loaded in good] == ["churn"]
    assert [err.path for err in bad] == [str(tmp_path / "demand.yaml")]
    assert bad[0].problems == [("ownr", "unknown field")]


def test_load_specs_on_empty_folder(tmp_path: Path) -> None:
    assert load_specs(tmp_path, FactorySettings.from_env()) == ([], [])


# --- spec_hash -------------------------------------------------------------------------


def test_spec_hash_is_stable_for_the_same_content(tmp_path: Path, churn_raw: dict) -> None:
    first = load_spec(MODELS_DIR / "churn.yaml", FactorySettings.from_env()).spec_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert load_spec(MODELS_DIR / "churn.yaml", FactorySettings.from_env()).spec_hash() == first
    # Same content, other formatting: no comments, keys in another order, JSON flow style.
    reordered = dict(reversed(list(churn_raw.items())))
    path = tmp_path / "churn.yaml"
    path.write_text(json.dumps(reordered))
    assert load_spec(path, FactorySettings.from_env()).spec_hash() == first
    assert load_spec(MODELS_DIR / "demand.yaml", FactorySettings.from_env()).spec_hash() != first


@pytest.mark.parametrize(
    "changes",
    [
        {"estimator.params.C": 0.5},
        {"estimator.params.class_weight": "balanced"},
        {"gates.threshold": 0.71},
        {"tags.tier": "2"},
        {"split.seed": 8},
    ],
    ids=["param-value", "param-added", "gate", "tag", "seed"],
)
def test_spec_hash_changes_with_content(tmp_path: Path, churn_raw: dict, changes: dict) -> None:
    before = load_spec(write_spec(tmp_path / "a", churn_raw), FactorySettings.from_env()).spec_hash()
    after = load_spec(
        write_spec(tmp_path / "b", mutated(churn_raw, changes)), FactorySettings.from_env()
    ).spec_hash()
    assert after != before


# --- the estimator allow-lists match the installed scikit-learn ------------------------------


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimator_allow_list_matches_installed_sklearn(name: str) -> None:
    from sklearn.base import is_classifier, is_regressor

    info = ESTIMATORS[name]
    cls = getattr(importlib.import_module(info["module"]), name)
    sklearn_params = set(cls().get_params(deep=False))
    allowed = set(info["params"])
    assert len(allowed) == len(info["params"]), f"{name}: duplicate entries in the allow-list"
    assert not (allowed - sklearn_params), (
        f"{name}: allowed params the installed scikit-learn no longer has: {sorted(allowed - sklearn_params)}"
    )
    unlisted = sklearn_params - allowed - FACTORY_CONTROLLED
    assert not unlisted, f"{name}: new scikit-learn params not in the allow-list: {sorted(unlisted)}"
    assert not (allowed & FACTORY_CONTROLLED), f"{name}: a factory-controlled param is user-settable"
    if info["task"] == "classification":
        assert is_classifier(cls())
    else:
        assert is_regressor(cls())


def test_metric_tasks_are_known() -> None:
    assert {m["task"] for m in METRICS.values()} == {"classification", "regression"}
    assert set(ModelSpec.model_fields["task"].annotation.__args__) == {"classification", "regression"}


# --- CLI: validate-specs -----------------------------------------------------------------


def test_cli_validate_specs_good(capsys: pytest.CaptureFixture[str]) -> None:
    path = MODELS_DIR / "churn.yaml"
    assert main(["validate-specs", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok")
    assert str(path) in out
    assert "(churn: classification, LogisticRegression)" in out
    assert err == ""


def test_cli_validate_specs_bad(tmp_path: Path, churn_raw: dict, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, mutated(churn_raw, {"ownr": "growth"}))
    assert main(["validate-specs", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("FAIL")
    assert str(path) in err
    assert "ownr: unknown field" in err


def test_cli_validate_specs_mixed(
    tmp_path: Path, churn_raw: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_spec(tmp_path, mutated(churn_raw, {"gates.primary_metric": "auc"}))
    good = MODELS_DIR / "demand.yaml"
    assert main(["validate-specs", str(bad), str(good)]) == 1
    out, err = capsys.readouterr()
    assert f"ok    {good}" in out
    assert str(bad) in err
    assert "gates.primary_metric: unknown metric 'auc'" in err
    assert str(good) not in err


def test_cli_validate_specs_defaults_to_specs_dir(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(MODELS_DIR))
    assert main(["validate-specs"]) == 0
    out, _ = capsys.readouterr()
    assert str(MODELS_DIR / "churn.yaml") in out
    assert str(MODELS_DIR / "demand.yaml") in out
    assert {line.split()[0] for line in out.splitlines()} == {"ok"}


def test_cli_validate_specs_empty_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(tmp_path))
    assert main(["validate-specs"]) == 1
    _, err = capsys.readouterr()
    assert f"no spec files found in {tmp_path}" in err


def test_the_new_model_template_is_a_valid_spec(tmp_path: Path) -> None:
    template = (MODELS_DIR.parent / "templates" / "model.yaml").read_text()
    path = tmp_path / "my_model.yaml"
    path.write_text(template)
    spec = load_spec(path, FactorySettings.from_env())
    assert spec.name == "my_model" and spec.gates.primary_metric == "roc_auc"


def test_the_templates_optional_sections_are_valid_when_uncommented(tmp_path: Path) -> None:
    """The commented drift/notify/canary examples a data scientist un-comments must parse."""
    template = (MODELS_DIR.parent / "templates" / "model.yaml").read_text()
    head, optional = template.split("# drift:", 1)
    optional, tail = ("# drift:" + optional).split("\ntags:", 1)
    uncommented = "\n".join(
        line.removeprefix("# ") for line in optional.splitlines() if not line.startswith("# Everything")
    )
    path = tmp_path / "my_model.yaml"
    path.write_text(head + uncommented + "\ntags:" + tail)
    spec = load_spec(path, FactorySettings.from_env())
    assert spec.drift.data_uri == "s3://serving-logs/my_model/{ds}.parquet"
    assert spec.notify.webhook_conn_id == "slack_alerts" and spec.canary.min_samples == 500


# --- drift, notify and canary sections -----------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"drift.psi_threshold": 0.3},
        {"canary.ramp": [0.05, 1.0]},
        {"notify.email": ["a@b.c"]},
        {"schedule": "0 3 * * *"},
        {"retries": 1},
    ],
    ids=["drift", "canary", "notify", "schedule", "retries"],
)
def test_operational_sections_do_not_change_the_spec_hash(
    tmp_path: Path, churn_raw: dict, changes: dict
) -> None:
    """Tuning how a model is watched or rolled out must not retrain it (the run key uses the hash)."""
    before = load_spec(write_spec(tmp_path / "a", churn_raw), FactorySettings.from_env()).spec_hash()
    after = load_spec(
        write_spec(tmp_path / "b", mutated(churn_raw, changes)), FactorySettings.from_env()
    ).spec_hash()
    assert after == before


def test_drift_and_canary_defaults(churn_raw: dict, tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, churn_raw), FactorySettings.from_env())
    assert (spec.drift.psi_threshold, spec.drift.drifted_share, spec.drift.min_rows) == (0.2, 0.3, 500)
    assert (spec.drift.contract_k_sigma, spec.drift.contract_mostly) == (2.0, 0.95)
    assert spec.canary.ramp == [0.1, 0.5, 1.0]


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"canary.ramp": [0.5, 0.1]}, "canary.ramp", "increase strictly"),
        ({"canary.ramp": [0.1, 1.5]}, "canary.ramp", "shares in (0, 1]"),
        ({"drift.data_uri": "http://x/{ds}.csv"}, "drift.data_uri", "file:// or s3://"),
        ({"drift.data_uri": "s3://bucket/live.csv"}, "drift.data_uri", "{ds}"),
        ({"drift.psi_threshold": 0}, "drift.psi_threshold", "greater than 0"),
        ({"drift.k_sigma": 2}, "drift.k_sigma", "unknown field"),
    ],
)
def test_bad_drift_and_canary_fields_name_the_field(
    tmp_path: Path, churn_raw: dict, changes: dict, field: str, reason: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path, mutated(churn_raw, changes)), FactorySettings.from_env())
    assert any(f == field and reason in r for f, r in info.value.problems), info.value.problems
