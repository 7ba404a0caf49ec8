"""Tests for ingesting and reading batches (model_factory.io.batches)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from model_factory.io import batches, storage
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec, load_spec
from model_factory_dev import demo_data as dd

from tests.conftest import BatchFolders, settings_with

MODELS_DIR = Path(__file__).resolve().parents[3] / "include" / "models"
DAY = dt.date(2026, 3, 2)
DS = DAY.isoformat()
ROWS = 300


@pytest.fixture(scope="module")
def churn_frame() -> pd.DataFrame:
    return dd.generate_batch("churn", DAY, rows=ROWS)


@dataclass
class Factory(BatchFolders):
    spec: ModelSpec = field(kw_only=True)

    def write_source(self, data: pd.DataFrame | bytes, ds: str = DS) -> Path:
        return dd.write_batch(data, self.source_dir / "churn" / f"{ds}.csv")

    def store_files(self) -> set[Path]:
        if not self.store_dir.exists():
            return set()
        return {p.relative_to(self.store_dir) for p in self.store_dir.rglob("*") if p.is_file()}


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Factory:
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    shutil.copy(MODELS_DIR / "churn.yaml", spec_dir / "churn.yaml")
    source_dir = tmp_path / "source"
    monkeypatch.setenv("FACTORY_DATA_ROOT", source_dir.as_uri())
    spec = load_spec(spec_dir / "churn.yaml", FactorySettings.from_env())
    return Factory(source_dir, tmp_path / "store", spec=spec)


# --- resolve_source_uri ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "ds", "data_root", "env", "expected"),
    [
        pytest.param(
            "${FACTORY_DATA_ROOT}/churn/{ds}/part-{ds_nodash}.csv",
            "2026-03-02",
            None,
            {"FACTORY_DATA_ROOT": "s3://bucket/src"},
            "s3://bucket/src/churn/2026-03-02/part-20260302.csv",
            id="env, ds and ds_nodash filled",
        ),
        pytest.param(
            "${FACTORY_DATA_ROOT}/churn/{ds}.csv",
            "2026-03-02",
            "file:///data/",
            {"FACTORY_DATA_ROOT": "file:///data/"},
            "file:///data/churn/2026-03-02.csv",
            id="trailing slash of the value stripped",
        ),
        pytest.param(
            "s3://${FACTORY_BUCKET}/${PREFIX}/{ds}.csv",
            "2026-12-31",
            None,
            {"FACTORY_BUCKET": "b", "PREFIX": "p/q", "FACTORY_URI_VARIABLES": "PREFIX"},
            "s3://b/p/q/2026-12-31.csv",
            id="several variables",
        ),
    ],
)
def test_resolve_source_uri(template: str, ds: str, data_root: str | None, env: dict, expected: str) -> None:
    settings = settings_with() if data_root is None else settings_with(data_root=data_root)
    assert batches.resolve_source_uri(template, ds, settings, env) == expected


def test_resolve_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_TEST_ROOT", "file:///from/env")
    monkeypatch.setenv("FACTORY_SOURCE_ROOTS", "file:///from")
    assert (
        batches.resolve_source_uri("${FACTORY_TEST_ROOT}/{ds}.csv", "2026-03-02", settings_with())
        == "file:///from/env/2026-03-02.csv"
    )


def test_resolve_uses_only_the_env_dict_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_TEST_ROOT", "file:///from/env")
    with pytest.raises(KeyError) as info:
        batches.resolve_source_uri("${FACTORY_TEST_ROOT}/{ds}.csv", "2026-03-02", settings_with(), {})
    assert "${FACTORY_TEST_ROOT}" in info.value.args[0]


def test_resolve_missing_env_var_names_it() -> None:
    with pytest.raises(KeyError) as info:
        batches.resolve_source_uri(
            "${FACTORY_DATA_ROOT}/churn/{ds}.csv", "2026-03-02", settings_with(), {"OTHER": "x"}
        )
    assert info.value.args[0] == (
        "source.uri uses ${FACTORY_DATA_ROOT} but that environment variable is not set"
    )


@pytest.mark.parametrize("ds", ["2026-02-30", "2026-13-01", "yesterday", "", "2026-3-2", "2026-03-02T00:00"])
def test_resolve_rejects_invalid_ds(ds: str) -> None:
    with pytest.raises(ValueError):
        batches.resolve_source_uri("file:///data/{ds}.csv", ds, settings_with(), {})


@pytest.mark.parametrize("ds", ["20260302", "2026-W10-1"])
def test_resolve_rejects_non_canonical_ds(ds: str) -> None:
    with pytest.raises(ValueError):
        batches.resolve_source_uri("file:///data/{ds}.csv", ds, settings_with(), {})


# --- parse_batch -------------------------------------------------------------------------


def test_parse_batch_csv_and_parquet(churn_frame: pd.DataFrame) -> None:
    csv = churn_frame.to_csv(index=False).encode()
    df = batches.parse_batch(csv, "csv", "file:///src/churn.csv")
    assert df.shape == (ROWS, len(dd.COLUMNS["churn"]))
    assert list(df.columns) == list(dd.COLUMNS["churn"])
    buffer = io.BytesIO()
    churn_frame.to_parquet(buffer, index=False)
    pq = batches.parse_batch(buffer.getvalue(), "parquet", "file:///src/churn.parquet")
    pd.testing.assert_frame_equal(pq, churn_frame)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_parse_batch_empty_bytes(fmt: str) -> None:
    where = "file:///src/churn/2026-03-02.csv"
    with pytest.raises(batches.UnreadableBatchError) as info:
        batches.parse_batch(b"", fmt, where)
    assert str(info.value) == f"{where} is an empty file (0 bytes)"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_parse_batch_garbage(fmt: str) -> None:
    where = "s3://bucket/churn/2026-03-02.bin"
    with pytest.raises(batches.UnreadableBatchError) as info:
        batches.parse_batch(b"\x00\x01\xff\xfe not a table \x89PNG", fmt, where)
    assert str(info.value).startswith(f"{where} is not a readable {fmt} table: ")
    assert info.value.__cause__ is not None


def test_parse_batch_demo_corrupted_file(churn_frame: pd.DataFrame) -> None:
    data = dd.inject_fault(churn_frame, "churn", "corrupted_file")
    assert isinstance(data, bytes)
    with pytest.raises(batches.UnreadableBatchError, match=r"^file:///x\.csv is not a readable csv table: "):
        batches.parse_batch(data, "csv", "file:///x.csv")


def test_parse_batch_no_columns() -> None:
    with pytest.raises(batches.UnreadableBatchError, match=r"file:///x\.csv is not a readable csv table"):
        batches.parse_batch(b"\n\n", "csv", "file:///x.csv")


# --- ingest_batch --------------------------------------------------------------------------


def test_ingest_copies_source_and_writes_manifest(factory: Factory, churn_frame: pd.DataFrame) -> None:
    source = factory.write_source(churn_frame)
    source_bytes = source.read_bytes()
    sha = hashlib.sha256(source_bytes).hexdigest()

    manifest = batches.ingest_batch(factory.spec, DS, factory.settings)

    folder = f"{factory.store_uri}/raw/churn/{DS}/{sha[:12]}"
    assert manifest["sha256"] == sha
    assert manifest["rows"] == ROWS
    assert manifest["bytes"] == len(source_bytes)
    assert manifest["parse_error"] is None
    assert manifest["already_ingested"] is False
    assert manifest["model"] == "churn"
    assert manifest["ds"] == DS
    assert manifest["format"] == "csv"
    assert manifest["source_uri"] == source.as_uri()
    assert manifest["raw_uri"] == f"{folder}/{DS}.csv"
    dt.datetime.fromisoformat(manifest["ingested_at"])
    # The raw copy is the exact source bytes, and the stored manifest matches.
    assert storage.read_bytes(manifest["raw_uri"]) == source_bytes
    stored = json.loads(storage.read_bytes(f"{folder}/manifest.json"))
    assert stored == {k: v for k, v in manifest.items() if k != "already_ingested"}
    assert manifest["parsed_uri"] == f"{folder}/parsed.parquet"
    assert factory.store_files() == {
        Path("raw", "churn", DS, sha[:12], f"{DS}.csv"),
        Path("raw", "churn", DS, sha[:12], "parsed.parquet"),
        Path("raw", "churn", DS, sha[:12], "manifest.json"),
    }
    # The rows parsed once, as they are in the source.
    pd.testing.assert_frame_equal(batches.read_ingested(manifest), pd.read_csv(source))
    # The source is left alone.
    assert source.read_bytes() == source_bytes


def test_manifest_is_json_serializable(factory: Factory, churn_frame: pd.DataFrame) -> None:
    factory.write_source(churn_frame)
    manifest = batches.ingest_batch(factory.spec, DS, factory.settings)
    assert json.loads(json.dumps(manifest)) == manifest


def test_second_ingest_of_same_bytes_writes_nothing(factory: Factory, churn_frame: pd.DataFrame) -> None:
    factory.write_source(churn_frame)
    first = batches.ingest_batch(factory.spec, DS, factory.settings)
    files = factory.store_files()
    mtimes = {p: (factory.store_dir / p).stat().st_mtime_ns for p in files}

    second = batches.ingest_batch(factory.spec, DS, factory.settings)

    assert second["already_ingested"] is True
    assert {k: v for k, v in second.items() if k != "already_ingested"} == {
        k: v for k, v in first.items() if k != "already_ingested"
    }
    assert factory.store_files() == files
    assert {p: (factory.store_dir / p).stat().st_mtime_ns for p in files} == mtimes


def test_changed_source_is_kept_beside_the_old_copy(factory: Factory, churn_frame: pd.DataFrame) -> None:
    source = factory.write_source(churn_frame)
    old_bytes = source.read_bytes()
    first = batches.ingest_batch(factory.spec, DS, factory.settings)

    factory.write_source(dd.generate_batch("churn", DAY, rows=ROWS, seed=1))
    new_bytes = source.read_bytes()
    assert new_bytes != old_bytes
    second = batches.ingest_batch(factory.spec, DS, factory.settings)

    assert second["already_ingested"] is False
    assert second["sha256"] == hashlib.sha256(new_bytes).hexdigest()
    assert second["sha256"] != first["sha256"]
    shas = sorted(p.name for p in (factory.store_dir / "raw" / "churn" / DS).iterdir())
    assert shas == sorted([first["sha256"][:12], second["sha256"][:12]])
    assert storage.read_bytes(first["raw_uri"]) == old_bytes
    assert storage.read_bytes(second["raw_uri"]) == new_bytes
    assert len(factory.store_files()) == 6  # raw bytes, parsed rows and manifest of each


def test_other_dates_go_to_their_own_folders(factory: Factory, churn_frame: pd.DataFrame) -> None:
    factory.write_source(churn_frame, ds="2026-03-02")
    factory.write_source(churn_frame, ds="2026-03-03")
    a = batches.ingest_batch(factory.spec, "2026-03-02", factory.settings)
    b = batches.ingest_batch(factory.spec, "2026-03-03", factory.settings)
    # Same bytes on another date are a separate batch, not "already ingested".
    assert b["already_ingested"] is False
    assert a["sha256"] == b["sha256"]
    assert "/raw/churn/2026-03-03/" in b["raw_uri"]
    assert b["raw_uri"].endswith("/2026-03-03.csv")


def test_missing_source_names_path_and_date(factory: Factory) -> None:
    expected_uri = (factory.source_dir / "churn" / f"{DS}.csv").as_uri()
    with pytest.raises(batches.MissingBatchError) as info:
        batches.ingest_batch(factory.spec, DS, factory.settings)
    message = str(info.value)
    assert expected_uri in message
    assert DS in message
    assert "'churn'" in message
    assert isinstance(info.value, LookupError)
    assert isinstance(info.value.__cause__, storage.ObjectNotFoundError)
    assert factory.store_files() == set()


def test_missing_env_var_stops_ingest(factory: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACTORY_DATA_ROOT")
    with pytest.raises(KeyError, match=r"\$\{FACTORY_DATA_ROOT\}"):
        batches.ingest_batch(factory.spec, DS, factory.settings)


def test_corrupted_file_is_still_ingested(factory: Factory, churn_frame: pd.DataFrame) -> None:
    source = factory.write_source(dd.inject_fault(churn_frame, "churn", "corrupted_file"))
    manifest = batches.ingest_batch(factory.spec, DS, factory.settings)
    assert manifest["rows"] is None
    assert manifest["parse_error"].startswith(f"{source.as_uri()} is not a readable csv table: ")
    assert manifest["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert storage.read_bytes(manifest["raw_uri"]) == source.read_bytes()
    stored = json.loads(storage.read_bytes(manifest["raw_uri"].rsplit("/", 1)[0] + "/manifest.json"))
    assert stored["parse_error"] == manifest["parse_error"]
    assert manifest["parsed_uri"] is None
    assert not any(p.name == "parsed.parquet" for p in factory.store_files())


def test_empty_source_file_is_ingested_with_error(factory: Factory) -> None:
    source = factory.write_source(b"")
    manifest = batches.ingest_batch(factory.spec, DS, factory.settings)
    assert manifest["rows"] is None
    assert manifest["bytes"] == 0
    assert manifest["parse_error"] == f"{source.as_uri()} is an empty file (0 bytes)"
    assert storage.read_bytes(manifest["raw_uri"]) == b""


def test_header_only_batch_has_zero_rows(factory: Factory, churn_frame: pd.DataFrame) -> None:
    factory.write_source(dd.inject_fault(churn_frame, "churn", "empty"))
    manifest = batches.ingest_batch(factory.spec, DS, factory.settings)
    assert manifest["rows"] == 0
    assert manifest["parse_error"] is None
    assert list(batches.read_ingested(manifest).columns) == list(churn_frame.columns)


def test_a_csv_is_parsed_once_at_ingest(
    factory: Factory, churn_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_factory.pipeline.validation import validate_batch

    factory.write_source(churn_frame)
    parses = []
    real_read_csv = pd.read_csv
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: parses.append(a) or real_read_csv(*a, **k))
    manifest = batches.ingest_batch(factory.spec, DS, factory.settings)
    assert len(parses) == 1
    validated = validate_batch(factory.spec, manifest, factory.settings)
    assert validated["status"] == "validated" and validated["rows"] == ROWS
    assert len(parses) == 1  # validation read ingest's Parquet, not the CSV
    # the validated file is ingest's Parquet itself
    assert storage.read_bytes(validated["validated_uri"]) == storage.read_bytes(manifest["parsed_uri"])


def test_csv_chunks_whose_types_change_are_parsed_into_one_schema(
    factory: Factory, churn_frame: pd.DataFrame
) -> None:
    factory.chunk_rows = 70
    df = churn_frame.copy()
    df["tenure_months"] = df["tenure_months"].astype("float64")
    df.loc[250, "tenure_months"] = 1.5  # int64 in the first chunks, float64 in the last
    df["plan"] = df["plan"].astype(object)
    df.loc[280, "region"] = "7"  # still text
    df["age"] = df["age"].astype(object)
    df.loc[290, "age"] = "unknown"  # a number column that turns text in the last chunk
    factory.write_source(df)
    manifest = batches.ingest_batch(factory.spec, DS, factory.settings)
    parsed = batches.read_ingested(manifest)
    assert manifest["rows"] == ROWS == len(parsed)
    assert parsed["tenure_months"].dtype == "float64" and parsed.loc[250, "tenure_months"] == 1.5
    assert parsed.loc[290, "age"] == "unknown" and parsed.loc[0, "age"] == str(df.loc[0, "age"])


def test_a_manifest_from_before_parsing_at_ingest_still_validates(
    factory: Factory, churn_frame: pd.DataFrame
) -> None:
    from model_factory.pipeline.validation import validate_batch

    factory.write_source(churn_frame)
    manifest = batches.ingest_batch(factory.spec, DS, factory.settings)
    older = {k: v for k, v in manifest.items() if k != "parsed_uri"}
    assert batches.read_ingested(older).shape == (ROWS, len(churn_frame.columns))
    assert validate_batch(factory.spec, older, factory.settings)["status"] == "validated"


# --- validated batches ------------------------------------------------------------------------


def test_validated_uri_layout() -> None:
    assert (
        batches.validated_uri("s3://b/store", "churn", DS)
        == f"s3://b/store/validated/churn/{DS}/data.parquet"
    )


def _validated_store(tmp_path: Path, days: list[str]) -> str:
    store = (tmp_path / "store").as_uri()
    for day in days:
        storage.write_bytes(batches.validated_uri(store, "churn", day), b"parquet")
        storage.write_bytes(storage.join(store, "validated", "churn", day, "validation.json"), b"{}")
        storage.write_bytes(batches.validated_uri(store, "demand", day), b"other model")
    return store


DAYS = ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02", "2026-03-03", "2026-03-10"]


def test_recent_validated_batches_window(tmp_path: Path) -> None:
    store = _validated_store(tmp_path, DAYS)
    uris = batches.recent_validated_batches(store, "churn", "2026-03-02", window=3)
    assert uris == [
        batches.validated_uri(store, "churn", d) for d in ["2026-02-28", "2026-03-01", "2026-03-02"]
    ]


def test_recent_validated_batches_window_larger_than_history(tmp_path: Path) -> None:
    store = _validated_store(tmp_path, DAYS)
    uris = batches.recent_validated_batches(store, "churn", "2026-03-01", window=10)
    assert uris == [
        batches.validated_uri(store, "churn", d) for d in ["2026-02-27", "2026-02-28", "2026-03-01"]
    ]


def test_recent_validated_batches_ds_without_own_batch(tmp_path: Path) -> None:
    store = _validated_store(tmp_path, DAYS)
    # 2026-03-05 has no batch: the ones before it count, the later 03-10 does not.
    uris = batches.recent_validated_batches(store, "churn", "2026-03-05", window=2)
    assert uris == [batches.validated_uri(store, "churn", d) for d in ["2026-03-02", "2026-03-03"]]


def test_recent_validated_batches_window_one_and_nothing_before(tmp_path: Path) -> None:
    store = _validated_store(tmp_path, DAYS)
    assert batches.recent_validated_batches(store, "churn", "2026-03-10", window=1) == [
        batches.validated_uri(store, "churn", "2026-03-10")
    ]
    assert batches.recent_validated_batches(store, "churn", "2026-01-01", window=3) == []


def test_recent_validated_batches_empty_store(tmp_path: Path) -> None:
    assert batches.recent_validated_batches((tmp_path / "none").as_uri(), "churn", DS, window=3) == []


def test_recent_validated_batches_window_zero(tmp_path: Path) -> None:
    store = _validated_store(tmp_path, DAYS)
    assert batches.recent_validated_batches(store, "churn", "2026-03-10", window=0) == []


# --- chunked reading ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_iter_frames_chunks_add_up_to_parse_batch(
    tmp_path: Path, churn_frame: pd.DataFrame, fmt: str
) -> None:
    path = dd.write_batch(churn_frame, tmp_path / f"b.{fmt}", fmt=fmt)
    whole = batches.parse_batch(path.read_bytes(), fmt, "x")
    chunks = list(batches.iter_frames(path, fmt, "x", rows=70))
    assert [len(c) for c in chunks] == [70, 70, 70, 70, 20]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)
    assert batches.count_rows(path, fmt, "x", 70) == ROWS


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_iter_frames_of_an_empty_table_yields_its_columns(
    tmp_path: Path, churn_frame: pd.DataFrame, fmt: str
) -> None:
    path = dd.write_batch(churn_frame.head(0), tmp_path / f"b.{fmt}", fmt=fmt)
    (frame,) = batches.iter_frames(path, fmt, "x", rows=10)
    assert list(frame.columns) == list(churn_frame.columns) and frame.empty
    assert batches.count_rows(path, fmt, "x", 10) == 0


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_iter_frames_unreadable_and_empty_files(tmp_path: Path, fmt: str) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(batches.UnreadableBatchError, match=r"is an empty file \(0 bytes\)"):
        list(batches.iter_frames(empty, fmt, "file:///e", 10))
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01\xff\xfe not a table \x89PNG")
    with pytest.raises(batches.UnreadableBatchError, match=rf"^file:///g is not a readable {fmt} table"):
        batches.count_rows(garbage, fmt, "file:///g", 10)


def test_the_chunk_size_is_the_callers_setting(
    factory: Factory, churn_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    assert settings_with().chunk_rows == batches.DEFAULT_CHUNK_ROWS  # FACTORY_CHUNK_ROWS unset
    factory.write_source(churn_frame)
    monkeypatch.setenv("FACTORY_CHUNK_ROWS", "7")  # read by the entry point, not by ingest itself
    manifest = batches.ingest_batch(
        factory.spec, DS, settings_with(store_uri=factory.store_uri, chunk_rows=64)
    )
    with storage.local_file(manifest["parsed_uri"]) as parsed:  # a row group per chunk of 64 rows
        groups = pq.ParquetFile(parsed).metadata
        assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == [64, 64, 64, 64, 44]
    with pytest.raises(ValueError, match="rows per chunk must be >= 1, got 0"):
        list(batches.iter_frames(factory.source_dir / "churn" / f"{DS}.csv", "csv", "x", 0))


def test_write_parquet_file_one_row_group_per_frame_and_unified_dtypes(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    frames = [pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), pd.DataFrame({"a": [3.5, None], "b": ["z", "w"]})]
    path = tmp_path / "out.parquet"
    assert batches.write_parquet_file(frames, path, {"a": "float64"}) == 4
    assert pq.ParquetFile(path).num_row_groups == 2
    back = pd.read_parquet(path)
    assert back["a"].dtype == "float64" and back["a"].tolist()[:3] == [1.0, 2.0, 3.5]


def test_ingest_in_small_chunks_gives_the_same_manifest(
    factory: Factory, churn_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = factory.write_source(churn_frame)
    factory.chunk_rows = 64
    monkeypatch.setattr(storage, "CHUNK_BYTES", 1000)
    manifest = batches.ingest_batch(factory.spec, DS, factory.settings)
    assert manifest["rows"] == ROWS and manifest["bytes"] == source.stat().st_size
    assert manifest["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert storage.read_bytes(manifest["raw_uri"]) == source.read_bytes()
