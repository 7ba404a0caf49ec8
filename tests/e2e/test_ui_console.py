"""The "Model factory" view inside the Airflow UI, for real: Airflow's api-server with the plugin
(started once for the module, with the dag-processor so the DAG pages exist), a fleet state made
by the factory's own functions (two churn versions, a canary at 25%, a drift check with its
report, a quarantined batch, an alert, a broken spec), a login through Airflow's login page in
headless Chromium, and screenshots kept under tests/artifacts/.

Every link and button is clicked where ops use it: inside Airflow's navigation, where the view
runs in Airflow's sandboxed iframe (no top navigation, no popups, no window.prompt). The MLflow UI
links land on a stand-in web server (FACTORY_MLFLOW_UI_URL): what is asserted is the URL the new
tab opens, not MLflow's page.
"""

from __future__ import annotations

import http.server
import io
import json
import shutil
import threading
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import requests
import yaml
from model_factory_dev import demo_data
from model_factory_dev.stack import Stack, StackConfig

from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
DAYS = [date(2026, 3, 2) + timedelta(days=i) for i in range(3)]
WATCHED, BAD_DAY = date(2026, 3, 5), date(2026, 3, 6)
SHADOWED = 40  # requests the segment champion answers while its challenger runs in shadow


def build_fleet_state(settings, specs: Path) -> dict:
    """What an ops team would find after a few days, made by the factory's own functions."""
    from model_factory.cli.main import main as cli
    from model_factory.io.batches import ingest_batch
    from model_factory.monitoring.alerts import Alert, deliver
    from model_factory.monitoring.watch import check_batch
    from model_factory.pipeline.validation import validate_batch
    from model_factory.review.card import produce_card

    from tests.unit.pipeline.test_training_evaluation import _retrain, _validated, spec_for

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
    deliver(
        Alert(
            model="churn",
            owner=spec.owner,
            kind="drift",
            subject=f"churn: drift on {WATCHED}",
            body="\n".join(checked["reasons"]),
            details={"report_uri": checked["report_uri"]},
        ),
        settings,
    )

    bad = demo_data.generate_batch("churn", BAD_DAY, rows=300)
    bad["tenure_months"] = bad["tenure_months"].astype(object)
    bad.loc[:5, "tenure_months"] = "twelve"
    buffer = io.StringIO()
    bad.to_csv(buffer, index=False)
    (source / f"{BAD_DAY}.csv").write_text(buffer.getvalue())
    ingested = ingest_batch(spec, str(BAD_DAY), settings)
    assert validate_batch(spec, ingested, settings, specs)["status"] == "quarantined"
    return {
        "drift": checked,
        "train": {"run_id": trained["run_id"]},
        "register": registered,
        "shadow": _segment_in_shadow(settings),
    }


def _segment_in_shadow(settings) -> dict:
    """segment (multiclass, string classes): v1 champion, v2 challenger started in shadow from the
    CLI, and live requests through the gateway (in-process, on the stack's registry and prediction
    log), so the view has a comparison to show; returns that comparison as the factory reads it."""
    from fastapi.testclient import TestClient
    from model_factory.cli.main import main as cli
    from model_factory.rollout.shadow import shadow_comparison
    from model_factory.serving import GatewaySettings, create_app
    from model_factory.serving.settings import prediction_db_uri

    from tests.unit.pipeline.test_training_evaluation import _retrain, _validated, spec_for

    spec = spec_for("segment", **{"gates.max_regression": 0.5, "gates.too_good_jump": None})
    for day, alias in ((DAYS[0], "champion"), (DAYS[1], "challenger")):
        registered = _retrain(spec, settings, day, [_validated(settings, "segment", day, rows=800)])[2]
        assert registered["alias"] == alias, registered
    started = ["shadow", "start", "segment", "2", "--reason", "v2 on live traffic first", "--actor", "ana"]
    assert cli(started) == 0
    rows = demo_data.generate_batch("segment", DAYS[2], rows=SHADOWED)[spec.features.all]
    app = create_app(GatewaySettings(factory=settings, db_uri=prediction_db_uri(settings), refresh_s=3600))
    with TestClient(app) as gateway:
        for row in json.loads(rows.to_json(orient="records")):
            answer = gateway.post("/v1/models/segment/predict", json={"features": row})
            assert answer.status_code == 200 and answer.json()["version"] == "1", answer.text  # champion's
    return wait_for(
        lambda: (c := shadow_comparison(settings, "segment")) and c["requests"] == SHADOWED and c,
        timeout_s=120,
        what="the gateway's log writer to store the shadow's rows",
    )


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    home = tmp_path_factory.mktemp("console")
    specs = home / "specs"
    specs.mkdir()
    for name in ("churn", "demand"):
        shutil.copy(REPO / "include" / "models" / f"{name}.yaml", specs / f"{name}.yaml")
    segment = yaml.safe_load((REPO / "include" / "models" / "segment.yaml").read_text())
    segment["canary"] = {"enabled": True}  # its canary DAG carries the shadow start/stop actions
    (specs / "segment.yaml").write_text(yaml.safe_dump(segment))
    (specs / "typo.yaml").write_text("name: typo\nownr: growth\n")
    mlflow_ui = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=mlflow_ui.serve_forever, daemon=True).start()
    env = {"FACTORY_MLFLOW_UI_URL": f"http://127.0.0.1:{mlflow_ui.server_address[1]}"}
    config = StackConfig(home=home / "stack", mlflow_server=False, s3=False, specs_dir=specs, env=env)
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
    mlflow_ui.shutdown()


def test_the_factory_api_refuses_anonymous_requests(console) -> None:
    stack, _, _ = console
    paths = [
        "/factory/",
        "/factory/api/fleet",
        "/factory/models/churn",
        "/factory/api/models/churn",
        f"/factory/models/churn/drift/{WATCHED}",
        "/factory/models/churn/versions/1/card",
    ]
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
    subprocess.run(
        [sys.executable, "-c", code, dag_id, run_id, task_id, json.dumps(value, default=str)],
        env=stack.env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _shot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"ui_{name}.png"
    driver.save_screenshot(str(path))
    return path


SANDBOX = "allow-scripts allow-same-origin allow-forms allow-downloads"


def _login(driver, stack: Stack) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{stack.api_url}/")
    wait_for(
        lambda: driver.find_elements(By.NAME, "username") or "Model factory" in driver.page_source,
        what="Airflow's login form (or its UI: the module's browser is logged in already)",
    )
    if not driver.find_elements(By.NAME, "username"):
        return
    user = driver.find_element(By.NAME, "username")
    user.send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys(stack.admin_password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: "Model factory" in driver.page_source, what="the nav entry after login")


def _in_airflow(driver, stack: Stack, path: str = "/factory/", ready: str = "body"):
    """Open ``path`` of the view inside Airflow's navigation (the plugin route carries the framed
    path) and switch into Airflow's iframe; returns the iframe element's sandbox attribute."""
    from selenium.webdriver.common.by import By

    driver.switch_to.default_content()
    driver.get(f"{stack.api_url}/plugin/model-factory{path}")
    frame = wait_for(
        lambda: driver.find_element(By.CSS_SELECTOR, "iframe[title='Model factory']"),
        what="the view's iframe",
    )
    sandbox = frame.get_attribute("sandbox")
    driver.switch_to.frame(frame)
    wait_for(lambda: driver.find_element(By.CSS_SELECTOR, ready), what=f"{ready} in the framed view")
    return sandbox


def _click(driver, css: str) -> None:
    from selenium.webdriver.common.by import By

    wait_for(lambda: driver.find_element(By.CSS_SELECTOR, css), what=css).click()


def _lands_in_airflow(driver, stack: Stack, path: str) -> None:
    """A data-airflow link clicked in the frame: Airflow's own page at ``path``, the view gone."""
    from selenium.webdriver.common.by import By

    driver.switch_to.default_content()
    wait_for(lambda: unquote(urlparse(driver.current_url).path) == path, what=f"Airflow at {path}")
    wait_for(
        lambda: not driver.find_elements(By.CSS_SELECTOR, "iframe[title='Model factory']"),
        what="the view's frame replaced by Airflow's page",
    )
    wait_for(
        lambda: path.rsplit("/", 1)[1] in driver.find_element(By.TAG_NAME, "body").text,
        what=f"Airflow's page of {path} rendered",
    )


def _lands_in_frame(driver, stack: Stack, path: str, ready: str) -> None:
    """A view link clicked in the frame: the frame shows ``path`` and Airflow's address bar follows."""
    from selenium.webdriver.common.by import By

    wait_for(lambda: driver.find_element(By.CSS_SELECTOR, ready), what=f"{ready} at {path}")
    assert driver.execute_script("return location.pathname") == path
    driver.switch_to.default_content()
    wait_for(
        lambda: urlparse(driver.current_url).path == f"/plugin/model-factory{path}",
        what=f"Airflow's URL to follow the frame to {path} (at {driver.current_url})",
    )
    driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe[title='Model factory']"))


def _artifact_shows(driver, text: str) -> None:
    """The card or drift report in its nested, sandboxed frame of the view's page shows ``text``."""
    from selenium.webdriver.common.by import By

    driver.switch_to.frame(driver.find_element(By.ID, "artifact"))
    wait_for(lambda: text in driver.find_element(By.TAG_NAME, "body").text, what=f"{text} in the artifact")
    assert not driver.find_elements(By.ID, "factory-back")  # its own back link only when alone
    driver.switch_to.parent_frame()


def _lands_in_new_tab(driver, link, url_start: str) -> str:
    """Click a data-outside ``link`` (a CSS selector or an element) in the frame: a new tab opens at
    ``url_start``..., the view stays in its frame (the driver switches back into it); returns the
    tab's URL."""
    from selenium.webdriver.common.by import By

    home, before = driver.current_window_handle, set(driver.window_handles)
    if isinstance(link, str):
        _click(driver, link)
    else:
        link.click()
    new = wait_for(lambda: set(driver.window_handles) - before, what="a new tab")
    driver.switch_to.window(new.pop())
    wait_for(lambda: driver.current_url.startswith(url_start), what=f"the new tab at {url_start}")
    landed = driver.current_url
    driver.close()
    driver.switch_to.window(home)
    driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe[title='Model factory']"))
    return landed


def test_every_link_of_the_fleet_page_inside_airflows_frame(console, browser) -> None:
    from selenium.webdriver.common.by import By

    stack, _, _ = console
    driver, ui = browser, stack.env["FACTORY_MLFLOW_UI_URL"]
    _login(driver, stack)
    _shot(driver, "airflow_home")
    assert _in_airflow(driver, stack, ready="#fleet") == SANDBOX  # what Airflow 3.3 puts on the frame
    churn = driver.find_element(By.CSS_SELECTOR, "tr[data-model=churn]").text
    assert "v1" in churn and "roc_auc=" in churn and "v2 @ 25%" in churn and "drift" in churn
    assert "card v1" in churn and "1 quarantined" in churn  # the card link and the attention reasons
    assert "broken spec" in driver.find_element(By.CSS_SELECTOR, "tr[data-model=typo]").text
    links = driver.find_elements(By.CSS_SELECTOR, "tr[data-model=churn] a[data-airflow]")
    paths = [urlparse(link.get_attribute("href")).path for link in links]
    driver.switch_to.default_content()
    fleet_png = _shot(driver, "fleet")

    assert {"/dags/churn__retrain", "/dags/churn__drift_watch", "/dags/churn__canary"} <= set(paths), paths
    for path in paths:  # every Airflow link of the row: its DAGs (and the last training's run, if any)
        _in_airflow(driver, stack, ready="#fleet")
        _click(driver, f"tr[data-model=churn] a[data-airflow][href='{path}']")
        _lands_in_airflow(driver, stack, path)
    _in_airflow(driver, stack, ready="#fleet")
    _click(driver, "tr[data-model=typo] a[data-airflow]")
    _lands_in_airflow(driver, stack, "/dags/invalid_spec__typo")

    _in_airflow(driver, stack, ready="#fleet")
    _lands_in_new_tab(driver, "tr[data-model=churn] a[data-outside]", f"{ui}/#/models/churn")
    _click(driver, "tr[data-model=churn] a[href$='/versions/1/card/page']")
    _lands_in_frame(driver, stack, "/factory/models/churn/versions/1/card/page", "#factory-back")
    _artifact_shows(driver, "churn")
    card = f"{stack.api_url}/factory/models/churn/versions/1/card"
    assert _lands_in_new_tab(driver, "#artifact-alone", card) == card  # alone, at Airflow's top level
    _click(driver, "#factory-back")
    _lands_in_frame(driver, stack, "/factory/models/churn", "#serving")
    _in_airflow(driver, stack, ready="#fleet")
    _click(driver, f"tr[data-model=churn] a[href$='/drift/{WATCHED}/page']")
    _lands_in_frame(driver, stack, f"/factory/models/churn/drift/{WATCHED}/page", "#factory-back")
    _artifact_shows(driver, "tenure_months")
    _in_airflow(driver, stack, ready="#fleet")
    _click(driver, "#analyzer-link")
    _lands_in_frame(driver, stack, "/factory/analyzer", "h1")

    # Filters and pages stay inside the frame.
    _in_airflow(driver, stack, "/factory/?per_page=1", ready="#fleet")
    assert "4 of 4 models · page 1 of 4" in driver.find_element(By.ID, "pager-top").text
    _click(driver, "#pager-top a.next")
    _lands_in_frame(driver, stack, "/factory/", "#pager-top a.prev")
    assert "page 2 of 4" in driver.find_element(By.ID, "pager-top").text
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.NAME, "state")).select_by_visible_text("broken")
    _click(driver, "#apply")
    wait_for(lambda: "state=broken" in driver.execute_script("return location.search"), what="the filter")
    rows = driver.find_elements(By.CSS_SELECTOR, "#fleet tbody tr[data-model]")
    assert [r.get_attribute("data-model") for r in rows] == ["typo"]
    _click(driver, "#clear")
    _lands_in_frame(driver, stack, "/factory/", "tr[data-model=churn]")
    print(f"screenshots: {fleet_png}")


def test_every_link_and_button_of_a_model_page_inside_airflows_frame(console, browser) -> None:
    from selenium.webdriver.common.by import By

    stack, api, _ = console
    driver, ui = browser, stack.env["FACTORY_MLFLOW_UI_URL"]
    _login(driver, stack)
    page = "/factory/models/churn"
    _in_airflow(driver, stack, page, ready="#serving")
    serving = driver.find_element(By.ID, "serving").text
    assert "canary v2 at 25%" in serving and "champion v1" in serving
    text = driver.find_element(By.TAG_NAME, "body").text
    assert "canary_started" in text and "ana via cli" in text and "try v2 on a quarter" in text
    assert f"churn: drift on {WATCHED}" in driver.find_element(By.ID, "alerts").text
    dags = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "a.dag-link")]
    driver.switch_to.default_content()
    model_png = _shot(driver, "model_churn")

    assert {"churn__retrain", "churn__drift_watch", "churn__canary"} <= {d.rsplit("/", 1)[1] for d in dags}
    for path in [urlparse(dag).path for dag in dags]:
        _in_airflow(driver, stack, page, ready="#serving")
        _click(driver, f"a.dag-link[href='{path}']")
        _lands_in_airflow(driver, stack, path)
    _in_airflow(driver, stack, page, ready="#serving")
    _lands_in_new_tab(driver, "#mlflow-model", f"{ui}/#/models/churn")
    run_links = driver.find_elements(By.CSS_SELECTOR, "a.mlflow-run")
    assert len(run_links) == 2  # v2 and v1
    for run_link in run_links:
        run_id = run_link.get_attribute("href").rsplit("/", 1)[1]
        assert _lands_in_new_tab(driver, run_link, f"{ui}/#/experiments/").endswith(f"/runs/{run_id}")
    _click(driver, "#versions a[href$='/versions/1/card/page']")
    _lands_in_frame(driver, stack, "/factory/models/churn/versions/1/card/page", "#factory-back")
    _artifact_shows(driver, "churn")
    _click(driver, "#factory-back")
    _lands_in_frame(driver, stack, page, "#serving")
    _click(driver, "#drift a")
    _lands_in_frame(driver, stack, f"/factory/models/churn/drift/{WATCHED}/page", "#factory-back")
    _artifact_shows(driver, "tenure_months")
    _click(driver, "#factory-back")
    _lands_in_frame(driver, stack, page, "#serving")
    _click(driver, "p a[href='/factory/']")
    _lands_in_frame(driver, stack, "/factory/", "#fleet")

    # Both DAGs start paused (Airflow's default): a run would wait forever, so the buttons say so.
    assert api.dag("churn__retrain")["is_paused"] and api.dag("churn__canary")["is_paused"]
    _in_airflow(driver, stack, page, ready="#actions")
    assert driver.find_element(By.ID, "trigger").get_attribute("disabled") is not None
    assert "churn__retrain is paused" in driver.find_element(By.ID, "actions").text
    driver.switch_to.default_content()
    _shot(driver, "model_churn_paused")
    for dag in ("churn__retrain", "churn__canary"):
        _in_airflow(driver, stack, page, ready="#actions")
        _click(driver, f"button.unpause[data-dag={dag}]")
        wait_for(lambda dag=dag: not api.dag(dag)["is_paused"], what=f"{dag} unpaused by the button")

    # The retrain button goes through Airflow's REST API as the logged-in user; its run link leads
    # to Airflow's run page.
    _in_airflow(driver, stack, page, ready="#trigger:not([disabled])")
    before = {r["dag_run_id"] for r in api.runs("churn__retrain")}
    _click(driver, "#trigger")
    link = wait_for(lambda: driver.find_element(By.ID, "run-link"), what="the started run's link")
    started = [r for r in api.runs("churn__retrain") if r["dag_run_id"] not in before]
    assert len(started) == 1 and started[0]["triggering_user_name"] == "admin", started
    assert started[0]["dag_run_id"] in link.text and "paused" not in driver.find_element(By.ID, "result").text
    driver.switch_to.default_content()
    _shot(driver, "model_churn_triggered")
    driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe[title='Model factory']"))
    link.click()
    _lands_in_airflow(driver, stack, f"/dags/churn__retrain/runs/{started[0]['dag_run_id']}")

    # Promote… and Roll back… ask for the reason in the page's own dialog (the frame blocks prompt()).
    _in_airflow(driver, stack, page, ready="#actions")
    before = {r["dag_run_id"] for r in api.runs("churn__canary")}
    _click(driver, "button.ops[data-action=promote]")
    wait_for(lambda: driver.find_element(By.ID, "ask").is_displayed(), what="the reason dialog")
    driver.switch_to.default_content()
    _shot(driver, "model_churn_dialog")
    driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe[title='Model factory']"))
    _click(driver, "#ask-cancel")
    assert not driver.find_element(By.ID, "ask").is_displayed()
    _click(driver, "button.ops[data-action=rollback]")
    driver.find_element(By.ID, "ask-reason").send_keys("complaints from support")
    _click(driver, "#ask-ok")
    wait_for(lambda: "churn__canary run" in driver.find_element(By.ID, "result").text, what="the canary run")
    [asked] = [r for r in api.runs("churn__canary") if r["dag_run_id"] not in before]
    assert asked["conf"] == {"action": "rollback", "reason": "complaints from support"}
    assert asked["triggering_user_name"] == "admin"

    # No canary: Promote is off and says why.
    _in_airflow(driver, stack, "/factory/models/demand", ready="#actions")
    assert driver.find_element(By.CSS_SELECTOR, "button.ops[data-action=promote]").get_attribute("disabled")
    assert "no canary is running" in driver.find_element(By.ID, "why-promote").text
    print(f"screenshots: {model_png}")


def test_the_shadow_buttons_and_comparison_of_a_model_page_inside_airflows_frame(console, browser) -> None:
    """The comparison the factory computed is what the page shows; Shadow… and Stop shadow… ask
    for a reason in the page's dialog and start the canary DAG with that conf action, whose run
    link lands on Airflow's run page."""
    from selenium.webdriver.common.by import By

    stack, api, state = console
    driver, compared = browser, state["shadow"]
    _login(driver, stack)
    page = "/factory/models/segment"
    _in_airflow(driver, stack, page, ready="#shadow-comparison")
    assert "shadow v2 on 100%" in driver.find_element(By.ID, "serving").text
    shown = driver.find_element(By.ID, "shadow-state").text
    assert "shadow v2 running on 100% of the champion's requests" in shown
    assert "callers only ever get the champion's answer" in shown
    cells = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#shadow-comparison tbody td")]
    champion, shadow = compared["champion_latency_ms"], compared["shadow_latency_ms"]
    assert cells == [
        str(SHADOWED),
        "0",
        f"{compared['agreement'] * 100:.1f}%",
        f"{compared['mean_abs_diff']:.4g}",
        f"{compared['mean_shift']:+.4g}",
        f"{champion['p50']:.2f} / {champion['p95']:.2f} ms",
        f"{shadow['p50']:.2f} / {shadow['p95']:.2f} ms",
    ], cells
    assert 0.5 < compared["agreement"] <= 1.0 and shadow["p50"] > 0  # two fits on similar data
    assert not driver.find_elements(By.ID, "shadow-errors")
    driver.switch_to.default_content()
    shadow_png = _shot(driver, "model_segment_shadow")

    # segment__canary starts paused: both buttons are off until the page's Unpause is clicked.
    _in_airflow(driver, stack, page, ready="#actions")
    for action in ("shadow", "shadow_stop"):
        button = driver.find_element(By.CSS_SELECTOR, f"button.ops[data-action={action}]")
        assert button.get_attribute("disabled"), action
    _click(driver, "button.unpause[data-dag=segment__canary]")
    wait_for(lambda: not api.dag("segment__canary")["is_paused"], what="segment__canary unpaused")

    asked = {"shadow": ("Shadow challenger v2", {"version": "2"}), "shadow_stop": ("Stop shadow", {})}
    for action, (title, extra) in asked.items():
        _in_airflow(driver, stack, page, ready=f"button.ops[data-action={action}]:not([disabled])")
        before = {r["dag_run_id"] for r in api.runs("segment__canary")}
        _click(driver, f"button.ops[data-action={action}]")
        wait_for(lambda: driver.find_element(By.ID, "ask").is_displayed(), what="the reason dialog")
        assert driver.find_element(By.ID, "ask-title").text == f"{title} segment"
        driver.find_element(By.ID, "ask-reason").send_keys(f"{action} from the view")
        _click(driver, "#ask-ok")
        link = wait_for(lambda: driver.find_element(By.ID, "run-link"), what=f"the {action} run's link")
        [run] = [r for r in api.runs("segment__canary") if r["dag_run_id"] not in before]
        assert run["conf"] == {"action": action, "reason": f"{action} from the view", **extra}
        assert run["triggering_user_name"] == "admin" and run["dag_run_id"] in link.text
        link.click()
        _lands_in_airflow(driver, stack, f"/dags/segment__canary/runs/{run['dag_run_id']}")
    print(f"screenshots: {shadow_png}")
