"""The gateway's standard protocols, called by clients nobody here wrote (issue 21 item 1):
MLflow's own scoring client against /invocations, for a classifier with string classes and a
regressor, through the same routing, checks and prediction log as /v1."""

from __future__ import annotations

import json

import pytest
import requests
import sqlalchemy as sa
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from mlflow.utils.proto_json_utils import dump_input_data
from model_factory.serving import create_app, predlog
from model_factory.settings import FactorySettings
from model_factory_dev import demo_data

from tests.conftest import factory_env, shipped_specs
from tests.unit.pipeline.test_labels import SPECIES, flowers, ingest_validate, spec_file
from tests.unit.pipeline.test_training_evaluation import DAY, _retrain, _validated, spec_for
from tests.unit.serving.test_gateway import gateway_settings, uvicorn_server

DEMAND = spec_for("demand")
FLOWER_FEATURES = ["petal", "sepal", "site"]


@pytest.fixture(scope="module")
def protocol_registry(tmp_path_factory):
    """flowers v1 (classes setosa/versicolor/virginica) and demand v1 (regression) as champions."""
    home = tmp_path_factory.mktemp("protocols") / "factory"
    specs = shipped_specs(home.parent / "specs", "demand")
    with factory_env(home, FACTORY_SPECS_DIR=str(specs)) as settings:
        spec = spec_file(specs, "flowers")
        validated = ingest_validate(spec, flowers(DAY, rows=600), DAY, settings)
        _retrain(spec, settings, DAY, [validated["validated_uri"]])
        _retrain(DEMAND, settings, DAY, [_validated(settings, "demand", DAY)])
        yield settings


def serve_one(settings: FactorySettings, tmp_path, model: str):
    """A gateway serving one model, as ``mlflow models serve`` does (root /invocations)."""
    return uvicorn_server(create_app(gateway_settings(settings, tmp_path, models=(model,))))


def test_mlflow_scoring_client_gets_string_classes_and_values(protocol_registry, tmp_path):
    frame = flowers(DAY.replace(day=DAY.day + 1), rows=20)
    frame.loc[0, "petal"] = float("nan")  # missing: MLflow's client writes NaN, the gateway reads null
    with serve_one(protocol_registry, tmp_path / "flowers", "flowers") as base:
        host, port = base.removeprefix("http://").split(":")
        client = ScoringServerClient(host, port)
        client.wait_server_ready(timeout=60)
        assert client.get_version()  # MLflow's version, as its server answers
        answer = client.invoke(frame[FLOWER_FEATURES])  # dataframe_split, as the client sends it
        labels = list(answer.get_predictions().iloc[:, 0])
        assert len(labels) == 20 and set(labels) <= set(SPECIES)
        assert sum(label == truth for label, truth in zip(labels, frame["species"], strict=True)) >= 14
        # The other three input formats give the same answers.
        records = json.loads(frame[FLOWER_FEATURES].to_json(orient="records"))
        for body in (
            {"dataframe_records": records},
            {"instances": records},
            {"inputs": {k: [r[k] for r in records] for k in FLOWER_FEATURES}},
        ):
            same = requests.post(f"{base}/invocations", json=body, timeout=60)
            assert same.status_code == 200 and same.json()["predictions"] == labels, same.text
        # Logged like /v1 traffic, with the gateway's ids (feedback works with them).
        ids = requests.post(f"{base}/invocations", json={"dataframe_records": records[:1]}, timeout=60).json()
        outcome = {"request_id": ids["request_ids"][0], "outcome": frame["species"][0]}
        feedback = requests.post(f"{base}/v1/feedback", json=outcome, timeout=60)
        assert feedback.status_code == 200, feedback.text

    with serve_one(protocol_registry, tmp_path / "demand", "demand") as base:
        host, port = base.removeprefix("http://").split(":")
        rows = demo_data.generate_batch("demand", DAY, rows=10)[DEMAND.features.all]
        values = ScoringServerClient(host, port).invoke(rows).get_predictions()
        assert len(values) == 10 and all(isinstance(v, float) for v in values.iloc[:, 0])
        per_model = requests.post(
            f"{base}/models/demand/invocations",
            data=dump_input_data(rows),
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        assert per_model.json()["predictions"] == pytest.approx(list(values.iloc[:, 0]))
    engine = predlog.engine_for(f"sqlite:///{tmp_path / 'demand' / 'predictions.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(predlog.PREDICTIONS)).scalar_one() == 20


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        ({"dataframe_split": {"columns": ["petal"], "data": [[1, 2]]}}, "application/json", 400, "rows of 1"),
        ({"instances": [[1.0, 2.0, "north"]]}, "application/json", 400, "does not say which feature"),
        (
            {"dataframe_records": [{"petal": "wide", "sepal": 1, "site": "north"}]},
            "application/json",
            400,
            "expected a number",
        ),
        ({"dataframe_records": [], "inputs": []}, "application/json", 400, "exactly one of"),
        ({"dataframe_records": [{"petal": 1}], "params": {"k": 1}}, "application/json", 400, "params"),
        ("petal,sepal,site\n1,2,north\n", "text/csv", 415, "application/json"),
        ("{not json", "application/json", 400, "malformed JSON"),
    ],
)
def test_wrong_shapes_get_mlflows_error_format_not_a_500(
    protocol_registry, tmp_path, body, content_type, status, words
):
    from fastapi.testclient import TestClient

    data = body if isinstance(body, str) else json.dumps(body)
    app = create_app(gateway_settings(protocol_registry, tmp_path, models=("flowers",)))
    with TestClient(app) as client:
        answer = client.post("/invocations", content=data, headers={"Content-Type": content_type})
        assert answer.status_code == status, answer.text
        assert answer.json()["error_code"] == "BAD_REQUEST" and words in answer.json()["message"]
        unknown = client.post("/models/nope/invocations", json={"dataframe_records": [{}]})
        assert unknown.status_code == 404 and unknown.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_invocations_on_a_gateway_of_several_models_names_the_per_model_path(protocol_registry, tmp_path):
    from fastapi.testclient import TestClient

    with TestClient(create_app(gateway_settings(protocol_registry, tmp_path))) as client:
        answer = client.post("/invocations", json={"dataframe_records": [{"petal": 1.0}]})
        assert answer.status_code == 404 and "/models/{model}/invocations" in answer.json()["message"]
        assert client.get("/models/flowers/ping").status_code == 200


# --- Open Inference Protocol v2, called by tritonclient ---------------------------------------------

TRITON_CLIENT = r"""
import json, sys
import numpy as np
import tritonclient.http as httpclient

url, model, rows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = httpclient.InferenceServerClient(url=url)
meta = client.get_model_metadata(model)
dtypes = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_,
          "BYTES": np.object_}
inputs = []
for spec in meta["inputs"]:
    values = np.array([row[spec["name"]] for row in rows], dtype=dtypes[spec["datatype"]])
    tensor = httpclient.InferInput(spec["name"], list(values.shape), spec["datatype"])
    tensor.set_data_from_numpy(values, binary_data=False)
    inputs.append(tensor)
outputs = [httpclient.InferRequestedOutput(n, binary_data=False) for n in ("predict", "request_id")]
result = client.infer(model, inputs, outputs=outputs, request_id="caller-1")
def plain(a):
    return [x.decode() if isinstance(x, bytes) else x.item() if hasattr(x, "item") else x for x in a.tolist()]
print(json.dumps({
    "live": client.is_server_live(), "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready(model), "meta": meta,
    "predict": plain(result.as_numpy("predict")), "request_id": plain(result.as_numpy("request_id")),
    "response": result.get_response(),
}))
"""


@pytest.fixture(scope="module")
def triton_python(tmp_path_factory):
    """A venv with tritonclient[http] from PyPI (test-only, never the runtime set), cached."""
    import os
    import subprocess
    import sys
    import venv
    from pathlib import Path

    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    cache = cache_home / "model-factory-tests" / "tritonclient"
    python = cache / "bin" / "python"
    if not (cache / ".installed").exists():
        venv.create(cache, with_pip=True, clear=True)
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "tritonclient[http]"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if pip.returncode != 0:
            pytest.skip(f"cannot install tritonclient[http] from PyPI: {pip.stderr.strip()[-500:]}")
        (cache / ".installed").write_text(sys.version)
    return str(python)


def triton(python: str, base: str, model: str, rows: list[dict]) -> dict:
    import subprocess

    url = base.removeprefix("http://")
    done = subprocess.run(
        [python, "-c", TRITON_CLIENT, url, model, json.dumps(rows)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_tritonclient_gets_string_classes_and_values_over_v2(protocol_registry, tmp_path, triton_python):
    frame = flowers(DAY.replace(day=DAY.day + 1), rows=12)
    rows = json.loads(frame[FLOWER_FEATURES].to_json(orient="records"))
    demand_rows = demo_data.generate_batch("demand", DAY, rows=8)[DEMAND.features.all]
    demand = json.loads(demand_rows.to_json(orient="records"))
    app = create_app(gateway_settings(protocol_registry, tmp_path))
    with uvicorn_server(app) as base:
        classes = triton(triton_python, base, "flowers", rows)
        values = triton(triton_python, base, "demand", demand)
        v1 = requests.post(f"{base}/v1/models/demand/predict", json={"instances": demand}, timeout=60).json()
        feedback = {"request_id": classes["request_id"][0], "outcome": frame["species"][0]}
        assert requests.post(f"{base}/v1/feedback", json=feedback, timeout=60).status_code == 200
    assert classes["live"] and classes["ready"] and classes["model_ready"]
    assert [i["name"] for i in classes["meta"]["inputs"]] == FLOWER_FEATURES
    assert len(classes["predict"]) == 12 and set(classes["predict"]) <= set(SPECIES)
    assert sum(p == t for p, t in zip(classes["predict"], frame["species"], strict=True)) >= 8
    assert classes["response"]["id"] == "caller-1" and len(set(classes["request_id"])) == 12
    assert values["predict"] == pytest.approx([p["prediction"] for p in v1["predictions"]])


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"inputs": [{"name": "petal", "shape": [2], "datatype": "FP64", "data": [1]}]}, 400, "must hold 2"),
        ({"inputs": [{"name": "petal", "shape": [1], "datatype": "FP64", "data": ["wide"]}]}, 400, "numbers"),
        ({"inputs": [{"name": "site", "shape": [1], "datatype": "BYTES", "data": [3]}]}, 400, "strings"),
        (
            {"inputs": [{"name": "petal", "shape": [1, 3], "datatype": "FP64", "data": [[1, 2, 3]]}]},
            400,
            "one feature per input",
        ),
        ({"inputs": [{"name": "petal", "shape": [1], "datatype": "FP64", "data": [1.0]}]}, 400, "missing"),
        ({"inputs": []}, 400, "non-empty list"),
        ({"inputs": [{"name": "petal", "shape": [1], "datatype": "TEXT", "data": [1]}]}, 400, "datatype"),
    ],
)
def test_wrong_tensors_get_the_protocols_error_not_a_500(protocol_registry, tmp_path, body, status, words):
    from fastapi.testclient import TestClient

    with TestClient(create_app(gateway_settings(protocol_registry, tmp_path))) as client:
        answer = client.post("/v2/models/flowers/infer", json=body)
        assert answer.status_code == status, answer.text
        assert set(answer.json()) == {"error"} and words in answer.json()["error"]
        assert client.post("/v2/models/nope/infer", json=body).status_code == 404
