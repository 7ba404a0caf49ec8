"""What a model is trained on: the day's validated batches and, up to ``training.window_rows``,
earlier ones; batches today's checks refuse withdrawn (never failing every night after), the rest
read as one frame with its lineage, sampled to ``training.max_rows``."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from model_factory.errors import PermanentError
from model_factory.io import storage
from model_factory.io.batches import recent_validated_batches
from model_factory.pipeline import labels
from model_factory.pipeline.small_data import extend_window_to_rows
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec

MAX_WINDOW_BATCHES = 366  # training.window_rows reaches back at most this many batches


def check_training_frame(df: pd.DataFrame, spec: ModelSpec, uris: list[str]) -> None:
    """Refuse non-finite values that validation should have stopped (batches validated before
    that check existed, or written by hand): no retry fixes them, so PermanentError."""
    columns = [c for c in spec.features.numeric if c not in spec.validation.allow_non_finite]
    if spec.task == "regression" and spec.target not in spec.validation.allow_non_finite:
        columns.append(spec.target)
    bad = {}
    for col in columns:
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype="float64")
        count = int(np.isinf(values).sum())
        if count:
            bad[col] = count
    if bad:
        raise PermanentError(
            f"non-finite values (inf/-inf) in the training window of {spec.name}: {bad} rows per "
            f"column, in {uris}; re-run validation on those dates (it quarantines them) or list "
            "the columns in validation.allow_non_finite"
        )


def unfit_reason(path: Path | str, spec: ModelSpec, classes: list[Any] | None) -> str | None:
    """Why a validated batch cannot be trained on (inf where not allowed, a target value that is
    not a label or not a known class), streamed column by column; None when it is fine."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    present = set(parquet.schema_arrow.names)
    finite = [c for c in spec.features.numeric if c not in spec.validation.allow_non_finite]
    if spec.task == "regression" and spec.target not in spec.validation.allow_non_finite:
        finite.append(spec.target)
    columns = [c for c in {*finite, spec.target} if c in present]
    for batch in parquet.iter_batches(columns=columns, batch_size=1_000_000):
        frame = batch.to_pandas()
        for col in (c for c in finite if c in frame.columns):
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64")
            if np.isinf(values).any():
                return f"column {col!r} has non-finite values (inf/-inf)"
        if spec.task == "classification" and spec.target in frame.columns:
            target = frame[spec.target]
            if labels.bad_labels(target).any():
                return f"target {spec.target!r} has values that are not class labels"
            if classes is not None and labels.outside(target, classes).any():
                return f"target {spec.target!r} has classes outside {classes}"
    return None


def withdraw_unfit_batches(
    spec: ModelSpec, uris: list[str], store_uri: str, s3: storage.S3Options | None = None
) -> tuple[list[str], list[dict]]:
    """Take validated batches that today's checks refuse (validated before a check existed, or
    written by hand) out of the training window, so one bad batch cannot fail every night that
    follows: the validated copy is removed and ``withdrawn.json`` says why beside it; the raw
    bytes stay under ``raw/``. Returns (kept URIs, withdrawn records)."""
    classes, _ = labels.known_classes(spec, store_uri, s3)
    kept, withdrawn = [], []
    for uri in uris:
        with storage.local_file(uri, s3) as path:
            reason = unfit_reason(path, spec, classes)
        if reason is None:
            kept.append(uri)
            continue
        record = {"uri": uri, "reason": reason, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        storage.write_json(uri.rsplit("/", 1)[0] + "/withdrawn.json", record, s3)
        storage.delete(uri, s3)
        withdrawn.append(record)
    return kept, withdrawn


def read_frames(
    uris: list[str],
    s3: storage.S3Options | None = None,
    *,
    chunk_rows: int,
    max_rows: int | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[dict]]:
    """The validated batches as one frame, and their lineage (uri, sha256 of the whole file, rows).

    Files are streamed (S3 objects through a local temp copy, hashed in pieces). When the
    batches hold more than ``max_rows`` rows together, each is read ``chunk_rows`` rows at a time
    (``settings.chunk_rows``) and every row kept with probability ``max_rows / total`` (seeded),
    so memory is about the sample, never the whole window; ``sampled_rows`` in the lineage says
    how many rows were used.
    """
    import pyarrow.parquet as pq
    from model_factory.io.batches import iter_frames

    with contextlib.ExitStack() as stack:
        paths, inputs = [], []
        for uri in uris:
            path = stack.enter_context(storage.local_file(uri, s3))
            rows = pq.ParquetFile(path).metadata.num_rows
            paths.append(path)
            inputs.append({"uri": uri, "sha256": storage.sha256_file(path), "rows": rows})
        total = sum(i["rows"] for i in inputs)
        if max_rows is None or total <= max_rows:
            return pd.concat([pd.read_parquet(path) for path in paths], ignore_index=True), inputs
        fraction = max_rows / total
        frames = []
        for n, (path, info) in enumerate(zip(paths, inputs, strict=True)):
            rng = np.random.default_rng([seed, n])
            chunks = iter_frames(path, "parquet", info["uri"], chunk_rows)
            kept = [chunk[rng.random(len(chunk)) < fraction] for chunk in chunks]
            frame = pd.concat(kept, ignore_index=True)
            info["sampled_rows"] = len(frame)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True), inputs


def training_window(
    spec: ModelSpec, ds: str, batch_uris: list[str], settings: FactorySettings, s3: storage.S3Options | None
) -> tuple[pd.DataFrame, list[dict], list[dict]]:
    """The rows to train on, their lineage and the batches withdrawn: unfit batches taken out,
    the window reaching back to ``training.window_rows``, read (and sampled) by ``read_frames``."""
    batch_uris, withdrawn = withdraw_unfit_batches(spec, batch_uris, settings.store_uri, s3)
    if not batch_uris:
        raise PermanentError(
            f"no batch left to train {spec.name} on {ds}: every batch of the window was withdrawn "
            f"({[w['uri'] + ': ' + w['reason'] for w in withdrawn]})"
        )
    if spec.training.window_rows:
        earlier = recent_validated_batches(settings.store_uri, spec.name, ds, MAX_WINDOW_BATCHES, s3)
        batch_uris = extend_window_to_rows(batch_uris, earlier, spec.training.window_rows, s3)
    df, inputs = read_frames(
        batch_uris, s3, chunk_rows=settings.chunk_rows, max_rows=spec.training.max_rows, seed=spec.split.seed
    )
    return df, inputs, withdrawn
