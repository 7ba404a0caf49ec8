"""One object-store API for ``file://`` and ``s3://`` URIs.

S3 goes through boto3. Endpoint and credentials come from an ``S3Options`` built from an Airflow
connection, or else from boto3's standard environment (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``...), never from code. Every failure becomes a ``StorageError`` that names
the URI and what to check.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

# Large objects move in pieces of this size (streamed to/from local files, never whole in memory).
CHUNK_BYTES = 8 * 1024 * 1024
# Above this size an S3 upload is a multipart upload (parallel parts, retried part by part).
MULTIPART_THRESHOLD = 64 * 1024 * 1024


class StorageError(RuntimeError):
    """An object-store operation failed; the message names the URI and the cause."""


class ObjectNotFoundError(StorageError):
    """The URI names nothing (missing file or S3 key)."""


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region_name: str | None = None


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def _split(uri: str) -> tuple[str, str, str]:
    parsed = urlparse(uri)
    if parsed.query or parsed.fragment:
        # urlparse would drop them: "file:///data/x.csv#{ds}" must not read /data/x.csv
        raise StorageError(f"URI {uri!r} has a query or fragment ('?'/'#'); the store has none")
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(f"file URI {uri!r} names a host; use file:///absolute/path")
        return "file", "", unquote(parsed.path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"S3 URI without a bucket: {uri}")
        return "s3", parsed.netloc, parsed.path.lstrip("/")
    raise StorageError(f"unsupported URI scheme in {uri!r}: use file:// or s3://")


@functools.lru_cache(maxsize=8)
def _s3_client(options: S3Options | None) -> Any:
    import boto3
    from botocore.config import Config

    options = options or S3Options()
    # A fresh session, not boto3's process-wide default one, so credentials are read anew.
    return boto3.session.Session().client(
        "s3",
        endpoint_url=options.endpoint_url,
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        region_name=options.region_name or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5),
    )


def _s3_error(exc: BaseException, uri: str, bucket: str) -> StorageError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return StorageError(f"S3 bucket {bucket!r} does not exist (while accessing {uri})")
        if code in ("NoSuchKey", "404", "NotFound"):
            return ObjectNotFoundError(f"no object at {uri}")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"):
            return StorageError(
                f"access denied to {uri} ({code}): check the credentials and the bucket policy"
            )
        return StorageError(f"S3 error {code} on {uri}: {exc}")
    if isinstance(exc, EndpointConnectionError):
        return StorageError(f"cannot reach the S3 endpoint for {uri}: {exc}")
    if isinstance(exc, NoCredentialsError):
        return StorageError(
            f"no S3 credentials for {uri}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "or the spec's source.aws_conn_id"
        )
    return StorageError(f"S3 failure on {uri}: {exc}")


def read_bytes(uri: str, s3: S3Options | None = None) -> bytes:
    scheme, bucket, key = _split(uri)
    if scheme == "file":
        try:
            return Path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(f"no file at {uri}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc.strerror}") from exc
    try:
        return _s3_client(s3).get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        raise _s3_error(exc, uri, bucket) from exc


# Temp files of an atomic write are ".<name>.<host>.<pid>.<random>.tmp": a write killed before
# its rename leaves one; the next write of the same file removes those whose process is gone
# from this host, or that are older than this (a writer on another host sharing the folder).
STALE_TEMP_SECONDS = 6 * 3600


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{socket.gethostname()}.{os.getpid()}."


def clean_stale_temps(path: Path) -> list[Path]:
    """Remove leftovers of killed writes of ``path``; return what was removed."""
    host = socket.gethostname()
    removed: list[Path] = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    for temp in candidates:
        parts = temp.name[len(path.name) + 2 : -len(".tmp")].rsplit(".", 2)
        if len(parts) != 3:
            continue
        temp_host, pid, _ = parts
        try:
            age = time.time() - temp.stat().st_mtime
        except OSError:
            continue
        gone = temp_host == host and pid.isdigit() and not process_alive(int(pid))
        if gone or age > STALE_TEMP_SECONDS:
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def process_alive(pid: int) -> bool:
    """Is a process with this id running on this host? A zombie (exited, not yet reaped) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _write_local_atomically(uri: str, path: Path, write: Callable[[Any], object]) -> None:
    """Write through a temp file in the same folder, then rename: a reader never sees half a
    file, and a failed write leaves nothing behind (a killed one is cleaned by the next)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(path.parent)  # ... and the rename survives a crash too
    except OSError as exc:
        raise StorageError(f"cannot write {uri}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a folder: the file itself is synced
        pass
    finally:
        os.close(fd)


def write_bytes(uri: str, data: bytes, s3: S3Options | None = None) -> str:
    """Write atomically (a reader never sees half a file) and return the URI."""
    scheme, bucket, key = _split(uri)
    if scheme == "file":
        _write_local_atomically(uri, Path(key), lambda out: out.write(data))
        return uri
    try:
        _s3_client(s3).put_object(Bucket=bucket, Key=key, Body=data)
    except Exception as exc:
        raise _s3_error(exc, uri, bucket) from exc
    return uri


def write_json(uri: str, obj: Any, s3: S3Options | None = None) -> str:
    """Write an indented JSON document (non-JSON values such as timestamps as strings)."""
    return write_bytes(uri, json.dumps(obj, indent=2, default=str).encode(), s3)


def read_json(uri: str, s3: S3Options | None = None) -> Any:
    return json.loads(read_bytes(uri, s3))


def delete(uri: str, s3: S3Options | None = None) -> None:
    """Remove one object; removing what is not there is not an error."""
    scheme, bucket, key = _split(uri)
    if scheme == "file":
        try:
            Path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {uri}: {exc.strerror or exc}") from exc
        return
    try:
        _s3_client(s3).delete_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise _s3_error(exc, uri, bucket) from exc


def exists(uri: str, s3: S3Options | None = None) -> bool:
    scheme, bucket, key = _split(uri)
    if scheme == "file":
        return Path(key).exists()
    client = _s3_client(s3)
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except Exception as exc:
        error = _s3_error(exc, uri, bucket)
        if not isinstance(error, ObjectNotFoundError):
            raise error from exc
    try:  # HEAD answers a bare 404 for a missing bucket too: tell the two apart
        client.head_bucket(Bucket=bucket)
    except Exception as exc:
        error = _s3_error(exc, uri, bucket)
        if isinstance(error, ObjectNotFoundError):
            error = StorageError(f"S3 bucket {bucket!r} does not exist (while accessing {uri})")
        raise error from exc
    return False


def list_uris(prefix_uri: str, s3: S3Options | None = None) -> list[str]:
    """All object URIs under a prefix (recursively), sorted."""
    scheme, bucket, key = _split(prefix_uri)
    if scheme == "file":
        root = Path(key)
        if not root.exists():
            return []
        return sorted(p.as_uri() for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    prefix = key.rstrip("/") + "/" if key else ""
    uris: list[str] = []
    try:
        paginator = _s3_client(s3).get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            uris.extend(f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents", []))
    except Exception as exc:
        raise _s3_error(exc, prefix_uri, bucket) from exc
    return sorted(uris)


# ----------------------------------------------------------------------------- streaming
# Bounded-memory moves for large batches: bytes go between the store and local files in
# CHUNK_BYTES pieces; nothing below holds a whole object in memory.


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(uri: str, path: Path | str, s3: S3Options | None = None) -> tuple[str, int]:
    """Stream the object at ``uri`` into the local file ``path``; return (sha256, size)."""
    scheme, bucket, key = _split(uri)
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "wb") as out:
            if scheme == "file":
                try:
                    source = open(key, "rb")  # noqa: SIM115
                except FileNotFoundError as exc:
                    raise ObjectNotFoundError(f"no file at {uri}") from exc
                except OSError as exc:
                    raise StorageError(f"cannot read {uri}: {exc.strerror}") from exc
                with source:
                    chunks = iter(lambda: source.read(CHUNK_BYTES), b"")
                    for chunk in chunks:
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            else:
                try:
                    body = _s3_client(s3).get_object(Bucket=bucket, Key=key)["Body"]
                    for chunk in body.iter_chunks(CHUNK_BYTES):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                except StorageError:
                    raise
                except Exception as exc:
                    raise _s3_error(exc, uri, bucket) from exc
    except OSError as exc:
        raise StorageError(f"cannot copy {uri} to local file {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest(), size


def upload_file(path: Path | str, uri: str, s3: S3Options | None = None) -> str:
    """Write a local file's bytes to ``uri``, atomically (streamed; multipart on S3 when large)."""
    scheme, bucket, key = _split(uri)
    if scheme == "file":

        def copy(out) -> None:
            with open(path, "rb") as source:
                shutil.copyfileobj(source, out, CHUNK_BYTES)

        _write_local_atomically(uri, Path(key), copy)
        return uri
    client = _s3_client(s3)
    try:
        if os.path.getsize(path) <= MULTIPART_THRESHOLD:
            with open(path, "rb") as source:  # put_object reads the file, not a bytes copy
                client.put_object(Bucket=bucket, Key=key, Body=source)
        else:
            from boto3.s3.transfer import TransferConfig

            config = TransferConfig(
                multipart_threshold=MULTIPART_THRESHOLD,
                multipart_chunksize=2 * CHUNK_BYTES,
                max_concurrency=4,
            )
            client.upload_file(str(path), bucket, key, Config=config)
    except Exception as exc:
        cause = exc.__context__ if type(exc).__name__ == "S3UploadFailedError" and exc.__context__ else exc
        raise _s3_error(cause, uri, bucket) from exc
    return uri


@contextlib.contextmanager
def local_file(uri: str, s3: S3Options | None = None) -> Iterator[Path]:
    """A local path holding the object's bytes: the file itself for ``file://``, a temporary
    copy (streamed, removed afterwards) for ``s3://``."""
    scheme, _, key = _split(uri)
    if scheme == "file":
        path = Path(key)
        if not path.exists():
            raise ObjectNotFoundError(f"no file at {uri}")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="factory-") as tmp:
        path = Path(tmp) / (Path(key).name or "object")
        download_file(uri, path, s3)
        yield path


def copy(src_uri: str, dst_uri: str, s3: S3Options | None = None) -> str:
    """Copy one object to another URI (both in the same store), streamed through a local file."""
    with local_file(src_uri, s3) as path:
        return upload_file(path, dst_uri, s3)
