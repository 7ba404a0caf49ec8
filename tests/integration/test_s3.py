"""The S3 path of the object store, ingest and validation against a real local S3 endpoint.

moto runs in server mode on 127.0.0.1 (see conftest.py) and storage talks to it over HTTP with
boto3, exactly as it would talk to MinIO or AWS: endpoint and credentials come from the
standard AWS_* environment or from an explicit ``S3Options``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import socket
import time
from pathlib import Path

import pandas as pd
import pytest
from model_factory.io import batches, storage
from model_factory.pipeline import validation
from model_factory.settings import FactorySettings
from model_factory.spec import load_spec
from model_factory_dev import demo_data

from tests.conftest import settings_with

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CHURN_SPEC = REPO_ROOT / "include" / "models" / "churn.yaml"
DS = "2026-01-05"
DUMMY_KEY = "testing"  # the keys conftest's s3_env puts in the environment
REGION = "us-east-1"


# --------------------------------------------------------------------------- helpers


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def churn_csv(tmp_path: Path, ds: str, fault: str | None = None, rows: int = 300) -> bytes:
    """The demo generator's CSV bytes for one churn batch (optionally with a fault)."""
    df = demo_data.generate_batch("churn", dt.date.fromisoformat(ds), rows=rows, seed=0)
    data = demo_data.inject_fault(df, "churn", fault) if fault else df
    return demo_data.write_batch(data, tmp_path / f"{ds}.csv").read_bytes()


def put_source(s3_client, bucket: str, ds: str, data: bytes) -> str:
    """Upload a source batch with the test's own client; return its ETag."""
    s3_client.put_object(Bucket=bucket, Key=f"source/churn/{ds}.csv", Body=data)
    return s3_client.head_object(Bucket=bucket, Key=f"source/churn/{ds}.csv")["ETag"]


@pytest.fixture
def churn_spec(monkeypatch: pytest.MonkeyPatch, s3_bucket: str):
    monkeypatch.setenv("FACTORY_DATA_ROOT", f"s3://{s3_bucket}/source")
    return load_spec(CHURN_SPEC, FactorySettings.from_env())


# --------------------------------------------------------------------------- storage basics


def test_write_read_exists_list_roundtrip(s3_bucket: str) -> None:
    base = f"s3://{s3_bucket}"
    objects = {
        f"{base}/data/z.bin": b"last",
        f"{base}/data/a/2026-01-02/part.csv": b"a,b\n1,2\n",
        f"{base}/data/a/2026-01-01/part.csv": b"a,b\n3,4\n",
        f"{base}/data/b/deep/er/x.json": b'{"x": 1}',
        f"{base}/data-other/not-under-data.txt": b"sibling prefix, must not be listed",
    }
    for uri, data in objects.items():  # deliberately not in sorted order
        assert storage.write_bytes(uri, data) == uri

    for uri, data in objects.items():
        assert storage.read_bytes(uri) == data
        assert storage.exists(uri) is True

    under_data = sorted(u for u in objects if u.startswith(f"{base}/data/"))
    assert storage.list_uris(f"{base}/data") == under_data
    assert storage.list_uris(f"{base}/data/") == under_data
    assert storage.list_uris(f"{base}/data/a") == [
        f"{base}/data/a/2026-01-01/part.csv",
        f"{base}/data/a/2026-01-02/part.csv",
    ]
    assert storage.list_uris(base) == sorted(objects)
    assert storage.list_uris(f"{base}/nothing/here") == []
    # A "folder" is not an object.
    assert storage.exists(f"{base}/data/a") is False

    storage.write_bytes(f"{base}/data/z.bin", b"overwritten")
    assert storage.read_bytes(f"{base}/data/z.bin") == b"overwritten"


def test_missing_key_is_object_not_found(s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/no/such/key.csv"
    with pytest.raises(storage.ObjectNotFoundError) as info:
        storage.read_bytes(uri)
    assert uri in str(info.value)
    assert storage.exists(uri) is False


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda uri: storage.read_bytes(uri), id="read_bytes"),
        pytest.param(lambda uri: storage.write_bytes(uri, b"data"), id="write_bytes"),
        pytest.param(lambda uri: storage.list_uris(uri), id="list_uris"),
        pytest.param(lambda uri: storage.exists(uri), id="exists"),
    ],
)
def test_missing_bucket_is_named(s3_env: str, operation) -> None:
    bucket = "mf-test-no-such-bucket"
    uri = f"s3://{bucket}/some/key.csv"
    with pytest.raises(storage.StorageError) as info:
        operation(uri)
    assert not isinstance(info.value, storage.ObjectNotFoundError)
    message = str(info.value)
    assert "does not exist" in message
    assert repr(bucket) in message
    assert uri in message


def test_ingest_into_missing_store_bucket_names_the_bucket(
    churn_spec, s3_client, s3_bucket: str, tmp_path: Path
) -> None:
    put_source(s3_client, s3_bucket, DS, churn_csv(tmp_path, DS))
    with pytest.raises(storage.StorageError, match=r"bucket 'mf-test-no-store-bucket' does not exist"):
        batches.ingest_batch(churn_spec, DS, settings_with(store_uri="s3://mf-test-no-store-bucket/store"))


# --------------------------------------------------------------------------- access denied


def _new_key_options(iam, s3_env: str, user: str) -> storage.S3Options:
    """S3Options with a new access key of the IAM user ``user``."""
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return storage.S3Options(
        endpoint_url=s3_env,
        access_key_id=key["AccessKeyId"],
        secret_access_key=key["SecretAccessKey"],
        region_name=REGION,
    )


@pytest.fixture
def powerless_user(s3_env: str, make_client) -> storage.S3Options:
    """S3Options with the keys of an IAM user that has no policy at all."""
    iam = make_client(s3_env, "iam")
    iam.create_user(UserName="powerless")
    return _new_key_options(iam, s3_env, "powerless")


@pytest.fixture
def read_only_user(s3_env: str, s3_bucket: str, make_client) -> storage.S3Options:
    """S3Options with the keys of an IAM user allowed only s3:GetObject on s3_bucket."""
    iam = make_client(s3_env, "iam")
    iam.create_user(UserName="reader")
    iam.put_user_policy(
        UserName="reader",
        PolicyName="read-only",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:GetObject"],
                        "Resource": [f"arn:aws:s3:::{s3_bucket}/*"],
                    }
                ],
            }
        ),
    )
    return _new_key_options(iam, s3_env, "reader")


_OPERATIONS = [
    pytest.param(lambda uri, s3: storage.read_bytes(uri, s3), id="read_bytes"),
    pytest.param(lambda uri, s3: storage.write_bytes(uri, b"data", s3), id="write_bytes"),
    pytest.param(lambda uri, s3: storage.list_uris(uri, s3), id="list_uris"),
    pytest.param(lambda uri, s3: storage.exists(uri, s3), id="exists"),
]


@pytest.mark.parametrize("operation", _OPERATIONS)
def test_access_denied_for_user_without_policy(
    s3_client, s3_bucket: str, powerless_user: storage.S3Options, enforce_auth, operation
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="data/batch.csv", Body=b"a\n1\n")
    uri = f"s3://{s3_bucket}/data/batch.csv"
    with enforce_auth(), pytest.raises(storage.StorageError) as info:
        operation(uri, powerless_user)
    message = str(info.value)
    assert "access denied" in message
    assert uri in message
    assert not isinstance(info.value, storage.ObjectNotFoundError)


def test_policy_is_enforced_per_action(
    s3_client, s3_bucket: str, read_only_user: storage.S3Options, enforce_auth
) -> None:
    """Reads allowed by the policy work; a write is denied (so denial is not all-or-nothing)."""
    s3_client.put_object(Bucket=s3_bucket, Key="data/batch.csv", Body=b"a\n1\n")
    target = f"s3://{s3_bucket}/data/new.csv"
    with enforce_auth():
        assert storage.read_bytes(f"s3://{s3_bucket}/data/batch.csv", read_only_user) == b"a\n1\n"
        with pytest.raises(storage.StorageError, match=r"access denied to .*AccessDenied") as info:
            storage.write_bytes(target, b"x", read_only_user)
    assert target in str(info.value)
    assert not storage.exists(target)  # and nothing was written


def test_unknown_access_key_is_access_denied(s3_bucket: str, enforce_auth) -> None:
    """With auth on, the dummy env keys are unknown to moto's IAM: InvalidAccessKeyId."""
    uri = f"s3://{s3_bucket}/data/batch.csv"
    with enforce_auth(), pytest.raises(storage.StorageError) as info:
        storage.read_bytes(uri)
    message = str(info.value)
    assert "access denied" in message
    assert "InvalidAccessKeyId" in message
    assert uri in message


def test_auth_is_off_again_after_enforcement(moto_control) -> None:
    """The enforce_auth fixture restored moto's auth-free mode for later tests."""
    previous = moto_control("reset-auth", b"inf")["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
    assert previous == "inf"


# --------------------------------------------------------------------------- endpoints and options


def test_unreachable_endpoint_fails_fast(aws_clean_env: None) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"  # nothing listens there
    options = storage.S3Options(endpoint, DUMMY_KEY, DUMMY_KEY, REGION)
    uri = "s3://mf-test-bucket/any/key.csv"
    started = time.monotonic()
    with pytest.raises(storage.StorageError) as info:
        storage.read_bytes(uri, options)
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "cannot reach the S3 endpoint" in message
    assert uri in message
    assert endpoint in message
    # 3 attempts with standard-mode backoff (random * 2**n s): ~0-3 s on a refused port.
    assert elapsed < 8, f"took {elapsed:.1f} s to give up on a closed port"


def test_explicit_s3_options_without_env(
    s3_server: str, aws_clean_env: None, make_client, moto_control
) -> None:
    """Endpoint and credentials from S3Options alone (how an Airflow connection reaches storage)."""
    moto_control("reset")
    bucket = "mf-test-explicit-options"
    client = make_client(s3_server)
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="source/churn/x.csv", Body=b"a\n1\n")

    options = storage.S3Options(
        endpoint_url=s3_server, access_key_id=DUMMY_KEY, secret_access_key=DUMMY_KEY, region_name=REGION
    )
    uri = f"s3://{bucket}/source/churn/x.csv"
    assert storage.read_bytes(uri, options) == b"a\n1\n"
    assert storage.exists(uri, options) is True
    assert storage.list_uris(f"s3://{bucket}/source", options) == [uri]

    # The same options without keys: no credentials anywhere -> a clear error, not a hang.
    with pytest.raises(storage.StorageError, match=r"no S3 credentials for s3://"):
        storage.read_bytes(uri, storage.S3Options(endpoint_url=s3_server))


# --------------------------------------------------------------------------- ingest + validate


def test_ingest_and_validate_clean_batch(churn_spec, s3_client, s3_bucket: str, tmp_path: Path) -> None:
    source = churn_csv(tmp_path, DS)
    put_source(s3_client, s3_bucket, DS, source)
    store = f"s3://{s3_bucket}/store"
    sha = hashlib.sha256(source).hexdigest()

    manifest = batches.ingest_batch(churn_spec, DS, settings_with(store_uri=store))
    assert manifest["already_ingested"] is False
    assert manifest["source_uri"] == f"s3://{s3_bucket}/source/churn/{DS}.csv"
    assert manifest["raw_uri"] == f"{store}/raw/churn/{DS}/{sha[:12]}/{DS}.csv"
    assert manifest["raw_uri"].startswith(f"{store}/raw/churn/{DS}/")
    assert (manifest["sha256"], manifest["bytes"], manifest["rows"]) == (sha, len(source), 300)
    assert manifest["parse_error"] is None
    assert storage.read_bytes(manifest["raw_uri"]) == source
    raw_objects = storage.list_uris(f"{store}/raw")
    folder = f"{store}/raw/churn/{DS}/{sha[:12]}"
    assert raw_objects == sorted([manifest["raw_uri"], f"{folder}/manifest.json", f"{folder}/parsed.parquet"])

    again = batches.ingest_batch(churn_spec, DS, settings_with(store_uri=store))
    assert again["already_ingested"] is True
    assert again["raw_uri"] == manifest["raw_uri"]
    assert storage.list_uris(f"{store}/raw") == raw_objects

    outcome = validation.validate_batch(churn_spec, manifest, settings_with(store_uri=store))
    assert outcome["status"] == "validated", outcome
    assert outcome["validated_uri"] == f"{store}/validated/churn/{DS}/data.parquet"
    assert outcome["rows"] == 300
    assert storage.exists(outcome["validated_uri"])
    frame = pd.read_parquet(io.BytesIO(storage.read_bytes(outcome["validated_uri"])))
    assert len(frame) == 300
    assert {"churned", *churn_spec.features.all} <= set(frame.columns)
    report = json.loads(storage.read_bytes(outcome["validation_uri"]))
    assert report["success"] is True
    assert report["source"]["sha256"] == sha
    assert batches.recent_validated_batches(store, "churn", DS, 3) == [outcome["validated_uri"]]
    assert storage.list_uris(f"{store}/quarantine") == []


def test_fault_batch_is_quarantined_on_s3(churn_spec, s3_client, s3_bucket: str, tmp_path: Path) -> None:
    source = churn_csv(tmp_path, DS, fault="target_nulls")
    etag = put_source(s3_client, s3_bucket, DS, source)
    store = f"s3://{s3_bucket}/store"
    sha = hashlib.sha256(source).hexdigest()

    manifest = batches.ingest_batch(churn_spec, DS, settings_with(store_uri=store))
    outcome = validation.validate_batch(churn_spec, manifest, settings_with(store_uri=store))

    assert outcome["status"] == "quarantined", outcome
    folder = f"{store}/quarantine/churn/{DS}/{sha[:12]}"
    assert outcome["quarantine_uri"] == folder
    assert any("churned" in reason for reason in outcome["reasons"]), outcome["reasons"]
    assert storage.list_uris(folder) == sorted(
        f"{folder}/{name}" for name in (f"{DS}.csv", "REASON.txt", "validation.json", "manifest.json")
    )
    assert storage.read_bytes(f"{folder}/{DS}.csv") == source
    reason = storage.read_bytes(f"{folder}/REASON.txt").decode()
    assert "quarantined" in reason
    assert manifest["source_uri"] in reason
    assert "'churned'" in reason
    assert json.loads(storage.read_bytes(f"{folder}/validation.json"))["success"] is False

    # Nothing validated; the source object and the raw copy are untouched.
    assert not storage.exists(batches.validated_uri(store, "churn", DS))
    assert storage.list_uris(f"{store}/validated") == []
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"source/churn/{DS}.csv")
    assert head["ETag"] == etag
    assert s3_client.get_object(Bucket=s3_bucket, Key=f"source/churn/{DS}.csv")["Body"].read() == source
    assert storage.read_bytes(manifest["raw_uri"]) == source


def test_missing_source_batch_names_the_s3_path(churn_spec, s3_bucket: str) -> None:
    store = f"s3://{s3_bucket}/store"
    with pytest.raises(batches.MissingBatchError) as info:
        batches.ingest_batch(churn_spec, DS, settings_with(store_uri=store))
    assert f"s3://{s3_bucket}/source/churn/{DS}.csv" in str(info.value)
    assert "churn" in str(info.value)
    assert storage.list_uris(store) == []
