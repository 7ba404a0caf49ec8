"""Issue 18 finding 10: `new-model --from-data` on hostile files gives a clear error, reads a
bounded amount, and leaves nothing behind (no spec, no staging folder) when it fails."""

from __future__ import annotations

import resource

import pandas as pd
import pytest
from model_factory.scaffold import MAX_SAMPLE_COLUMNS, ScaffoldError

from tests.unit.scaffold import new_model


def _left_behind(models):
    return sorted(p.name for p in models.rglob("*")) if models.exists() else []


def _refused(tmp_path, sample, match):
    models = tmp_path / "models"
    with pytest.raises(ScaffoldError, match=match):
        new_model("hostile", "retrain", models, owner="ds", sample=sample, target="label")
    assert _left_behind(models) == []


def test_latin1_file_is_refused_naming_the_encoding(tmp_path):
    sample = tmp_path / "latin1.csv"
    sample.write_bytes("city,amount,label\nZürich,1.5,a\nGenève,2.5,b\n".encode("latin-1"))
    _refused(tmp_path, sample, r"not UTF-8 text \(byte 0xfc at offset 19\).*iconv")


def test_latin1_byte_beyond_the_probe_is_refused_too(tmp_path):
    sample = tmp_path / "late.csv"
    rows = "".join(f"x{i},{i},{'a' if i % 2 else 'b'}\n" for i in range(90_000))
    sample.write_bytes(("city,amount,label\n" + rows + "Genève,1,a\n").encode("latin-1"))
    _refused(tmp_path, sample, "not UTF-8 text")


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file_is_refused(tmp_path, content):
    sample = tmp_path / "empty.csv"
    sample.write_bytes(content)
    _refused(tmp_path, sample, "the file is empty")


def test_sparse_gigabyte_file_is_refused_after_a_bounded_read(tmp_path):
    sample = tmp_path / "sparse.csv"
    with open(sample, "wb") as handle:
        handle.truncate(1 << 30)  # 1 GiB of holes: reads as NUL bytes
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _refused(tmp_path, sample, "binary data .a NUL byte at offset 0")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: no 1 GiB read


def test_two_megabyte_header_is_refused(tmp_path):
    sample = tmp_path / "wide_header.csv"
    header = ",".join(f"column_with_a_long_name_{i:07d}" for i in range(70_000))
    sample.write_text(header + ",label\n")
    assert sample.stat().st_size > 2_000_000
    _refused(tmp_path, sample, "the header line is over 65536 bytes")


def test_ten_thousand_columns_are_refused(tmp_path):
    sample = tmp_path / "wide.csv"
    frame = pd.DataFrame({f"c{i}": [i % 7, i % 5, i % 3] for i in range(10_000)}).assign(label=[0, 1, 0])
    frame.to_csv(sample, index=False)
    _refused(tmp_path, sample, f"10001 columns, more than {MAX_SAMPLE_COLUMNS}")
    parquet = tmp_path / "wide.parquet"
    frame.to_parquet(parquet)
    _refused(tmp_path, parquet, "10001 columns")


def test_a_spec_over_the_size_limit_is_not_written(tmp_path, monkeypatch):
    import model_factory.scaffold as scaffold

    monkeypatch.setattr(scaffold, "MAX_SPEC_BYTES", 600)
    sample = tmp_path / "ok.csv"
    rows = [float(r) for r in range(40)]
    pd.DataFrame({f"feature_{i}": rows for i in range(40)}).assign(label=[r % 2 for r in range(40)]).to_csv(
        sample, index=False
    )
    _refused(tmp_path, sample, "would be .* bytes, over the 600")


def test_garbage_and_broken_parquet_are_clear_errors(tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    _refused(tmp_path, broken, "not a readable Parquet file")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text('a,b,label\n1,2,x\n"unterminated,3\n')
    _refused(tmp_path, ragged, "not a readable CSV")


def test_a_failure_after_writing_leaves_the_old_spec_and_no_staging(tmp_path, monkeypatch):
    import model_factory.pipeline.validation as validation

    models = tmp_path / "models"
    new_model("keep", "retrain", models, owner="ds")
    old = (models / "keep.yaml").read_text()
    sample = tmp_path / "s.csv"
    pd.DataFrame({"x": [float(r) for r in range(40)], "label": [r % 2 for r in range(40)]}).to_csv(
        sample, index=False
    )

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(validation, "validate_frame", boom)
    with pytest.raises(KeyboardInterrupt):
        new_model("keep", "retrain", models, owner="ds", sample=sample, force=True)
    assert (models / "keep.yaml").read_text() == old
    assert _left_behind(models) == ["keep.yaml"]


def test_cli_prints_the_reason_not_a_traceback(tmp_path, monkeypatch, capsys):
    from model_factory.cli.main import main

    monkeypatch.setenv("FACTORY_SPECS_DIR", str(tmp_path / "models"))
    sample = tmp_path / "empty.csv"
    sample.write_bytes(b"")
    assert main(["new-model", "m1", "--owner", "ds", "--from-data", str(sample)]) == 1
    err = capsys.readouterr().err
    assert "the file is empty" in err and "Traceback" not in err


def test_too_few_rows_an_all_null_target_and_late_classes_are_said_at_scaffold_time(tmp_path):
    def refused(frame, match, target="label"):
        sample = tmp_path / "s.csv"
        frame.to_csv(sample, index=False)
        models = tmp_path / "models"
        with pytest.raises(ScaffoldError, match=match):
            new_model("early", "retrain", models, owner="ds", sample=sample, target=target)
        assert _left_behind(models) == []

    refused(pd.DataFrame({"x": range(10), "label": [0, 1] * 5}), "has 10 rows; .* needs at least 30")
    refused(pd.DataFrame({"x": range(40), "label": [None] * 40}), "null in every row")
    days = pd.date_range("2026-01-01", periods=40, freq="D").astype(str)
    late = pd.DataFrame({"x": range(40), "when": days, "label": ["a", "b"] * 17 + ["c"] * 6})
    refused(late, r"classes \['c'\] .* appear only in the last fifth of 'when'")
