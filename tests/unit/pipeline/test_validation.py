"""Tests for batch validation and quarantine (pipeline.validation), with real Great Expectations."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from model_factory.io import batches, storage
from model_factory.pipeline import validation
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec, load_spec
from model_factory_dev import demo_data as dd

from tests.conftest import BatchFolders

MODELS_DIR = Path(__file__).resolve().parents[3] / "include" / "models"
DAY = dt.date(2026, 3, 2)
DS = DAY.isoformat()
ROWS = 300


@pytest.fixture(scope="module")
def specs() -> dict[str, ModelSpec]:
    return {model: load_spec(MODELS_DIR / f"{model}.yaml", FactorySettings.from_env()) for model in dd.MODELS}


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {model: dd.generate_batch(model, DAY, rows=ROWS) for model in dd.MODELS}


class Factory(BatchFolders):
    def ingest(
        self, spec: ModelSpec, data: pd.DataFrame | bytes, ds: str = DS, fmt: str = "csv"
    ) -> tuple[dict, Path]:
        source = dd.write_batch(data, self.source_dir / spec.name / f"{ds}.{fmt}", fmt=fmt)
        return batches.ingest_batch(spec, ds, self.settings), source

    def files_under(self, *parts: str) -> set[str]:
        folder = self.store_dir.joinpath(*parts)
        if not folder.exists():
            return set()
        return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Factory:
    source_dir = tmp_path / "source"
    monkeypatch.setenv("FACTORY_DATA_ROOT", source_dir.as_uri())
    return Factory(source_dir, tmp_path / "store")


def csv_roundtrip(df: pd.DataFrame) -> pd.DataFrame:
    """What the factory sees: the frame as written to and read back from CSV."""
    return batches.parse_batch(df.to_csv(index=False).encode(), "csv", "memory")


def one_reason_with(reasons: list[str], *fragments: str) -> str:
    matching = [r for r in reasons if all(f in r for f in fragments)]
    assert matching, f"no reason contains all of {fragments}: {reasons}"
    return matching[0]


# --- good batches ------------------------------------------------------------------------


@pytest.mark.parametrize("model", dd.MODELS)
def test_good_batch_is_validated(
    factory: Factory, specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame], model: str
) -> None:
    manifest, source = factory.ingest(specs[model], frames[model])
    source_bytes = source.read_bytes()

    out = validation.validate_batch(specs[model], manifest, factory.settings)

    folder = f"{factory.store_uri}/validated/{model}/{DS}"
    assert out == {
        "status": "validated",
        "validated_uri": f"{folder}/data.parquet",
        "validation_uri": f"{folder}/validation.json",
        "rows": ROWS,
        "sha256": manifest["sha256"],
        "ds": DS,
    }
    df = pd.read_parquet(factory.store_dir / "validated" / model / DS / "data.parquet")
    assert len(df) == ROWS
    assert list(df.columns) == list(dd.COLUMNS[model])
    report = json.loads(storage.read_bytes(out["validation_uri"]))
    assert report["success"] is True
    assert report["source"]["sha256"] == manifest["sha256"]
    assert all(r["success"] for r in report["results"])
    assert factory.files_under("validated", model, DS) == {"data.parquet", "validation.json"}
    assert factory.files_under("quarantine") == set()
    assert source.read_bytes() == source_bytes
    assert storage.read_bytes(manifest["raw_uri"]) == source_bytes


def test_good_parquet_batch_is_validated(
    tmp_path: Path, factory: Factory, frames: dict[str, pd.DataFrame]
) -> None:
    raw = yaml.safe_load((MODELS_DIR / "demand.yaml").read_text())
    raw["source"].update(uri="${FACTORY_DATA_ROOT}/demand/{ds}.parquet", format="parquet")
    (tmp_path / "demand.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(tmp_path / "demand.yaml", FactorySettings.from_env())
    manifest, _ = factory.ingest(spec, frames["demand"], fmt="parquet")
    out = validation.validate_batch(spec, manifest, factory.settings, tmp_path)
    assert out["status"] == "validated"
    pd.testing.assert_frame_equal(
        pd.read_parquet(factory.store_dir / "validated" / "demand" / DS / "data.parquet"), frames["demand"]
    )


# --- faulty batches are quarantined with a specific reason ------------------------------------

# Per (model, fault): fragments that one reason must contain together.
EXPECTED_REASON = {
    ("churn", "target_nulls"): ["expect_column_values_to_not_be_null on column 'churned'", "30 of 300 rows"],
    ("churn", "unseen_category"): [
        "expect_column_values_to_be_in_set on column 'plan'",
        "'enterprise'",
        "45 of 300 rows",
    ],
    ("churn", "dropped_column"): ["column 'support_calls' is missing"],
    ("churn", "out_of_range"): [
        "expect_column_values_to_be_between on column 'age'",
        "15 of 300 rows",
        "'min_value': 18.0",
        "'max_value': 100.0",
    ],
    ("churn", "wrong_dtype"): [
        "expect_column_values_to_be_in_type_list on column 'monthly_charges'",
        "observed 'str'",
    ],
    ("churn", "empty"): ["expect_table_row_count_to_be_between", "observed 0", "'min_value': 1"],
    ("churn", "corrupted_file"): ["unreadable file: ", "is not a readable csv table"],
    ("demand", "dropped_column"): ["column 'price' is missing"],
    ("demand", "out_of_range"): [
        "expect_column_values_to_be_between on column 'humidity'",
        "15 of 300 rows",
        "'max_value': 100.0",
    ],
}
# The column each fault breaks: every reason must be about it (no false alarms elsewhere).
FAULT_COLUMN = {
    ("churn", "target_nulls"): "churned",
    ("churn", "unseen_category"): "plan",
    ("churn", "dropped_column"): "support_calls",
    ("churn", "out_of_range"): "age",
    ("churn", "wrong_dtype"): "monthly_charges",
    ("demand", "dropped_column"): "price",
    ("demand", "out_of_range"): "humidity",
}


def test_every_fault_is_covered() -> None:
    assert {fault for model, fault in EXPECTED_REASON if model == "churn"} == set(dd.FAULTS)


@pytest.mark.parametrize(
    ("model", "fault"), list(EXPECTED_REASON), ids=[f"{m}-{f}" for m, f in EXPECTED_REASON]
)
def test_faulty_batch_is_quarantined(
    factory: Factory,
    specs: dict[str, ModelSpec],
    frames: dict[str, pd.DataFrame],
    model: str,
    fault: str,
) -> None:
    manifest, source = factory.ingest(specs[model], dd.inject_fault(frames[model], model, fault))
    source_bytes = source.read_bytes()

    out = validation.validate_batch(specs[model], manifest, factory.settings)

    sha12 = hashlib.sha256(source_bytes).hexdigest()[:12]
    folder = factory.store_dir / "quarantine" / model / DS / sha12
    assert out["status"] == "quarantined"
    assert out["quarantine_uri"] == folder.as_uri()
    assert out["ds"] == DS
    assert out["sha256"] == manifest["sha256"]
    assert "validated_uri" not in out
    # The reason names the problem.
    one_reason_with(out["reasons"], *EXPECTED_REASON[(model, fault)])
    column = FAULT_COLUMN.get((model, fault))
    if column is not None:
        assert all(f"'{column}'" in r for r in out["reasons"]), out["reasons"]
    elif fault == "empty":
        assert len(out["reasons"]) == 1
    # The quarantine folder keeps everything needed to look into it.
    assert factory.files_under("quarantine", model, DS, sha12) == {
        f"{DS}.csv",
        "validation.json",
        "REASON.txt",
        "manifest.json",
    }
    assert (folder / f"{DS}.csv").read_bytes() == source_bytes
    report = json.loads((folder / "validation.json").read_text())
    assert report["success"] is False
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    reason_text = (folder / "REASON.txt").read_text()
    assert f"Batch for model '{model}' on {DS} was quarantined." in reason_text
    assert f"source: {source.as_uri()}" in reason_text
    assert f"sha256: {manifest['sha256']}" in reason_text
    for reason in out["reasons"]:
        assert f"- {reason}" in reason_text
    # Nothing validated, nothing touched.
    assert factory.files_under("validated") == set()
    assert source.read_bytes() == source_bytes
    assert storage.read_bytes(manifest["raw_uri"]) == source_bytes


def test_reason_for_target_nulls_mentions_target(
    factory: Factory, specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame]
) -> None:
    manifest, _ = factory.ingest(specs["churn"], dd.inject_fault(frames["churn"], "churn", "target_nulls"))
    out = validation.validate_batch(specs["churn"], manifest, factory.settings)
    assert len(out["reasons"]) == 1
    reason = out["reasons"][0]
    assert "'churned'" in reason
    assert "not_be_null" in reason
    # The target must be complete: no "mostly" tolerance as for features.
    assert "mostly" not in reason


def test_corrupted_file_quarantine_result_is_minimal_json(
    factory: Factory, specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame]
) -> None:
    manifest, _ = factory.ingest(specs["churn"], dd.inject_fault(frames["churn"], "churn", "corrupted_file"))
    assert manifest["rows"] is None
    out = validation.validate_batch(specs["churn"], manifest, factory.settings)
    assert out["reasons"] == [
        f"unreadable file: {manifest['raw_uri']} is not a readable csv table: "
        + manifest["parse_error"].split(" is not a readable csv table: ", 1)[1]
    ]
    folder = Path(out["quarantine_uri"].removeprefix("file://"))
    assert json.loads((folder / "validation.json").read_text()) == {"success": False}


def test_two_bad_versions_of_one_date_are_both_kept(
    factory: Factory, specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame]
) -> None:
    spec = specs["churn"]
    first, _ = factory.ingest(spec, dd.inject_fault(frames["churn"], "churn", "dropped_column"))
    validation.validate_batch(spec, first, factory.settings)
    second, _ = factory.ingest(spec, dd.inject_fault(frames["churn"], "churn", "empty"))
    validation.validate_batch(spec, second, factory.settings)
    kept = sorted(p.name for p in (factory.store_dir / "quarantine" / "churn" / DS).iterdir())
    assert kept == sorted([first["sha256"][:12], second["sha256"][:12]])


def test_later_bad_batch_withdraws_the_earlier_validated_one(
    factory: Factory, specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame]
) -> None:
    spec = specs["churn"]
    good, _ = factory.ingest(spec, frames["churn"])
    assert validation.validate_batch(spec, good, factory.settings)["status"] == "validated"
    bad, _ = factory.ingest(spec, dd.inject_fault(frames["churn"], "churn", "target_nulls"))
    out = validation.validate_batch(spec, bad, factory.settings)
    assert out["status"] == "quarantined"
    one_reason_with(out["reasons"], "withdrew the earlier validated batch")
    assert factory.files_under("validated", "churn", DS) == {"validation.json"}
    assert batches.recent_validated_batches(factory.store_uri, "churn", DS, 3) == []
    assert (factory.store_dir / "raw" / "churn" / DS / good["sha256"][:12]).is_dir()


# --- validate_frame ------------------------------------------------------------------------


def test_validate_frame_result_is_json_serializable(
    specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame]
) -> None:
    good = validation.validate_frame(csv_roundtrip(frames["churn"]), specs["churn"])
    assert good.success is True
    assert good.reasons == []
    bad = validation.validate_frame(
        csv_roundtrip(dd.inject_fault(frames["churn"], "churn", "out_of_range")), specs["churn"]
    )
    assert bad.success is False
    for outcome in (good, bad):
        text = json.dumps(outcome.result)  # no default=: must be plain JSON
        assert json.loads(text)["success"] is outcome.success
        assert len(outcome.result["results"]) > 0


def test_validate_frame_checks_every_spec_column(specs: dict[str, ModelSpec]) -> None:
    spec = specs["churn"]
    outcome = validation.validate_frame(pd.DataFrame({"unrelated": [1, 2, 3]}), spec)
    assert outcome.success is False
    missing = sorted(r for r in outcome.reasons if r.endswith(" is missing"))
    assert missing == sorted(f"column {c!r} is missing" for c in [spec.target, *spec.features.all])


@pytest.mark.parametrize(("fraction", "ok"), [(0.01, True), (0.05, False)])
def test_feature_null_fraction_ceiling(
    specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame], fraction: float, ok: bool
) -> None:
    # churn allows at most 2% nulls per feature.
    df = csv_roundtrip(frames["churn"])
    df.loc[: round(fraction * ROWS) - 1, "usage_gb"] = np.nan
    outcome = validation.validate_frame(df, specs["churn"])
    assert outcome.success is ok
    if not ok:
        one_reason_with(
            outcome.reasons,
            "expect_column_values_to_not_be_null on column 'usage_gb'",
            "15 of 300 rows",
            "'mostly': 0.98",
        )


def test_regression_target_must_be_numeric(
    specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame]
) -> None:
    df = csv_roundtrip(frames["demand"])
    df["units_sold"] = df["units_sold"].astype(str)
    outcome = validation.validate_frame(df, specs["demand"])
    assert outcome.success is False
    one_reason_with(outcome.reasons, "expect_column_values_to_be_in_type_list on column 'units_sold'")


def test_class_names_are_labels_but_fractions_are_not(
    specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame]
) -> None:
    df = csv_roundtrip(frames["churn"])
    df["churned"] = df["churned"].map({0: "no", 1: "yes"})
    assert validation.validate_frame(df, specs["churn"]).success is True
    df = csv_roundtrip(frames["churn"]).astype({"churned": "float64"})
    df.loc[:2, "churned"] = 0.9
    outcome = validation.validate_frame(df, specs["churn"])
    assert outcome.success is False
    one_reason_with(outcome.reasons, "target 'churned'", "3 of 300 rows are not class labels", "0.9")


def test_reason_for_expectation_that_could_not_be_evaluated(
    specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame]
) -> None:
    # A string column makes GX's between-metric raise a TypeError.
    df = csv_roundtrip(dd.inject_fault(frames["churn"], "churn", "wrong_dtype"))
    outcome = validation.validate_frame(df, specs["churn"])
    reason = one_reason_with(
        outcome.reasons, "expect_column_values_to_be_between on column 'monthly_charges'"
    )
    assert "observed None" not in reason
    assert "could not be evaluated" in reason
    assert "must either be None or of the same type" in reason


# --- validation.extra_suite ------------------------------------------------------------------

AGE_SUITE = {
    "expectations": [
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "age", "min_value": 30, "max_value": 40},
        }
    ]
}


def spec_with_suite(folder: Path, suite: object | None, suite_name: str = "suites/churn.json") -> ModelSpec:
    raw = yaml.safe_load((MODELS_DIR / "churn.yaml").read_text())
    raw["validation"]["extra_suite"] = suite_name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "churn.yaml").write_text(yaml.safe_dump(raw))
    if suite is not None:
        path = folder / suite_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(suite if isinstance(suite, str) else json.dumps(suite))
    return load_spec(folder / "churn.yaml", FactorySettings.from_env())


def test_extra_suite_fails_a_normal_batch(
    tmp_path: Path, factory: Factory, frames: dict[str, pd.DataFrame]
) -> None:
    spec_dir = tmp_path / "specs"
    spec = spec_with_suite(spec_dir, AGE_SUITE)
    manifest, _ = factory.ingest(spec, frames["churn"])
    out = validation.validate_batch(spec, manifest, factory.settings, spec_dir)
    assert out["status"] == "quarantined"
    assert len(out["reasons"]) == 1
    reason = out["reasons"][0]
    assert "expect_column_values_to_be_between on column 'age'" in reason
    assert "'min_value': 30" in reason
    assert "'max_value': 40" in reason
    assert factory.files_under("validated") == set()


def test_extra_suite_that_passes_keeps_batch_valid(tmp_path: Path, frames: dict[str, pd.DataFrame]) -> None:
    suite = {
        "expectations": [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "age", "min_value": 0, "max_value": 200},
            }
        ]
    }
    spec = spec_with_suite(tmp_path, suite)
    plain = validation.validate_frame(
        csv_roundtrip(frames["churn"]), load_spec(MODELS_DIR / "churn.yaml", FactorySettings.from_env())
    )
    outcome = validation.validate_frame(csv_roundtrip(frames["churn"]), spec, tmp_path)
    assert outcome.success is True
    assert len(outcome.result["results"]) == len(plain.result["results"]) + 1


def test_missing_extra_suite_names_the_path(tmp_path: Path, frames: dict[str, pd.DataFrame]) -> None:
    spec = spec_with_suite(tmp_path, None)
    with pytest.raises(ValueError) as info:
        validation.validate_frame(csv_roundtrip(frames["churn"]), spec, tmp_path)
    assert str(info.value).startswith(
        f"cannot load validation.extra_suite {tmp_path / 'suites' / 'churn.json'}: "
    )
    assert "No such file or directory" in str(info.value)


@pytest.mark.parametrize(
    "suite",
    [
        "{not json",
        {"no_expectations_key": []},
        {"expectations": [{"type": "expect_column_values_to_be_between", "kwargs": {"min_value": 1}}]},
    ],
    ids=["not-json", "no-expectations", "kwargs-missing-column"],
)
def test_broken_extra_suite_names_the_path(
    tmp_path: Path, frames: dict[str, pd.DataFrame], suite: object
) -> None:
    spec = spec_with_suite(tmp_path, suite)
    with pytest.raises(ValueError, match=r"cannot load validation\.extra_suite") as info:
        validation.validate_frame(csv_roundtrip(frames["churn"]), spec, tmp_path)
    assert str(tmp_path / "suites" / "churn.json") in str(info.value)


def test_unknown_expectation_in_extra_suite_names_the_path(
    tmp_path: Path, frames: dict[str, pd.DataFrame]
) -> None:
    suite = {"expectations": [{"type": "expect_column_to_be_purple", "kwargs": {"column": "age"}}]}
    spec = spec_with_suite(tmp_path, suite)
    with pytest.raises(ValueError, match=r"cannot load validation\.extra_suite") as info:
        validation.validate_frame(csv_roundtrip(frames["churn"]), spec, tmp_path)
    assert str(tmp_path / "suites" / "churn.json") in str(info.value)


# --- chunked validation (large batches) --------------------------------------------------------


@pytest.fixture
def small_chunks(factory: Factory) -> int:
    factory.chunk_rows = 70  # ROWS = 300 -> 5 chunks
    return 70


@pytest.mark.parametrize(
    "fault", ["unseen_category", "out_of_range", "target_nulls", "dropped_column", "wrong_dtype"]
)
def test_chunked_validation_gives_the_same_verdict_and_counts(
    factory: Factory,
    specs: dict[str, ModelSpec],
    frames: dict[str, pd.DataFrame],
    fault: str,
) -> None:
    bad = dd.inject_fault(frames["churn"], "churn", fault, seed=1)
    manifest, _ = factory.ingest(specs["churn"], bad)
    whole = validation.validate_frame(csv_roundtrip(bad), specs["churn"])
    factory.chunk_rows = 70

    out = validation.validate_batch(specs["churn"], manifest, factory.settings)

    assert out["status"] == "quarantined" and not whole.success
    # Same failing expectations, same counts ("N of 300 rows failed (P%)").
    strip = lambda r: r.split(", e.g.")[0]  # noqa: E731 - sample values may differ by chunk
    assert sorted(map(strip, out["reasons"])) == sorted(map(strip, whole.reasons))


def test_chunked_good_batch_is_validated_whole(
    factory: Factory, specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame], small_chunks: int
) -> None:
    manifest, source = factory.ingest(specs["demand"], frames["demand"])
    out = validation.validate_batch(specs["demand"], manifest, factory.settings)
    assert out["status"] == "validated" and out["rows"] == ROWS
    validated = pd.read_parquet(factory.store_dir / "validated" / "demand" / DS / "data.parquet")
    pd.testing.assert_frame_equal(validated, batches.parse_batch(source.read_bytes(), "csv", "x"))
    report = json.loads((factory.store_dir / "validated" / "demand" / DS / "validation.json").read_text())
    assert report["meta"]["chunks"] == 5 and report["meta"]["rows"] == ROWS


def test_mostly_and_row_count_apply_to_the_whole_batch_not_each_chunk(
    factory: Factory, specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame], small_chunks: int
) -> None:
    spec = specs["churn"].model_copy(
        update={"validation": specs["churn"].validation.model_copy(update={"min_rows": 250})}
    )
    df = frames["churn"].copy()
    # 5 nulls, all in the first chunk: 7% of that chunk (over the 2% ceiling), 1.7% of the batch.
    df.loc[:4, "usage_gb"] = None
    manifest, _ = factory.ingest(spec, df)
    out = validation.validate_batch(spec, manifest, factory.settings)
    assert out["status"] == "validated", out.get("reasons")

    df.loc[:9, "usage_gb"] = None  # 10 nulls: 3.3% of the batch
    manifest, _ = factory.ingest(spec, df)
    out = validation.validate_batch(spec, manifest, factory.settings)
    assert out["status"] == "quarantined"
    assert one_reason_with(out["reasons"], "usage_gb", "10 of 300 rows failed (3.3%)")


def test_csv_chunks_with_different_dtypes_are_written_as_one_schema(
    factory: Factory, specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame], small_chunks: int
) -> None:
    df = frames["churn"].copy()
    df["tenure_months"] = df["tenure_months"].astype("float64")
    df.loc[[250], "tenure_months"] = None  # float64 in the last chunk only, int64 in the others
    manifest, _ = factory.ingest(specs["churn"], df)
    out = validation.validate_batch(specs["churn"], manifest, factory.settings)
    assert out["status"] == "validated", out.get("reasons")
    validated = pd.read_parquet(factory.store_dir / "validated" / "churn" / DS / "data.parquet")
    assert len(validated) == ROWS and validated["tenure_months"].dtype == "float64"
    assert validated["tenure_months"].isna().sum() == 1


def test_a_huge_bad_value_is_clipped_in_the_reason_and_the_result(
    factory: Factory, specs: dict[str, ModelSpec], frames: dict[str, pd.DataFrame]
) -> None:
    """Issue 10 item 8: a 40 MB line once gave a 40 MB REASON.txt and an 84 MB validation.json."""
    df = frames["churn"].copy()
    df["plan"] = df["plan"].astype(object)
    df.loc[:2, "plan"] = "x" * 5_000_000
    manifest, _ = factory.ingest(specs["churn"], df)
    out = validation.validate_batch(specs["churn"], manifest, factory.settings)
    assert out["status"] == "quarantined"
    assert any("'plan'" in r and "(5000000 characters)" in r for r in out["reasons"]), out["reasons"]
    folder = Path(out["quarantine_uri"].removeprefix("file://"))
    assert (folder / "REASON.txt").stat().st_size < 10_000
    assert (folder / "validation.json").stat().st_size < 100_000
