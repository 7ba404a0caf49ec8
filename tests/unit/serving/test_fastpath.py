"""The serving fast path (model_factory.serving.fastpath) against the scikit-learn pipeline.

For every allow-listed estimator (spec.ESTIMATORS) and every shipped model spec: fit the factory's
pipeline on demo data, compile it, and compare on a holdout of raw rows (as JSON would carry them,
with nulls and unseen categories added): the same predicted classes, probabilities and regression
outputs within ``fastpath.TOLERANCE`` (1e-6). Shapes the fast path does not evaluate fall back to
the pipeline with the reason in the status.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest
from model_factory.pipeline.custom_code import load_factory
from model_factory.pipeline.features import prepare_features
from model_factory.pipeline.training import build_pipeline
from model_factory.serving import fastpath
from model_factory.settings import FactorySettings
from model_factory.spec import ESTIMATORS, ModelSpec, load_spec
from model_factory_dev import demo_data

from tests.conftest import REPO
from tests.unit.serving.test_predlog import row as log_row
from tests.unit.serving.versions import loaded_version

DAY = date(2026, 2, 2)
SMALL_PARAMS = {"n_estimators": 10, "max_iter": 30}


def spec_for(model: str, estimator: str | None = None) -> ModelSpec:
    spec = load_spec(REPO / "include" / "models" / f"{model}.yaml", FactorySettings.from_env())
    if estimator is None:
        return spec
    data = spec.model_dump(by_alias=True)
    params = {k: v for k, v in SMALL_PARAMS.items() if k in ESTIMATORS[estimator]["params"]}
    data["estimator"] = {"class": estimator, "params": params}
    return ModelSpec.model_validate(data)


def raw_rows(df: pd.DataFrame, spec: ModelSpec) -> list[dict]:
    """Rows as a JSON request carries them: plain Python values, null for missing."""
    rows = []
    for record in df[spec.features.all].to_dict("records"):
        rows.append(
            {
                k: None if (isinstance(v, float) and math.isnan(v)) or v is pd.NA else v
                for k, v in record.items()
            }
        )
    return rows


def fitted(spec: ModelSpec, rows: int = 600):
    known = (*demo_data.MODELS, *getattr(demo_data, "EXTRA_MODELS", ()))
    data = next(m for m in known if spec.name.startswith(m))  # churn_tuned: churn's data
    train = demo_data.generate_batch(data, DAY, rows=rows)
    train.loc[:5, spec.features.numeric[0]] = np.nan  # the imputer has work to do
    if spec.estimator.factory:
        function, _, _ = load_factory(spec, REPO / "include" / "models" / "code")
        pipeline = function(**spec.estimator.params)
    else:
        pipeline = build_pipeline(spec)
    pipeline.fit(prepare_features(train, spec), train[spec.target])
    holdout = demo_data.generate_batch(data, date(2026, 2, 3), rows=300).reset_index(drop=True)
    holdout = holdout.astype({c: object for c in spec.features.categorical})
    holdout.loc[0:9, spec.features.numeric[-1]] = np.nan
    holdout.loc[10:19, spec.features.categorical[0]] = None
    holdout.loc[20:29, spec.features.categorical[-1]] = "a-category-never-seen"
    return pipeline, raw_rows(holdout, spec), holdout


def assert_agrees(pipeline, spec: ModelSpec, rows: list[dict], holdout: pd.DataFrame) -> str:
    compiled, status = fastpath.compile_version(pipeline, spec)
    assert compiled is not None, status
    assert status.startswith("compiled")
    X = prepare_features(holdout, spec)
    fast_batch = compiled.predict(rows)
    fast_single = np.vstack([compiled.predict([row]) for row in rows[:40]])
    if spec.task == "classification":
        slow = pipeline.predict_proba(X)
        np.testing.assert_array_equal(pipeline.classes_[fast_batch.argmax(axis=1)], pipeline.predict(X))
    else:
        slow = pipeline.predict(X)
        fast_single = fast_single.reshape(-1)
    np.testing.assert_allclose(fast_batch, slow, rtol=0, atol=fastpath.TOLERANCE)
    np.testing.assert_allclose(fast_single, slow[:40], rtol=0, atol=fastpath.TOLERANCE)
    return status


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_every_allowed_estimator_compiles_and_equals_the_pipeline(estimator: str) -> None:
    model = "churn" if ESTIMATORS[estimator]["task"] == "classification" else "demand"
    spec = spec_for(model, estimator)
    pipeline, rows, holdout = fitted(spec)
    status = assert_agrees(pipeline, spec, rows, holdout)
    linear = estimator in ("LogisticRegression", "LinearRegression", "Ridge", "ElasticNet")
    assert ("evaluated in numpy" in status) == linear, status


@pytest.mark.parametrize("spec_file", sorted(p.stem for p in (REPO / "include" / "models").glob("*.yaml")))
def test_every_shipped_model_compiles_and_equals_the_pipeline(spec_file: str) -> None:
    """Factory-built pipelines compile; a data scientist's own pipeline (custom_training) is
    served by the pipeline, and the status says why."""
    spec = spec_for(spec_file)
    pipeline, rows, holdout = fitted(spec, rows=800)
    if spec.estimator.factory:
        compiled, status = fastpath.compile_version(pipeline, spec)
        assert compiled is None
        assert status == "pipeline (not compiled: Pipeline is not a two-step (preprocess, model) Pipeline)"
    else:
        assert_agrees(pipeline, spec, rows, holdout)


def test_multiclass_logistic_regression_softmax() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=300), "k": rng.choice(["a", "b", "c"], 300).astype(object)})
    y = (X["x"] > 0.5).astype(int) + (X["k"] == "c").astype(int)
    pipe = Pipeline(
        [
            ("p", ColumnTransformer([("n", StandardScaler(), ["x"]), ("c", OneHotEncoder(), ["k"])])),
            ("m", LogisticRegression()),
        ]
    ).fit(X, y)
    compiled = fastpath.compile_pipeline(pipe, ["x"], ["k"])
    rows = X.to_dict("records")
    np.testing.assert_allclose(compiled.predict(rows), pipe.predict_proba(X), atol=1e-9)


def test_shapes_it_does_not_compile_fall_back_with_the_reason() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures

    spec = spec_for("churn")
    train = demo_data.generate_batch("churn", DAY, rows=300)
    X, y = prepare_features(train, spec), train[spec.target]
    custom = Pipeline(
        [
            (
                "preprocess",
                ColumnTransformer(
                    [
                        ("numeric", PolynomialFeatures(), spec.features.numeric),
                        ("categorical", OneHotEncoder(handle_unknown="ignore"), spec.features.categorical),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=50)),
        ]
    ).fit(X, y)
    compiled, status = fastpath.compile_version(custom, spec)
    assert compiled is None
    assert status == "pipeline (not compiled: numeric step PolynomialFeatures is not compiled)"
    compiled, status = fastpath.compile_version(LogisticRegression().fit(np.eye(2), [0, 1]), spec)
    assert compiled is None and "not a two-step" in status


def test_a_compiled_model_that_disagrees_is_not_used(monkeypatch) -> None:
    spec = spec_for("churn")
    pipeline, _, _ = fitted(spec, rows=300)
    real = fastpath.CompiledPredictor.predict
    monkeypatch.setattr(fastpath.CompiledPredictor, "predict", lambda self, rows: real(self, rows) * 0.999)
    compiled, status = fastpath.compile_version(pipeline, spec)
    assert compiled is None and "differ" in status, status


@pytest.mark.parametrize("spec_file", ["churn", "demand", "segment"])
def test_loaded_version_answers_the_same_with_and_without_the_fast_path(spec_file: str) -> None:
    """The gateway's LoadedVersion.predict: compiled and pipeline paths give the same outputs."""
    import time

    from model_factory.serving.models import InputField

    spec = spec_for(spec_file)
    pipeline, rows, _ = fitted(spec, rows=400)
    compiled, status = fastpath.compile_version(pipeline, spec)
    assert compiled is not None, status
    classes = (
        tuple(getattr(c, "item", lambda c=c: c)() for c in pipeline.classes_)
        if spec.task == "classification"
        else None
    )
    slow = loaded_version(
        spec.name,
        estimator=pipeline,
        spec=spec,
        inputs=tuple(InputField(n, "string") for n in spec.features.all),
        classes=classes,
        loaded_at=time.time(),
    )
    fast = replace(slow, fast=compiled, serving_path=status)
    assert fast.describe()["serving_path"].startswith("compiled")
    assert slow.describe()["serving_path"] == "pipeline"
    for got, want in zip(fast.predict(rows[:50]), slow.predict(rows[:50]), strict=True):
        assert got.get("label") == want.get("label")
        assert got["score"] == pytest.approx(want["score"], abs=fastpath.TOLERANCE)
    assert fast.predict(rows[:1])[0].keys() == slow.predict(rows[:1])[0].keys()
    # one row of a linear model in plain floats: exactly what the numpy path made of the same row
    for row in rows[:50]:
        proba = compiled.predict([row])
        if classes is None:
            want = {"value": float(proba[0]), "score": float(proba[0])}
        else:
            best, labels = int(proba[0].argmax()), fast._labels
            want = {
                "label": labels[best],
                "score": float(proba[0][1]) if len(classes) == 2 else float(proba[0][best]),
                "probabilities": {str(c): round(float(p), 6) for c, p in zip(labels, proba[0], strict=True)},
            }
        assert fast.predict([row]) == [want]


def test_prediction_log_never_blocks_and_counts_what_it_cannot_queue(tmp_path) -> None:
    """The request path only enqueues; a full queue refuses rows, counted, and close() flushes."""
    import sqlalchemy as sa
    from model_factory.serving import predlog

    db = f"sqlite:///{tmp_path / 'p.db'}"
    plog = predlog.PredictionLog(db, max_queue=3)

    for i in range(5):  # no writer yet: the queue fills, then refuses without blocking
        plog.log([log_row(i)])
    assert plog.backlog == 3 and plog.overflowed == 2
    assert plog.known_request("r0") and not plog.known_request("r4")
    plog.start()
    plog.close()  # shutdown flushes what was queued
    with plog.engine.connect() as conn:
        ids = sorted(r[0] for r in conn.execute(sa.select(predlog.PREDICTIONS.c.request_id)))
    assert ids == ["r0", "r1", "r2"] and plog.written == 3
