"""training_data.read_frames: lineage of whole files, and the TrainingSpec.max_rows sample."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pytest
from model_factory.io.batches import DEFAULT_CHUNK_ROWS
from model_factory.pipeline.training_data import read_frames
from model_factory.spec import DEFAULT_MAX_TRAINING_ROWS, TrainingSpec
from model_factory_dev import demo_data as dd


@pytest.fixture
def batches_on_disk(tmp_path: Path) -> list[str]:
    uris = []
    for day in range(3):
        df = dd.generate_batch("churn", dt.date(2026, 1, 5) + dt.timedelta(days=day), rows=4000)
        path = tmp_path / f"{day}.parquet"
        # small row groups: the sampled read goes chunk by chunk
        df.to_parquet(path, index=False, row_group_size=500)
        uris.append(path.as_uri())
    return uris


def test_under_the_cap_every_row_is_read(batches_on_disk: list[str]) -> None:
    df, inputs = read_frames(batches_on_disk, chunk_rows=DEFAULT_CHUNK_ROWS, max_rows=100_000)
    assert len(df) == 12_000
    for uri, info in zip(batches_on_disk, inputs, strict=True):
        data = Path(uri.removeprefix("file://")).read_bytes()
        assert info == {"uri": uri, "sha256": hashlib.sha256(data).hexdigest(), "rows": 4000}
    whole = [pd.read_parquet(u.removeprefix("file://")) for u in batches_on_disk]
    pd.testing.assert_frame_equal(df, pd.concat(whole, ignore_index=True))


def test_over_the_cap_a_seeded_sample_of_about_max_rows(batches_on_disk: list[str]) -> None:
    df, inputs = read_frames(batches_on_disk, chunk_rows=700, max_rows=3000, seed=7)
    assert 2700 <= len(df) <= 3300
    assert sum(i["sampled_rows"] for i in inputs) == len(df)
    assert [i["rows"] for i in inputs] == [4000, 4000, 4000]  # lineage names the whole files
    again, _ = read_frames(batches_on_disk, chunk_rows=700, max_rows=3000, seed=7)
    pd.testing.assert_frame_equal(df, again)  # same data + seed -> same sample
    other, _ = read_frames(batches_on_disk, chunk_rows=700, max_rows=3000, seed=8)
    assert not df["customer_id"].equals(other["customer_id"])
    assert list(df.columns) == list(dd.COLUMNS["churn"])


def test_training_spec_cap_default_and_off() -> None:
    assert TrainingSpec().max_rows == DEFAULT_MAX_TRAINING_ROWS
    assert TrainingSpec(max_rows=None).max_rows is None
    with pytest.raises(ValueError, match="max_rows"):
        TrainingSpec(max_rows=10)
