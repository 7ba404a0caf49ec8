"""The view's model page shows the shadow and its comparison, and offers start/stop through the
canary DAG's conf actions (Airflow checks the permission and records who asked)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from model_factory.rollout.shadow import ShadowPair, compare_shadow

from tests.unit.console.test_app import client, model_detail  # noqa: F401 - client: a fixture


def _detail(shadow: dict | None, comparison: dict | None, challenger: str | None = "2") -> dict:
    dags = {"retrain": "churn__retrain", "canary": "churn__canary"}
    return model_detail(challenger=challenger, dags=dags, shadow=shadow, shadow_comparison=comparison)


def _comparison() -> dict:
    pairs = [
        ShadowPair({"label": 1, "score": 0.9}, {"label": 1, "score": 0.8}, 1.0, 3.0),
        ShadowPair({"label": 0, "score": 0.2}, {"label": 1, "score": 0.6}, 1.0, 3.0),
        ShadowPair({"label": 0, "score": 0.2}, None, 1.0, None, "RuntimeError: boom"),
    ]
    result = compare_shadow(pairs, "churn", "2", ["1"])
    return {
        **result.as_dict(),
        "status": "running",
        "share": 0.5,
        "since": "2026-03-01T10:00:00",
        "summary": result.summary(),
    }


def test_the_model_page_shows_the_shadow_comparison(
    client: TestClient,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from model_factory.rollout import fleet

    shadow = {"version": "2", "share": 0.5, "started_at": "2026-03-01T10:00:00"}
    monkeypatch.setattr(
        fleet, "model_detail", lambda settings, model, airflow: _detail(shadow, _comparison())
    )
    page = client.get("/models/churn", headers={"x-user": "ops"}).text
    assert "shadow <b>v2</b> on <b>50%</b>" in page
    assert '<table id="shadow-comparison">' in page
    assert '<td>3</td><td class="bad">1</td>' in page  # 3 requests, 1 shadow error
    assert "<td>50.0%</td>" in page  # agreement on the 2 scored
    assert "1.00 / 1.00 ms" in page and "3.00 / 3.00 ms" in page
    assert "last shadow errors: RuntimeError: boom" in page
    assert 'data-action="shadow_stop" data-dag="churn__canary">Stop shadow…' in page
    assert 'data-action="shadow" data-dag="churn__canary" data-version="2">Shadow challenger v2…' in page


def test_shadow_buttons_are_off_when_there_is_nothing_to_shadow_or_stop(
    client: TestClient,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from model_factory.rollout import fleet

    monkeypatch.setattr(fleet, "model_detail", lambda settings, model, airflow: _detail(None, None, None))
    page = client.get("/models/churn", headers={"x-user": "ops"}).text
    assert 'data-action="shadow" data-dag="churn__canary" disabled>Shadow…' in page
    assert 'data-action="shadow_stop" data-dag="churn__canary" disabled>Stop shadow…' in page
    assert "shadow-comparison" not in page and "· shadow none" in page
