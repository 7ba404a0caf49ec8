"""Issue 18 finding 2: an HTML artifact (model card, drift report) is served on Airflow's origin,
so a script injected into it would run with the logged-in user's session and could call Airflow's
API as them. In headless Chromium: a host app with a session cookie and an API that answers only
with it, the view mounted at /factory, and a card and a drift report that try every way to run
script. None may run (title unchanged, nothing stolen), and the page still renders its content
and its inline images.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse
from model_factory.console.app import ConsoleConfig, create_app
from model_factory.io import storage
from model_factory.io.tracking import connect
from model_factory.settings import FactorySettings

pytestmark = pytest.mark.e2e

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
HOSTILE = f"""<!doctype html><html><head><title>artifact</title>
<meta http-equiv="refresh" content="0; url=/steal?meta"></head><body>
<h1 id="content">Model card of churn v1</h1>
<img id="plot" alt="plot" src="data:image/png;base64,{PIXEL}">
<script>document.title = "PWNED";
fetch("/api/v2/secret").then(r => r.text()).then(t => {{ new Image().src = "/steal?" + t; }});</script>
<img src="/missing.png" onerror="document.title='PWNED-onerror'; new Image().src='/steal?onerror'">
<iframe src="javascript:parent.document.title='PWNED-iframe'"></iframe>
</body></html>"""


def _host(stolen: list[str]) -> FastAPI:
    """Airflow's role: a session cookie, an API that answers only with it, the view mounted."""

    def logged_in(request: Request) -> str:
        if request.cookies.get("_token") != "session-of-ana":
            raise HTTPException(401, "Not authenticated")
        return "ana"

    host = FastAPI()

    @host.get("/api/v2/secret")
    def secret(request: Request) -> PlainTextResponse:
        return PlainTextResponse("anas-secret" if request.cookies.get("_token") else "anonymous")

    @host.get("/steal")
    def steal(request: Request) -> PlainTextResponse:
        stolen.append(str(request.url.query))
        return PlainTextResponse("")

    host.mount(
        "/factory", create_app(ConsoleConfig(require_user=logged_in, settings=FactorySettings.from_env))
    )
    return host


@pytest.fixture
def served(factory_home) -> Iterator[tuple[str, list[str]]]:
    import uvicorn

    settings = FactorySettings.from_env()
    client = connect(settings)
    experiment = client.create_experiment("churn")
    run_id = client.create_run(experiment).info.run_id
    client.log_text(run_id, HOSTILE, "model_card.html")
    client.create_registered_model("churn")
    client.create_model_version("churn", f"runs:/{run_id}/model", run_id=run_id)
    report = storage.join(settings.store_uri, "drift", "churn", "2026-01-05", "report")
    storage.write_json(report + ".json", {"ds": "2026-01-05", "status": "drift", "reasons": []})
    storage.write_bytes(report + ".html", HOSTILE.encode())

    stolen: list[str] = []
    server = uvicorn.Server(uvicorn.Config(_host(stolen), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not (server.started and server.servers) and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", stolen
    server.should_exit = True
    thread.join(timeout=30)


@pytest.mark.parametrize(
    "path", ["/factory/models/churn/versions/1/card", "/factory/models/churn/drift/2026-01-05"]
)
def test_no_script_in_an_artifact_runs_on_airflows_origin(served, browser, path) -> None:
    base, stolen = served
    browser.get(f"{base}/steal?login")
    browser.add_cookie({"name": "_token", "value": "session-of-ana", "path": "/"})
    stolen.clear()
    browser.get(base + path)
    heading = browser.find_element("id", "content")
    assert heading.text == "Model card of churn v1"
    assert browser.execute_script("return document.getElementById('plot').naturalWidth") == 1
    time.sleep(2.0)  # what a script would have fetched, an error handler or a refresh would have sent
    assert browser.title == "artifact", browser.title
    assert browser.current_url == base + path
    assert stolen == []
