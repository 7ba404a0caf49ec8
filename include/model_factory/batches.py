"""Ingest: copy a source batch into the object store, content-addressed, and read batches back.

Layout in the store (``<root>`` is FACTORY_STORE_URI)::

    <root>/raw/<model>/<ds>/<sha12>/<file>              exact bytes of the source batch
    <root>/raw/<model>/<ds>/<sha12>/manifest.json       source URI, sha256, bytes, rows
    <root>/validated/<model>/<ds>/data.parquet          typed, validated rows
    <root>/quarantine/<model>/<ds>/<sha12>/...          rejected bytes + GX result + REASON.txt

The raw copy is keyed by content, so re-ingesting the same date and bytes writes nothing new,
and a changed source file is kept beside the old one, not over it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from datetime import UTC, date, datetime
from pathlib import PurePosixPath

import pandas as pd
from model_factory import storage
from model_factory.spec import ModelSpec


class MissingBatchError(LookupError):
    """The source batch for a run's date is not there."""


class UnreadableBatchError(ValueError):
    """The batch bytes are not a valid CSV/Parquet table."""


_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DS = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_ds(ds: str) -> str:
    """A batch date must be canonical YYYY-MM-DD: it names folders and sorts as text."""
    if not _DS.match(ds):
        raise ValueError(f"batch date {ds!r} is not in YYYY-MM-DD form")
    date.fromisoformat(ds)
    return ds


def resolve_source_uri(template: str, ds: str, env: dict[str, str] | None = None) -> str:
    """Fill ``${ENV}`` and ``{ds}``/``{ds_nodash}`` in a spec's source URI."""
    env = dict(os.environ if env is None else env)

    def _env(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise KeyError(f"source.uri uses ${{{name}}} but that environment variable is not set")
        return env[name].rstrip("/")

    check_ds(ds)
    filled = _ENV_VAR.sub(_env, template)
    return filled.replace("{ds_nodash}", ds.replace("-", "")).replace("{ds}", ds)


def parse_batch(data: bytes, fmt: str, where: str) -> pd.DataFrame:
    if not data:
        raise UnreadableBatchError(f"{where} is an empty file (0 bytes)")
    try:
        if fmt == "parquet":
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_csv(io.BytesIO(data))
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnreadableBatchError(f"{where} is not a readable {fmt} table: {detail}") from exc


def write_parquet(df: pd.DataFrame, uri: str, s3: storage.S3Options | None = None) -> str:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return storage.write_bytes(uri, buffer.getvalue(), s3)


def ingest_batch(
    spec: ModelSpec,
    ds: str,
    store_uri: str,
    source_s3: storage.S3Options | None = None,
    store_s3: storage.S3Options | None = None,
) -> dict:
    """Copy the batch for ``ds`` into ``raw/``; return its manifest (a small dict for XCom)."""
    source_uri = resolve_source_uri(spec.source.uri, ds)
    try:
        data = storage.read_bytes(source_uri, source_s3)
    except storage.ObjectNotFoundError as exc:
        raise MissingBatchError(
            f"no source batch for model {spec.name!r} on {ds}: nothing at {source_uri}"
        ) from exc

    sha256 = hashlib.sha256(data).hexdigest()
    filename = PurePosixPath(source_uri.split("://", 1)[1]).name
    folder = storage.join(store_uri, "raw", spec.name, ds, sha256[:12])
    raw_uri = storage.join(folder, filename)
    manifest_uri = storage.join(folder, "manifest.json")

    if storage.exists(manifest_uri, store_s3):
        manifest = storage.read_json(manifest_uri, store_s3)
        return {**manifest, "already_ingested": True}

    try:
        rows: int | None = len(parse_batch(data, spec.source.format, source_uri))
        parse_error = None
    except UnreadableBatchError as exc:
        rows, parse_error = None, str(exc)
    manifest = {
        "model": spec.name,
        "ds": ds,
        "source_uri": source_uri,
        "raw_uri": raw_uri,
        "format": spec.source.format,
        "sha256": sha256,
        "bytes": len(data),
        "rows": rows,
        "parse_error": parse_error,
        "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    storage.write_bytes(raw_uri, data, store_s3)
    storage.write_json(manifest_uri, manifest, store_s3)
    return {**manifest, "already_ingested": False}


def validated_uri(store_uri: str, model: str, ds: str) -> str:
    return storage.join(store_uri, "validated", model, ds, "data.parquet")


def recent_validated_batches(
    store_uri: str, model: str, ds: str, window: int, s3: storage.S3Options | None = None
) -> list[str]:
    """URIs of the validated batches on or before ``ds``, newest last, at most ``window``."""
    prefix = storage.join(store_uri, "validated", model)
    dated = []
    for uri in storage.list_uris(prefix, s3):
        if not uri.endswith("/data.parquet"):
            continue
        batch_ds = uri.rsplit("/", 2)[-2]
        if batch_ds <= ds:
            dated.append((batch_ds, uri))
    return [uri for _, uri in sorted(dated)[-window:]] if window > 0 else []
