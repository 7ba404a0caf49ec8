"""The model page's health charts in headless Chromium: the console app served by uvicorn (no
Airflow: the view's Airflow wiring is tested in test_ui_console.py), a churn health history, and
a screenshot kept under tests/artifacts/ to look at."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import requests
from model_factory.console.app import ConsoleConfig, create_app
from model_factory.settings import FactorySettings

from tests.unit.console.health_fixture import write_churn_health

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture
def console_url(factory_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import uvicorn
    from model_factory_dev.stack import free_port

    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(REPO / "include" / "models" / "churn.yaml", specs / "churn.yaml")
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(specs))
    write_churn_health(FactorySettings.from_env())
    app = create_app(
        ConsoleConfig(require_user=lambda: "ana", settings=FactorySettings.from_env, airflow=lambda: None)
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.started, "the console app did not start within 120 s"
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def test_the_health_charts_render_in_chromium(browser, console_url: str) -> None:
    from selenium.webdriver.common.by import By

    assert requests.get(console_url + "/models/churn", timeout=60).status_code == 200
    browser.get(console_url + "/models/churn")
    figures = browser.find_elements(By.CSS_SELECTOR, "figure.chart")
    charts = {figure.get_attribute("data-chart"): figure for figure in figures}
    assert sorted(charts) == ["coverage", "drift", "latency", "metric"]
    for key, figure in charts.items():
        svg = figure.find_element(By.TAG_NAME, "svg")
        assert svg.size["width"] > 500 and svg.size["height"] > 150, key  # drawn, not collapsed
    metric = charts["metric"]
    realized = metric.find_element(By.CSS_SELECTOR, 'polyline[data-series="realized"]')
    estimated = metric.find_element(By.CSS_SELECTOR, 'polyline[data-series="estimated"]')
    band = metric.find_element(By.CSS_SELECTOR, "polygon.band")
    threshold = metric.find_element(By.CSS_SELECTOR, "line.threshold")
    # the estimate runs two days past the realized metric (outcomes arrive two days late)
    assert estimated.rect["width"] > realized.rect["width"] > 0
    assert band.rect["height"] > 0
    # the metric declines towards the threshold: the line's last point is nearer it than its first
    points = estimated.get_attribute("points").split()
    first, last = (float(point.split(",")[1]) for point in (points[0], points[-1]))
    rule = float(threshold.get_attribute("y1"))
    assert abs(last - rule) < abs(first - rule)
    assert "retrain by 2026-01-21" in browser.find_element(By.ID, "health-decision").text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.execute_script("document.getElementById('health').scrollIntoView()")
    assert browser.save_screenshot(str(ARTIFACTS / "health_charts.png"))
