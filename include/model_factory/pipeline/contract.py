"""The input contract: a Great Expectations suite suggested by the baseline profile.

``input_contract`` writes it (training logs it with the model); ``check_contract`` validates a
DataFrame with GX (scoring's input check); ``contract_failures`` gives the same verdicts from the
running counts of one chunked pass (the drift check, which never holds the batch in memory). Both
word a failure with ``contract_reason``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd
from model_factory.pipeline.column_counts import (
    Accumulator,
    CategoricalAccumulator,
    NumericAccumulator,
    categorical_text,
    count_le,
)
from model_factory.pipeline.profile import baseline_from_json
from model_factory.pipeline.validation import NUMERIC_TYPES, gx_failure_reason

CONTRACT_FORMAT_VERSION = 1


def _floor4(x: float) -> float:
    """``x`` rounded down to 4 decimals, at least 0: a ``mostly`` is never rounded above what is allowed."""
    return max(0.0, math.floor(round(x * 10_000, 6)) / 10_000)


def _bounds_expectation(col: str, profile: dict, k_sigma: float, mostly: float) -> dict:
    """Values within training mean +/- ``k_sigma`` std for a ``mostly`` share, the allowance widened
    to the share training itself had outside (read from the profile's sketch)."""
    lo, hi = profile["mean"] - k_sigma * profile["std"], profile["mean"] + k_sigma * profile["std"]
    grid = np.asarray(profile["sketch"]["grid"])
    cells = np.asarray(profile["sketch"]["cell_counts"])
    inside = count_le(cells, grid, hi) - count_le(cells, grid, lo, strict=True)
    training_outside = max(0.0, 1.0 - inside / profile["count"])
    resolution = float(cells[0::2].max()) / profile["count"]
    allowed = max(1.0 - mostly, training_outside + resolution) if training_outside > 0 else 1.0 - mostly
    return {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": col, "min_value": lo, "max_value": hi, "mostly": _floor4(1 - allowed)},
        "meta": {
            "kind": "bounds",
            "k_sigma": k_sigma,
            "training_outside_share": float(training_outside),
        },
    }


def input_contract(
    baseline: dict,
    *,
    k_sigma: float = 2.0,
    mostly: float = 0.95,
    null_rate_slack: float = 0.05,
    max_unseen_share: float = 0.02,
) -> dict:
    """The input contract suggested by the training data, as a GX 1.x suite dict.

    Schema expectations (a break is a data-quality failure): every feature exists; numeric ones
    have a numeric dtype; nulls at most training's missing rate + ``null_rate_slack``; categorical
    values in the training categories for all but ``max_unseen_share`` of the non-null rows.
    Bounds expectations (reported, not a data-quality failure): numeric values within training mean
    +/- ``k_sigma`` std for a ``mostly`` share; where training itself had more outside (skewed
    data), the allowance is widened to that, so the contract always holds on its training data.
    """
    baseline = baseline_from_json(baseline)
    for name, value in (
        ("mostly", mostly),
        ("null_rate_slack", null_rate_slack),
        ("max_unseen_share", max_unseen_share),
    ):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    if k_sigma <= 0:
        raise ValueError(f"k_sigma must be positive, got {k_sigma}")

    def schema(type_: str, column: str, **kwargs: Any) -> dict:
        return {"type": type_, "kwargs": {"column": column, **kwargs}, "meta": {"kind": "schema"}}

    expectations: list[dict] = []
    for col, p in baseline["numeric"].items():
        expectations.append(schema("expect_column_to_exist", col))
        expectations.append(schema("expect_column_values_to_be_in_type_list", col, type_list=NUMERIC_TYPES))
        ceiling = min(1.0, p["missing_rate"] + null_rate_slack)
        expectations.append(schema("expect_column_values_to_not_be_null", col, mostly=_floor4(1 - ceiling)))
        expectations.append(_bounds_expectation(col, p, k_sigma, mostly))
    for col, p in baseline["categorical"].items():
        expectations.append(schema("expect_column_to_exist", col))
        ceiling = min(1.0, p["missing_rate"] + null_rate_slack)
        expectations.append(schema("expect_column_values_to_not_be_null", col, mostly=_floor4(1 - ceiling)))
        expectations.append(
            schema(
                "expect_column_values_to_be_in_set",
                col,
                value_set=sorted(p["counts"]),
                mostly=_floor4(1 - max_unseen_share),
            )
        )
    return {
        "name": "input_contract",
        "expectations": expectations,
        "meta": {
            "format_version": CONTRACT_FORMAT_VERSION,
            "k_sigma": k_sigma,
            "mostly": mostly,
            "null_rate_slack": null_rate_slack,
            "max_unseen_share": max_unseen_share,
            "baseline_rows": baseline["rows"],
        },
    }


def contract_suite(contract: dict) -> Any:
    """The contract as a ``great_expectations.ExpectationSuite``."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    suite = gx.ExpectationSuite(name=contract.get("name", "input_contract"))
    for config in contract["expectations"]:
        suite.add_expectation(ExpectationConfiguration(**config).to_domain_obj())
    return suite


def contract_reason(config: dict, observed: dict) -> str:
    """One sentence for a failed contract expectation, from counts (GX's or our own pass's)."""
    kwargs = config["kwargs"]
    col = kwargs.get("column")
    allowed = 1.0 - kwargs.get("mostly", 1.0)
    type_ = config["type"]
    considered = observed["element_count"] - observed.get("missing_count", 0)
    share = observed.get("unexpected_count", 0) / considered if considered else 0.0
    if type_ == "expect_column_to_exist":
        return f"column {col!r} is missing"
    if type_ == "expect_column_values_to_be_in_type_list":
        return f"column {col!r}: type {observed.get('observed_value')!r} is not numeric"
    if type_ == "expect_column_values_to_not_be_null":
        if observed["unexpected_count"] == observed["element_count"]:
            return f"column {col!r}: all {observed['element_count']:,} values are null"
        return f"column {col!r}: {share:.1%} of values are null (contract allows {allowed:.1%})"
    if type_ == "expect_column_values_to_be_in_set":
        return (
            f"column {col!r}: {share:.1%} of values are categories never seen in training, "
            f"e.g. {observed.get('examples', [])} (contract allows {allowed:.1%})"
        )
    if type_ == "expect_column_values_to_be_between":
        k = config.get("meta", {}).get("k_sigma")
        what = f"training mean ± {k:g}σ" if k else "the contract's range"  # noqa: RUF001
        return (
            f"column {col!r}: {share:.1%} of values outside {what} "
            f"[{kwargs['min_value']:.4g}, {kwargs['max_value']:.4g}] (contract allows {allowed:.1%})"
        )
    return f"{type_} on column {col!r} failed: {observed}"


def _drop_consequences(failures: list[tuple[dict, str]]) -> list[tuple[dict, str]]:
    """A missing column fails all its checks, a non-numeric one its bounds: keep only the cause."""
    missing = {c["kwargs"]["column"] for c, _ in failures if c["type"] == "expect_column_to_exist"}
    mistyped = {
        c["kwargs"]["column"] for c, _ in failures if c["type"] == "expect_column_values_to_be_in_type_list"
    }
    kept = []
    for config, reason in failures:
        col = config["kwargs"].get("column")
        if col in missing and config["type"] != "expect_column_to_exist":
            continue
        if col in mistyped and config["type"] == "expect_column_values_to_be_between":
            continue
        kept.append((config, reason))
    return kept


def check_contract(df: pd.DataFrame, contract: dict) -> list[str]:
    """Validate a DataFrame against the contract with Great Expectations; readable failure reasons.

    Categorical columns are compared as text with ``__missing__`` as null, as in the baseline.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    in_set = {
        c["kwargs"]["column"]
        for c in contract["expectations"]
        if c["type"] == "expect_column_values_to_be_in_set"
    }
    frame = df.copy(deep=False)
    for col in in_set & set(frame.columns):
        frame[col] = categorical_text(frame[col])

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("drift")
        .add_dataframe_asset("current")
        .add_batch_definition_whole_dataframe("batch")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    # batch.validate, not ValidationDefinition.run: see FINDINGS (numpy bools break the latter).
    result = batch.validate(contract_suite(contract)).to_json_dict()
    failures = []
    for r in result["results"]:
        if r["success"]:
            continue
        config = r["expectation_config"]
        detail = r.get("result") or {}
        if not detail and config["type"] != "expect_column_to_exist":
            failures.append((config, gx_failure_reason(r)))  # GX could not evaluate it: its own words
            continue
        observed = {
            "element_count": detail.get("element_count", 0),
            "missing_count": detail.get("missing_count", 0) or 0,
            "unexpected_count": detail.get("unexpected_count", 0),
            "observed_value": detail.get("observed_value"),
            "examples": sorted({str(v) for v in detail.get("partial_unexpected_list", [])})[:5],
        }
        failures.append((config, contract_reason(config, observed)))
    # GX reports in its own order; give the reasons in the contract's.
    order = {(c["type"], c["kwargs"].get("column")): i for i, c in enumerate(contract["expectations"])}

    def position(item: tuple[dict, str]) -> int:
        return order.get((item[0]["type"], item[0]["kwargs"].get("column")), len(order))

    return [reason for _, reason in sorted(_drop_consequences(failures), key=position)]


def _observed(config: dict, acc: NumericAccumulator | CategoricalAccumulator | None) -> dict | None:
    """What GX would report for one expectation, from our running counts (None: not evaluable)."""
    type_ = config["type"]
    if acc is None:
        return None
    if isinstance(acc, NumericAccumulator):
        nulls = acc.nulls
        if type_ == "expect_column_values_to_be_in_type_list":
            bad = [d for d in acc.dtypes if d not in config["kwargs"]["type_list"]]
            return {
                "element_count": acc.rows,
                "observed_value": next(iter(bad or acc.dtypes), None),
                "success": not bad,
            }
        if type_ == "expect_column_values_to_be_between":
            lo, hi = config["kwargs"]["min_value"], config["kwargs"]["max_value"]
            if acc.bounds != (lo, hi):
                return None
            return {
                "element_count": acc.rows,
                "missing_count": nulls,
                "unexpected_count": acc.outside + acc.invalid,
            }
    else:
        nulls = acc.missing
        if type_ == "expect_column_values_to_be_in_set":
            allowed = set(config["kwargs"]["value_set"])
            unseen = {c: n for c, n in acc.counts.items() if c not in allowed}
            examples = sorted(unseen, key=lambda c: (-unseen[c], c))[:5]
            return {
                "element_count": acc.rows,
                "missing_count": nulls,
                "unexpected_count": sum(unseen.values()),
                "examples": examples,
            }
    if type_ == "expect_column_values_to_not_be_null":
        return {"element_count": acc.rows, "unexpected_count": nulls}
    return None


def _passes(config: dict, observed: dict) -> bool:
    """GX's rule: success ratio over the rows considered >= mostly; nothing considered passes."""
    if "success" in observed:
        return bool(observed["success"])
    considered = observed["element_count"] - observed.get("missing_count", 0)
    if considered <= 0:
        return True
    ratio = (float(considered) - float(observed["unexpected_count"])) / float(considered)
    return ratio >= config["kwargs"].get("mostly", 1.0)


def contract_failures(
    expectations: list[dict], accs: dict[str, Accumulator], rows: int
) -> list[tuple[dict, str]]:
    """The failed expectations and their reasons, judged from one pass's counts (as GX would)."""
    failures: list[tuple[dict, str]] = []
    for config in expectations:
        col = config["kwargs"].get("column")
        if config["type"] == "expect_column_to_exist":
            if col not in accs:
                failures.append((config, contract_reason(config, {"element_count": rows})))
            continue
        observed = _observed(config, accs.get(col))
        if observed is not None and not _passes(config, observed):
            failures.append((config, contract_reason(config, observed)))
    return _drop_consequences(failures)
