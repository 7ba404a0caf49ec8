"""storage's streaming moves against a real S3 endpoint (moto server): large objects never
whole in memory, multipart above the threshold, the same errors as the whole-bytes calls."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from model_factory.io import storage

pytestmark = pytest.mark.integration


def test_download_streams_and_hashes(s3_client, s3_bucket: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(storage, "CHUNK_BYTES", 64 * 1024)
    data = os.urandom(3 * 1024 * 1024 + 17)
    s3_client.put_object(Bucket=s3_bucket, Key="big/object.bin", Body=data)
    sha, size = storage.download_file(f"s3://{s3_bucket}/big/object.bin", tmp_path / "copy")
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert (tmp_path / "copy").read_bytes() == data


def test_upload_above_the_threshold_is_multipart(
    s3_client, s3_bucket: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(storage, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(storage, "CHUNK_BYTES", 5 * 1024 * 1024 // 2)  # parts of 5 MiB, S3's minimum
    data = os.urandom(12 * 1024 * 1024)
    (tmp_path / "big").write_bytes(data)
    uri = f"s3://{s3_bucket}/store/big.bin"
    storage.upload_file(tmp_path / "big", uri)
    head = s3_client.head_object(Bucket=s3_bucket, Key="store/big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # 3 parts: a multipart upload
    with storage.local_file(uri) as path:
        assert path.read_bytes() == data
    assert not path.exists()  # the temporary copy is gone


def test_upload_small_file_and_copy(s3_client, s3_bucket: str, tmp_path: Path) -> None:
    (tmp_path / "small").write_bytes(b"a,b\n1,2\n")
    src, dst = f"s3://{s3_bucket}/raw/a.csv", f"s3://{s3_bucket}/quarantine/a.csv"
    storage.upload_file(tmp_path / "small", src)
    storage.copy(src, dst)
    assert storage.read_bytes(dst) == b"a,b\n1,2\n"


def test_streaming_errors_name_the_uri(s3_bucket: str, tmp_path: Path) -> None:
    with pytest.raises(storage.ObjectNotFoundError, match=f"no object at s3://{s3_bucket}/nope"):
        storage.download_file(f"s3://{s3_bucket}/nope", tmp_path / "x")
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(storage.StorageError, match="does not exist"):
        storage.upload_file(tmp_path / "f", "s3://no-such-bucket-here/x")


def test_streaming_with_wrong_keys_is_access_denied(s3_bucket: str, tmp_path: Path, enforce_auth) -> None:
    bad = storage.S3Options(access_key_id="AKIAWRONGWRONGWRONG0", secret_access_key="nope")
    (tmp_path / "f").write_bytes(b"x")
    with enforce_auth(), pytest.raises(storage.StorageError, match="access denied"):
        storage.upload_file(tmp_path / "f", f"s3://{s3_bucket}/x", bad)
    with enforce_auth(), pytest.raises(storage.StorageError, match="access denied"):
        storage.download_file(f"s3://{s3_bucket}/x", tmp_path / "y", bad)
