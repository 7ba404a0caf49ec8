"""The REST client's trigger: idempotent with a run id, so a locked metadata DB is retried."""

from __future__ import annotations

from typing import Any

import pytest
from model_factory.io import airflow_api
from model_factory.io.airflow_api import AirflowApiError, AirflowClient


class Answer:
    def __init__(self, status: int, body: str = "{}") -> None:
        self.status_code, self.text, self.content = status, body, body.encode()

    def json(self) -> Any:
        import json

        return json.loads(self.text)


class ScriptedAirflow(AirflowClient):
    """Answers each request with the next scripted answer; records what was sent."""

    def __init__(self, answers: list[Answer]) -> None:
        super().__init__("http://airflow.invalid", password="x")
        self._token = "token"
        self.answers, self.sent = answers, []

    def _send(self, method: str, url: str, **kwargs: Any) -> Answer:
        self.sent.append((method, url.removeprefix(self.base_url)))
        return self.answers.pop(0)


LOCKED = Answer(500, '{"detail": {"reason": "Database error"}}')
CREATED = Answer(200, '{"dag_run_id": "demo__x"}')


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(airflow_api.time, "sleep", lambda s: None)


def test_a_trigger_with_a_run_id_is_retried_past_a_locked_database() -> None:
    client = ScriptedAirflow([LOCKED, LOCKED, CREATED])
    assert client.trigger("churn__retrain", {"ds": "2026-01-05"}, run_id="demo__x")["dag_run_id"] == "demo__x"
    assert [method for method, _ in client.sent] == ["POST", "POST", "POST"]


def test_a_retry_that_finds_the_run_already_created_returns_it() -> None:
    client = ScriptedAirflow([LOCKED, Answer(409, '{"detail": "exists"}'), CREATED])
    assert client.trigger("churn__retrain", run_id="demo__x")["dag_run_id"] == "demo__x"
    assert client.sent[-1] == ("GET", "/api/v2/dags/churn__retrain/dagRuns/demo__x")


def test_without_a_run_id_nothing_is_retried_and_a_conflict_is_an_error() -> None:
    with pytest.raises(AirflowApiError, match="HTTP 500"):
        ScriptedAirflow([LOCKED, CREATED]).trigger("churn__retrain")
    with pytest.raises(AirflowApiError, match="HTTP 409"):
        ScriptedAirflow([Answer(409)]).trigger(
            "churn__retrain", run_id="taken"
        )  # first attempt: a real clash
    client = ScriptedAirflow([LOCKED] * airflow_api.TRIGGER_ATTEMPTS)
    with pytest.raises(AirflowApiError, match="HTTP 500"):
        client.trigger("churn__retrain", run_id="demo__x")
    assert len(client.sent) == airflow_api.TRIGGER_ATTEMPTS


def test_all_dags_pages_past_the_first_thousand() -> None:
    import json

    def page(first: int, count: int) -> Answer:
        dags = [{"dag_id": f"m{i}__retrain"} for i in range(first, first + count)]
        return Answer(200, json.dumps({"dags": dags, "total_entries": 5}))

    client = ScriptedAirflow([page(0, 2), page(2, 2), page(4, 1)])
    found = client.all_dags(page_size=2, dag_id_prefix_pattern="m__")
    assert [d["dag_id"] for d in found] == [f"m{i}__retrain" for i in range(5)]
    assert len(client.sent) == 3
