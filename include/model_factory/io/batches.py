"""Ingest: copy a source batch into the object store, content-addressed, and read batches back.

Layout in the store (``<root>`` is FACTORY_STORE_URI)::

    <root>/raw/<model>/<ds>/<sha12>/<file>              exact bytes of the source batch
    <root>/raw/<model>/<ds>/<sha12>/manifest.json       source URI, sha256, bytes, rows
    <root>/raw/<model>/<ds>/<sha12>/parsed.parquet      a CSV batch's rows, parsed once at ingest
    <root>/validated/<model>/<ds>/data.parquet          typed, validated rows
    <root>/quarantine/<model>/<ds>/<sha12>/...          rejected bytes + GX result + REASON.txt

The raw copy is keyed by content, so re-ingesting the same date and bytes writes nothing new,
and a changed source file is kept beside the old one, not over it.

A CSV batch is parsed once, at ingest, into ``parsed.parquet``; validation, training and
scoring read that, never the CSV again (parsing it was most of their reading time).

Memory stays bounded whatever the batch size: bytes are streamed through a local spool file
(hashed on the way), a CSV is parsed chunk by chunk into one row group per chunk, and readers
hand out tables in chunks of ``rows`` rows (Parquet row groups, CSV chunks): the caller's
``FactorySettings.chunk_rows`` (FACTORY_CHUNK_ROWS).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from model_factory.contracts import IngestedBatch, IngestedManifest
from model_factory.errors import PermanentError
from model_factory.io import storage
from model_factory.settings import FactorySettings
from model_factory.spec import URI_VARIABLE, URI_VARIABLES_ENV, ModelSpec, uri_variable_allowed

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported by the functions that read tables, not here: listing the store's batches
# (``validated_dates``: a fleet page's quarantine column) must not cost a `status` process the
# 0.44 s of `import pandas` (python -X importtime)


class MissingBatchError(LookupError):
    """The source batch for a run's date is not there."""


class UnreadableBatchError(ValueError):
    """The batch bytes are not a valid CSV/Parquet table."""


_DS = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_ds(ds: str) -> str:
    """A batch date must be canonical YYYY-MM-DD: it names folders and sorts as text."""
    if not _DS.match(ds):
        raise ValueError(f"batch date {ds!r} is not in YYYY-MM-DD form")
    date.fromisoformat(ds)
    return ds


class SourceUriError(PermanentError, ValueError):
    """A source URI the factory will not read: a variable outside the allow-list, a file
    outside the data roots, a query or fragment. The message never holds a variable's value."""


# Besides FACTORY_DATA_ROOT, file sources may live under these folders (comma-separated URIs).
SOURCE_ROOTS_ENV = "FACTORY_SOURCE_ROOTS"


def source_roots(settings: FactorySettings) -> list[str]:
    """Where file sources may be read: the data root (FACTORY_DATA_ROOT) and the
    FACTORY_SOURCE_ROOTS list."""
    extra = [r.strip() for r in settings.source_roots.split(",") if r.strip()]
    return [settings.data_root, *extra]


def confine_source(uri: str, template: str, settings: FactorySettings) -> str:
    """Refuse a resolved source URI that is not file:// or s3://, has a query or fragment, or
    is a file (after symlinks and ``..``) outside the data roots (``source_roots``)."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in ("file", "s3"):
        raise SourceUriError(f"source URI {template!r} does not resolve to a file:// or s3:// URI")
    parsed = urlparse(uri)
    if parsed.query or parsed.fragment or "?" in uri or "#" in uri:
        raise SourceUriError(
            f"source URI {template!r}: '?' and '#' (a URI query or fragment) are not part of a path"
        )
    if scheme == "s3":
        return uri
    if parsed.netloc not in ("", "localhost"):
        raise SourceUriError(f"source URI {template!r} names a host ({parsed.netloc!r}); use file:///path")
    real = os.path.realpath(unquote(parsed.path))
    roots = source_roots(settings)
    for root in roots:
        if root.startswith("file://"):
            base = os.path.realpath(unquote(urlparse(root).path))
            if real == base or real.startswith(base.rstrip("/") + "/"):
                return uri
    raise SourceUriError(
        f"source file {real} is outside the data roots {roots}: put it under FACTORY_DATA_ROOT "
        f"or add its folder to {SOURCE_ROOTS_ENV}"
    )


def resolve_source_uri(
    template: str, ds: str, settings: FactorySettings, env: Mapping[str, str] | None = None
) -> str:
    """Fill ``${VAR}`` and ``{ds}``/``{ds_nodash}`` in a spec's source URI, then confine it to
    the data roots of ``settings``.

    Only allow-listed variables (FACTORY_*, and those named in FACTORY_URI_VARIABLES) are
    filled, from ``env`` (default: this process's environment, the spec feature itself); errors
    name the variable, never its value.
    """
    env = dict(os.environ if env is None else env)

    def _env(match: re.Match[str]) -> str:
        name = match.group(1)
        if not uri_variable_allowed(name, env.get(URI_VARIABLES_ENV, "")):
            raise SourceUriError(
                f"source.uri uses ${{{name}}}, which is not an allowed variable: only FACTORY_* "
                f"ones and those listed in {URI_VARIABLES_ENV} are filled"
            )
        if name not in env:
            raise KeyError(f"source.uri uses ${{{name}}} but that environment variable is not set")
        return env[name].rstrip("/")

    check_ds(ds)
    filled = URI_VARIABLE.sub(_env, template)
    filled = filled.replace("{ds_nodash}", ds.replace("-", "")).replace("{ds}", ds)
    return confine_source(filled, template, settings)


# Rows per chunk when reading a batch: ~100-300 MB of pandas memory for the demo's columns
# (the default of FactorySettings.chunk_rows, FACTORY_CHUNK_ROWS).
DEFAULT_CHUNK_ROWS = 1_000_000


def _unreadable(exc: Exception, fmt: str, where: str) -> UnreadableBatchError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UnreadableBatchError(f"{where} is not a readable {fmt} table: {detail}")


def parse_batch(data: bytes, fmt: str, where: str) -> pd.DataFrame:
    import pandas as pd

    if not data:
        raise UnreadableBatchError(f"{where} is an empty file (0 bytes)")
    try:
        if fmt == "parquet":
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_csv(io.BytesIO(data))
    except Exception as exc:
        raise _unreadable(exc, fmt, where) from exc


def iter_frames(path: Path | str, fmt: str, where: str, rows: int) -> Iterator[pd.DataFrame]:
    """The table in a local file as DataFrames of at most ``rows`` rows each, in file order.

    Chunk by chunk this gives the same columns and dtypes as ``parse_batch`` on the whole file
    (CSV dtypes are inferred per chunk: a column can be int64 in one chunk, float64 in the next).
    An empty table still yields one (empty) frame with its columns. Raises UnreadableBatchError,
    possibly after some chunks, for a file that is not a readable table.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    if os.path.getsize(path) == 0:
        raise UnreadableBatchError(f"{where} is an empty file (0 bytes)")
    if rows < 1:
        raise ValueError(f"rows per chunk must be >= 1, got {rows}")
    yielded = False
    try:
        if fmt == "parquet":
            # Whole row groups, a few at a time up to ``rows`` rows: unlike iter_batches, this
            # hands every buffer back after each chunk (measured: flat RSS over 20M rows).
            parquet = pq.ParquetFile(path, pre_buffer=False)
            for groups in _row_group_runs(parquet.metadata, rows):
                table = parquet.read_row_groups(groups)
                for start in range(0, table.num_rows, rows):  # a row group larger than rows
                    yielded = True
                    yield table.slice(start, rows).to_pandas()
                del table
            if not yielded:
                yield parquet.schema_arrow.empty_table().to_pandas()
        else:
            with pd.read_csv(path, chunksize=rows) as reader:
                for chunk in reader:
                    yielded = True
                    yield chunk
            if not yielded:  # header only: an empty frame with the header's columns
                yield pd.read_csv(path, nrows=0)
    except UnreadableBatchError:
        raise
    except Exception as exc:
        raise _unreadable(exc, fmt, where) from exc


def _row_group_runs(metadata, rows: int) -> Iterator[list[int]]:
    """Consecutive row groups, as few per run as fill ``rows`` (at least one group per run)."""
    run: list[int] = []
    filled = 0
    for index in range(metadata.num_row_groups):
        size = metadata.row_group(index).num_rows
        if run and filled + size > rows:
            yield run
            run, filled = [], 0
        run.append(index)
        filled += size
    if run:
        yield run


def count_rows(path: Path | str, fmt: str, where: str, rows: int) -> int:
    """Rows of a local table file: Parquet from its footer, CSV by parsing it chunk by chunk."""
    if fmt == "parquet" and os.path.getsize(path) > 0:
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except Exception as exc:
            raise _unreadable(exc, fmt, where) from exc
    return sum(len(frame) for frame in iter_frames(path, fmt, where, rows))


def write_parquet(df: pd.DataFrame, uri: str, s3: storage.S3Options | None = None) -> str:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return storage.write_bytes(uri, buffer.getvalue(), s3)


def write_parquet_file(
    frames: Iterable[pd.DataFrame], path: Path | str, dtypes: dict[str, object] | None = None
) -> int:
    """Write frames one after the other into one Parquet file (a row group per frame, so later
    readers can stream it back); ``dtypes`` casts columns first. Returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, total = None, 0
    try:
        for frame in frames:
            if dtypes:
                frame = frame.astype({c: t for c, t in dtypes.items() if c in frame.columns})
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(str(path), table.schema)
            elif table.schema != writer.schema:
                table = table.cast(writer.schema)
            writer.write_table(table)
            total += len(frame)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError("write_parquet_file needs at least one frame")
    return total


def note_dtypes(frame: pd.DataFrame, seen: dict[str, set]) -> None:
    """Add a chunk's column dtypes to ``seen`` (CSV infers them per chunk)."""
    for column, dtype in frame.dtypes.items():
        seen.setdefault(str(column), set()).add(dtype)


def unified_dtypes(seen: dict[str, set]) -> dict[str, object]:
    """Dtypes for columns whose chunks disagree (CSV infers per chunk): numbers as float64,
    anything else as string, so every chunk fits one Parquet schema."""
    import pandas as pd

    out: dict[str, object] = {}
    for column, dtypes in seen.items():
        if len(dtypes) > 1:
            numeric = all(
                pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in dtypes
            )
            out[column] = "float64" if numeric else "str"
    return out


def csv_to_parquet(path: Path | str, out: Path | str, where: str, rows: int) -> int:
    """Parse a local CSV once, ``rows`` rows at a time, into a Parquet file (a row group per chunk).

    Chunks whose inferred dtypes fit the first chunk's schema are written as they come; when a
    later chunk does not fit (an int column that turns float, a number column that turns text)
    the file is written again with every chunk cast to the dtypes the columns share
    (``unified_dtypes``). Returns the rows; raises UnreadableBatchError for a damaged file.
    """
    import pyarrow as pa

    seen: dict[str, set] = {}

    def tracked() -> Iterator[pd.DataFrame]:
        for frame in iter_frames(path, "csv", where, rows):
            note_dtypes(frame, seen)
            yield frame

    try:
        return write_parquet_file(tracked(), out)
    except UnreadableBatchError:
        raise
    except (pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError):  # ArrowInvalid is a ValueError
        for _ in tracked():  # every chunk's types: the first pass stopped where one did not fit
            pass
        return write_parquet_file(iter_frames(path, "csv", where, rows), out, unified_dtypes(seen))


def ingest_batch(
    spec: ModelSpec,
    ds: str,
    settings: FactorySettings,
    source_s3: storage.S3Options | None = None,
    store_s3: storage.S3Options | None = None,
) -> IngestedBatch:
    """Copy the batch for ``ds`` into ``raw/`` of ``settings.store_uri``; return its manifest (a
    small dict for XCom). The source must lie under the data roots of ``settings``; a CSV is
    parsed ``settings.chunk_rows`` rows at a time.

    The bytes are streamed into a local spool file (hashed on the way, so the copy and the hash
    are of the same bytes even if the source changes meanwhile), then streamed to the store.
    """
    source_uri = resolve_source_uri(spec.source.uri, ds, settings)
    filename = PurePosixPath(source_uri.split("://", 1)[1]).name
    with tempfile.TemporaryDirectory(prefix="factory-ingest-") as spool:
        local = Path(spool) / (filename or "batch")
        try:
            sha256, size = storage.download_file(source_uri, local, source_s3)
        except storage.ObjectNotFoundError as exc:
            raise MissingBatchError(
                f"no source batch for model {spec.name!r} on {ds}: nothing at {source_uri}"
            ) from exc

        folder = storage.join(settings.store_uri, "raw", spec.name, ds, sha256[:12])
        raw_uri = storage.join(folder, filename)
        manifest_uri = storage.join(folder, "manifest.json")

        if storage.exists(manifest_uri, store_s3):
            manifest: IngestedManifest = storage.read_json(manifest_uri, store_s3)
            return {**manifest, "already_ingested": True}

        parsed = Path(spool) / "parsed.parquet"
        parsed_uri: str | None = None
        try:
            if spec.source.format == "csv":
                rows: int | None = csv_to_parquet(local, parsed, source_uri, settings.chunk_rows)
                parsed_uri = storage.join(folder, "parsed.parquet")
            else:
                rows = count_rows(local, spec.source.format, source_uri, settings.chunk_rows)
                parsed_uri = raw_uri
            parse_error = None
        except UnreadableBatchError as exc:
            rows, parse_error, parsed_uri = None, str(exc), None
        manifest = {
            "model": spec.name,
            "ds": ds,
            "source_uri": source_uri,
            "raw_uri": raw_uri,
            "parsed_uri": parsed_uri,
            "format": spec.source.format,
            "sha256": sha256,
            "bytes": size,
            "rows": rows,
            "parse_error": parse_error,
            "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        # The manifest is written last (it marks the batch as ingested); if anything fails
        # before it (a full disk), what was copied is removed: no raw file without a manifest.
        copied: list[str] = []
        try:
            storage.upload_file(local, raw_uri, store_s3)
            copied.append(raw_uri)
            if parsed_uri and parsed_uri != raw_uri:
                storage.upload_file(parsed, parsed_uri, store_s3)
                copied.append(parsed_uri)
            storage.write_json(manifest_uri, manifest, store_s3)
        except BaseException:
            for uri in copied:
                with contextlib.suppress(Exception):
                    storage.delete(uri, store_s3)
            raise
    return {**manifest, "already_ingested": False}


def read_ingested(ingested: IngestedBatch, s3: storage.S3Options | None = None) -> pd.DataFrame:
    """The whole table of an ingested batch: its parsed Parquet, or (ingested before batches
    were parsed at ingest) its raw bytes parsed now."""
    import pandas as pd

    parsed_uri = ingested.get("parsed_uri")
    if parsed_uri:
        with storage.local_file(parsed_uri, s3) as path:
            return pd.read_parquet(path)
    return parse_batch(
        storage.read_bytes(ingested["raw_uri"], s3), ingested["format"], ingested["source_uri"]
    )


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


def validated_dates(store_uri: str, model: str, s3: storage.S3Options | None = None) -> set[str]:
    """Dates with a validated batch now: a quarantine of such a date was superseded (a later
    run validated it; a failed re-run removes the validated copy), so it no longer stands."""
    prefix = storage.join(store_uri, "validated", model)
    return {uri.rsplit("/", 2)[-2] for uri in storage.list_uris(prefix, s3) if uri.endswith("/data.parquet")}
