"""Whole retrain DAGs run by Airflow against a real S3 endpoint (moto server on 127.0.0.1).

One run reads its source through an Airflow connection only (no AWS_* variables at all), the
other keeps the factory's object store on S3 via boto3's standard environment.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml
from model_factory.io import storage
from model_factory.settings import FactorySettings
from model_factory_dev import demo_data

from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

DAY = dt.date(2026, 4, 6)


def _spec_dir(tmp_path: Path, bucket: str, conn_id: str | None) -> Path:
    raw = yaml.safe_load((REPO / "include" / "models" / "churn.yaml").read_text())
    raw["source"]["uri"] = f"s3://{bucket}/source/churn/{{ds}}.csv"
    if conn_id:
        raw["source"]["aws_conn_id"] = conn_id
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "churn.yaml").write_text(yaml.safe_dump(raw))
    return folder


def _put_batch(client, bucket: str) -> bytes:
    df = demo_data.generate_batch("churn", DAY, rows=400)
    data = df.to_csv(index=False).encode()
    client.put_object(Bucket=bucket, Key=f"source/churn/{DAY}.csv", Body=data)
    return data


def _run_churn_dag():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["churn__retrain"]
    run = dag.test(logical_date=dt.datetime(DAY.year, DAY.month, DAY.day, tzinfo=dt.UTC))
    return str(run.state), {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_source_read_through_an_airflow_connection(
    airflow_db, factory_home, s3_server, s3_client, s3_bucket, tmp_path, monkeypatch
):
    data = _put_batch(s3_client, s3_bucket)
    # Nothing AWS in the environment: only the connection knows the endpoint and keys.
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(_spec_dir(tmp_path, s3_bucket, "factory_s3")))
    monkeypatch.setenv(
        "AIRFLOW_CONN_FACTORY_S3",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": s3_server, "region_name": "us-east-1"},
            }
        ),
    )
    storage._s3_client.cache_clear()

    state, tasks = _run_churn_dag()

    assert state == "success", tasks
    raw = list((factory_home / "store" / "raw" / "churn" / str(DAY)).glob("*/*.csv"))
    assert len(raw) == 1 and raw[0].read_bytes() == data
    manifest = json.loads((raw[0].parent / "manifest.json").read_text())
    assert manifest["source_uri"] == f"s3://{s3_bucket}/source/churn/{DAY}.csv"


def test_object_store_on_s3(airflow_db, factory_home, s3_env, s3_client, s3_bucket, tmp_path, monkeypatch):
    data = _put_batch(s3_client, s3_bucket)
    store = f"s3://{s3_bucket}/store"
    monkeypatch.setenv("FACTORY_STORE_URI", store)
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(_spec_dir(tmp_path, s3_bucket, None)))

    state, tasks = _run_churn_dag()

    assert state == "success", tasks
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="store/")["Contents"]}
    assert f"store/validated/churn/{DAY}/data.parquet" in keys
    raw_keys = [k for k in keys if k.startswith(f"store/raw/churn/{DAY}/") and k.endswith(".csv")]
    assert len(raw_keys) == 1
    assert s3_client.get_object(Bucket=s3_bucket, Key=raw_keys[0])["Body"].read() == data
    assert any(k.startswith("store/evaluation/churn/") and k.endswith("holdout.parquet") for k in keys)

    from model_factory.io import tracking

    client = tracking.connect(FactorySettings.from_env())
    version = client.get_model_version_by_alias("churn", "champion")
    uris = json.loads(client.get_run(version.run_id).data.tags["factory.data.uris"])
    assert uris == [f"{store}/validated/churn/{DAY}/data.parquet"]


def test_missing_connection_fails_the_run_naming_it(
    airflow_db, factory_home, s3_client, s3_bucket, tmp_path, monkeypatch, capsys
):
    _put_batch(s3_client, s3_bucket)
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_CONN", raising=False)
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(_spec_dir(tmp_path, s3_bucket, "no_such_conn")))

    state, tasks = _run_churn_dag()

    assert state == "failed" and tasks["ingest"] == "failed"
    out = capsys.readouterr()
    assert "source.aws_conn_id 'no_such_conn' names no Airflow connection" in out.out + out.err
