"""The "Model factory" view inside the Airflow UI, for real: Airflow's api-server with the plugin
(started once for the module, with the dag-processor so the DAG pages exist), a fleet state made
by the factory's own functions (two churn versions, a canary at 25%, a drift check with its
report, a quarantined batch, an alert, a broken spec), a login through Airflow's login page in
headless Chromium, and screenshots kept under tests/artifacts/.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from model_factory_dev import demo_data
from model_factory_dev.stack import Stack, StackConfig

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
DAYS = [date(2026, 3, 2) + timedelta(days=i) for i in range(3)]
WATCHED, BAD_DAY = date(2026, 3, 5), date(2026, 3, 6)


def build_fleet_state(settings, specs: Path) -> dict:
    """What an ops team would find after a few days, made by the factory's own functions."""
    from model_factory.cli.main import main as cli
    from model_factory.io.batches import ingest_batch
    from model_factory.monitoring.alerts import Alert, deliver
    from model_factory.monitoring.watch import check_batch
    from model_factory.pipeline.validation import validate_batch
    from model_factory.review.card import produce_card

    from tests.unit.test_training_evaluation import _retrain, _validated, spec_for

    spec = spec_for("churn", **{"gates.max_regression": 0.5, "gates.too_good_jump": None})
    uris = [_validated(settings, "churn", day, rows=1500) for day in DAYS]
    trained, _, registered = _retrain(spec, settings, DAYS[-1], uris)
    assert registered["alias"] == "champion"
    produce_card(spec, registered, settings)  # the trust layer's card: the view links it when present
    later = DAYS[-1] + timedelta(days=1)
    assert _retrain(spec, settings, later, [_validated(settings, "churn", later)])[2]["alias"] == "challenger"
    assert (
        cli(["canary", "churn", "2", "--share", "0.25", "--reason", "try v2 on a quarter", "--actor", "ana"])
        == 0
    )

    source = Path(urlparse(settings.data_root).path) / "churn"
    source.mkdir(parents=True, exist_ok=True)
    demo_data.generate_batch("churn", WATCHED, rows=2000, covariate_shift=0.8).to_csv(
        source / f"{WATCHED}.csv", index=False
    )
    checked = check_batch(spec, str(WATCHED), settings)
    assert checked["status"] == "drift", checked
    deliver(Alert(model="churn", owner=spec.owner, kind="drift", subject=f"churn: drift on {WATCHED}",
                  body="\n".join(checked["reasons"]), details={"report_uri": checked["report_uri"]}),
            settings.home)  # fmt: skip

    bad = demo_data.generate_batch("churn", BAD_DAY, rows=300)
    bad["tenure_months"] = bad["tenure_months"].astype(object)
    bad.loc[:5, "tenure_months"] = "twelve"
    buffer = io.StringIO()
    bad.to_csv(buffer, index=False)
    (source / f"{BAD_DAY}.csv").write_text(buffer.getvalue())
    ingested = ingest_batch(spec, str(BAD_DAY), settings.store_uri)
    assert validate_batch(spec, ingested, settings.store_uri, specs)["status"] == "quarantined"
    return {"drift": checked, "train": {"run_id": trained["run_id"]}, "register": registered}


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    home = tmp_path_factory.mktemp("console")
    specs = home / "specs"
    specs.mkdir()
    for name in ("churn", "demand"):
        shutil.copy(REPO / "include" / "models" / f"{name}.yaml", specs / f"{name}.yaml")
    (specs / "typo.yaml").write_text("name: typo\nownr: growth\n")
    config = StackConfig(home=home / "stack", mlflow_server=False, s3=False, specs_dir=specs)
    with Stack(config) as stack:
        # The view needs the api-server (and the DAG pages the dag-processor makes); nothing runs.
        for idle in ("scheduler", "triggerer"):
            stack.stop_component(idle)
        from model_factory.settings import FactorySettings

        with stack.environ():
            state = build_fleet_state(FactorySettings.from_env(), specs)
        api = stack.client()
        api.wait_for_dag("churn__retrain", timeout_s=180)
        yield stack, api, state


def test_the_factory_api_refuses_anonymous_requests(console) -> None:
    stack, _, _ = console
    paths = ["/factory/", "/factory/api/fleet", "/factory/models/churn", "/factory/api/models/churn",
             f"/factory/models/churn/drift/{WATCHED}", "/factory/models/churn/versions/1/card"]  # fmt: skip
    for path in paths:
        anonymous = requests.get(stack.api_url + path, timeout=30, allow_redirects=False)
        assert anonymous.status_code in (401, 403), (path, anonymous.status_code, anonymous.text[:200])
        forged = requests.get(stack.api_url + path, timeout=30, cookies={"_token": "not-a-jwt"})
        assert forged.status_code in (401, 403), path


def test_the_fleet_api_answers_a_logged_in_user(console) -> None:
    stack, api, _ = console
    headers = {"Authorization": f"Bearer {api.token()}"}
    fleet = requests.get(f"{stack.api_url}/factory/api/fleet", headers=headers, timeout=60).json()
    rows = {row["model"]: row for row in fleet["models"]}
    assert rows["churn"]["champion"] == "1" and rows["churn"]["canary"]["share"] == 0.25
    assert rows["churn"]["quarantined"] == 1 and rows["churn"]["last_drift_check"]["status"] == "drift"
    assert rows["typo"]["status"] == "broken" and "ownr" in rows["typo"]["reason"]
    assert fleet["sources"]["airflow"] == "ok" and fleet["sources"]["mlflow"] == "ok"
    missing = requests.get(f"{stack.api_url}/factory/models/nope", headers=headers, timeout=30)
    assert missing.status_code == 404 and "no model" in missing.text
    report = requests.get(
        f"{stack.api_url}/factory/models/churn/drift/{WATCHED}", headers=headers, timeout=30
    )
    assert report.status_code == 200 and "tenure_months" in report.text


def test_extra_links_point_at_the_view(console) -> None:
    stack, api, state = console
    run = api.trigger("churn__drift_watch", conf={"ds": str(WATCHED)})
    with stack.environ():
        _set_result(stack, "churn__drift_watch", run["dag_run_id"], "check", state["drift"])
    path = f"/api/v2/dags/churn__drift_watch/dagRuns/{run['dag_run_id']}/taskInstances/check/links"
    links = api.get(path)["extra_links"]
    assert links["Drift report"] == f"/factory/models/churn/drift/{WATCHED}", links
    assert links["MLflow run"] is None and links["Model card"] is None  # not this task's links

    retrain = api.trigger("churn__retrain", conf={"ds": str(DAYS[-1])})
    for task_id in ("train", "register"):
        with stack.environ():
            _set_result(stack, "churn__retrain", retrain["dag_run_id"], task_id, state[task_id])
    base = f"/api/v2/dags/churn__retrain/dagRuns/{retrain['dag_run_id']}/taskInstances"
    train_links = api.get(f"{base}/train/links")["extra_links"]
    assert train_links["MLflow run"] == f"/factory/mlflow/runs/{state['train']['run_id']}", train_links
    card = api.get(f"{base}/register/links")["extra_links"]["Model card"]
    assert card == "/factory/models/churn/versions/1/card"
    headers = {"Authorization": f"Bearer {api.token()}"}
    page = requests.get(stack.api_url + card, headers=headers, timeout=60)
    assert page.status_code == 200 and "churn" in page.text and "<html" in page.text.lower()
    assert api.get(f"{base}/ingest/links")["extra_links"] == {
        "Drift report": None,
        "MLflow run": None,
        "Model card": None,
    }


def _set_result(stack: Stack, dag_id: str, run_id: str, task_id: str, value: dict) -> None:
    """A task's return value as the Task SDK would have pushed it (the scheduler is off)."""
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from airflow.models.xcom import XComModel\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as s:\n"
        "    XComModel.set(key='return_value', value=json.loads(sys.argv[4]), dag_id=sys.argv[1],\n"
        "                  run_id=sys.argv[2], task_id=sys.argv[3], session=s)\n"
    )
    subprocess.run([sys.executable, "-c", code, dag_id, run_id, task_id, json.dumps(value, default=str)],
                   env=stack.env, check=True, capture_output=True, text=True, timeout=120)  # fmt: skip


def _wait(condition, timeout_s: float = 60.0, what: str = "") -> object:
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


def _shot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"ui_{name}.png"
    driver.save_screenshot(str(path))
    return path


def test_the_view_in_the_airflow_ui(console, browser) -> None:
    from selenium.webdriver.common.by import By

    stack, api, _ = console
    driver = browser
    driver.get(f"{stack.api_url}/")
    user = _wait(lambda: driver.find_element(By.NAME, "username"), what="Airflow's login form")
    user.send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys(stack.admin_password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(lambda: "Model factory" in driver.page_source, what="the nav entry after login")
    _shot(driver, "airflow_home")

    # The nav entry opens the view inside Airflow's UI (an iframe of the plugin's page).
    driver.get(f"{stack.api_url}/plugin/model-factory")
    frame = _wait(lambda: driver.find_element(By.TAG_NAME, "iframe"), what="the view's iframe")
    driver.switch_to.frame(frame)
    table = _wait(lambda: driver.find_element(By.ID, "fleet"), what="the fleet table")
    text = table.text
    assert "churn" in text and "demand" in text and "typo" in text
    churn = driver.find_element(By.CSS_SELECTOR, "tr[data-model=churn]").text
    assert "v1" in churn and "roc_auc=" in churn and "v2 @ 25%" in churn and "drift" in churn
    assert "broken spec" in driver.find_element(By.CSS_SELECTOR, "tr[data-model=typo]").text
    assert "card v1" in churn  # the trust layer's card lights up its link
    driver.switch_to.default_content()
    fleet_png = _shot(driver, "fleet")

    # The model page: versions, canary, drift with its report, quarantine, alert, ops history.
    driver.get(f"{stack.api_url}/factory/models/churn")
    serving = _wait(lambda: driver.find_element(By.ID, "serving"), what="the model page").text
    assert "canary v2 at 25%" in serving and "champion v1" in serving
    page = driver.find_element(By.TAG_NAME, "body").text
    assert "canary_started" in page and "ana via cli" in page and "try v2 on a quarter" in page
    assert "twelve" in page or "tenure_months" in driver.find_element(By.ID, "quarantine").text
    assert f"churn: drift on {WATCHED}" in driver.find_element(By.ID, "alerts").text
    model_png = _shot(driver, "model_churn")
    driver.find_element(By.LINK_TEXT, "HTML report").click()
    _wait(lambda: "tenure_months" in driver.page_source, what="the drift report")
    _shot(driver, "drift_report")

    # The retrain button goes through Airflow's REST API as the logged-in user.
    driver.get(f"{stack.api_url}/factory/models/churn")
    before = {r["dag_run_id"] for r in api.runs("churn__retrain")}
    _wait(lambda: driver.find_element(By.ID, "trigger"), what="the trigger button").click()
    link = _wait(lambda: driver.find_element(By.ID, "run-link"), what="the started run's link")
    started = [r for r in api.runs("churn__retrain") if r["dag_run_id"] not in before]
    assert len(started) == 1 and started[0]["triggering_user_name"] == "admin", started
    assert started[0]["dag_run_id"] in link.text
    _shot(driver, "model_churn_triggered")

    # Roll back goes through the canary DAG's conf: the reason typed in, the user recorded by Airflow.
    before = {r["dag_run_id"] for r in api.runs("churn__canary")}
    driver.find_element(By.CSS_SELECTOR, "button.ops[data-action=rollback]").click()
    prompt = _wait(lambda: driver.switch_to.alert, what="the reason prompt")
    prompt.send_keys("complaints from support")
    prompt.accept()
    _wait(lambda: "churn__canary run" in driver.find_element(By.ID, "result").text, what="the canary run")
    [asked] = [r for r in api.runs("churn__canary") if r["dag_run_id"] not in before]
    assert asked["conf"] == {"action": "rollback", "reason": "complaints from support"}
    assert asked["triggering_user_name"] == "admin"
    print(f"screenshots: {fleet_png} {model_png}")
