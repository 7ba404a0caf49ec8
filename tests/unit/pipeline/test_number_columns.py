"""Issue 23 item 6: a numeric column that does not read as numbers is quarantined with a reason
that shows the offending raw values (quoted, cut), not only GX's "observed 'str'"."""

from __future__ import annotations

from datetime import date

import pandas as pd
from model_factory.analyzer.classify import ErrorKind, validation_kinds
from model_factory.io import batches
from model_factory.pipeline import validation
from model_factory_dev import demo_data

from tests.unit.pipeline.test_training_evaluation import spec_for


def _fault_day(rows: int = 300) -> pd.DataFrame:
    """`n/a` and decimal commas in a numeric column, read back from CSV as a source would be."""
    frame = demo_data.generate_batch("churn", date(2026, 3, 2), rows=rows)
    frame["monthly_charges"] = [
        "n/a" if i % 7 == 0 else str(v).replace(".", ",") for i, v in enumerate(frame["monthly_charges"])
    ]
    return batches.parse_batch(frame.to_csv(index=False).encode(), "csv", "memory")


def _numbers_reason(outcome) -> str:
    return next(r for r in outcome.reasons if "are not numbers" in r)


def test_decimal_commas_and_text_in_a_numeric_column_name_the_offending_values():
    outcome = validation.validate_frame(_fault_day(), spec_for("churn"))

    assert not outcome.success
    reason = _numbers_reason(outcome)
    assert reason.startswith("column 'monthly_charges': 257 of 300 rows are not numbers, e.g. '")
    assert "decimal commas? numbers need a '.' decimal point" in reason
    samples = reason.split("e.g. ", 1)[1].split(";")[0].split(", ")
    assert len(samples) == 5 and all(s.startswith("'") and "," in s for s in samples)
    # the Analyzer files the new check under the same kind as GX's type check
    kinds = validation_kinds(outcome.result)
    assert kinds.count(ErrorKind.WRONG_COLUMN_TYPE.value) == 2  # GX's type check and the numbers check
    assert set(kinds) <= {kind.value for kind in ErrorKind}  # none left as "validation: <check> failed"


def test_the_offending_values_survive_chunked_validation_and_long_values_are_cut():
    day = _fault_day(rows=200)
    day.loc[3, "monthly_charges"] = "x" * 500
    outcome = validation.validate_frames([day.iloc[:100], day.iloc[100:]], spec_for("churn"))
    reason = _numbers_reason(outcome)
    assert "171 of 200 rows are not numbers" in reason
    assert f"'{'x' * validation.MAX_VALUE_CHARS}...'" in reason and "x" * 41 not in reason


def test_a_clean_numeric_column_passes_the_numbers_check():
    clean = demo_data.generate_batch("churn", date(2026, 3, 2), rows=300)
    outcome = validation.validate_frame(clean, spec_for("churn"))
    assert outcome.success, outcome.reasons
    kind = "factory_expect_column_values_to_be_numbers"
    numbers = [r for r in outcome.result["results"] if r["expectation_config"]["type"] == kind]
    assert numbers and all(r["success"] for r in numbers)
