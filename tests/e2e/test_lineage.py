"""Issue 21 item 4: a retrain's lineage reaches an OpenLineage backend through Airflow's
OpenLineage provider: ``train`` reads the dated batch and writes the MLflow run's model,
``register`` reads that model and writes the registry version, so the backend can draw
batch -> model version.

The backend is a tiny HTTP collector on 127.0.0.1 (what Marquez's ``/api/v1/lineage`` takes);
the retrain runs in its own process because the provider decides once per process whether it is
configured (its listener is not registered in a process that imported Airflow without a
transport)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e

RUN = textwrap.dedent(
    """
    import json, sys
    from datetime import UTC, date, datetime
    from pathlib import Path

    from airflow.utils import db
    from model_factory.airflow.build import build_all
    from model_factory_dev import demo_data

    db.initdb()
    home, repo = Path(sys.argv[1]), Path(sys.argv[2])
    demo_data.write_demo_batches(home / "source", date(2026, 3, 2), days=1, rows=600)
    dags = build_all(repo / "include" / "models", repo / "none", only_dag_id="churn__retrain")
    dag = dags["churn__retrain"]
    run = dag.test(logical_date=datetime(2026, 3, 2, tzinfo=UTC))
    tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print("RESULT " + json.dumps({"state": str(run.state), "tasks": tasks}))
    """
)


class _Collector(BaseHTTPRequestHandler):
    events: list[dict] = []

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        _Collector.events.append(json.loads(self.rfile.read(length)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def collector():
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    _Collector.events = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _retrain_with_openlineage(tmp_path: Path, collector: str) -> dict:
    home = tmp_path / "factory"
    inherited = ("AIRFLOW", "FACTORY_", "MLFLOW_TRACKING")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "model-factory-test",
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "http", "url": collector, "endpoint": "api/v1/lineage"}
            ),
            "FACTORY_HOME": str(home),
            "FACTORY_DATA_ROOT": (home / "source").as_uri(),
            "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO)]),
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(home), str(REPO)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and results, done.stderr[-4000:]
    return json.loads(results[-1].removeprefix("RESULT "))


def _complete(task_id: str) -> dict:
    found = [
        e
        for e in _Collector.events
        if e.get("eventType") == "COMPLETE" and e["job"]["name"] == f"churn__retrain.{task_id}"
    ]
    assert len(found) == 1, [(e.get("eventType"), e["job"]["name"]) for e in _Collector.events]
    return found[0]


def test_a_retrain_emits_batch_to_model_version_lineage_to_an_openlineage_backend(tmp_path, collector):
    result = _retrain_with_openlineage(tmp_path, collector)
    assert result["state"] == "success", result

    train, register = _complete("train"), _complete("register")
    batch = [(d["namespace"], d["name"]) for d in train["inputs"]]
    assert batch and all(ns == "file" and "2026-03-02" in name for ns, name in batch), batch
    [run_model] = [(d["namespace"], d["name"]) for d in train["outputs"]]
    assert run_model[0] == "mlflow://local" and run_model[1].startswith("runs/")
    assert [(d["namespace"], d["name"]) for d in register["inputs"]] == [run_model]
    [version] = [(d["namespace"], d["name"]) for d in register["outputs"]]
    assert version == ("mlflow://local", "models/churn/versions/1")
    assert train["run"]["facets"]["parent"]["job"]["name"] == "churn__retrain"  # the DAG run's job
