"""The model page's health charts: geometry from the health history, drawn as inline SVG."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from model_factory.console.health_charts import BOTTOM, HEIGHT, TOP, line_chart
from model_factory.settings import FactorySettings

from tests.unit.console.health_fixture import write_churn_health
from tests.unit.console.test_app import client  # noqa: F401 - fixture


def test_a_day_without_a_value_breaks_the_line_and_the_threshold_sits_at_its_value() -> None:
    days = [date(2026, 1, 1) + timedelta(days=k) for k in range(5)]
    chart = line_chart(
        "m",
        "metric",
        days,
        {"realized": [0.8, 0.78, None, 0.74, 0.72]},
        band=("95%", [0.7] * 5, [0.9] * 5),
        rule=(0.7, "threshold"),
    )
    (line,) = chart.lines
    assert [len(s.split()) for s in line.segments] == [2, 2] and len(line.dots) == 4
    low, high = HEIGHT - BOTTOM, TOP
    y_of = {round(v, 2): y for (_, y, tip), v in zip(line.dots, [0.8, 0.78, 0.74, 0.72], strict=True)}
    assert high <= y_of[0.8] < y_of[0.78] < y_of[0.74] < y_of[0.72] <= low  # higher value: higher up
    assert chart.rule is not None and chart.rule[0] > y_of[0.72]  # 0.7 is below 0.72
    assert chart.band is not None and len(chart.band.split()) == 10


def test_no_figures_is_said_not_drawn() -> None:
    assert line_chart("m", "metric", [], {"realized": []}).empty == "no figures yet"
    assert line_chart("m", "metric", [date(2026, 1, 1)], {"x": [None]}).empty == "no figures yet"


def test_the_model_page_draws_the_four_health_charts(client: TestClient) -> None:  # noqa: F811
    page = client.get("/models/churn", headers={"X-User": "ana"}).text
    assert "No health history yet" in page and 'data-chart="metric"' in page  # empty, said so

    write_churn_health(FactorySettings.from_env())
    page = client.get("/models/churn", headers={"X-User": "ana"}).text
    for key in ("metric", "drift", "coverage", "latency"):
        assert f'data-chart="{key}"' in page
    assert page.count('data-series="realized"') == 1 and page.count('data-series="estimated"') == 1
    assert 'class="band"' in page and 'class="threshold"' in page and "threshold 0.7" in page
    assert 'data-series="tenure_months"' in page and "PSI 0.2" in page
    assert "retrain by <b>2026-01-21</b>" in page
    assert "<script" not in page.split('id="health"')[1].split("<h2>Versions")[0]  # drawn server-side


@pytest.mark.parametrize("path", ["/api/models/churn"])
def test_the_model_json_carries_the_health_history(client: TestClient, path: str) -> None:  # noqa: F811
    write_churn_health(FactorySettings.from_env())
    detail = client.get(path, headers={"X-User": "ana"}).json()
    assert len(detail["health_history"]) == 14 and detail["health_history"][0]["day"] == "2026-01-05"
    assert detail["health"]["check"]["retrain_by"] == "2026-01-21"
