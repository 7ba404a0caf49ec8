"""The production configuration, run for real on this machine (issue 5).

One stack for the module (model_factory_dev.stack): Airflow's metadata DB in a fresh PostgreSQL
database, CeleryExecutor on Redis (own DB number and key prefix) with the result backend in
PostgreSQL, real ``scheduler``, ``dag-processor``, ``triggerer``, ``api-server`` and ``celery
worker`` processes, an ``mlflow server`` (PostgreSQL backend store, artifacts on S3) and moto's S3
server on 127.0.0.1 checking credentials and policies (an IAM user limited to the bucket). The demo
batches are uploaded to that S3; the specs read them from ``s3://`` and keep the store there.

The tests run in file order and share the stack; each one states what it expects relative to
the registry as it finds it. Everything is torn down at the end: processes, both databases, the
Redis keys. Skipped, with the reason, where PostgreSQL or Redis are not reachable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import signal
import time
from pathlib import Path

import pytest
import yaml
from model_factory_dev.stack import CELERY, AirflowApiError, Stack, StackConfig, StackError

from tests.conftest import REPO
from tests.integration.conftest import stack_home

pytestmark = pytest.mark.integration

DAY1, DAY2, DAY3 = "2026-01-05", "2026-01-06", "2026-01-07"
ROWS = 3000
CHURN = "churn__retrain"
OUTAGE = "churn_outage__retrain"  # MLflow goes down mid-run
BADCREDS = "churn_badcreds__retrain"  # reads its source with wrong S3 keys
RUN_TIMEOUT_S = 420


def _write_specs(folder: Path) -> Path:
    """churn as shipped, plus two copies for the fault cases (all read ${FACTORY_DATA_ROOT})."""
    base = yaml.safe_load((REPO / "include" / "models" / "churn.yaml").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    variants = {
        "churn": {"retries": 2},
        "churn_outage": {"retries": 1},
        "churn_badcreds": {"retries": 0},
    }
    for name, changes in variants.items():
        raw = {**base, "name": name, **changes}
        if name == "churn_badcreds":
            raw["source"] = {**base["source"], "aws_conn_id": "bad_s3"}
        raw["schedule"] = None
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def stack(postgres_and_redis, request) -> Stack:
    home = stack_home()
    t0 = time.perf_counter()
    config = StackConfig(
        home=home,
        executor=CELERY,
        postgres_url=postgres_and_redis["postgres_url"],
        redis_url=postgres_and_redis["redis_url"],
        specs_dir=_write_specs(home / "specs"),
        s3_auth=True,
        worker_concurrency=2,
        parallelism=4,
    )
    stack = Stack(config)
    # The connection the badcreds spec reads its source through: right endpoint, wrong keys.
    stack.env["AIRFLOW_CONN_BAD_S3"] = json.dumps(
        {
            "conn_type": "aws",
            "login": "AKIAWRONGWRONGWRONG0",
            "password": "not-the-secret",
            "extra": {"endpoint_url": stack.s3_endpoint, "region_name": "us-east-1"},
        }
    )
    try:
        stack.start()
        stack.upload_demo_data(dt.date.fromisoformat(DAY1), 3, rows=ROWS, models=["churn"])
        api = stack.client()
        for dag_id in (CHURN, OUTAGE, BADCREDS):
            api.wait_for_dag(dag_id, timeout_s=180)
            api.unpause(dag_id)
    except BaseException:
        print(stack.diagnostics())
        stack.stop()
        raise
    timings = {k: round(v, 1) for k, v in stack.timings.items()}
    print(f"\nstack up in {time.perf_counter() - t0:.0f} s: {timings}")
    failed_before = request.session.testsfailed
    yield stack
    failed = request.session.testsfailed > failed_before
    if failed:
        print(f"\n===== production stack logs (kept in {home})\n{stack.diagnostics()}")
    stack.stop()
    print(f"\nstack down: { {k: round(v, 1) for k, v in stack.timings.items() if k.endswith('_stop_s')} }")
    if not failed:
        shutil.rmtree(home, ignore_errors=True)


def _registry(stack: Stack):
    from mlflow.tracking import MlflowClient

    return MlflowClient(stack.mlflow_url, stack.mlflow_url)


def _versions(stack: Stack, model: str) -> list:
    return _registry(stack).search_model_versions(f"name = '{model}'")


def _run_and_wait(stack: Stack, dag_id: str, ds: str, **conf) -> tuple[str, dict]:
    api = stack.client()
    run_id = api.trigger(dag_id, conf={"ds": ds, **conf})["dag_run_id"]
    try:
        run = api.wait_for_run(dag_id, run_id, timeout_s=RUN_TIMEOUT_S)
    except TimeoutError:
        print(stack.diagnostics())
        raise
    return run_id, run


def _tasks(stack: Stack, dag_id: str, run_id: str) -> dict[str, tuple[str, int]]:
    instances = stack.client().task_instances(dag_id, run_id)
    return {t["task_id"]: (t["state"], t["try_number"]) for t in instances}


# ----------------------------------------------------------------------------- the happy path


def test_components_are_the_production_configuration(stack):
    assert set(stack.components) == {
        "s3",
        "mlflow",
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
        "worker",
    }
    assert stack.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert stack.env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert stack.env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql")
    assert stack.env["FACTORY_STORE_URI"].startswith("s3://")
    # the worker imported the tasks' libraries before forking its pool (model_factory.airflow.celery_config)
    assert "Celery worker: pre-imported" in stack.components["worker"].log_since_start()
    assert stack.env["MLFLOW_TRACKING_URI"] == stack.mlflow_url
    health = stack.client().health()
    assert {
        part: health[part]["status"] for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
    } == dict.fromkeys(("metadatabase", "scheduler", "triggerer", "dag_processor"), "healthy")
    assert stack.client().import_errors() == []


@pytest.fixture(scope="module")
def badcreds_run(stack) -> str:
    """The run of the spec that reads its source with wrong S3 keys (started once, early)."""
    run_id = "badcreds-day1"
    with contextlib.suppress(AirflowApiError):  # 409: already triggered
        stack.client().trigger(BADCREDS, conf={"ds": DAY1}, run_id=run_id)
    return run_id


def test_retrain_triggered_through_the_rest_api_registers_a_version(stack, badcreds_run):
    # badcreds_run (checked further down) is started first, so it runs alongside this one.
    before = len(_versions(stack, "churn"))

    run_id, run = _run_and_wait(stack, CHURN, DAY1)

    assert run["state"] == "success", _tasks(stack, CHURN, run_id)
    versions = _versions(stack, "churn")
    assert len(versions) == before + 1
    version = max(versions, key=lambda v: int(v.version))
    run_tags = _registry(stack).get_run(version.run_id).data.tags
    assert run_tags["factory.ds"] == DAY1
    assert run_tags["factory.airflow.run_id"] == run_id
    assert version.tags["factory.decision"] in ("blessed", "rejected", "held_for_review")
    # The data went through S3 end to end: the run's inputs are s3:// URIs of the stack's bucket.
    assert json.loads(run_tags["factory.data.uris"])[0].startswith(f"s3://{stack.bucket}/store/validated/")
    # ... and the model artifacts went through the MLflow server to S3.
    assert version.source.startswith(("models:/", "mlflow-artifacts:"))


# ----------------------------------------------------------------------------- worker killed


def test_worker_killed_mid_training_the_run_still_completes_without_duplicates(stack):
    api = stack.client()
    before = {v.version: v.run_id for v in _versions(stack, "churn")}
    # A batch large enough that training outlasts the wait below: the worker imports the task's
    # libraries before it forks (celery_config), so a 3,000-row train ends within a second or two.
    stack.upload_demo_data(dt.date.fromisoformat(DAY2), 1, rows=300_000, models=["churn"])
    run_id = api.trigger(CHURN, conf={"ds": DAY2})["dag_run_id"]

    api.wait_for_task(CHURN, run_id, "train", {"running"}, timeout_s=RUN_TIMEOUT_S, poll_s=0.1)
    time.sleep(1)  # inside the task: reading the batches from S3, fitting, logging
    assert api.task_instance(CHURN, run_id, "train")["state"] == "running", "train ended before the kill"
    killed = stack.kill("worker", signal.SIGKILL)  # the worker, its pool and the task process
    t_kill = time.perf_counter()
    assert killed, "no worker process to kill"
    assert not stack.components["worker"].alive()
    stack.restart("worker")

    run = api.wait_for_run(CHURN, run_id, timeout_s=RUN_TIMEOUT_S)
    recovered_s = time.perf_counter() - t_kill
    print(f"\nworker SIGKILLed mid-train; run {run['state']} {recovered_s:.0f} s after the kill")

    tasks = _tasks(stack, CHURN, run_id)
    assert run["state"] == "success", tasks
    assert tasks["train"] == ("success", 2), "train must have been retried once after the kill"
    tries = api.task_tries(CHURN, run_id, "train")
    first_try = min(tries, key=lambda t: t["try_number"])
    assert first_try["state"] == "failed", tries  # failed by the scheduler: no heartbeat

    after = _versions(stack, "churn")
    new = [v for v in after if v.version not in before]
    assert len(new) == 1, f"expected one new version, got {[(v.version, v.run_id) for v in new]}"
    assert len({v.run_id for v in after}) == len(after), "two versions of one MLflow run"
    client = _registry(stack)
    assert client.get_run(new[0].run_id).data.tags["factory.ds"] == DAY2
    # Every finished training of this date was registered exactly once; a run the kill cut
    # short is not FINISHED and has no version.
    exp = client.get_experiment_by_name("model-factory/churn")
    day2_runs = client.search_runs([exp.experiment_id], f"tags.`factory.ds` = '{DAY2}'")
    finished = [r for r in day2_runs if r.info.status == "FINISHED"]
    assert [r.info.run_id for r in finished] == [new[0].run_id]


def test_rerunning_a_date_reuses_the_training_and_registers_nothing_new(stack):
    before = sorted(int(v.version) for v in _versions(stack, "churn"))

    run_id, run = _run_and_wait(stack, CHURN, DAY2)

    assert run["state"] == "success", _tasks(stack, CHURN, run_id)
    assert stack.client().xcom(CHURN, run_id, "train")["reused"] is True
    assert sorted(int(v.version) for v in _versions(stack, "churn")) == before


# ----------------------------------------------------------------------------- faults


def test_wrong_s3_credentials_fail_the_run_saying_so(stack, badcreds_run):
    api = stack.client()
    run = api.wait_for_run(BADCREDS, badcreds_run, timeout_s=RUN_TIMEOUT_S)

    tasks = _tasks(stack, BADCREDS, badcreds_run)
    assert run["state"] == "failed" and tasks["ingest"][0] == "failed", tasks
    log = api.task_log(BADCREDS, badcreds_run, "ingest", 1)
    assert "access denied to s3://" in log and "InvalidAccessKeyId" in log, log[-2000:]
    assert "check the credentials" in log
    assert _versions(stack, "churn_badcreds") == []


def _mlflow_db(stack: Stack, sql: str, *params) -> list[tuple]:
    """Query MLflow's backend store directly (the server may be down)."""
    import psycopg2

    url = stack.config.postgres_url.rsplit("/", 1)[0] + f"/{stack.mlflow_db_name}"
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def test_mlflow_server_down_mid_run_retries_then_fails_cleanly(stack):
    """The last test that needs MLflow: the server is not brought back (teardown follows)."""
    api = stack.client()
    run_id = api.trigger(OUTAGE, conf={"ds": DAY3})["dag_run_id"]
    api.wait_for_task(OUTAGE, run_id, "validate", {"success"}, timeout_s=RUN_TIMEOUT_S)
    stack.kill("mlflow")  # the run is under way (ingested, validated): the server crashes

    run = api.wait_for_run(OUTAGE, run_id, timeout_s=RUN_TIMEOUT_S)

    tasks = _tasks(stack, OUTAGE, run_id)
    assert run["state"] == "failed", tasks
    assert tasks["train"] == ("failed", 2), "train must fail after its retry (spec retries: 1)"
    assert tasks["evaluate"][0] == tasks["register"][0] == "upstream_failed", tasks
    log = api.task_log(OUTAGE, run_id, "train", 2)
    assert "MLflow tracking store" in log and "unreachable" in log, log[-2000:]
    # Nothing half-registered: no registered model or version, no finished training run.
    assert _mlflow_db(stack, "SELECT version FROM model_versions WHERE name = %s", "churn_outage") == []
    assert _mlflow_db(stack, "SELECT name FROM registered_models WHERE name = %s", "churn_outage") == []
    finished = _mlflow_db(
        stack,
        "SELECT r.run_uuid FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
        "WHERE e.name = %s AND r.status = 'FINISHED'",
        "model-factory/churn_outage",
    )
    assert finished == []


# ----------------------------------------------------------------------------- services down at start


def _closed_port() -> int:
    from model_factory_dev.stack import free_port

    return free_port()  # bound and released: nothing listens there


def test_postgres_down_at_start_is_a_clear_error(tmp_path):
    port = _closed_port()
    stack = Stack(
        StackConfig(
            home=tmp_path, executor=CELERY, postgres_url=f"postgresql://postgres@127.0.0.1:{port}/postgres"
        )
    )
    with pytest.raises(StackError, match=rf"PostgreSQL is not reachable at 127\.0\.0\.1:{port}"):
        stack.start()
    assert stack.components == {}


def test_redis_down_at_start_is_a_clear_error(tmp_path, postgres_and_redis):
    port = _closed_port()
    stack = Stack(
        StackConfig(
            home=tmp_path,
            executor=CELERY,
            postgres_url=postgres_and_redis["postgres_url"],
            redis_url=f"redis://127.0.0.1:{port}/5",
        )
    )
    with pytest.raises(StackError, match=rf"Redis is not reachable at 127\.0\.0\.1:{port}.*broker"):
        stack.start()
    assert stack.components == {} and stack.databases == []


def test_wrong_s3_credentials_at_start_are_a_clear_error(stack, tmp_path):
    """A second stack pointed at the first one's S3 (which checks keys) with wrong keys."""
    other = Stack(
        StackConfig(
            home=tmp_path,
            mlflow_server=False,
            s3_endpoint=stack.s3_endpoint,
            aws_access_key_id="AKIAWRONGWRONGWRONG0",
            aws_secret_access_key="nope",
        )
    )
    with pytest.raises(StackError, match=r"refused the stack's credentials \(InvalidAccessKeyId\)"):
        other.start()
    assert other.components == {}
