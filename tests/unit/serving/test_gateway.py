"""The serving gateway against a real MLflow registry (SQLite) holding real small models.

One registry per module (training is the slow part): churn v1 champion, v2 blessed challenger,
v3 blessed but with broken artifacts; demand v1 champion. Each test resets aliases and canary
tags and gets its own prediction DB.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from model_factory.contracts import Attribution
from model_factory.io.tracking import connect
from model_factory.pipeline import registry
from model_factory.rollout import canary
from model_factory.serving import GatewaySettings, create_app, predlog
from model_factory.serving.models import LoadedVersion
from model_factory.serving.routing import bucket
from model_factory.serving.server import uvicorn_options
from model_factory.settings import FactorySettings
from model_factory.spec import CanarySpec
from model_factory_dev import demo_data
from model_factory_dev.simulator import simulate_traffic

from tests.conftest import REPO, factory_env, shipped_specs
from tests.unit.pipeline.test_training_evaluation import DAY, _retrain, _validated, spec_for

# Starlette's TestClient warns that it will move to httpx2 (not installed); the warning is not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")

CHURN = spec_for("churn", **{"gates.max_regression": 0.5, "gates.too_good_jump": None})
DEMAND = spec_for("demand")


@pytest.fixture(scope="module")
def served_registry(tmp_path_factory):
    """The module's registry; yields the FactorySettings pointing at it."""
    home = tmp_path_factory.mktemp("gateway") / "factory"
    # The gateway reports every model that has a spec: only the two this registry serves.
    specs = shipped_specs(home.parent / "specs", "churn", "demand")
    with factory_env(home, FACTORY_SPECS_DIR=str(specs)) as settings:
        build_registry(settings)
        yield settings


def build_registry(settings: FactorySettings, demand: bool = True) -> None:
    """churn v1 champion, v2 blessed challenger, v3 blessed with missing artifacts; demand v1."""
    _retrain(CHURN, settings, DAY, [_validated(settings, "churn", DAY)])
    later = DAY.replace(day=DAY.day + 1)
    _, _, second = _retrain(CHURN, settings, later, [_validated(settings, "churn", later)])
    assert second["alias"] == "challenger"
    if demand:
        _retrain(DEMAND, settings, DAY, [_validated(settings, "demand", DAY)])
    client = connect(settings)
    # v3: registered and blessed, but its artifacts are gone: it cannot load.
    broken_dir = settings.home / "broken-model"
    broken_dir.mkdir(parents=True)
    run_id = client.get_model_version("churn", "2").run_id
    broken = client.create_model_version("churn", broken_dir.as_uri(), run_id=run_id)
    client.set_model_version_tag("churn", broken.version, "factory.decision", "blessed")
    assert str(broken.version) == "3"


@pytest.fixture
def registry_state(served_registry):
    reset_serving_state(served_registry)
    return served_registry


def reset_serving_state(settings: FactorySettings) -> None:
    """churn's aliases back to champion=v1, challenger=v2; no canary, no pin, no previous
    champion, share 0."""
    client = connect(settings)
    for alias in ("canary", "previous_champion"):
        with contextlib.suppress(Exception):
            client.delete_registered_model_alias("churn", alias)
    client.set_registered_model_alias("churn", "champion", "1")
    client.set_registered_model_alias("churn", "challenger", "2")
    for tag in (canary.PINNED_TAG, canary.VERSION_TAG, canary.STATUS_TAG):
        with contextlib.suppress(Exception):
            client.delete_registered_model_tag("churn", tag)
    client.set_registered_model_tag("churn", canary.SHARE_TAG, "0")


def gateway_settings(factory: FactorySettings, tmp_path, **changes) -> GatewaySettings:
    base = GatewaySettings(factory=factory, db_uri=f"sqlite:///{tmp_path / 'predictions.db'}", refresh_s=3600)
    return replace(base, **changes)


@pytest.fixture
def gateway(registry_state, tmp_path):
    """A TestClient on a fresh app (its lifespan runs: first refresh done, log writer started)."""
    from fastapi.testclient import TestClient

    app = create_app(gateway_settings(registry_state, tmp_path))
    with TestClient(app) as client:
        client.app_state = app.state
        yield client


def churn_rows(n: int, seed: int = 0) -> list[dict]:
    df = demo_data.generate_batch("churn", DAY, rows=n, seed=seed)
    return json_rows(df, CHURN.features.all)


def json_rows(df, columns) -> list[dict]:
    return json.loads(df[columns].to_json(orient="records"))


def predict(client, body: dict, model: str = "churn", **kwargs):
    return client.post(f"/v1/models/{model}/predict", json=body, **kwargs)


# --- requests and answers ----------------------------------------------------------------------


def test_predict_one_and_many_with_probabilities(gateway):
    rows = churn_rows(3)
    one = predict(gateway, {"features": rows[0], "request_id": "r-1", "entity_id": "C1"})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["model"] == "churn" and body["version"] == "1" and body["arm"] == "champion"
    assert body["client_request_id"] == "r-1" and body["prediction"] in (0, 1)
    assert len(body["request_id"]) == 32 and body["request_id"] != "r-1"  # the gateway's own id
    assert math.isclose(sum(body["probabilities"].values()), 1.0, abs_tol=1e-5)

    many = predict(gateway, {"instances": rows, "request_id": "batch"}).json()
    issued = many["request_id"]
    assert [p["request_id"] for p in many["predictions"]] == [f"{issued}:{i}" for i in range(3)]

    regression = predict(
        gateway,
        {"features": json_rows(demo_data.generate_batch("demand", DAY, rows=1), DEMAND.features.all)[0]},
        model="demand",
    )
    assert regression.status_code == 200, regression.text
    assert isinstance(regression.json()["prediction"], float) and "probabilities" not in regression.json()


def test_null_means_missing_and_is_imputed_like_in_training(gateway):
    row = churn_rows(1)[0] | {"age": None, "plan": None}
    assert predict(gateway, {"features": row}).status_code == 200


def test_inputs_are_checked_against_the_signature(gateway):
    row = churn_rows(1)[0]
    bad = {k: v for k, v in row.items() if k != "age"} | {"shoe_size": 44, "plan": 3, "tenure_months": "long"}
    response = predict(gateway, {"features": bad})
    assert response.status_code == 422
    detail = response.json()["detail"]
    problems = detail["problems"]["features"]
    assert problems["missing"] == ["age"]
    assert problems["extra"] == ["shoe_size"]
    assert set(problems["wrong_type"]) == {"plan", "tenure_months"}
    assert "expected a string" in problems["wrong_type"]["plan"]
    assert "expected a number" in problems["wrong_type"]["tenure_months"]
    assert "churn v1" in detail["error"]

    batch = predict(gateway, {"instances": [row, {**row, "usage_gb": True}]})
    assert batch.status_code == 422
    assert list(batch.json()["detail"]["problems"]) == ["instances[1]"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "malformed JSON at line 1 column 2"),
        (b"", "empty request body"),
        (b'{"features": NaN}', "NaN is not valid JSON"),
    ],
)
def test_malformed_json_is_a_clear_400(gateway, body, words):
    response = gateway.post("/v1/models/churn/predict", content=body)
    assert response.status_code == 400
    assert words in response.json()["detail"]


DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE = "9" * 4000
PREDICT = "/v1/models/churn/predict"


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        (PREDICT, DEEP, 400, "nested too deeply"),
        ("/v1/feedback", DEEP, 400, "nested too deeply"),
        (PREDICT, b'{"features": {"features": ' * 3000 + b"1" + b"}" * 6000, 400, "nested"),
        (PREDICT, b'{"features": {"plan": "\\ud800"}}', 400, "lone UTF-16 surrogate"),
        (PREDICT, b'{"features": {}, "entity_id": "\\udfff"}', 400, "lone UTF-16 surrogate"),
        ("/v1/feedback", b'{"request_id": "x", "outcome": "\\ud800"}', 400, "lone UTF-16 surrogate"),
        (PREDICT, b'{"features": {"age": ' + HUGE.encode() + b"}}", 422, "4000-digit integer"),
        (PREDICT, b'{"features": {}, "request_id": ' + HUGE.encode() + b"}", 422, "request_id"),
        (PREDICT, b'{"features": {}, "entity_id": ' + HUGE.encode() + b"}", 422, "entity_id"),
        ("/v1/feedback", b'{"request_id": ' + HUGE.encode() + b', "outcome": 1}', 422, "request_id"),
        (PREDICT, b'{"features": {"age": 1' + b"0" * 5000 + b"}}", 400, "malformed JSON"),
        (PREDICT, b'{"features": {"age": 1e999}}', 422, "finite"),
        (PREDICT, b"\xff\xfe{}", 400, "malformed JSON"),
    ],
)
def test_hostile_bodies_get_a_4xx_with_a_message(gateway, path, body, status, words):
    """Issue 10 item 5: what gave 500s (deep nesting, huge integers, lone surrogates) is a 4xx."""
    response = gateway.post(path, content=body)
    assert response.status_code == status, response.text[:300]
    assert words in json.dumps(response.json()["detail"])


def test_values_the_models_cannot_score_are_a_422_not_a_500(gateway):
    """1e308 passes the signature (a finite double) but overflows inside the pipeline's scaler."""
    row = {**churn_rows(1)[0], "usage_gb": 1e308, "monthly_charges": -1e308}
    response = predict(gateway, {"features": row})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert "cannot score this input" in json.dumps(response.json()["detail"])


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([1, 2], "must be a JSON object"),
        ({"request_id": "x"}, "exactly one of 'features'"),
        ({"features": {}, "instances": []}, "exactly one of 'features'"),
        ({"instances": []}, "non-empty list"),
        ({"features": {}, "colour": "red"}, "unknown top-level fields"),
        ({"features": {}, "request_id": "has space"}, "request_id must be"),
    ],
)
def test_wrong_body_shapes_are_422(gateway, body, words):
    response = predict(gateway, body)
    assert response.status_code == 422
    assert words in json.dumps(response.json()["detail"])


def test_unknown_model_is_404_naming_the_served_ones(gateway):
    response = predict(gateway, {"features": {}}, model="nope")
    assert response.status_code == 404
    assert response.json()["detail"] == "unknown model 'nope'; served models: churn, demand"
    assert gateway.get("/v1/models/nope").status_code == 404


def test_too_large_is_413(registry_state, tmp_path):
    from fastapi.testclient import TestClient

    app = create_app(gateway_settings(registry_state, tmp_path, max_body_bytes=2000, max_instances=5))
    rows = churn_rows(20)
    with TestClient(app) as client:
        big = predict(client, {"instances": rows})
        assert big.status_code == 413 and "2000 byte limit" in big.json()["detail"]

        def chunks():  # no Content-Length: the streamed size is checked too
            yield json.dumps({"instances": rows}).encode()

        streamed = client.post("/v1/models/churn/predict", content=chunks())
        assert streamed.status_code == 413
        many = predict(client, {"instances": rows[:6]})
        assert many.status_code == 413 and "limit is 5" in many.json()["detail"]


def test_feedback_for_known_and_unknown_request_ids(gateway):
    served = predict(gateway, {"features": churn_rows(1)[0], "request_id": "fb-1"})
    assert served.status_code == 200
    rid = served.json()["request_id"]
    ok = gateway.post("/v1/feedback", json={"request_id": rid, "outcome": 1})
    assert ok.status_code == 200 and ok.json() == {"request_id": rid, "recorded": True, "unchanged": False}
    retried = gateway.post("/v1/feedback", json={"request_id": rid, "outcome": 1})  # a retry
    assert retried.status_code == 200 and retried.json()["unchanged"] is True
    again = gateway.post("/v1/feedback", json={"request_id": rid, "outcome": 0})  # never replaces
    assert again.status_code == 409 and "already recorded" in again.json()["detail"]["error"]

    unknown = gateway.post("/v1/feedback", json={"request_id": "never-served", "outcome": 1})
    assert unknown.status_code == 404
    assert unknown.json()["detail"].startswith("no prediction with request_id 'never-served'")
    own = gateway.post("/v1/feedback", json={"request_id": "fb-1", "outcome": 1})  # the caller's id
    assert own.status_code == 404 and "client_request_id" in own.json()["detail"]
    assert gateway.post("/v1/feedback", json={"request_id": "fb-1"}).status_code == 422
    assert gateway.post("/v1/feedback", json={"outcome": 1}).status_code == 422
    assert gateway.post("/v1/feedback", json={"request_id": "fb-1", "outcome": [1]}).status_code == 422

    log = gateway.app_state.prediction_log
    assert log.flush()
    with log.engine.connect() as conn:
        rows = conn.execute(sa.select(predlog.FEEDBACK)).all()
    assert [(r.request_id, json.loads(r.outcome)) for r in rows] == [(rid, 1)]


@pytest.mark.parametrize(
    ("model", "outcome", "words"),
    [
        ("churn", "yes", "'yes' is not one of the model's classes [0, 1]"),
        ("churn", 2, "2 is not one of the model's classes [0, 1]"),
        ("churn", True, "True is not one of the model's classes"),
        ("churn", None, "outcome must be a number, string or boolean"),
        ("churn", int("9" * 4000), "4000-digit integer"),
        ("demand", "12.5", "a regression model's outcome is a number, got str"),
        ("demand", True, "a regression model's outcome is a number, got bool"),
    ],
)
def test_feedback_is_checked_against_the_model_task(gateway, model, outcome, words):
    """Issue 10 item 4: a "yes" or a 2 on a binary model is a 422 naming the field, not a value
    that later breaks the canary analysis."""
    spec = CHURN if model == "churn" else DEMAND
    frame = demo_data.generate_batch(model, DAY, rows=1)
    served = predict(gateway, {"features": json_rows(frame, spec.features.all)[0]}, model=model).json()
    answer = gateway.post("/v1/feedback", json={"request_id": served["request_id"], "outcome": outcome})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]["field"] == "outcome"
    assert words in answer.json()["detail"]["error"]
    fine = 0 if model == "churn" else 12.5
    good = gateway.post("/v1/feedback", json={"request_id": served["request_id"], "outcome": fine})
    assert good.status_code == 200


def test_request_ids_are_the_gateways_so_feedback_names_one_prediction(gateway, registry_state):
    """Issue 18 finding 4: two callers (and two models) reusing one request id. Before, feedback
    for "dup" attached to all three predictions, the first answerer took it (the rightful caller
    got 409) and the canary data counted the outcome once per prediction."""
    canary.start_canary("churn", "2", 0.5, registry_state, Attribution("test", "ids"))
    gateway.app_state.watcher.refresh()
    demand_row = json_rows(demo_data.generate_batch("demand", DAY, rows=1), DEMAND.features.all)[0]
    rows = churn_rows(2)
    alice = predict(gateway, {"features": rows[0], "request_id": "dup", "entity_id": "alice"}).json()
    mallory = predict(gateway, {"features": rows[1], "request_id": "dup", "entity_id": "mallory"}).json()
    other = predict(gateway, {"features": demand_row, "request_id": "dup"}, model="demand").json()
    issued = {alice["request_id"], mallory["request_id"], other["request_id"]}
    assert len(issued) == 3 and "dup" not in issued
    assert alice["client_request_id"] == mallory["client_request_id"] == other["client_request_id"] == "dup"

    # Mallory answers first, with her own outcome: it lands on her prediction only.
    first = gateway.post("/v1/feedback", json={"request_id": mallory["request_id"], "outcome": 0})
    assert first.status_code == 200 and first.json()["unchanged"] is False
    rightful = gateway.post("/v1/feedback", json={"request_id": alice["request_id"], "outcome": 1})
    assert rightful.status_code == 200 and rightful.json()["unchanged"] is False  # was 409
    assert gateway.post("/v1/feedback", json={"request_id": "dup", "outcome": 1}).status_code == 404

    log = gateway.app_state.prediction_log
    assert log.flush()
    started = canary.read_serving_state("churn", registry_state).started_at
    arms = canary.arm_outcomes(log.engine, "churn", started)
    assert sum(arm.labelled for arm in arms.values()) == 2  # each outcome counted once
    outcomes = sorted(o for arm in arms.values() for o in arm.outcomes)
    assert outcomes == [0.0, 1.0]
    with log.engine.connect() as conn:
        joined = conn.execute(
            sa.select(predlog.PREDICTIONS.c.model).select_from(
                predlog.PREDICTIONS.join(
                    predlog.FEEDBACK, predlog.FEEDBACK.c.request_id == predlog.PREDICTIONS.c.request_id
                )
            )
        ).all()
    assert sorted(m for (m,) in joined) == ["churn", "churn"]  # the demand prediction has none


def test_every_prediction_is_logged(gateway):
    rows = churn_rows(2)
    one = predict(gateway, {"features": rows[0], "request_id": "log-1", "entity_id": "C42"}).json()
    two = predict(gateway, {"instances": rows, "request_id": "log-2"}).json()
    log = gateway.app_state.prediction_log
    assert log.flush()
    with log.engine.connect() as conn:
        logged = conn.execute(sa.select(predlog.PREDICTIONS).order_by(predlog.PREDICTIONS.c.id)).all()
    issued = [one["request_id"], *(p["request_id"] for p in two["predictions"])]
    assert [r.request_id for r in logged] == issued
    assert [r.client_request_id for r in logged] == ["log-1", "log-2:0", "log-2:1"]
    first = logged[0]
    assert (first.model, first.version, first.arm, first.status) == ("churn", "1", "champion", "ok")
    assert first.latency_ms > 0 and 0.0 <= first.score <= 1.0
    assert json.loads(first.prediction)["label"] in (0, 1)
    assert isinstance(first.created_at, type(predlog.utcnow()))
    # Personal data stays out by default: no inputs, entity ids and inputs as salted hashes only.
    assert first.inputs is None and len(first.inputs_hash) == 64
    assert first.entity_id != "C42" and len(first.entity_id) == 64
    assert first.inputs_hash != hashlib.sha256(json.dumps(rows[0], sort_keys=True).encode()).hexdigest()


def test_input_logging_is_opt_in_and_old_rows_are_deleted(registry_state, tmp_path):
    """Issue 10 item 8: raw inputs and entity ids only when asked for; a retention policy."""
    from fastapi.testclient import TestClient

    settings = gateway_settings(
        registry_state, tmp_path, log_inputs=True, log_entity_ids=True, hash_salt="pepper", retention_days=7
    )
    row = churn_rows(1)[0]
    with TestClient(create_app(settings)) as client:
        kept = predict(client, {"features": row, "request_id": "keep", "entity_id": "C42"})
        keep = kept.json()["request_id"]
        old = predict(client, {"features": row, "request_id": "old"}).json()["request_id"]
        assert client.post("/v1/feedback", json={"request_id": old, "outcome": 1}).status_code == 200
        log = client.app.state.prediction_log
        assert log.flush()
    engine = predlog.engine_for(settings.db_uri)
    with engine.begin() as conn:
        p, f = predlog.PREDICTIONS, predlog.FEEDBACK
        first = conn.execute(sa.select(p).where(p.c.request_id == keep)).one()
        assert first.entity_id == "C42" and json.loads(first.inputs) == row
        past = predlog.utcnow() - timedelta(days=8)
        conn.execute(p.update().where(p.c.request_id == old).values(created_at=past))
        conn.execute(f.update().where(f.c.request_id == old).values(received_at=past))
    assert predlog.purge(engine, settings.retention_days) == {
        "predictions": 1,
        "feedback": 1,
        "shadow_predictions": 0,
    }
    with engine.connect() as conn:
        assert [r.request_id for r in conn.execute(sa.select(predlog.PREDICTIONS))] == [keep]


def _counted(real, calls: list, *args):
    calls.append(1)
    return real(*args)


def test_the_direct_predict_route_answers_as_the_full_stack(registry_state, tmp_path):
    """GatewayApp hands a predict request to its route before Starlette's middleware and router:
    every answer (a prediction, each refusal, the API key's) is the one the full stack gives."""
    from fastapi.testclient import TestClient

    row = churn_rows(1)[0]
    ok = json.dumps({"features": row, "request_id": "r-1"})
    key = {"X-API-Key": "k"}
    cases = [
        ("churn", ok, key),
        ("churn", ok, {}),
        ("churn", ok, {"X-API-Key": "guess"}),
        ("ghost", ok, key),
        ("churn", '{"features": ', key),
        ("churn", "", key),
        ("churn", "[1, 2]", key),
        ("churn", json.dumps({"features": row, "extra": 1}), key),
        ("churn", json.dumps({"features": {**row, "tenure_months": "long"}}), key),
        ("churn", json.dumps({"instances": [row] * 6}), key),
        ("churn", json.dumps({"features": row, "pad": "x" * 3000}), key),
        ("churn", '{"features": {"age": NaN}}', key),
    ]
    answers = {}
    for direct in (True, False):
        settings = gateway_settings(registry_state, tmp_path / str(direct), api_key="k", max_body_bytes=2000)
        app = create_app(replace(settings, max_instances=5))
        taken = []
        if direct:
            app._direct = functools.partial(_counted, app._direct, taken)
        else:
            app.direct_routes = ()  # the full stack: middleware, router, the same route
        with TestClient(app) as client:
            got = []
            for model, content, headers in cases:
                answer = client.post(
                    f"/v1/models/{model}/predict",
                    content=content,
                    headers={"content-type": "application/json", **headers},
                )
                body = answer.json()
                if isinstance(body, dict):
                    body.pop("request_id", None)
                got.append(
                    (answer.status_code, {k: v for k, v in answer.headers.items() if k != "date"}, body)
                )
            answers[direct] = got
        # every case with the key went the direct way; the refused keys took the full stack
        assert len(taken) == (len(cases) - 2 if direct else 0)
    assert answers[True] == answers[False]
    assert [status for status, _, _ in answers[True]] == [
        200,
        401,
        401,
        404,
        400,
        400,
        422,
        422,
        422,
        413,
        413,
        400,
    ]
    assert answers[True][0][2]["client_request_id"] == "r-1"


def _http_answers(port: int, raw: bytes, answers: int, then: bytes = b"") -> tuple[list, bool]:
    """The answers (status, headers without date, body) to ``raw`` sent at once on one
    connection, ``then`` sent after the first answer; and whether the server closed it after."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        stream = sock.makefile("rb")
        got = []
        for _ in range(answers):
            status = int(stream.readline().split()[1])
            headers = []
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() != "date":
                    headers.append((name.lower(), value.strip()))
            body = stream.read(int(dict(headers).get("content-length", 0)))
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body.decode("latin-1")
            if isinstance(parsed, dict):  # the gateway's ids are new per request
                parsed.pop("request_id", None)
                for each in parsed.get("predictions", []):
                    each.pop("request_id", None)
            got.append((status, headers, parsed))
            if then:
                sock.sendall(then)
                then = b""
        sock.settimeout(0.3)
        try:
            closed = stream.read(1) == b""
        except TimeoutError:
            closed = False
        return got, closed


def _post(path: str, body: bytes | str, *headers: str, length: bool = True) -> bytes:
    content = body.encode() if isinstance(body, str) else body
    head = [f"POST {path} HTTP/1.1", "Host: gw", "Content-Type: application/json", *headers]
    if length:
        head.append(f"Content-Length: {len(content)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + content


def test_the_predict_lane_answers_as_the_app(registry_state, tmp_path):
    """The HTTP protocol's predict lane (serving/lane.py, server.py) answers what uvicorn's ASGI
    cycle and the app answer: the same status, headers (bar the date) and body for predictions,
    every refusal, the API key's, a body too large or too slow, pipelined and kept-alive
    requests, and the requests it hands to the app (a batch, Expect, chunked, a quoted path)."""
    row = churn_rows(1)[0]
    no_plan = {k: v for k, v in row.items() if k != "plan"}
    ok = json.dumps({"features": row, "request_id": "r-1"})
    key = "X-API-Key: k"
    predict_path = "/v1/models/churn/predict"
    chunked = (
        f"POST {predict_path} HTTP/1.1\r\nHost: gw\r\n{key}\r\nTransfer-Encoding: chunked\r\n\r\n"
        f"{len(ok):x}\r\n{ok}\r\n0\r\n\r\n"
    ).encode()
    cases = [  # (raw request(s), answers expected, sent after the first answer)
        (_post(predict_path, ok, key), 1, b""),
        (_post(predict_path, ok), 1, b""),
        (_post(predict_path, ok, "X-API-Key: guess"), 1, b""),
        (_post(predict_path, ok, "Authorization: Bearer k"), 1, b""),
        (_post("/v1/models/ghost/predict", ok, key), 1, b""),
        (_post(predict_path, '{"features": ', key), 1, b""),
        (_post(predict_path, "", key), 1, b""),
        (_post(predict_path, "[1, 2]", key), 1, b""),
        (_post(predict_path, json.dumps({"request_id": "r-2"}), key), 1, b""),
        (_post(predict_path, json.dumps({"features": row, "extra": 1}), key), 1, b""),
        (_post(predict_path, json.dumps({"features": {**row, "tenure_months": "long"}}), key), 1, b""),
        (_post(predict_path, json.dumps({"features": no_plan}), key), 1, b""),
        (_post(predict_path, json.dumps({"instances": [row] * 6}), key), 1, b""),
        (_post(predict_path, json.dumps({"instances": [row] * 2}), key), 1, b""),
        (_post(predict_path, json.dumps({"features": row, "pad": "x" * 3000}), key), 1, b""),
        (_post(predict_path, '{"features": {"age": NaN}}', key), 1, b""),
        (_post(predict_path, "\ufeff{}".encode(), key), 1, b""),
        (_post(predict_path + "?x=1", ok, key, "Connection: close"), 1, b""),
        (_post("/v1/models/ch%75rn/predict", ok, key), 1, b""),
        (_post(predict_path, ok, key, "Expect: 100-continue"), 2, b""),
        (chunked, 1, b""),
        (_post(predict_path, ok, key, "Content-Length: 3"), 1, b""),
        (_post(predict_path, ok, key).replace(b"HTTP/1.1", b"HTTP/1.0", 1), 1, b""),
        # pipelined: the lane, the app, the lane again, then a batch (the app) and the lane
        (
            _post(predict_path, ok, key)
            + f"GET /health/live HTTP/1.1\r\nHost: gw\r\n{key}\r\n\r\n".encode()
            + _post(predict_path, ok, key)
            + _post(predict_path, json.dumps({"instances": [row] * 2}), key)
            + _post(predict_path, ok, key),
            5,
            b"",
        ),
        # kept alive: a second request after the first answer
        (_post(predict_path, ok, key), 2, _post(predict_path, "{}", key)),
        # half a body: the 408 after the body deadline, and the connection closed
        (_post(predict_path, ok, key)[:-5], 1, b""),
    ]
    answers, taken = {}, {}
    for lane in (True, False):
        settings = gateway_settings(
            registry_state, tmp_path / str(lane), api_key="k", max_body_bytes=2000, body_timeout_s=1.0
        )
        app = create_app(replace(settings, max_instances=5))
        calls: list = []
        if lane:
            app.state.predict_lane.answer = functools.partial(_counted, app.state.predict_lane.answer, calls)
        else:
            app.state.predict_lane = None  # every request through uvicorn's ASGI cycle
        with uvicorn_server(app) as base:
            port = int(base.rsplit(":", 1)[1])
            answers[lane] = [_http_answers(port, raw, n, then) for raw, n, then in cases]
        taken[lane] = len(calls)
    for case, (with_lane, without) in enumerate(zip(answers[True], answers[False], strict=True)):
        assert with_lane == without, (case, with_lane, without)
    statuses = [[status for status, _, _ in got] for got, _ in answers[True]]
    assert statuses == [
        [200], [401], [401], [200], [404], [400], [400], [422], [422], [422], [422], [422], [413],
        [200], [413], [400], [422], [200], [200], [100, 200], [200], [400], [200],
        [200, 200, 200, 200, 200], [200, 422], [408],
    ]  # fmt: skip
    closed = [i for i, (_, closed) in enumerate(answers[True]) if closed]
    assert closed == [17, 21, 22, 25]  # Connection: close, two Content-Lengths, HTTP/1.0, the 408
    # the lane took every plain POST it could (in the pipeline, only the first: the others queue
    # behind the app's answer to the GET), and nothing else
    assert taken == {True: 17, False: 0}
    assert answers[True][0][0][0][2]["client_request_id"] == "r-1"


def test_api_key_is_required_when_set(registry_state, tmp_path):
    from fastapi.testclient import TestClient

    app = create_app(gateway_settings(registry_state, tmp_path, api_key="s3cret"))
    row = churn_rows(1)[0]
    with TestClient(app) as client:
        assert predict(client, {"features": row}).status_code == 401
        wrong = predict(client, {"features": row}, headers={"X-API-Key": "guess"})
        assert wrong.status_code == 401 and "X-API-Key" in wrong.json()["detail"]
        assert predict(client, {"features": row}, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.post("/v1/feedback", json={"request_id": "x", "outcome": 1}).status_code == 401
        assert client.get("/v1/models").status_code == 401
        # Issue 18 finding 8: only the probes are public; /health names models, versions and
        # errors, /docs and /openapi.json the API's shape, /metrics the traffic.
        for path in ("/health/live", "/health/ready"):
            assert client.get(path).status_code == 200 and set(client.get(path).json()) == {"status"}
        for path in ("/health", "/metrics", "/docs", "/openapi.json", "/redoc", "/no-such-page"):
            assert client.get(path).status_code == 401, path
        assert client.get("/health", headers={"X-API-Key": "s3cret"}).status_code == 200
        scrape = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})  # Prometheus' form
        assert scrape.status_code == 200 and "factory_gateway_registry_up" in scrape.text
        assert client.get("/openapi.json", headers={"X-API-Key": "s3cret"}).status_code == 200


def test_metrics_are_prometheus_text(gateway):
    row = churn_rows(1)[0]
    for _ in range(3):
        predict(gateway, {"features": row})
    predict(gateway, {"features": {}})
    text = gateway.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = text.text.splitlines()
    assert 'factory_gateway_requests_total{model="churn",version="1",arm="champion",status="ok"} 3' in lines
    assert 'factory_gateway_rejected_total{model="churn",code="422"} 1' in lines
    assert any(
        line.startswith(
            'factory_gateway_request_duration_seconds_bucket{model="churn",version="1",'
            'arm="champion",le="+Inf"} 3'
        )
        for line in lines
    )
    assert "factory_gateway_registry_up 1" in lines
    assert "factory_gateway_health_read_errors 0" in lines  # the health history's gauges are read
    seen_types = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(seen_types) == len(set(seen_types)), "each metric family exactly once"
    for line in lines:  # every sample line: name{labels} value
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


# --- routing ----------------------------------------------------------------------------------


def test_traffic_share_is_within_binomial_tolerance(gateway, registry_state):
    canary.start_canary("churn", "2", 0.1, registry_state, Attribution("test", "share check"))
    gateway.app_state.watcher.refresh()
    route = gateway.app_state.watcher.routes["churn"]
    assert route.canary_version == "2" and route.share == pytest.approx(0.1)
    n = 2000
    hits = sum(route.pick(f"C{i:06d}")[0] == "canary" for i in range(n))
    bound = 4 * math.sqrt(n * 0.1 * 0.9)  # 4 sigma: a false failure about once in 15,000 runs
    assert abs(hits - n * 0.1) < bound, hits

    # Through HTTP, the same callers land on the same arms as the route says.
    row = churn_rows(1)[0]
    arms = {}
    for i in range(300):
        body = predict(gateway, {"features": row, "entity_id": f"C{i:06d}"}).json()
        arms[body["arm"]] = arms.get(body["arm"], 0) + 1
        assert body["arm"] == route.pick(f"C{i:06d}")[0]
        assert body["version"] == ("2" if body["arm"] == "canary" else "1")
    assert arms["canary"] > 0 and arms["champion"] > 0


def test_routing_is_sticky_and_a_ramp_only_adds_callers(gateway, registry_state):
    canary.start_canary("churn", "2", 0.1, registry_state, Attribution("test", "sticky"))
    watcher = gateway.app_state.watcher
    watcher.refresh()
    row = churn_rows(1)[0]
    callers = [f"C{i}" for i in range(60)]
    first = {c: predict(gateway, {"features": row, "entity_id": c}).json()["arm"] for c in callers}
    for _ in range(2):
        assert {
            c: predict(gateway, {"features": row, "entity_id": c}).json()["arm"] for c in callers
        } == first

    canary.set_canary_share("churn", 0.5, registry_state, Attribution("test", "ramp"), version="2")
    watcher.refresh()
    after = {c: predict(gateway, {"features": row, "entity_id": c}).json()["arm"] for c in callers}
    assert all(after[c] == "canary" for c in callers if first[c] == "canary")
    assert sum(a == "canary" for a in after.values()) > sum(a == "canary" for a in first.values())
    # Without an entity id, the request id is the key: a new one each time.
    assert bucket("x", "churn|canary|2") == bucket("x", "churn|canary|2")


# --- faults -----------------------------------------------------------------------------------


def test_canary_that_fails_to_load_gets_no_traffic(gateway, registry_state):
    canary.start_canary("churn", "3", 0.5, registry_state, Attribution("test", "broken artifacts"))
    gateway.app_state.watcher.refresh()
    status = gateway.get("/v1/models/churn").json()
    assert status["canary"] is None and status["share"] == 0.0
    assert status["registry"]["canary"] == "3" and status["registry"]["share"] == 0.5
    assert "canary v3 failed to load, no traffic sent to it" in status["errors"][0]

    row = churn_rows(1)[0]
    arms = {predict(gateway, {"features": row, "entity_id": f"E{i}"}).json()["arm"] for i in range(40)}
    assert arms == {"champion"}
    health = gateway.get("/health").json()
    assert health["status"] == "degraded"
    assert any("churn: canary v3 failed to load" in r for r in health["reasons"])

    # The failure is in the prediction DB too: the canary analysis rolls it back.
    db = gateway.app_state.settings.db_uri
    load_failures = [d for d in predlog.decisions(db, "churn") if d["action"] == "load_failed"]
    assert [(d["version"], d["actor"], d["details"]["arm"]) for d in load_failures] == [
        ("3", "gateway", "canary")
    ]
    gateway.app_state.watcher.refresh()  # reported once, not at every refresh
    assert len([d for d in predlog.decisions(db, "churn") if d["action"] == "load_failed"]) == 1
    state = canary.read_serving_state("churn", registry_state)
    arms = canary.arm_outcomes(db, "churn", state.started_at, versions={"canary": "3"})
    verdict = canary.analyse_canary(
        arms["champion"], arms["canary"], CanarySpec(), task="classification", metric="roc_auc"
    )
    assert verdict.decision == "rollback" and "failed to load" in verdict.reasons[0]


def predict_fails_for(monkeypatch: pytest.MonkeyPatch, version: str, message: str) -> None:
    """``LoadedVersion.predict`` raises ``RuntimeError(message)`` for ``version``; others predict."""
    original = LoadedVersion.predict

    def failing(self, instances):
        if self.version == version:
            raise RuntimeError(message)
        return original(self, instances)

    monkeypatch.setattr(LoadedVersion, "predict", failing)


def test_a_canary_that_fails_at_predict_time_falls_back_to_the_champion(gateway, registry_state, monkeypatch):
    predict_fails_for(monkeypatch, "2", "boom")
    canary.start_canary("churn", "2", 1.0, registry_state, Attribution("test", "flaky"))
    gateway.app_state.watcher.refresh()
    response = predict(gateway, {"features": churn_rows(1)[0], "request_id": "flaky-1"})
    assert response.status_code == 200 and response.json()["arm"] == "champion"
    log = gateway.app_state.prediction_log
    assert log.flush()
    started = canary.read_serving_state("churn", registry_state).started_at
    arms = canary.arm_outcomes(log.engine, "churn", started)
    assert (arms["canary"].requests, arms["canary"].errors) == (1, 1)
    assert (arms["champion"].requests, arms["champion"].errors) == (1, 0)


def test_registry_unreachable_degrades_health_but_keeps_serving(gateway, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    watcher = gateway.app_state.watcher
    good = watcher.settings
    down = good.factory.model_copy(update={"tracking_uri": f"http://bob:s3cret@127.0.0.1:{port}"})
    watcher.settings = replace(good, factory=down)
    watcher.refresh()
    health = gateway.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert "registry unreachable since" in health.json()["reasons"][0]
    # Issue 10 item 8: health shows no secrets, even when the registry's URI carries some.
    assert "s3cret" not in health.text and "bob" not in health.text
    assert "s3cret" not in gateway.get("/v1/models").text
    assert "factory_gateway_registry_up 0" in gateway.get("/metrics").text
    response = predict(gateway, {"features": churn_rows(1)[0]})
    assert response.status_code == 200 and response.json()["version"] == "1"

    watcher.settings = good
    watcher.refresh()
    assert gateway.get("/health").json()["status"] == "ok"


def test_a_configured_model_that_is_not_registered_is_reported(registry_state, tmp_path):
    from fastapi.testclient import TestClient

    app = create_app(gateway_settings(registry_state, tmp_path, models=("churn", "ghost")))
    with TestClient(app) as client:
        health = client.get("/health").json()
        assert (
            health["status"] == "degraded" and "ghost: model 'ghost' is not registered" in health["reasons"]
        )
        ghost = predict(client, {"features": {}}, model="ghost")
        assert ghost.status_code == 503 and "nothing to serve yet" in ghost.json()["detail"]
        assert predict(client, {"features": churn_rows(1)[0]}).status_code == 200
        assert predict(client, {"features": {}}, model="demand").status_code == 404  # not configured


def test_the_simulator_refuses_to_run_without_outcomes():
    with pytest.raises(ValueError, match="pass label_fn or label_column"):
        simulate_traffic(
            "http://127.0.0.1:9", "churn", demo_data.generate_batch("churn", DAY, rows=5), requests=1
        )


# --- hot swap on a real server ------------------------------------------------------------------


@contextlib.contextmanager
def uvicorn_server(app):
    """The app under a real uvicorn server on a free port, in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    options = uvicorn_options(app.state.settings)  # what python -m model_factory.serving runs
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_hot_swap_under_load_has_no_5xx(registry_state, tmp_path):
    app = create_app(gateway_settings(registry_state, tmp_path, refresh_s=0.1))
    rows = churn_rows(50)
    results: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def hammer(base: str, worker: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            i = 0
            while not stop.is_set():
                body = {"features": rows[i % len(rows)], "entity_id": f"W{worker}-{i}"}
                try:
                    response = client.post("/v1/models/churn/predict", json=body)
                except httpx.HTTPError as exc:  # a dropped connection counts as a failure too
                    results.append((-1, type(exc).__name__))
                    continue
                version = response.json().get("version") if response.status_code == 200 else None
                results.append((response.status_code, version))
                i += 1

    with uvicorn_server(app) as base:
        workers = [threading.Thread(target=hammer, args=(base, w)) for w in range(4)]
        for worker in workers:
            worker.start()
        try:
            steps = [
                lambda: canary.start_canary("churn", "2", 0.5, registry_state, Attribution("test", "swap")),
                lambda: canary.set_canary_share("churn", 1.0, registry_state, Attribution("test", "ramp")),
                lambda: canary.promote_canary("churn", registry_state, Attribution("test", "promote")),
                lambda: registry.rollback("churn", registry_state, Attribution("test", "back")),
            ]
            for step in steps:
                time.sleep(0.6)
                step()
            time.sleep(0.6)
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)
        status = httpx.get(f"{base}/v1/models/churn").json()
    codes = [code for code, _ in results]
    assert len(codes) > 50
    assert all(code == 200 for code in codes), sorted(set(results) - {(200, "1"), (200, "2")})
    assert {version for _, version in results} == {"1", "2"}
    assert status["champion"]["version"] == "1" and status["canary"] is None


def _read_until_closed(sock: socket.socket, limit_s: float = 30.0) -> bytes:
    """What the server sends before it closes the connection (or ``limit_s`` passes)."""
    sock.settimeout(limit_s)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return received + b"<still open>"
    return received


def test_slow_headers_and_slow_bodies_are_cut_off(registry_state, tmp_path):
    """Issue 18 finding 8: a connection that sends nothing, half a header or half a body was held
    open with no timeout (30 of each stayed open)."""
    app = create_app(gateway_settings(registry_state, tmp_path, header_timeout_s=1.0, body_timeout_s=1.0))
    with uvicorn_server(app) as base:
        host, port = base.removeprefix("http://").split(":")
        silent = socket.create_connection((host, int(port)))
        half_header = socket.create_connection((host, int(port)))
        half_header.sendall(b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: x\r\nContent-")
        half_body = socket.create_connection((host, int(port)))
        half_body.sendall(
            b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 60\r\n\r\n{"request_id": '
        )
        kept = socket.create_connection((host, int(port)))  # a finished request, then half the next
        kept.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
        kept.sendall(b"GET /health/live HTTP/1.1\r\nHo")
        predict_body = json.dumps({"features": churn_rows(1)[0]})
        lane_kept = socket.create_connection((host, int(port)))  # the same through the predict lane
        lane_kept.sendall(_post("/v1/models/churn/predict", predict_body))
        time.sleep(0.5)
        lane_kept.sendall(b"POST /v1/models/churn/predict HTTP/1.1\r\nHo")
        idle = socket.create_connection((host, int(port)))  # answered by the lane, then idle
        idle.sendall(_post("/v1/models/churn/predict", predict_body))
        first = idle.recv(65536)
        time.sleep(1.5)  # past the header deadline: an idle kept-alive connection is not cut
        idle.sendall(_post("/v1/models/churn/predict", predict_body))
        idle.settimeout(10)
        second = idle.recv(65536)
        answers = [_read_until_closed(s) for s in (silent, half_header, half_body, kept, lane_kept)]
        for sock in (silent, half_header, half_body, kept, lane_kept, idle):
            sock.close()
        assert httpx.get(f"{base}/health/live").status_code == 200  # still serving
    assert answers[0] == b"" and answers[1] == b"", answers
    assert answers[2].startswith(b"HTTP/1.1 408") and b"not received within 1 s" in answers[2], answers[2]
    assert answers[3].startswith(b"HTTP/1.1 200") and answers[3].count(b"HTTP/1.1") == 1, answers[3]
    assert answers[4].startswith(b"HTTP/1.1 200") and answers[4].count(b"HTTP/1.1") == 1, answers[4]
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200"), (first, second)


def test_feedback_while_the_log_is_locked_is_a_503_and_health_says_so(registry_state, tmp_path):
    """Issue 18 finding 8: with the prediction DB locked, feedback answered 500 after 30 s and was
    lost while /health said ok. Now: a bounded wait, 503 saying why, health degraded until the
    next feedback is recorded."""
    import sqlite3

    from fastapi.testclient import TestClient

    settings = gateway_settings(registry_state, tmp_path, feedback_wait_s=0.5)
    with TestClient(create_app(settings)) as client:
        served = predict(client, {"features": churn_rows(1)[0]}).json()
        assert client.app.state.prediction_log.flush()
        assert client.get("/health").json()["status"] == "ok"
        holder = sqlite3.connect(str(tmp_path / "predictions.db"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        try:
            started = time.monotonic()
            refused = client.post("/v1/feedback", json={"request_id": served["request_id"], "outcome": 1})
            waited = time.monotonic() - started
            health = client.get("/health").json()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert refused.status_code == 503, refused.text
        assert "did not accept a write within 0.5 s" in refused.json()["detail"]["error"]
        assert "locked" in refused.json()["detail"]["error"] and refused.headers["retry-after"] == "5"
        assert waited < 20  # bounded (was 30 s and a 500); never asserted tighter on a busy machine
        assert health["status"] == "degraded"
        assert any("feedback refused (503)" in reason for reason in health["reasons"]), health
        again = client.post("/v1/feedback", json={"request_id": served["request_id"], "outcome": 1})
        assert again.status_code == 200 and again.json()["unchanged"] is False  # nothing half-written
        assert client.get("/health").json()["status"] == "ok"
        assert "factory_gateway_feedback_refused 1" in client.get("/metrics").text


def test_simulated_traffic_with_delayed_feedback_feeds_the_analysis(registry_state, tmp_path):
    canary.start_canary("churn", "2", 0.5, registry_state, Attribution("test", "simulated traffic"))
    app = create_app(gateway_settings(registry_state, tmp_path))
    rows = demo_data.generate_batch("churn", DAY.replace(day=DAY.day + 2), rows=150)
    with uvicorn_server(app) as base:
        sent = simulate_traffic(
            base,
            "churn",
            rows,
            requests=300,
            feedback_delay_s=0.3,
            label_column="churned",
            entity_column="customer_id",
            concurrency=4,
            seed=1,
        )
        assert app.state.prediction_log.flush()
    failures = {k: sent[k] for k in ("ok", "errors", "feedback_sent", "feedback_failed", "seconds")}
    assert sent["ok"] == 300 and sent["errors"] == {} and sent["feedback_sent"] == 300, failures
    assert sent["by_arm"]["canary"] > 50 and sent["by_arm"]["champion"] > 50
    assert sent["by_version"] == {
        "canary:v2": sent["by_arm"]["canary"],
        "champion:v1": sent["by_arm"]["champion"],
    }

    db = app.state.settings.db_uri
    engine = predlog.engine_for(db)
    with engine.connect() as conn:
        per_entity = conn.execute(
            sa.select(
                predlog.PREDICTIONS.c.entity_id, sa.func.count(sa.distinct(predlog.PREDICTIONS.c.arm))
            ).group_by(predlog.PREDICTIONS.c.entity_id)
        ).all()
    assert len(per_entity) < 150 + 1 and all(arms == 1 for _, arms in per_entity)  # one arm per customer

    started = canary.read_serving_state("churn", registry_state).started_at
    arms = canary.arm_outcomes(db, "churn", started, versions={"canary": "2", "champion": "1"})
    assert arms["canary"].labelled == sent["by_arm"]["canary"]
    assert arms["champion"].labelled == sent["by_arm"]["champion"]
    truth = dict(zip(rows["customer_id"], rows["churned"], strict=True))
    assert set(arms["canary"].outcomes) <= {0.0, 1.0} and len(truth) == 150
    verdict = canary.analyse_canary(
        arms["champion"], arms["canary"], CanarySpec(min_samples=50), task="classification", metric="roc_auc"
    )
    assert verdict.decision in ("promote", "rollback")
    assert verdict.arms["canary"].labelled == sent["by_arm"]["canary"]


def test_a_rollout_driven_by_live_outcomes_without_airflow(registry_state, tmp_path):
    """What the canary DAG does, step by step: start, wait for outcomes, analyse, ramp, promote."""
    spec = spec_for("churn", **{"canary.ramp": [0.5, 1.0], "canary.min_samples": 40})
    app = create_app(gateway_settings(registry_state, tmp_path))
    db = app.state.settings.db_uri
    rows = demo_data.generate_batch("churn", DAY.replace(day=DAY.day + 3), rows=400)
    traffic = {"label_column": "churned", "entity_column": "customer_id", "concurrency": 4}
    with uvicorn_server(app) as base:
        predlog.write_decision(
            db, canary.start_canary("churn", "2", 0.5, registry_state, Attribution("dag", "blessed"))
        )
        app.state.watcher.refresh()
        waiting = canary.analyse_running_canary(spec, registry_state, db)
        assert waiting.decision == "wait" and waiting.next_share == 1.0

        simulate_traffic(base, "churn", rows, requests=200, seed=2, **traffic)
        assert app.state.prediction_log.flush()
        first = canary.analyse_running_canary(spec, registry_state, db)
        assert first.decision == "continue", first.reasons
        assert first.canary_version == "2" and first.analysis.arms["canary"].labelled >= 40

        predlog.write_decision(
            db, canary.set_canary_share("churn", 1.0, registry_state, Attribution("dag", "stage 1 ok"))
        )
        app.state.watcher.refresh()
        stalled = canary.analyse_running_canary(spec, registry_state, db)
        assert stalled.decision == "wait" and "since the stage began" in stalled.reasons[0]
        given_up = canary.analyse_running_canary(spec, registry_state, db, deadline_passed=True)
        assert given_up.decision == "rollback" and "maximum duration" in given_up.reasons[0]

        simulate_traffic(base, "churn", rows, requests=80, seed=3, **traffic)
        assert app.state.prediction_log.flush()
        last = canary.analyse_running_canary(spec, registry_state, db)
        assert last.decision == "promote" and last.next_share is None, last.reasons
        promoted = canary.promote_canary(
            "churn",
            registry_state,
            Attribution("dag", last.reasons[0]),
            version="2",
            details={"p_value": last.analysis.p_value},
        )
        predlog.write_decision(db, promoted)
        app.state.watcher.refresh()
        after = httpx.post(f"{base}/v1/models/churn/predict", json={"features": churn_rows(1)[0]}).json()
    assert after["version"] == "2" and after["arm"] == "champion"
    actions = [d["action"] for d in predlog.decisions(db, "churn")]
    assert actions == ["canary_started", "canary_ramped", "canary_promoted"]


# --- the command line -------------------------------------------------------------------------


def test_python_dash_m_serving_runs_a_server(registry_state, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "include"),
        "FACTORY_GATEWAY_API_KEY": "k",
        "FACTORY_PREDICTION_DB_URI": f"sqlite:///{tmp_path / 'cli.db'}",
        "FACTORY_GATEWAY_REFRESH_SECONDS": "1",
    }
    command = [sys.executable, "-m", "model_factory.serving", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", headers={"X-API-Key": "k"}, timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "gateway did not come up"
            time.sleep(0.2)
        row = churn_rows(1)[0]
        served = httpx.post(
            f"{base}/v1/models/churn/predict", json={"features": row}, headers={"X-API-Key": "k"}, timeout=10
        )
        assert served.status_code == 200 and served.json()["version"] == "1"
        refused = httpx.post(f"{base}/v1/models/churn/predict", json={"features": row}, timeout=10)
        assert refused.status_code == 401
    finally:
        process.terminate()
        process.wait(30)
    assert (tmp_path / "cli.db").exists()


# --- issue 10: hardening -----------------------------------------------------------------------


def test_models_with_a_spec_but_nothing_to_serve_are_reported_and_answer_503(registry_state, tmp_path):
    """Issue 10 item 12: health names models that have a spec and no servable version, and they
    answer 503 saying why (not registered yet / held for review), not a bare 404."""
    from fastapi.testclient import TestClient

    client = connect(registry_state)
    if not client.search_registered_models("name = 'held'"):
        client.create_registered_model("held")
        source = client.get_model_version("churn", "1")
        held = client.create_model_version("held", source.source, run_id=source.run_id)
        client.set_model_version_tag("held", held.version, "factory.decision", "held_for_review")
        why = "roc_auc 0.9990 too good"
        client.set_model_version_tag("held", held.version, "factory.decision_reason", why)
    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("churn", "demand", "newbie", "held"):
        text = (REPO / "include" / "models" / "churn.yaml").read_text()
        (specs / f"{name}.yaml").write_text(text.replace("name: churn", f"name: {name}", 1))
    factory = registry_state.model_copy(update={"specs_dir": specs})
    with TestClient(create_app(gateway_settings(factory, tmp_path))) as gw:
        health = gw.get("/health").json()
        assert health["status"] == "degraded"
        assert health["models"]["churn"]["servable"] is True
        assert health["models"]["churn"]["load_seconds"]["champion"] > 0  # cold-load latency shown
        assert health["models"]["newbie"]["servable"] is False
        assert "no version was trained and registered yet" in health["models"]["newbie"]["why"]
        assert "v1 is held for review (roc_auc 0.9990 too good)" in health["models"]["held"]["why"]
        for name, words in (("newbie", "not registered"), ("held", "held for review")):
            answer = predict(gw, {"features": churn_rows(1)[0]}, model=name)
            assert answer.status_code == 503 and words in answer.json()["detail"], answer.text
        assert predict(gw, {"features": churn_rows(1)[0]}).status_code == 200


def test_metric_labels_are_bounded_to_known_models(gateway):
    """Issue 10 item 8: a caller cannot grow the Prometheus series with made-up model names."""
    for i in range(30):
        assert predict(gateway, {"features": {}}, model=f"made-up-{i}").status_code == 404
    text = gateway.get("/metrics").text
    assert "made-up" not in text
    assert 'factory_gateway_rejected_total{model="_unknown",code="404"} 30' in text


def test_an_input_both_versions_refuse_is_not_a_canary_error(gateway, registry_state, monkeypatch):
    """Issue 10 item 4: a caller must not be able to push a canary into rollback. An input that
    the champion refuses too is the input's fault: 422, and nothing counts against the canary."""
    original = LoadedVersion.predict

    def picky(self, instances):
        if instances[0]["plan"] == "poison":
            raise ValueError("Input X contains infinity or a value too large for dtype('float64').")
        return original(self, instances)

    monkeypatch.setattr(LoadedVersion, "predict", picky)
    canary.start_canary("churn", "2", 1.0, registry_state, Attribution("test", "all traffic to the canary"))
    gateway.app_state.watcher.refresh()
    row = {**churn_rows(1)[0], "plan": "poison"}
    for i in range(20):
        answer = predict(gateway, {"features": row, "request_id": f"poison-{i}"})
        assert answer.status_code == 422 and "neither churn v2 (canary)" in answer.text
    assert predict(gateway, {"features": churn_rows(1)[0]}).json()["arm"] == "canary"
    log = gateway.app_state.prediction_log
    assert log.flush()
    started = canary.read_serving_state("churn", registry_state).started_at
    arms = canary.arm_outcomes(log.engine, "churn", started)
    assert (arms["canary"].requests, arms["canary"].errors) == (1, 0)


def test_serving_thread_pools_are_limited(gateway):
    """Issue 10 item 12: one thread per BLAS/OpenMP pool in the serving process (settings.threads)."""
    from threadpoolctl import threadpool_info

    assert predict(gateway, {"features": churn_rows(1)[0]}).status_code == 200
    pools = threadpool_info()
    assert pools and all(pool["num_threads"] == 1 for pool in pools), pools


def test_the_gateway_refuses_to_listen_openly_without_a_key(tmp_path):
    """Issue 10 item 8: ``python -m model_factory.serving --host 0.0.0.0`` needs a key."""
    env = {k: v for k, v in os.environ.items() if k != "FACTORY_GATEWAY_API_KEY"}
    env["FACTORY_HOME"] = str(tmp_path / "factory")
    done = subprocess.run(
        [sys.executable, "-m", "model_factory.serving", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "without an API key" in done.stderr


def test_string_multiclass_through_the_gateway_feedback_and_the_canary(factory_home, tmp_path):
    """Issue 9 "Labels" on the serving side: class names and probabilities in the answer, class
    names as feedback (anything else a 422), and a live multiclass metric with its interval."""
    from fastapi.testclient import TestClient

    from tests.unit.pipeline.test_labels import SPECIES, flowers, ingest_validate, spec_file

    settings = FactorySettings.from_env()
    spec = spec_file(tmp_path, "flowers")
    for offset in (0, 1):
        day = DAY.replace(day=DAY.day + offset)
        validated = ingest_validate(spec, flowers(day, rows=600), day, settings)
        _retrain(spec, settings, day, [validated["validated_uri"]])
    canary.start_canary("flowers", "2", 0.5, settings, Attribution("test", "multiclass canary"))
    factory = settings.model_copy(update={"specs_dir": tmp_path})
    rows = json.loads(flowers(DAY, rows=120).to_json(orient="records"))
    with TestClient(create_app(gateway_settings(factory, tmp_path, models=("flowers",)))) as gw:
        first = {k: rows[0][k] for k in ("petal", "sepal", "site")}
        answer = predict(gw, {"features": first}, model="flowers")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["prediction"] in SPECIES and sorted(body["probabilities"]) == SPECIES
        rid = body["request_id"]
        for wrong, words in ((1, "1 is not one of the model's classes"), ("unicorn", "'unicorn' is not one")):
            refused = gw.post("/v1/feedback", json={"request_id": rid, "outcome": wrong})
            assert refused.status_code == 422 and words in refused.json()["detail"]["error"]
        right = gw.post("/v1/feedback", json={"request_id": rid, "outcome": rows[0]["species"]})
        assert right.status_code == 200
        for i, row in enumerate(rows[1:]):
            features = {k: row[k] for k in ("petal", "sepal", "site")}
            served = predict(gw, {"features": features, "entity_id": f"plant-{i}"}, model="flowers").json()
            outcome = {"request_id": served["request_id"], "outcome": row["species"]}
            assert gw.post("/v1/feedback", json=outcome).status_code == 200
        log = gw.app.state.prediction_log
        assert log.flush()
        state = canary.read_serving_state("flowers", settings)
        arms = canary.arm_outcomes(log.engine, "flowers", state.started_at, versions={"canary": "2"})
    assert arms["canary"].labelled > 30 and arms["champion"].labelled > 30
    assert set(arms["canary"].outcomes) <= set(SPECIES)
    for metric in ("f1", "log_loss"):
        policy = CanarySpec(min_samples=30, max_relative_drop=0.5)
        verdict = canary.analyse_canary(
            arms["champion"], arms["canary"], policy, task="classification", metric=metric
        )
        assert verdict.decision == "promote", verdict.reasons
        low, high = verdict.arms["canary"].ci
        assert low < verdict.arms["canary"].value < high


def test_a_fresh_install_with_specs_and_no_versions_is_degraded_not_down(registry_state, tmp_path):
    """Models waiting for their first champion: health 200 "degraded" naming them (process
    supervisors and the dev stack must not restart a gateway that has nothing to serve yet)."""
    from fastapi.testclient import TestClient

    specs = shipped_specs(tmp_path / "specs", "churn")
    empty = registry_state.model_copy(
        update={"specs_dir": specs, "tracking_uri": f"sqlite:///{tmp_path / 'empty.db'}"}
    )
    with TestClient(create_app(gateway_settings(empty, tmp_path))) as gw:
        health = gw.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded", health.text
        assert health.json()["models"]["churn"]["servable"] is False
        assert predict(gw, {"features": churn_rows(1)[0]}).status_code == 503
