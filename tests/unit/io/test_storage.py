"""Tests for the object-store API (model_factory.io.storage) on ``file://`` URIs.

S3 is exercised against a real S3 server elsewhere; here only the URI checks that fail before
any S3 call are tested for ``s3://``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from model_factory.io import storage


@pytest.fixture
def root(tmp_path: Path) -> str:
    return (tmp_path / "store").as_uri()


def folder_of(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).parent


# --- write / read ----------------------------------------------------------------------------


def test_write_read_roundtrip(root: str) -> None:
    uri = storage.join(root, "raw", "churn", "2026-03-02", "batch.csv")
    data = b"a,b\n1,2\n\x00\xff binary is fine too"
    assert storage.write_bytes(uri, data) == uri
    assert storage.read_bytes(uri) == data
    assert Path(uri.removeprefix("file://")).read_bytes() == data


def test_write_creates_parent_folders(tmp_path: Path) -> None:
    uri = (tmp_path / "a" / "b" / "c" / "f.bin").as_uri()
    storage.write_bytes(uri, b"x")
    assert (tmp_path / "a" / "b" / "c" / "f.bin").read_bytes() == b"x"


def test_write_overwrites(root: str) -> None:
    uri = storage.join(root, "f.txt")
    storage.write_bytes(uri, b"old content that is longer")
    storage.write_bytes(uri, b"new")
    assert storage.read_bytes(uri) == b"new"


def test_write_empty_bytes(root: str) -> None:
    uri = storage.join(root, "empty")
    storage.write_bytes(uri, b"")
    assert storage.read_bytes(uri) == b""
    assert storage.exists(uri)


def test_write_leaves_no_temp_files(root: str) -> None:
    uris = [storage.join(root, "m", f"f{i}.json") for i in range(3)]
    for uri in uris:
        storage.write_bytes(uri, b"{}")
        storage.write_bytes(uri, b"{}")  # and an overwrite
    assert sorted(os.listdir(folder_of(uris[0]))) == ["f0.json", "f1.json", "f2.json"]


def test_write_is_atomic(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new bytes are complete in a temp file beside the target before one rename."""
    uri = storage.join(root, "model", "data.bin")
    target = Path(uri.removeprefix("file://"))
    storage.write_bytes(uri, b"old")
    new = b"n" * 100_000
    real_replace = os.replace
    seen: list[tuple[str, str]] = []

    def spy_replace(src: str, dst: str) -> None:
        seen.append((str(src), str(dst)))
        # At the moment of the rename a reader still sees the whole old file ...
        assert target.read_bytes() == b"old"
        # ... and the new bytes are already complete, in a hidden file in the same folder.
        assert Path(src).read_bytes() == new
        assert Path(src).parent == target.parent
        assert Path(src).name.startswith(".")
        real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", spy_replace)
    storage.write_bytes(uri, new)
    assert len(seen) == 1
    assert seen[0][1] == str(target)
    assert target.read_bytes() == new
    assert os.listdir(target.parent) == ["data.bin"]


def test_failed_write_raises_storage_error_and_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    uri = (tmp_path / "target").as_uri()
    try:
        with pytest.raises(storage.StorageError, match="target"):
            storage.write_bytes(uri, b"x")
    finally:
        leftovers = sorted(os.listdir(tmp_path))
    assert leftovers == ["target"]


def test_read_missing_is_object_not_found(root: str) -> None:
    uri = storage.join(root, "raw", "nope.csv")
    with pytest.raises(storage.ObjectNotFoundError) as info:
        storage.read_bytes(uri)
    assert issubclass(storage.ObjectNotFoundError, storage.StorageError)
    assert isinstance(info.value, storage.StorageError)
    assert str(info.value) == f"no file at {uri}"


def test_read_a_folder_is_a_storage_error_not_missing(tmp_path: Path) -> None:
    uri = tmp_path.as_uri()
    with pytest.raises(storage.StorageError) as info:
        storage.read_bytes(uri)
    assert not isinstance(info.value, storage.ObjectNotFoundError)
    assert str(info.value) == f"cannot read {uri}: Is a directory"


def test_storage_error_is_a_runtime_error() -> None:
    assert issubclass(storage.StorageError, RuntimeError)


# --- exists --------------------------------------------------------------------------------


def test_exists(root: str) -> None:
    uri = storage.join(root, "a", "b.txt")
    assert storage.exists(uri) is False
    storage.write_bytes(uri, b"x")
    assert storage.exists(uri) is True
    assert storage.exists(storage.join(root, "a", "c.txt")) is False
    assert storage.exists(storage.join(root, "nowhere", "b.txt")) is False


# --- list_uris -----------------------------------------------------------------------------


def test_list_uris_recursive_sorted_skipping_dot_files(tmp_path: Path) -> None:
    base = tmp_path / "store"
    for rel in ["b/2.txt", "a/z.txt", "a/sub/deep/1.txt", "top.txt", "b/1.txt"]:
        storage.write_bytes((base / rel).as_uri(), b"x")
    (base / "a" / ".hidden").write_bytes(b"x")
    (base / "a" / ".data.parquet.abc123").write_bytes(b"half-written temp")
    (base / "emptydir").mkdir()
    uris = storage.list_uris(base.as_uri())
    expected = [
        (base / rel).as_uri() for rel in ["a/sub/deep/1.txt", "a/z.txt", "b/1.txt", "b/2.txt", "top.txt"]
    ]
    assert uris == expected
    assert uris == sorted(uris)


def test_list_uris_of_a_sub_prefix(tmp_path: Path) -> None:
    base = tmp_path / "store"
    storage.write_bytes((base / "validated" / "churn" / "d1" / "data.parquet").as_uri(), b"1")
    storage.write_bytes((base / "validated" / "demand" / "d1" / "data.parquet").as_uri(), b"2")
    # A trailing slash on the prefix makes no difference.
    for prefix in [(base / "validated" / "churn").as_uri(), (base / "validated" / "churn").as_uri() + "/"]:
        assert storage.list_uris(prefix) == [(base / "validated" / "churn" / "d1" / "data.parquet").as_uri()]


def test_list_uris_of_missing_prefix_is_empty(root: str) -> None:
    assert storage.list_uris(storage.join(root, "nothing", "here")) == []


def test_listed_uris_can_be_read_back(tmp_path: Path) -> None:
    # A folder name that needs percent-encoding in a URI.
    base = tmp_path / "with space"
    storage.write_bytes(storage.join(base.as_uri(), "f.txt"), b"payload")
    (uri,) = storage.list_uris(base.as_uri())
    assert "with%20space" in uri
    assert storage.read_bytes(uri) == b"payload"
    assert storage.exists(uri)


# --- bad URIs ------------------------------------------------------------------------------

OPERATIONS = {
    "read_bytes": lambda uri: storage.read_bytes(uri),
    "write_bytes": lambda uri: storage.write_bytes(uri, b"x"),
    "exists": lambda uri: storage.exists(uri),
    "list_uris": lambda uri: storage.list_uris(uri),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("uri", ["http://example.com/a.csv", "ftp://host/a.csv", "/plain/path/a.csv"])
def test_unsupported_scheme(operation: str, uri: str) -> None:
    with pytest.raises(storage.StorageError) as info:
        OPERATIONS[operation](uri)
    assert not isinstance(info.value, storage.ObjectNotFoundError)
    assert str(info.value) == f"unsupported URI scheme in {uri!r}: use file:// or s3://"


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_s3_uri_without_bucket(operation: str) -> None:
    with pytest.raises(storage.StorageError) as info:
        OPERATIONS[operation]("s3:///key/without/bucket.csv")
    assert str(info.value) == "S3 URI without a bucket: s3:///key/without/bucket.csv"


# --- join ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "parts", "expected"),
    [
        ("file:///store", ("raw", "churn"), "file:///store/raw/churn"),
        ("file:///store/", ("raw/", "/churn/", "x.csv"), "file:///store/raw/churn/x.csv"),
        ("s3://bucket", ("prefix", "key.json"), "s3://bucket/prefix/key.json"),
        ("s3://bucket/", ("a/b",), "s3://bucket/a/b"),
        ("s3://bucket/root", (), "s3://bucket/root"),
        ("s3://bucket/root/", (), "s3://bucket/root"),
    ],
)
def test_join(base: str, parts: tuple[str, ...], expected: str) -> None:
    assert storage.join(base, *parts) == expected


def test_join_result_is_usable(tmp_path: Path) -> None:
    uri = storage.join(tmp_path.as_uri() + "/", "/x/", "y.txt")
    storage.write_bytes(uri, b"ok")
    assert (tmp_path / "x" / "y.txt").read_bytes() == b"ok"


# --- streaming (large objects at bounded memory) -----------------------------------------------


def test_download_file_streams_and_hashes(tmp_path: Path, root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    monkeypatch.setattr(storage, "CHUNK_BYTES", 7)  # many small pieces
    data = bytes(range(256)) * 41
    uri = storage.join(root, "big.bin")
    storage.write_bytes(uri, data)
    sha, size = storage.download_file(uri, tmp_path / "copy.bin")
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert (tmp_path / "copy.bin").read_bytes() == data
    assert storage.sha256_file(tmp_path / "copy.bin") == sha


def test_download_missing_is_object_not_found(tmp_path: Path, root: str) -> None:
    with pytest.raises(storage.ObjectNotFoundError, match="no file at"):
        storage.download_file(storage.join(root, "nope.csv"), tmp_path / "x")


def test_upload_file_roundtrip_atomic_and_no_temp_files(tmp_path: Path, root: str) -> None:
    source = tmp_path / "local.bin"
    source.write_bytes(b"x" * 100_000)
    uri = storage.join(root, "a", "b", "copy.bin")
    assert storage.upload_file(source, uri) == uri
    assert storage.read_bytes(uri) == source.read_bytes()
    assert [p.name for p in folder_of(uri).iterdir()] == ["copy.bin"]


def test_upload_file_failure_is_a_storage_error(tmp_path: Path) -> None:
    source = tmp_path / "local.bin"
    source.write_bytes(b"x")
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(storage.StorageError, match="cannot write"):
        storage.upload_file(source, (blocker / "sub" / "f").as_uri())


def test_local_file_of_a_file_uri_is_the_file_itself(root: str) -> None:
    uri = storage.join(root, "f.csv")
    storage.write_bytes(uri, b"a\n1\n")
    with storage.local_file(uri) as path:
        assert path == Path(uri.removeprefix("file://"))
    with pytest.raises(storage.ObjectNotFoundError), storage.local_file(storage.join(root, "nope")):
        pass


def test_copy(root: str) -> None:
    src, dst = storage.join(root, "a.bin"), storage.join(root, "q", "a.bin")
    storage.write_bytes(src, b"payload")
    storage.copy(src, dst)
    assert storage.read_bytes(dst) == b"payload" and storage.read_bytes(src) == b"payload"
