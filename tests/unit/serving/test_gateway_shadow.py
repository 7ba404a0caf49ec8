"""Shadow traffic through the gateway: callers get exactly the champion's answer; the shadow's
outputs are logged beside it and compared; a shadow that raises or cannot load changes nothing.

Uses the gateway tests' registry (churn v1 champion, v2 blessed, v3 blessed with broken artifacts).
"""

from __future__ import annotations

import contextlib
import threading

import pytest
import sqlalchemy as sa
from model_factory.contracts import Attribution
from model_factory.io import tag_schema
from model_factory.io.tracking import connect
from model_factory.pipeline.registry import PromotionError
from model_factory.rollout import canary
from model_factory.rollout.shadow import (
    compare_shadow,
    shadow_comparison,
    shadow_pairs,
    start_shadow,
    stop_shadow,
)
from model_factory.serving import predlog
from model_factory.serving.models import LoadedVersion
from model_factory.serving.routing import shadow_sampled

from tests.unit.serving.test_gateway import (  # noqa: F401 - fixtures
    churn_rows,
    gateway,
    predict,
    predict_fails_for,
    reset_serving_state,
    served_registry,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")


@pytest.fixture
def registry_state(served_registry):  # noqa: F811 - overrides the gateway tests' reset
    reset_serving_state(served_registry)
    client = connect(served_registry)
    with contextlib.suppress(Exception):
        client.delete_registered_model_alias("churn", "shadow")
    for tag in (
        tag_schema.SHADOW_VERSION,
        tag_schema.SHADOW_SHARE,
        tag_schema.SHADOW_STARTED_AT,
        tag_schema.SHADOW_STATUS,
    ):
        with contextlib.suppress(Exception):
            client.delete_registered_model_tag("churn", tag)
    return served_registry


def _answers(client, rows: list[dict]) -> list[dict]:
    """What callers got, without the per-request random id: one row at a time, then a batch."""
    answers = []
    for i, row in enumerate(rows):
        response = predict(client, {"features": row, "entity_id": f"E{i}"})
        assert response.status_code == 200, response.text
        answers.append({k: v for k, v in response.json().items() if k != "request_id"})
    batch = predict(client, {"instances": rows, "entity_id": "batch"})
    assert batch.status_code == 200, batch.text
    body = batch.json()
    answers.append(
        {
            **{k: v for k, v in body.items() if k not in ("request_id", "predictions")},
            "predictions": [{k: v for k, v in p.items() if k != "request_id"} for p in body["predictions"]],
        }
    )
    return answers


def _shadow_rows(app_state) -> list:
    assert app_state.gateway.shadow.drain()
    with app_state.prediction_log.engine.connect() as conn:
        table = predlog.SHADOW_PREDICTIONS
        return list(conn.execute(sa.select(table).order_by(table.c.id)))


def test_a_shadow_changes_no_answer_and_its_outputs_are_logged_and_compared(gateway, registry_state):  # noqa: F811 - the fixture imported above
    rows = churn_rows(12, seed=3)
    without = _answers(gateway, rows)
    decision = start_shadow("churn", "2", 1.0, registry_state, Attribution("test", "compare before a canary"))
    assert decision["action"] == "shadow_started" and decision["changed"]
    gateway.app_state.watcher.refresh()
    status = gateway.get("/v1/models/churn").json()
    assert status["shadow"]["version"] == "2" and status["shadow_share"] == 1.0
    assert status["canary"] is None and status["share"] == 0.0

    with_shadow = _answers(gateway, rows)
    assert with_shadow == without  # every answer identical: version, arm, prediction, probabilities
    assert {a["version"] for a in with_shadow} == {"1"} and {a["arm"] for a in with_shadow} == {"champion"}

    logged = _shadow_rows(gateway.app_state)
    assert len(logged) == 12 + 12  # 12 single requests, one batch of 12 (one row per instance)
    assert {(r.version, r.champion_version, r.status) for r in logged} == {("2", "1", "ok")}
    assert all(r.latency_ms > 0 and r.champion_latency_ms > 0 for r in logged)
    # The served predictions are only the champion's: feedback and the canary analysis never see
    # the shadow. Served rows are written by a background thread: wait for it, as under load.
    assert gateway.app_state.prediction_log.flush()
    with gateway.app_state.prediction_log.engine.connect() as conn:
        served = list(conn.execute(sa.select(predlog.PREDICTIONS.c.version, predlog.PREDICTIONS.c.arm)))
    assert set(served) == {("1", "champion")}

    pairs, champions = shadow_pairs(gateway.app_state.settings.db_uri, "churn", "2")
    comparison = compare_shadow(pairs, "churn", "2", champions)
    assert comparison.requests == 24 and comparison.errors == 0 and champions == ["1"]
    assert comparison.kind == "classification" and 0.0 <= comparison.agreement <= 1.0
    # agreement is what the two models say on these rows, counted independently here
    labels = [(p.champion["label"], p.shadow["label"]) for p in pairs]
    assert comparison.agreement == sum(a == b for a, b in labels) / len(labels)
    assert comparison.shadow_latency_ms["p50"] > 0 and comparison.champion_latency_ms["p95"] > 0
    health = gateway.get("/health").json()
    assert health["models"]["churn"]["shadow"] == "2"
    # 12 single requests and one batch were scored by the shadow
    assert "factory_gateway_shadow_scored 13" in gateway.get("/metrics").text.splitlines()


def test_the_caller_is_answered_while_the_shadow_is_still_scoring(gateway, registry_state, monkeypatch):  # noqa: F811 - the fixture imported above
    original = LoadedVersion.predict
    release, finished = threading.Event(), threading.Event()

    def slow_shadow(self, instances):
        if self.version == "2":
            release.wait(30)
            finished.set()
        return original(self, instances)

    monkeypatch.setattr(LoadedVersion, "predict", slow_shadow)
    start_shadow("churn", "2", None, registry_state, Attribution("test", "is it off the response path?"))
    gateway.app_state.watcher.refresh()
    for row in churn_rows(2):  # one on the compiled path (event loop), one batch (thread pool)
        assert predict(gateway, {"features": row}).status_code == 200
    assert predict(gateway, {"instances": churn_rows(3)}).status_code == 200
    assert not finished.is_set()  # all answered while the shadow was still blocked
    release.set()
    assert len(_shadow_rows(gateway.app_state)) == 2 + 3


def test_a_shadow_that_raises_never_changes_the_answer(gateway, registry_state, monkeypatch):  # noqa: F811 - the fixture imported above
    rows = churn_rows(5, seed=5)
    without = _answers(gateway, rows)
    predict_fails_for(monkeypatch, "2", "shadow exploded")
    start_shadow("churn", "2", 1.0, registry_state, Attribution("test", "a broken shadow"))
    gateway.app_state.watcher.refresh()
    assert _answers(gateway, rows) == without
    logged = _shadow_rows(gateway.app_state)
    assert len(logged) == 10 and {r.status for r in logged} == {"error"}
    assert {r.error for r in logged} == {"RuntimeError: shadow exploded"}
    assert gateway.app_state.gateway.shadow.errors == 6
    comparison = compare_shadow(shadow_pairs(gateway.app_state.settings.db_uri, "churn", "2")[0])
    assert (comparison.errors, comparison.scored, comparison.agreement) == (10, 0, None)


def test_a_shadow_that_fails_to_load_is_reported_and_changes_nothing(gateway, registry_state):  # noqa: F811 - the fixture imported above
    rows = churn_rows(4, seed=7)
    without = _answers(gateway, rows)
    start_shadow("churn", "3", 1.0, registry_state, Attribution("test", "broken artifacts"))
    gateway.app_state.watcher.refresh()
    status = gateway.get("/v1/models/churn").json()
    assert status["shadow"] is None and status["shadow_share"] == 0.0
    assert status["registry"]["shadow"] == "3"
    assert any("shadow v3 failed to load, not scored" in e for e in status["errors"])
    assert _answers(gateway, rows) == without
    assert _shadow_rows(gateway.app_state) == []

    db = gateway.app_state.settings.db_uri
    failures = [d for d in predlog.decisions(db, "churn") if "load_failed" in d["action"]]
    assert [(d["action"], d["version"], d["details"]["arm"]) for d in failures] == [
        ("shadow_load_failed", "3", "shadow")
    ]
    # The canary analysis never reads the shadow's failure as a canary's ...
    assert canary.arm_outcomes(db, "churn", "2000-01-01")["canary"].load_errors == []
    # ... and when the same version is then made the canary, its own failure is still reported.
    stop_shadow("churn", registry_state, Attribution("test", "try it as a canary"))
    canary.start_canary(
        "churn", "3", 0.5, registry_state, Attribution("test", "the same broken version as canary")
    )
    gateway.app_state.watcher.refresh()
    started = canary.read_serving_state("churn", registry_state).started_at
    errors = canary.arm_outcomes(db, "churn", started, versions={"canary": "3"})["canary"].load_errors
    assert len(errors) == 1 and errors[0].startswith("v3: ")


def test_start_and_stop_rules(registry_state):
    with pytest.raises(PromotionError, match="is the champion"):
        start_shadow("churn", "1", 1.0, registry_state, Attribution("test", "x"))
    with pytest.raises(PromotionError, match=r"share must be in \(0, 1\]"):
        start_shadow("churn", "2", 1.5, registry_state, Attribution("test", "x"))
    with pytest.raises(PromotionError, match="no shadow running"):
        stop_shadow("churn", registry_state, Attribution("test", "x"))
    first = start_shadow("churn", "2", 0.5, registry_state, Attribution("test", "x"))
    again = start_shadow("churn", "2", 0.5, registry_state, Attribution("test", "retried"))
    assert first["changed"] and not again["changed"] and again["at"] == first["at"]
    ramped = start_shadow("churn", "2", 1.0, registry_state, Attribution("test", "all of it"))
    assert ramped["changed"] and ramped["at"] == first["at"]  # same shadow: the comparison keeps its start
    state = canary.read_serving_state("churn", registry_state)
    assert (state.shadow, state.shadow_share) == ("2", 1.0)
    stopped = stop_shadow("churn", registry_state, Attribution("test", "seen enough"))
    assert stopped["action"] == "shadow_stopped" and stopped["version"] == "2"
    assert not stop_shadow("churn", registry_state, Attribution("test", "retried"))["changed"]
    state = canary.read_serving_state("churn", registry_state)
    assert (state.shadow, state.shadow_share) == (None, 0.0)
    kept = shadow_comparison(registry_state, "churn")  # the last shadow's comparison stays readable
    assert kept["version"] == "2" and kept["status"] == "stopped" and kept["requests"] == 0


def test_the_shadow_share_is_a_sticky_sample_of_callers():
    keys = [f"caller-{i}" for i in range(4000)]
    sampled = [k for k in keys if shadow_sampled(k, "churn", "2", 0.25)]
    # binomial: n=4000, p=0.25 -> sd ~27; 6 sd of tolerance
    assert abs(len(sampled) - 1000) < 165
    assert sampled == [k for k in keys if shadow_sampled(k, "churn", "2", 0.25)]  # sticky
    wider = {k for k in keys if shadow_sampled(k, "churn", "2", 0.5)}
    assert set(sampled) <= wider  # raising the share only adds callers
    assert all(shadow_sampled(k, "churn", "2", 1.0) for k in keys)
    assert not any(shadow_sampled(k, "churn", None, 1.0) for k in keys)
