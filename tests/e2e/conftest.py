"""Fixtures of the browser tests: Debian's Chromium, headless, driven by Selenium; and what the
scheduler tests share: a quick churn spec, a dev stack's config, a retrain run, a wait."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest
import yaml
from model_factory_dev.stack import StackConfig

from tests.conftest import REPO

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: `apt-get install chromium chromium-driver` (make test does it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--window-size=1500,1100",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def wait_for(condition, timeout_s: float = 60.0, what: str = "") -> object:
    """Poll ``condition`` until it returns something truthy (an exception counts as not yet: the
    page is still loading) and return that; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = condition()
        except Exception:  # the page is still loading
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def until(what: str, check, timeout_s: float = 180, poll_s: float = 2.0):
    """Poll ``check`` (an Airflow or gateway call: its errors fail the test) until it returns
    something truthy and return that; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(poll_s)
    raise AssertionError(f"{what} did not happen within {timeout_s:.0f} s")


def quick_churn_spec(folder: Path, gates: dict, **sections: dict) -> Path:
    """``folder`` with the shipped churn spec for a scheduler test: each version trains on its own
    day, no drift watch, ``gates`` updated, ``sections`` (canary, review...) replaced."""
    spec = yaml.safe_load((REPO / "include" / "models" / "churn.yaml").read_text())
    spec["training"] = {"window_batches": 1}
    spec["drift"] = {"enabled": False}
    spec["gates"].update(gates)
    spec.update(sections)
    folder.mkdir(parents=True)
    (folder / "churn.yaml").write_text(yaml.safe_dump(spec))
    return folder


def scheduler_stack(tmp_path: Path, specs: Path, **config) -> StackConfig:
    """A dev stack under ``tmp_path`` over ``specs``: SQLite, local store, MLflow in the tasks."""
    return StackConfig(home=tmp_path / "stack", mlflow_server=False, s3=False, specs_dir=specs, **config)


def retrain(api, model: str, day: date, timeout_s: float) -> tuple[str, dict]:
    """Trigger ``<model>__retrain`` for ``day``, wait for its success; its run id and what
    ``register`` returned."""
    run = api.trigger(f"{model}__retrain", conf={"ds": str(day)})
    done = api.wait_for_run(f"{model}__retrain", run["dag_run_id"], timeout_s=timeout_s)
    assert done["state"] == "success"
    return run["dag_run_id"], api.xcom(f"{model}__retrain", run["dag_run_id"], "register")
