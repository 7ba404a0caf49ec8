"""Issue 21 item 4: MLflow's own UI shows a version's training batches as datasets. A real
``mlflow server`` over the test's tracking store, the run page rendered by headless Chromium
through Selenium: the run's Datasets section and the popover its "+1" opens list both batches
with their digests; screenshots of both are kept under tests/artifacts/ to look at."""

from __future__ import annotations

import shutil
import subprocess
from datetime import date

import pytest
from model_factory.io.tracking import connect
from model_factory.settings import FactorySettings

from tests.conftest import REPO
from tests.e2e.conftest import browser, wait_for  # noqa: F401 - browser: a fixture
from tests.integration.conftest import _die_with_parent, free_port, mlflow_server_argv, until_mlflow_up
from tests.unit.pipeline.test_training_evaluation import _retrain, _validated, spec_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed"),
]

ARTIFACTS = REPO / "tests" / "artifacts"
DAYS = [date(2026, 3, 2), date(2026, 3, 3)]


def test_the_mlflow_ui_run_page_shows_the_training_batches_as_datasets(
    factory_home,
    browser,  # noqa: F811 - the fixture imported above
):
    settings = FactorySettings.from_env()
    spec = spec_for("churn")
    batches = [_validated(settings, "churn", day) for day in DAYS]
    trained, _, registered = _retrain(spec, settings, DAYS[-1], batches)
    run = connect(settings).get_run(trained["run_id"])
    names = sorted(entry.dataset.name for entry in run.inputs.dataset_inputs)
    assert names == ["churn/2026-03-02", "churn/2026-03-03"]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = ["--backend-store-uri", settings.tracking_uri, "--default-artifact-root", settings.artifact_root]
    server = subprocess.Popen(
        mlflow_server_argv(port, *store),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    try:
        until_mlflow_up(url, server)
        page = f"{url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        shown = _datasets_shown(browser, page)
    finally:
        server.terminate()
        server.wait(timeout=60)
    # Each batch as MLflow shows a dataset, "name (digest)" with its context: the first in the
    # section, the other in the popover its "+1" opens.
    digests = {entry.dataset.name: entry.dataset.digest for entry in run.inputs.dataset_inputs}
    first, other = (f"{name} ({digests[name]})" for name in names)
    assert first in shown["section"] and "+1" in shown["section"], shown["section"]
    assert other in shown["popover"] and "Training" in shown["popover"], shown["popover"]
    shot = ARTIFACTS / "mlflow_run_datasets.png"
    assert shot.exists() and shot.stat().st_size > 20_000
    print(f"screenshots: {shot} (v{registered['version']}, run {run.info.run_id})")


def _datasets_shown(driver, page: str) -> dict[str, str]:
    """The run page's Datasets section's text, then that of the popover its "+1" opens (a
    screenshot of each)."""
    from selenium.webdriver.common.by import By

    driver.get(page)
    heading_parent = "//*[normalize-space(text())='Datasets']/.."

    def section_shown():
        return [e for e in driver.find_elements(By.XPATH, heading_parent) if "churn/" in e.text]

    def popover_shown():
        return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "[role=dialog]") if "churn/" in e.text]

    section = wait_for(section_shown, timeout_s=120, what="the run page's Datasets section")[0]
    listed = section.text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "mlflow_run_overview.png"))
    section.find_element(By.XPATH, ".//*[normalize-space(text())='+1']").click()
    popover = wait_for(popover_shown, timeout_s=120, what="the other datasets' popover")[0]
    driver.save_screenshot(str(ARTIFACTS / "mlflow_run_datasets.png"))
    return {"section": listed, "popover": popover}
