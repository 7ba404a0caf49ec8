"""Validate a raw batch with Great Expectations; pass it on or quarantine it with the reason.

The suite is built from the spec (columns present, numeric types, target not null, null-rate
ceilings, categorical domains, numeric ranges) plus an optional hand-written suite file. A batch
that fails is copied to ``quarantine/`` with the GX result and a human-readable REASON.txt; the
source file and the raw copy are never touched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from model_factory import storage
from model_factory.batches import UnreadableBatchError, parse_batch, validated_uri, write_parquet
from model_factory.spec import ModelSpec

NUMERIC_TYPES = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "Int8", "Int16", "Int32", "Int64", "Float32", "Float64",
]  # fmt: skip


@dataclass
class ValidationOutcome:
    success: bool
    reasons: list[str]
    result: dict[str, Any] = field(default_factory=dict)


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
        # Classification labels are integer-coded (0/1, 0..k-1): strings are rejected here.
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=spec.target))
        out.append(gxe.ExpectColumnValuesToBeInTypeList(column=spec.target, type_list=NUMERIC_TYPES))
    mostly_present = 1.0 - spec.validation.max_null_fraction
    for col in (c for c in spec.features.all if c in present):
        if mostly_present < 1.0:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=col, mostly=mostly_present))
        else:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=col))
    for col in (c for c in spec.features.numeric if c in present):
        out.append(gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=NUMERIC_TYPES))
        bounds = spec.validation.ranges.get(col)
        if bounds is not None:
            out.append(
                gxe.ExpectColumnValuesToBeBetween(column=col, min_value=bounds.min, max_value=bounds.max)
            )
    for col, allowed in spec.validation.categories.items():
        if col in present:
            out.append(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=allowed))
    if spec.validation.extra_suite:
        suite_path = (spec_dir or Path(".")) / spec.validation.extra_suite
        try:
            configs = json.loads(suite_path.read_text())["expectations"]
            out += [ExpectationConfiguration(**c).to_domain_obj() for c in configs]
        except Exception as exc:
            raise ValueError(
                f"cannot load validation.extra_suite {suite_path}: {type(exc).__name__}: {exc}"
            ) from exc
    return out


def _reason(result: dict[str, Any]) -> str:
    config = result["expectation_config"]
    kwargs = {k: v for k, v in config["kwargs"].items() if k != "batch_id"}
    column = kwargs.pop("column", None)
    what = config["type"] + (f" on column {column!r}" if column else "")
    detail = result.get("result") or {}
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


def validate_frame(df: pd.DataFrame, spec: ModelSpec, spec_dir: Path | None = None) -> ValidationOutcome:
    """Run the spec's GX suite on a DataFrame."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batch = (
        context.data_sources.add_pandas("factory")
        .add_dataframe_asset(spec.name)
        .add_batch_definition_whole_dataframe("batch")
        .get_batch(batch_parameters={"dataframe": df})
    )
    suite = gx.ExpectationSuite(name=f"{spec.name}_contract")
    for expectation in _expectations(spec, list(df.columns), spec_dir):
        suite.add_expectation(expectation)
    result = batch.validate(suite).to_json_dict()
    reasons = [_reason(r) for r in result["results"] if not r["success"]]
    return ValidationOutcome(success=bool(result["success"]), reasons=reasons, result=result)


def validate_batch(
    spec: ModelSpec,
    ingested: dict,
    store_uri: str,
    spec_dir: Path | None = None,
    s3: storage.S3Options | None = None,
) -> dict:
    """Validate the raw batch named by an ingest manifest.

    Returns ``{"status": "validated", "validated_uri": ...}`` or
    ``{"status": "quarantined", "quarantine_uri": ..., "reasons": [...]}``.
    """
    raw_uri, ds, fmt = ingested["raw_uri"], ingested["ds"], ingested["format"]
    data = storage.read_bytes(raw_uri, s3)
    try:
        df = parse_batch(data, fmt, raw_uri)
    except UnreadableBatchError as exc:
        outcome = ValidationOutcome(False, [f"unreadable file: {exc}"], {"success": False})
        df = None
    else:
        if df.empty and len(df.columns) == 0:
            outcome = ValidationOutcome(False, ["the batch has no columns and no rows"])
        else:
            outcome = validate_frame(df, spec, spec_dir)

    target_uri = validated_uri(store_uri, spec.name, ds)
    if not outcome.success or df is None:
        if storage.exists(target_uri, s3):
            # A newer batch for this date failed: the earlier validated copy must not be trained
            # on as if it were current. Its raw bytes stay under raw/.
            storage.delete(target_uri, s3)
            outcome.reasons.append(f"withdrew the earlier validated batch for {ds} ({target_uri})")
        return quarantine_batch(spec.name, ds, ingested, data, outcome, store_uri, s3)

    write_parquet(df, target_uri, s3)
    report_uri = storage.join(store_uri, "validated", spec.name, ds, "validation.json")
    storage.write_json(report_uri, outcome.result | {"source": ingested}, s3)
    return {
        "status": "validated",
        "validated_uri": target_uri,
        "validation_uri": report_uri,
        "rows": len(df),
        "sha256": ingested["sha256"],
        "ds": ds,
    }


def quarantine_batch(
    model: str,
    ds: str,
    ingested: dict,
    data: bytes,
    outcome: ValidationOutcome,
    store_uri: str,
    s3: storage.S3Options | None = None,
) -> dict:
    """Keep a rejected batch, its GX result and a readable reason under ``quarantine/``."""
    folder = storage.join(store_uri, "quarantine", model, ds, ingested["sha256"][:12])
    filename = ingested["raw_uri"].rsplit("/", 1)[-1]
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
