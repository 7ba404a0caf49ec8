"""Validate a raw batch with Great Expectations; pass it on or quarantine it with the reason.

The suite is built from the spec (columns present, numeric types, target not null, null-rate
ceilings, categorical domains, numeric ranges) plus an optional hand-written suite file. A batch
that fails is copied to ``quarantine/`` with the GX result and a human-readable REASON.txt; the
source file and the raw copy are never touched.

Large batches are validated chunk by chunk (Parquet record batches / CSV chunks of the caller's
``settings.chunk_rows`` rows, FACTORY_CHUNK_ROWS) at bounded memory: the suite runs on every
chunk and the results are combined into one result for the whole batch. Row-count, null, set,
range and type checks combine exactly (counts are summed, ``mostly`` is applied to the totals, a
type must hold in every chunk). Other expectations of a hand-written ``extra_suite`` must hold in every chunk;
expectations over the whole column (uniqueness, mean, quantiles) are then checked per chunk,
which is weaker than on the whole batch. A batch of one chunk gets exactly GX's own result.

Over 500 lines on purpose: building the GX suite from the spec and the chunked validation with its
quarantine are one flow over one suite.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from model_factory.contracts import IngestedBatch, QuarantinedBatch, ValidationResult
from model_factory.errors import PermanentError
from model_factory.io import storage
from model_factory.io.batches import (
    UnreadableBatchError,
    iter_frames,
    note_dtypes,
    unified_dtypes,
    validated_uri,
    write_parquet_file,
)
from model_factory.pipeline import labels
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec

NUMERIC_TYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "Float32",
    "Float64",
]


@dataclass
class ValidationOutcome:
    success: bool
    reasons: list[str]
    result: dict[str, Any] = field(default_factory=dict)
    watch: list[str] = field(default_factory=list)  # soft-range notes: reported, not quarantined


@dataclass
class _SoftExcess:
    """Values of one column beyond its soft range, summed over the chunks of a batch."""

    beyond: int = 0
    rows: int = 0
    lowest: float = float("inf")
    highest: float = float("-inf")

    def add(self, values: pd.Series, low: float | None, high: float | None) -> None:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
        numbers = numbers[np.isfinite(numbers)]
        self.rows += len(numbers)
        outside = np.zeros(len(numbers), dtype=bool)
        if low is not None:
            outside |= numbers < low
        if high is not None:
            outside |= numbers > high
        self.beyond += int(outside.sum())
        if outside.any():
            self.lowest = min(self.lowest, float(numbers[outside].min()))
            self.highest = max(self.highest, float(numbers[outside].max()))


def soft_range_watch(spec: ModelSpec, excess: dict[str, _SoftExcess]) -> list[str]:
    out = []
    for col, seen in excess.items():
        if seen.beyond:
            bounds = spec.validation.soft_ranges[col]
            out.append(
                f"column {col!r}: {seen.beyond} of {seen.rows} values beyond the soft range "
                f"[{bounds.min}, {bounds.max}] (from {seen.lowest:g} to {seen.highest:g}): "
                "reported and watched, not quarantined"
            )
    return out


# A "between" check with these bounds fails exactly the non-finite values (inf, -inf).
FLOAT_MAX = sys.float_info.max


def _between(spec: ModelSpec, column: str):
    """One GX between-expectation per numeric column: the spec's range, and finite values
    unless ``validation.allow_non_finite`` names the column; None when nothing is required."""
    import great_expectations.expectations as gxe

    bounds = spec.validation.ranges.get(column)
    low = bounds.min if bounds is not None else None
    high = bounds.max if bounds is not None else None
    finite = column not in spec.validation.allow_non_finite
    if finite:
        low = -FLOAT_MAX if low is None else low
        high = FLOAT_MAX if high is None else high
    if low is None and high is None:
        return None
    meta = {"factory_check": "finite"} if finite else {}
    return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high, meta=meta)


def _expectations(spec: ModelSpec, columns: list[str], spec_dir: Path | None) -> list:
    import great_expectations.expectations as gxe
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    required = [spec.target, *spec.features.all]
    present = set(columns)
    out: list = [gxe.ExpectTableRowCountToBeBetween(min_value=spec.validation.min_rows)]
    out += [gxe.ExpectColumnToExist(column=c) for c in required]
    if spec.target in present:
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=spec.target))
        if spec.task == "regression":
            out.append(gxe.ExpectColumnValuesToBeInTypeList(column=spec.target, type_list=NUMERIC_TYPES))
            if (between := _between(spec, spec.target)) is not None:
                out.append(between)
        # Classification labels (whole numbers or class names, within the known classes) are
        # checked by label_results: GX has no expectation for "a whole number or a string".
    mostly_present = 1.0 - spec.validation.max_null_fraction
    for col in (c for c in spec.features.all if c in present):
        if mostly_present < 1.0:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=col, mostly=mostly_present))
        else:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=col))
    for col in (c for c in spec.features.numeric if c in present):
        out.append(gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=NUMERIC_TYPES))
        if (between := _between(spec, col)) is not None:
            out.append(between)
    for col, allowed in spec.validation.categories.items():
        if col in present:
            out.append(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=allowed))
    if spec.validation.extra_suite:
        folder = (spec_dir or Path(".")).resolve()
        suite_path = (folder / spec.validation.extra_suite).resolve()
        if not suite_path.is_relative_to(folder):  # a symlink out of the spec's folder
            raise PermanentError(
                f"validation.extra_suite {spec.validation.extra_suite!r} resolves to {suite_path}, "
                f"outside the spec's folder {folder}: refused"
            )
        try:
            configs = json.loads(suite_path.read_text())["expectations"]
            out += [ExpectationConfiguration(**c).to_domain_obj() for c in configs]
        except Exception as exc:
            raise ValueError(
                f"cannot load validation.extra_suite {suite_path}: {type(exc).__name__}: {exc}"
            ) from exc
    return out


def _map_result(
    kind: str,
    column: str,
    mask: pd.Series,
    values: pd.Series,
    meta: dict,
    distinct: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """A factory check in the shape of a GX column-map result, so chunk results combine and
    reasons read the same way as GX's (``distinct``: sample each unexpected value once)."""
    sample = values[mask].drop_duplicates() if distinct else values[mask]
    unexpected = int(mask.sum())
    missing = int(values.isna().sum())
    base = len(values) - missing
    return {
        "success": unexpected == 0,
        "expectation_config": {"type": kind, "kwargs": {"column": column, **kwargs}, "meta": meta},
        "result": {
            "element_count": len(values),
            "missing_count": missing,
            "unexpected_count": unexpected,
            "unexpected_percent": 100.0 * unexpected / base if base else 0.0,
            "partial_unexpected_list": sample.head(20).tolist(),
        },
        "exception_info": {"raised_exception": False},
    }


def label_results(
    df: pd.DataFrame, spec: ModelSpec, classes: list[Any] | None, origin: str
) -> list[dict[str, Any]]:
    """Classification labels: whole numbers or class names, and within the known classes."""
    if spec.task != "classification" or spec.target not in df.columns:
        return []
    values = df[spec.target]
    out = [
        _map_result(
            "factory_expect_labels_to_be_classes",
            spec.target,
            labels.bad_labels(values),
            values,
            {"factory_check": "labels"},
        )
    ]
    if classes is not None:
        out.append(
            _map_result(
                "factory_expect_labels_in_known_classes",
                spec.target,
                labels.outside(values, classes),
                values,
                {"factory_check": "classes", "origin": origin},
                distinct=True,
                value_set=list(classes),
            )
        )
    return out


def number_results(df: pd.DataFrame, spec: ModelSpec) -> list[dict[str, Any]]:
    """Numeric columns (features, a regression target) whose values do not all read as numbers:
    the raw offending values, which GX's type check (``observed 'str'``) does not show."""
    columns = [*spec.features.numeric, *([spec.target] if spec.task == "regression" else [])]
    out = []
    for col in (c for c in columns if c in df.columns):
        values = df[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            mask = pd.Series(False, index=values.index)
        else:
            mask = values.notna() & pd.to_numeric(values.astype("string"), errors="coerce").isna()
        out.append(
            _map_result(
                "factory_expect_column_values_to_be_numbers",
                col,
                mask,
                values,
                {"factory_check": "numbers"},
                distinct=True,
            )
        )
    return out


MAX_VALUE_CHARS = 40  # an offending value quoted in a reason, at most


def _quoted(values: list[Any]) -> str:
    shown = [str(v) if len(str(v)) <= MAX_VALUE_CHARS else f"{str(v)[:MAX_VALUE_CHARS]}..." for v in values]
    return ", ".join(repr(v) for v in shown)


def gx_failure_reason(result: dict[str, Any]) -> str:
    config = result["expectation_config"]
    kwargs = {k: v for k, v in config["kwargs"].items() if k != "batch_id"}
    column = kwargs.pop("column", None)
    what = config["type"] + (f" on column {column!r}" if column else "")
    detail = result.get("result") or {}
    check = (config.get("meta") or {}).get("factory_check")
    if check and detail.get("unexpected_count"):
        sample = detail.get("partial_unexpected_list", [])[:5]
        rows = f"{detail['unexpected_count']} of {detail.get('element_count')} rows"
        if check == "numbers":
            comma = any(re.fullmatch(r"-?\d+,\d+", str(v).strip()) for v in sample)
            hint = "; decimal commas? numbers need a '.' decimal point" if comma else ""
            return (
                f"column {column!r}: {rows} are not numbers, e.g. {_quoted(sample)}{hint} "
                "(text a CSV reader knows as missing, such as 'n/a', counts as null)"
            )
        if check == "labels":
            return (
                f"target {column!r}: {rows} are not class labels (whole numbers or class "
                f"names; 0.9 is not truncated), e.g. {sample}"
            )
        if check == "classes":
            origin = (config.get("meta") or {}).get("origin", "")
            unknown = sorted({v for v in detail.get("partial_unexpected_list", [])}, key=str)
            return (
                f"target {column!r}: {rows} have a class the model does not know: "
                f"{unknown}; known classes {kwargs.get('value_set')} ({origin}); list every "
                "class in target.classes to add one"
            )
        if check == "finite" and any(
            isinstance(v, float) and v in (float("inf"), float("-inf")) for v in sample
        ):
            allowed = {
                k: v
                for k, v in kwargs.items()
                if k in ("min_value", "max_value") and v is not None and abs(v) != FLOAT_MAX
            }
            within = f" or outside {allowed}" if allowed else ""
            return (
                f"column {column!r}: {rows} are non-finite (inf/-inf){within}, e.g. {sample}; "
                "validation.allow_non_finite lists columns where inf is allowed"
            )
    info = result.get("exception_info") or {}
    # GX puts one exception record at the top, or one per failing metric keyed by metric id.
    records = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    raised = [r for r in records if r.get("raised_exception")]
    if raised:
        message = str(raised[0].get("exception_message") or "").strip().splitlines()
        return f"{what}: could not be evaluated ({message[0] if message else 'no message'})"
    if config["type"] == "expect_column_to_exist":
        return f"column {column!r} is missing"
    if "unexpected_count" in detail and detail.get("element_count"):
        sample = detail.get("partial_unexpected_list", [])[:5]
        expected = f"; expected {kwargs}" if kwargs else ""
        return (
            f"{what}: {detail['unexpected_count']} of {detail['element_count']} rows failed "
            f"({detail.get('unexpected_percent', 0):.1f}%), e.g. {sample}{expected}"
        )
    return f"{what}: observed {detail.get('observed_value')!r}, expected {kwargs}"


class _Suite:
    """The spec's GX suite, built once and run on one DataFrame (a batch or a chunk) at a time."""

    def __init__(
        self,
        spec: ModelSpec,
        columns: list[str],
        spec_dir: Path | None,
        classes: list[Any] | None = None,
        origin: str = "",
    ):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.batch_definition = (
            context.data_sources.add_pandas("factory")
            .add_dataframe_asset(spec.name)
            .add_batch_definition_whole_dataframe("batch")
        )
        self.suite = gx.ExpectationSuite(name=f"{spec.name}_contract")
        for expectation in _expectations(spec, columns, spec_dir):
            self.suite.add_expectation(expectation)
        self.spec, self.classes, self.origin = spec, classes, origin

    def run(self, df: pd.DataFrame) -> dict[str, Any]:
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(self.suite).to_json_dict()
        extra = [*number_results(df, self.spec), *label_results(df, self.spec, self.classes, self.origin)]
        if extra:
            result["results"] = [*result["results"], *extra]
            result["success"] = bool(result["success"]) and all(r["success"] for r in extra)
        return result


def _raised(result: dict[str, Any]) -> bool:
    info = result.get("exception_info") or {}
    records = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    return any(r.get("raised_exception") for r in records)


def _combine_one(chunks: list[dict[str, Any]], total_rows: int) -> dict[str, Any]:
    """One expectation's results over all chunks -> its result over the whole batch."""
    first = chunks[0]
    config = first["expectation_config"]
    kind, kwargs = config["type"], config.get("kwargs") or {}
    raised = [r for r in chunks if _raised(r)]
    if raised:
        return {**raised[0], "success": False}
    if kind == "expect_table_row_count_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        ok = (low is None or total_rows >= low) and (high is None or total_rows <= high)
        return {**first, "success": ok, "result": {"observed_value": total_rows}}
    details = [r.get("result") or {} for r in chunks]
    if all("unexpected_count" in d and "element_count" in d for d in details):
        elements = sum(d["element_count"] for d in details)
        unexpected = sum(d["unexpected_count"] for d in details)
        missing = sum(d.get("missing_count", 0) for d in details)
        # not-null counts against every row; every other map expectation against non-null rows
        base = elements if kind == "expect_column_values_to_not_be_null" else elements - missing
        percent = 100.0 * unexpected / base if base else 0.0
        mostly = kwargs.get("mostly", 1.0)
        ok = unexpected == 0 if mostly >= 1 else (base == 0 or (base - unexpected) / base >= mostly)
        partial = [v for d in details for v in d.get("partial_unexpected_list", [])][:20]
        merged = {
            **details[0],
            "element_count": elements,
            "unexpected_count": unexpected,
            "unexpected_percent": percent,
            "partial_unexpected_list": partial,
        }
        if "missing_count" in details[0]:
            merged.update(
                missing_count=missing,
                missing_percent=100.0 * missing / elements if elements else 0.0,
                unexpected_percent_total=100.0 * unexpected / elements if elements else 0.0,
                unexpected_percent_nonmissing=percent,
            )
        # Counts and row indexes of the partial list are per chunk: not meaningful combined.
        merged.pop("partial_unexpected_counts", None)
        merged.pop("partial_unexpected_index_list", None)
        return {**first, "success": ok, "result": merged}
    failing = [r for r in chunks if not r["success"]]
    return failing[0] if failing else first


def combine_results(results: list[dict[str, Any]], total_rows: int) -> dict[str, Any]:
    """GX results of the same suite on consecutive chunks -> one result for the whole batch."""
    if len(results) == 1:
        return results[0]
    per_expectation = zip(*(r["results"] for r in results), strict=True)
    combined = [_combine_one(list(chunk), total_rows) for chunk in per_expectation]
    successes = sum(1 for r in combined if r["success"])
    return {
        **results[0],
        "success": successes == len(combined),
        "results": combined,
        "statistics": {
            "evaluated_expectations": len(combined),
            "successful_expectations": successes,
            "unsuccessful_expectations": len(combined) - successes,
            "success_percent": 100.0 * successes / len(combined) if combined else 100.0,
        },
        "meta": {**results[0].get("meta", {}), "chunks": len(results), "rows": total_rows},
    }


def validate_frames(
    frames: Iterable[pd.DataFrame],
    spec: ModelSpec,
    spec_dir: Path | None = None,
    classes: list[Any] | None = None,
    origin: str = "",
) -> ValidationOutcome:
    """Run the spec's GX suite on consecutive chunks of one batch; combine into one outcome.

    ``classes``: the classifier's known classes (spec or learnt), None before they are known.
    Only one chunk is in memory at a time (with its GX result, a few KB).
    """
    suite: _Suite | None = None
    results: list[dict[str, Any]] = []
    excess = {col: _SoftExcess() for col in spec.validation.soft_ranges}
    total = 0
    for df in frames:
        if suite is None:
            suite = _Suite(spec, list(df.columns), spec_dir, classes, origin)
        results.append(suite.run(df))
        for col, seen in excess.items():
            if col in df.columns:
                bounds = spec.validation.soft_ranges[col]
                seen.add(df[col], bounds.min, bounds.max)
        total += len(df)
    if not results:
        raise ValueError("validate_frames needs at least one frame")
    result = clip_samples(combine_results(results, total))
    reasons = [gx_failure_reason(r) for r in result["results"] if not r["success"]]
    watch = soft_range_watch(spec, excess)
    if watch:
        result["watch"] = watch
    return ValidationOutcome(success=bool(result["success"]), reasons=reasons, result=result, watch=watch)


MAX_SAMPLE_CHARS = 200


def clip_samples(value: Any) -> Any:
    """Text in a validation result cut to MAX_SAMPLE_CHARS: the samples of bad values go to
    validation.json, REASON.txt and the task result, and a 40 MB line must not go with them."""
    if isinstance(value, str) and len(value) > MAX_SAMPLE_CHARS:
        return f"{value[:MAX_SAMPLE_CHARS]}... ({len(value)} characters)"
    if isinstance(value, dict):
        return {key: clip_samples(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clip_samples(item) for item in value]
    return value


def validate_frame(
    df: pd.DataFrame, spec: ModelSpec, spec_dir: Path | None = None, classes: list[Any] | None = None
) -> ValidationOutcome:
    """Run the spec's GX suite on a DataFrame (``classes``: as in validate_frames)."""
    if classes is None and spec.target_classes:
        return validate_frames([df], spec, spec_dir, list(spec.target_classes), "target.classes in the spec")
    return validate_frames([df], spec, spec_dir, classes, "given")


def _validate_local(
    path: Path,
    fmt: str,
    where: str,
    spec: ModelSpec,
    spec_dir: Path | None,
    chunk_rows: int,
    classes: tuple[list[Any] | None, str] = (None, ""),
) -> tuple[ValidationOutcome, int, dict[str, object]]:
    """Validate a local batch file ``chunk_rows`` rows at a time: (outcome, rows, dtypes to unify
    on write)."""
    frames = iter_frames(path, fmt, where, chunk_rows)
    try:
        first = next(frames)
    except UnreadableBatchError as exc:
        return ValidationOutcome(False, [f"unreadable file: {exc}"], {"success": False}), 0, {}
    if first.empty and len(first.columns) == 0:
        return ValidationOutcome(False, ["the batch has no columns and no rows"]), 0, {}
    seen: dict[str, set] = {}
    rows = 0

    def tracked() -> Iterator[pd.DataFrame]:
        nonlocal rows
        for df in itertools.chain([first], frames):
            note_dtypes(df, seen)
            rows += len(df)
            yield df

    try:
        outcome = validate_frames(tracked(), spec, spec_dir, *classes)
    except UnreadableBatchError as exc:  # a later chunk is damaged
        return ValidationOutcome(False, [f"unreadable file: {exc}"], {"success": False}), rows, {}
    return outcome, rows, unified_dtypes(seen)


def _bounded_row_groups(path: Path, chunk_rows: int) -> bool:
    """A Parquet file whose row groups readers can take one chunk at a time (``chunk_rows``)."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    return all(metadata.row_group(i).num_rows <= chunk_rows for i in range(metadata.num_row_groups))


def validate_batch(
    spec: ModelSpec,
    ingested: IngestedBatch,
    settings: FactorySettings,
    spec_dir: Path | None = None,
    s3: storage.S3Options | None = None,
) -> ValidationResult:
    """Validate the batch named by an ingest manifest: the rows ingest parsed (``parsed_uri``),
    else the raw bytes, ``settings.chunk_rows`` rows at a time, into ``settings.store_uri``.

    Returns ``{"status": "validated", "validated_uri": ...}`` or
    ``{"status": "quarantined", "quarantine_uri": ..., "reasons": [...]}``.
    """
    raw_uri, ds = ingested["raw_uri"], ingested["ds"]
    parsed_uri = ingested.get("parsed_uri")
    rows_uri, fmt = (parsed_uri, "parquet") if parsed_uri else (raw_uri, ingested["format"])
    store_uri, chunk_rows = settings.store_uri, settings.chunk_rows
    target_uri = validated_uri(store_uri, spec.name, ds)
    with (
        storage.local_file(rows_uri, s3) as local,
        tempfile.TemporaryDirectory(prefix="factory-validate-") as tmp,
    ):
        known = labels.known_classes(spec, store_uri, s3)
        outcome, rows, dtypes = _validate_local(local, fmt, raw_uri, spec, spec_dir, chunk_rows, known)
        if not outcome.success:
            if storage.exists(target_uri, s3):
                # A newer batch for this date failed: the earlier validated copy must not be
                # trained on as if it were current. Its raw bytes stay under raw/.
                storage.delete(target_uri, s3)
                outcome.reasons.append(f"withdrew the earlier validated batch for {ds} ({target_uri})")
            with storage.local_file(raw_uri, s3) as raw:  # the exact bytes go to quarantine
                return quarantine_batch(spec.name, ds, ingested, raw, outcome, store_uri, s3)
        if parsed_uri and not dtypes and (parsed_uri != raw_uri or _bounded_row_groups(local, chunk_rows)):
            # ingest's Parquet (or a Parquet batch in readable row groups) already holds the typed rows
            storage.upload_file(local, target_uri, s3)
        else:
            # The typed rows, chunk by chunk, into one Parquet file (a row group each).
            typed = Path(tmp) / "data.parquet"
            write_parquet_file(iter_frames(local, fmt, raw_uri, chunk_rows), typed, dtypes)
            storage.upload_file(typed, target_uri, s3)

    report_uri = storage.join(store_uri, "validated", spec.name, ds, "validation.json")
    storage.write_json(report_uri, outcome.result | {"source": ingested}, s3)
    return {
        "status": "validated",
        "validated_uri": target_uri,
        "validation_uri": report_uri,
        "rows": rows,
        "sha256": ingested["sha256"],
        "ds": ds,
    }


def quarantine_batch(
    model: str,
    ds: str,
    ingested: IngestedBatch,
    data: bytes | Path,
    outcome: ValidationOutcome,
    store_uri: str,
    s3: storage.S3Options | None = None,
) -> QuarantinedBatch:
    """Keep a rejected batch (its bytes, or a local file streamed), its GX result and a
    readable reason under ``quarantine/``."""
    folder = storage.join(store_uri, "quarantine", model, ds, ingested["sha256"][:12])
    filename = ingested["raw_uri"].rsplit("/", 1)[-1]
    if isinstance(data, Path):
        storage.upload_file(data, storage.join(folder, filename), s3)
    else:
        storage.write_bytes(storage.join(folder, filename), data, s3)
    storage.write_json(storage.join(folder, "validation.json"), outcome.result, s3)
    reason_text = (
        f"Batch for model {model!r} on {ds} was quarantined.\n"
        f"source: {ingested['source_uri']}\nsha256: {ingested['sha256']}\n\nWhy:\n"
        + "\n".join(f"- {r}" for r in outcome.reasons)
        + "\n"
    )
    storage.write_bytes(storage.join(folder, "REASON.txt"), reason_text.encode(), s3)
    storage.write_json(storage.join(folder, "manifest.json"), ingested, s3)
    return {
        "status": "quarantined",
        "quarantine_uri": folder,
        "reasons": outcome.reasons,
        "ds": ds,
        "sha256": ingested["sha256"],
    }
