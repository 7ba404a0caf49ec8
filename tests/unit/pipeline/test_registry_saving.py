"""Hardening (issue 10 items 9 and 11): every allow-listed estimator is saved (MLflow, skops with
the types computed from the fitted model), loaded from the registry and predicts; registration
is idempotent on the training key under concurrency; a run killed mid-training is closed on the
retry. Real MLflow on SQLite, real processes for the race."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import date

import mlflow.sklearn
import numpy as np
import pytest
from model_factory.errors import PermanentError, UntrustedModelError
from model_factory.io.tracking import connect, experiment_id
from model_factory.pipeline import registry
from model_factory.pipeline.evaluation import evaluate_candidate
from model_factory.pipeline.features import prepare_features
from model_factory.pipeline.registry import register_version
from model_factory.pipeline.training import (
    build_pipeline,
    run_key,
    train_model,
    trusted_types,
)
from model_factory.pipeline.training_data import read_frames
from model_factory.settings import FactorySettings
from model_factory.spec import ESTIMATORS, ModelSpec
from model_factory_dev import demo_data

from tests.unit.pipeline.test_training_evaluation import spec_for

DAY = date(2026, 2, 2)
SMALL = {"n_estimators": 5, "max_iter": 20}


def validated(settings: FactorySettings, model: str, day: date = DAY, rows: int = 400) -> str:
    from model_factory.io.batches import validated_uri, write_parquet

    df = demo_data.generate_batch(model, day, rows=rows)
    return write_parquet(df, validated_uri(settings.store_uri, model, str(day)))


# --- item 11: every allow-listed estimator round-trips through the registry -------------------


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_every_allowlisted_estimator_is_saved_loaded_from_the_registry_and_predicts(factory_home, estimator):
    task = ESTIMATORS[estimator]["task"]
    model = "churn" if task == "classification" else "demand"
    params = {k: v for k, v in SMALL.items() if k in ESTIMATORS[estimator]["params"]}
    spec = spec_for(
        model,
        **{
            "estimator.class": estimator,
            "estimator.params": params,
            "gates.threshold": 0.0 if task == "classification" else 1e9,
        },
    )
    settings = FactorySettings.from_env()
    trained = train_model(spec, str(DAY), [validated(settings, model)], settings)
    registered = register_version(spec, evaluate_candidate(spec, trained, settings), settings)

    loaded = mlflow.sklearn.load_model(f"models:/{model}/{registered['version']}")
    batch = demo_data.generate_batch(model, date(2026, 2, 3), rows=20)
    predictions = loaded.predict(prepare_features(batch, spec))
    assert len(predictions) == 20
    if task == "regression":
        assert np.isfinite(predictions).all()
    else:
        assert set(predictions) <= {0, 1}


def test_trusted_types_are_the_fitted_models_own_sklearn_types():
    forest_params = {"estimator.class": "RandomForestClassifier", "estimator.params": {"n_estimators": 5}}
    spec = spec_for("churn", **forest_params)
    df = demo_data.generate_batch("churn", DAY, rows=200)
    forest = build_pipeline(spec).fit(prepare_features(df, spec), df["churned"])
    trusted = trusted_types(forest)
    assert "sklearn.tree._tree.Tree" in trusted
    assert all(t.startswith("sklearn.") or t in ("numpy.dtype",) for t in trusted), trusted
    linear = build_pipeline(spec_for("churn")).fit(prepare_features(df, spec), df["churned"])
    assert "sklearn.tree._tree.Tree" not in trusted_types(linear)  # nothing broader than needed


class Foreign:
    """A type outside scikit-learn in a fitted model: not trusted, never saved."""


def test_a_model_holding_a_foreign_type_is_refused_for_good():
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier().fit([[0], [1]], [0, 1])
    model.extra_ = Foreign()
    with pytest.raises(UntrustedModelError, match="Foreign") as info:
        trusted_types(model)
    assert isinstance(info.value, PermanentError)


# --- item 9: one version per training key, even when two runs race ---------------------------


def _same_training_twice(settings: FactorySettings) -> tuple[ModelSpec, dict, dict]:
    """Two finished runs of one training (same model, date, data, spec), as two concurrent
    Airflow runs of the same date leave them: neither saw the other's run finish."""
    spec = spec_for("churn")
    uri = validated(settings, "churn")
    first = train_model(spec, str(DAY), [uri], settings)
    second = train_model(spec, str(DAY), [uri], settings, force=True)
    client = connect(settings)
    key = client.get_run(first["run_id"]).data.tags[registry.REGISTRATION_KEY]
    client.set_tag(second["run_id"], registry.REGISTRATION_KEY, key)
    return spec, evaluate_candidate(spec, first, settings), evaluate_candidate(spec, second, settings)


RACER = """
import json, sys, time
from model_factory.pipeline.registry import register_version
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec

spec_json, evaluated_path, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
spec, evaluated = ModelSpec.model_validate_json(spec_json), json.load(open(evaluated_path))
settings = FactorySettings.from_env()
while time.time() < start:
    time.sleep(0.005)
print(register_version(spec, evaluated, settings)["version"])
"""


def test_two_processes_registering_the_same_training_make_one_version(factory_home, tmp_path):
    import json

    settings = FactorySettings.from_env()
    spec, first, second = _same_training_twice(settings)
    start = time.time() + 8  # both past their imports, then both at once
    procs = []
    for n, evaluated in enumerate((first, second)):
        path = tmp_path / f"evaluated{n}.json"
        path.write_text(json.dumps(evaluated, default=str))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", RACER, spec.model_dump_json(by_alias=True), str(path), str(start)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [proc.communicate(timeout=180) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert {out.strip().splitlines()[-1] for out, _ in outputs} == {"1"}
    assert [str(v.version) for v in connect(settings).search_model_versions("name = 'churn'")] == ["1"]


def test_the_recheck_after_create_removes_a_racing_duplicate(factory_home, monkeypatch):
    """A server-backed registry has no file lock: both runs miss each other's version before
    creating; the re-check keeps the lowest version and the later one deletes its own."""
    settings = FactorySettings.from_env()
    spec, first, second = _same_training_twice(settings)
    assert register_version(spec, first, settings)["version"] == "1"

    real = registry._versions_with_key
    calls = []

    def racing(client, name, key):
        calls.append(key)
        return [] if len(calls) == 1 else real(client, name, key)  # the first look misses v1

    monkeypatch.setattr(registry, "_versions_with_key", racing)
    again = register_version(spec, second, settings)
    assert again["version"] == "1" and again["duplicate"] is True
    client = connect(settings)
    assert [str(v.version) for v in client.search_model_versions("name = 'churn'")] == ["1"]
    assert client.get_run(second["run_id"]).data.tags["factory.duplicate_of_version"] == "1"


def test_forced_retrain_still_registers_a_new_version(factory_home):
    settings = FactorySettings.from_env()
    spec = spec_for("churn")
    uri = validated(settings, "churn")
    first = train_model(spec, str(DAY), [uri], settings)
    assert register_version(spec, evaluate_candidate(spec, first, settings), settings)["version"] == "1"
    forced = train_model(spec, str(DAY), [uri], settings, force=True)
    assert register_version(spec, evaluate_candidate(spec, forced, settings), settings)["version"] == "2"


# --- item 9: a train killed mid-run leaves no RUNNING run after the retry ---------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_training_run_is_marked_killed_by_the_retry(factory_home):
    settings = FactorySettings.from_env()
    spec = spec_for("churn")
    uri = validated(settings, "churn")
    client = connect(settings)
    exp = experiment_id(client, settings, "churn")
    _, inputs = read_frames(
        [uri], chunk_rows=settings.chunk_rows, max_rows=spec.training.max_rows, seed=spec.split.seed
    )
    key = run_key(spec, str(DAY), inputs)
    # what a SIGKILLed worker leaves: a RUNNING run here (process gone), and one from another
    # host that started long ago
    dead = f"{socket.gethostname()}:{_dead_pid()}"
    here = client.create_run(exp, tags={"factory.run_key": key, "factory.worker": dead})
    old_ms = int((time.time() - 30 * 3600) * 1000)
    far = {"factory.run_key": key, "factory.worker": "other-host:1"}
    elsewhere = client.create_run(exp, start_time=old_ms, tags=far)
    alive = client.create_run(exp, tags={"factory.run_key": key, "factory.worker": "other-host:2"})

    trained = train_model(spec, str(DAY), [uri], settings)
    assert client.get_run(trained["run_id"]).info.status == "FINISHED"
    for run in (here, elsewhere):
        closed = client.get_run(run.info.run_id)
        assert closed.info.status == "KILLED"
        assert "closed by a retry" in closed.data.tags["factory.abandoned"]
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"  # may still be working
