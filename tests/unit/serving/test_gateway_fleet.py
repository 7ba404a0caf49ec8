"""The gateway in front of a fleet of 1,000 registered models under a small memory budget.

One real churn version is trained once; ``model_factory_dev.fleet`` registers it under 1,000
names (blessed, attested, champion), so every member is loaded through the real safe loader.
The gateway loads nothing at start, loads each model on its first request, evicts the least
recently used to stay within the budget, keeps a busy model resident, never fails a request in
flight because of an eviction, and answers 503 saying why when a version cannot fit at all.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from model_factory.serving import create_app
from model_factory.serving.model_store import estimated_bytes
from model_factory.serving.requests import GatewayError, parse_predict
from model_factory_dev.fleet import fleet_name, register_fleet

from tests.conftest import factory_env, shipped_specs
from tests.unit.pipeline.test_training_evaluation import DAY, _retrain, _validated
from tests.unit.serving.test_gateway import CHURN, churn_rows, gateway_settings, predict

pytestmark = pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")

FLEET = 1000


@pytest.fixture(scope="module")
def fleet_registry(tmp_path_factory):
    """churn v1 trained once, registered as fleet-00000 ... fleet-00999."""
    home = tmp_path_factory.mktemp("fleet") / "factory"
    specs = shipped_specs(home.parent / "specs", "churn")
    with factory_env(home, FACTORY_SPECS_DIR=str(specs)) as settings:
        _retrain(CHURN, settings, DAY, [_validated(settings, "churn", DAY)])
        fleet = register_fleet(settings, "churn", "1", FLEET)
        yield settings, fleet


@pytest.fixture
def fleet_gateway(fleet_registry, tmp_path):
    """A gateway whose budget holds about eight versions of the fleet's size."""
    from fastapi.testclient import TestClient

    settings, _ = fleet_registry
    app = create_app(gateway_settings(settings, tmp_path, memory_mb=8 * 0.3))
    with TestClient(app) as client:
        client.app_state = app.state
        yield client


def memory(client) -> dict:
    return client.get("/health").json()["memory"]


def test_a_thousand_models_start_with_nothing_loaded_and_load_on_first_use(fleet_gateway):
    gateway = fleet_gateway.app_state.gateway
    routes = gateway.watcher.routes
    assert sum(name.startswith("fleet-") for name in routes) == FLEET
    health = fleet_gateway.get("/health").json()
    assert health["status"] == "ok", health["reasons"]
    assert health["memory"]["loaded_versions"] == 0 and health["memory"]["cold_loads"] == 0
    assert all(m["servable"] for m in health["models"].values())

    row = churn_rows(1)[0]
    size = estimated_bytes(gateway.store.get("churn", "1", "champion"))
    budget = gateway.store.budget_bytes
    assert 6 * size <= budget < 10 * size, "the budget holds a handful of versions, not the fleet"
    busy = fleet_name("fleet", 0)
    first = None
    for i in range(1, 41):  # 40 cold models, the busy one asked between each
        cold = predict(fleet_gateway, {"features": row}, model=fleet_name("fleet", i * 20))
        assert cold.status_code == 200, cold.text
        warm = predict(fleet_gateway, {"features": row}, model=busy)
        assert warm.status_code == 200 and warm.json()["version"] == "1"
        first = first or gateway.store.peek(busy, "1")
        assert gateway.store.peek(busy, "1") is first, "the busy model was evicted"
    stats = memory(fleet_gateway)
    assert stats["resident_mib"] <= stats["budget_mib"]
    assert stats["evictions"] >= 40 - budget // size
    assert stats["cold_loads"] >= 41 and stats["cold_load_p99_ms"] >= stats["cold_load_p50_ms"] > 0
    status = fleet_gateway.get(f"/v1/models/{busy}").json()
    assert status["champion"]["resident"] is True and status["champion"]["load_seconds"] > 0
    assert fleet_gateway.get(f"/v1/models/{fleet_name('fleet', 999)}").json()["champion"] == {
        "version": "1",
        "resident": False,
    }
    metrics = fleet_gateway.get("/metrics").text
    assert "factory_gateway_model_evictions " in metrics and "factory_gateway_resident_bytes " in metrics


def test_evictions_never_fail_a_request_in_flight(fleet_gateway):
    """Four threads over 30 models with room for about eight: constant eviction, no failure."""
    gateway = fleet_gateway.app_state.gateway
    row = churn_rows(1)[0]

    def one(i: int) -> str:
        model = fleet_name("fleet", 100 + i % 30)
        try:
            answer = gateway.predict(gateway.servable(model), parse_predict({"features": row}, 10))
        except GatewayError as error:
            return f"{error.status}: {error.detail}"
        return "ok" if answer["model"] == model else f"wrong model {answer['model']}"

    # One version stays leased through the whole run, as a slow request would hold it.
    with gateway.store.lease(fleet_name("fleet", 999), "1", "champion") as slow:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(one, range(120)))
        assert gateway.store.peek(fleet_name("fleet", 999), "1") is slow
    errors = [r for r in results if r != "ok"]
    # A request may find the whole budget leased by the others (503, retry): never a 5xx of
    # another kind, never a wrong answer; with 4 callers and room for ~8 it does not happen.
    assert errors == [], errors[:3]
    stats = memory(fleet_gateway)
    assert stats["evictions"] > 0 and stats["leased_versions"] == 0
    assert stats["resident_mib"] <= stats["budget_mib"]


def test_a_version_that_cannot_fit_the_budget_answers_503_saying_why(fleet_registry, tmp_path):
    from fastapi.testclient import TestClient

    settings, _ = fleet_registry
    app = create_app(gateway_settings(settings, tmp_path, memory_mb=0.1))
    with TestClient(app) as client:
        for _ in range(2):
            answer = predict(client, {"features": churn_rows(1)[0]}, model=fleet_name("fleet", 7))
            assert answer.status_code == 503
            detail = answer.json()["detail"]
            assert detail.startswith("model 'fleet-00007' cannot serve now: fleet-00007 v1 needs about ")
            assert "more than the gateway's whole memory budget of 0.1 MiB" in detail
            assert "(FACTORY_GATEWAY_MEMORY_MB)" in detail
            assert int(answer.headers["retry-after"]) > 0
        assert app.state.gateway.store.stats().loads == 0  # the second was refused without a load
        assert memory(client)["refused"] == 2


def second_version(settings, name: str) -> str:
    """Register v2 of a fleet member (the same artifacts), blessed, attested, made champion."""
    import mlflow.artifacts
    from model_factory.io import tag_schema
    from model_factory.io.model_loading import model_file_digest
    from model_factory.io.tracking import connect
    from model_factory.pipeline.registry import attest_version

    client = connect(settings)
    first = client.get_model_version(name, "1")
    created = client.create_model_version(name, first.source, run_id=first.run_id)
    digest = model_file_digest(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/1"))
    client.set_model_version_tag(name, created.version, tag_schema.DECISION, "blessed")
    attest_version(client, settings, name, str(created.version), first.run_id, "blessed", digest)
    client.set_registered_model_alias(name, "champion", created.version)
    return str(created.version)


def test_a_refresh_loads_new_champions_of_models_in_use_only(fleet_registry, fleet_gateway):
    """The hot swap stays for busy models (their new champion is loaded off the request path);
    an idle model's new champion waits for its first request."""
    settings, _ = fleet_registry
    gateway = fleet_gateway.app_state.gateway
    busy, idle = fleet_name("fleet", 300), fleet_name("fleet", 301)
    assert predict(fleet_gateway, {"features": churn_rows(1)[0]}, model=busy).status_code == 200
    new_busy, new_idle = second_version(settings, busy), second_version(settings, idle)
    gateway.watcher.refresh()
    assert gateway.watcher.routes[busy].champion_version == new_busy
    assert gateway.store.peek(busy, new_busy) is not None, "the busy model's new champion was not loaded"
    assert gateway.store.peek(busy, "1") is None  # no route names v1 any more: dropped at once
    assert gateway.store.peek(idle, new_idle) is None  # idle: nothing loaded for it
    answer = predict(fleet_gateway, {"features": churn_rows(1)[0]}, model=idle)
    assert answer.status_code == 200 and answer.json()["version"] == new_idle
