"""custom_training's code loading and tuned_retrain's search, without Airflow: every way the
data scientist's code can be wrong names the file, the field and the reason."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from model_factory.pipeline.custom_code import (
    CODE_PACKAGE,
    CustomCodeError,
    defined_types,
    fit_custom,
    install_code_package,
    load_factory,
)
from model_factory.spec import ModelSpec

from tests.conftest import REPO


def _spec(**changes) -> ModelSpec:
    raw = yaml.safe_load((REPO / "include" / "models" / "churn_custom.yaml").read_text())
    raw.update(changes)
    return ModelSpec.model_validate(raw)


def _data(n: int = 200) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "tenure_months": rng.integers(0, 100, n).astype(float),
            "monthly_charges": rng.uniform(10, 150, n),
            "support_calls": rng.integers(0, 8, n).astype(float),
            "usage_gb": rng.uniform(0, 80, n),
            "age": rng.integers(18, 90, n).astype(float),
            "plan": rng.choice(["basic", "standard", "premium"], n).astype(object),
            "region": rng.choice(["north", "south"], n).astype(object),
            "payment_method": rng.choice(["card", "paypal"], n).astype(object),
        }
    )
    y = pd.Series((X["support_calls"] + rng.normal(0, 1, n) > 3).astype("int64"))
    return X, y


@pytest.fixture
def code(tmp_path):
    folder = tmp_path / "code"
    folder.mkdir()
    yield folder
    for name in [n for n in sys.modules if n == CODE_PACKAGE or n.startswith(CODE_PACKAGE + ".")]:
        del sys.modules[name]


@pytest.mark.parametrize(
    ("source", "factory", "words"),
    [
        (None, "absent:build", ["absent.py", "no such file"]),
        ("import not_a_module_xyz\n", "broken:build", ["importing it raised", "not_a_module_xyz"]),
        ("def other():\n    pass\n", "nofunc:build", ["defines no function 'build'"]),
        (
            "def build():\n    raise RuntimeError('no data')\n",
            "raises:build",
            ["calling it raised", "no data"],
        ),
        ("def build():\n    return {'fit': 1}\n", "dict:build", ["returned dict", "not a scikit-learn"]),
        (
            "from sklearn.svm import LinearSVC\ndef build():\n    return LinearSVC()\n",
            "noproba:build",
            ["predict_proba"],
        ),
    ],
)
def test_bad_code_names_file_field_and_reason(code, source, factory, words):
    module = factory.split(":")[0]
    if source is not None:
        (code / f"{module}.py").write_text(source)
    X, y = _data()
    with pytest.raises(CustomCodeError) as info:
        fit_custom(_spec(estimator={"factory": factory}), X, y, code_dir=code)
    message = str(info.value)
    assert "estimator.factory" in message and f"{module}.py" in message
    for word in words:
        assert word in message, message


def test_the_worked_example_fits_and_trusts_only_its_own_classes(code):
    example = REPO / "include" / "models" / "code" / "churn_features.py"
    (code / "churn_features.py").write_text(example.read_text())
    X, y = _data()
    fitted = fit_custom(_spec(), X, y, code_dir=code)
    assert fitted.trusted_types == ["model_factory_code.churn_features.ChurnRatios"]
    assert len(fitted.tags["factory.code.sha256"]) == 64
    assert fitted.model.predict_proba(X).shape == (len(X), 2)
    _, module, _ = load_factory(_spec(), code)
    assert defined_types(module) == fitted.trusted_types


def test_code_is_only_found_in_the_configured_folder(code, tmp_path):
    (tmp_path / "elsewhere.py").write_text("def build():\n    return None\n")
    install_code_package(code)
    with pytest.raises(CustomCodeError, match="no such file"):
        load_factory(_spec(estimator={"factory": "elsewhere:build"}), code)
    with pytest.raises(ValueError, match="pattern"):  # no dotted import paths at all
        _spec(estimator={"factory": "os.path:join"})


def _tuned(**params) -> ModelSpec:
    raw = yaml.safe_load((REPO / "include" / "models" / "churn_tuned.yaml").read_text())
    raw["template_params"] = {**raw["template_params"], **params}
    return ModelSpec.model_validate(raw)


def test_tuning_runs_each_trial_as_a_nested_run_within_budget(factory_home):
    import mlflow
    from model_factory.io import tracking
    from model_factory.pipeline.tuning import fit_tuned
    from model_factory.settings import FactorySettings

    settings = FactorySettings.from_env()
    client = tracking.connect(settings)
    experiment = tracking.experiment_id(client, settings, "churn_tuned")
    X, y = _data(300)
    from model_factory.pipeline.features import prepare_features

    spec = _tuned(trials=3)
    with mlflow.start_run(experiment_id=experiment) as parent:
        fitted = fit_tuned(spec, prepare_features(X, spec), y)
    trials = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(trials) == 3 == fitted.params["tuning.trials_run"]
    assert fitted.params["tuning.stopped_by"] == "trials"
    assert {"best.C", "best.class_weight"} <= set(fitted.params)

    with mlflow.start_run(experiment_id=experiment):
        fitted = fit_tuned(_tuned(trials=50, max_minutes=1e-9), prepare_features(X, spec), y)
    assert fitted.params["tuning.stopped_by"] == "minutes"
