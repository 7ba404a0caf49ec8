"""Issue 10 item 5: fuzzing the gateway from its own OpenAPI description (schemathesis).

The gateway parses its JSON bodies itself (size limit, clear 4xx); its OpenAPI document still
describes them (``PredictRequest``, ``FeedbackRequest``), so schemathesis generates bodies that fit
the schema (positive) and that break it (negative), against a real uvicorn server holding a real
churn champion. Bounded: a fixed number of examples per operation and mode, no deadline.
Every answer must be below 500, and every 4xx must carry a message (``detail``; on the standard
protocols' routes their own field: MLflow's ``message``, the Open Inference Protocol's ``error``).
"""

from __future__ import annotations

import pytest

from tests.conftest import factory_env
from tests.unit.pipeline.test_training_evaluation import DAY, _retrain, _validated
from tests.unit.serving.test_gateway import CHURN, gateway_settings, uvicorn_server

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
EXAMPLES = 25  # per operation and generation mode


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory):
    from model_factory.serving import create_app

    home = tmp_path_factory.mktemp("fuzz") / "factory"
    with factory_env(home) as settings:
        _retrain(CHURN, settings, DAY, [_validated(settings, "churn", DAY)])
        app = create_app(gateway_settings(settings, home.parent, models=("churn",)))
        with uvicorn_server(app) as url:
            yield url


def _fuzz(url: str, operation, mode, path_parameters: dict | None, seen: dict[int, int]) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation.modes import GenerationMode

    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case) -> None:
        response = case.call(base_url=url, timeout=30)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} body={case.body!r:.300} -> "
            f"{response.status_code} {response.text[:300]}"
        )
        if response.status_code >= 400:  # the gateway's "detail", MLflow's "message", OIP's "error"
            body = response.json()
            message = body.get("detail") or body.get("message") or body.get("error")
            assert message, f"a {response.status_code} without a message: {case.formatted_path}"

    try:
        check()
    except Unsatisfiable:  # nothing in this operation's description can be broken (GET /health)
        assert mode == GenerationMode.NEGATIVE


def test_schemathesis_fuzz_gets_no_5xx(gateway_url):
    import schemathesis
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    described = {(op.method.upper(), op.path) for op in operations if op.body}
    assert {("POST", "/v1/models/{model}/predict"), ("POST", "/v1/feedback")} <= described
    seen: dict[int, int] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fixed = {"model": "churn"} if "{model}" in operation.path else None
            _fuzz(gateway_url, operation, mode, fixed, seen)
    print("status codes seen:", dict(sorted(seen.items())))
    assert sum(seen.values()) >= 100 and any(400 <= code < 500 for code in seen), seen
