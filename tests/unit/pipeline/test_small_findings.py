"""Issue 18 finding 11: an absolute/escaping extra_suite, a one-class target, a quoted model
name given to `held`, a full disk during ingest, and fsync of atomic writes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from model_factory.errors import LabelError, PermanentError
from model_factory.io import batches, storage
from model_factory.pipeline import validation
from model_factory.pipeline.training import train_model
from model_factory.settings import FactorySettings
from model_factory.spec import SpecError, load_spec

from tests.conftest import settings_with
from tests.unit.pipeline.test_labels import DAY, SPECIES, _validated, flowers, spec_file


@pytest.mark.parametrize(
    "suite", ["/etc/passwd.json", "../other/suite.json", "~/suite.json", "sub/../../x.json", "suite.yaml"]
)
def test_extra_suite_outside_the_spec_folder_is_refused_at_parse_time(tmp_path, suite):
    raw = yaml.safe_load((Path(__file__).parents[3] / "include" / "models" / "churn.yaml").read_text())
    raw.setdefault("validation", {})["extra_suite"] = suite
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=r"validation\.extra_suite") as caught:
        load_spec(tmp_path / "churn.yaml", FactorySettings.from_env())
    assert "relative to the spec's folder" in str(caught.value) or ".json file" in str(caught.value)


def test_extra_suite_symlinked_out_of_the_spec_folder_is_refused_when_validating(tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text('{"expectations": []}')
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "suite.json").symlink_to(outside)
    spec = spec_file(specs, "flowers", validation={"extra_suite": "suite.json"})
    with pytest.raises(PermanentError, match="outside the spec's folder"):
        validation.validate_frame(flowers(DAY, rows=50), spec, specs)


def test_one_class_target_with_known_classes_is_a_permanent_error_with_the_reason(factory_home):
    settings = FactorySettings.from_env()
    spec = spec_file(factory_home.parent, "flowers", target={"name": "species", "classes": SPECIES})
    uri = _validated(settings, spec, flowers(DAY, rows=120, species=["setosa"]), DAY)
    reason = r"one class only \(\['setosa'\]\) .* flowers on 2026-03-02"
    with pytest.raises(LabelError, match=reason) as caught:
        train_model(spec, str(DAY), [uri], settings)
    assert isinstance(caught.value, PermanentError)  # the task fails at once, no retries


def test_held_with_a_quoted_model_name_says_so_without_a_traceback(factory_home, capsys):
    from model_factory.cli.main import main

    assert main(["held", "churn' or name = 'x"]) == 1
    err = capsys.readouterr().err
    assert "is not a model name" in err and "Traceback" not in err and "MlflowException" not in err


def test_a_full_disk_during_ingest_leaves_no_raw_file_without_its_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_DATA_ROOT", (tmp_path / "source").as_uri())
    spec = spec_file(tmp_path, "flowers")
    source = tmp_path / "source" / "flowers" / f"{DAY}.csv"
    source.parent.mkdir(parents=True)
    flowers(DAY, rows=80).to_csv(source, index=False)
    real_write = storage.write_bytes

    def full(uri, data, s3=None):
        if uri.endswith("manifest.json"):
            raise storage.StorageError(f"cannot write {uri}: {os.strerror(errno.ENOSPC)}")
        return real_write(uri, data, s3)

    monkeypatch.setattr(storage, "write_bytes", full)
    store = tmp_path / "store"
    with pytest.raises(storage.StorageError, match="No space left"):
        batches.ingest_batch(spec, str(DAY), settings_with(store_uri=store.as_uri()))
    assert [p for p in store.rglob("*") if p.is_file()] == []
    monkeypatch.setattr(storage, "write_bytes", real_write)  # the disk has room again: a retry ingests
    again = batches.ingest_batch(spec, str(DAY), settings_with(store_uri=store.as_uri()))
    assert again["already_ingested"] is False and Path(again["raw_uri"].removeprefix("file://")).exists()
    assert pd.read_parquet(again["parsed_uri"].removeprefix("file://")).shape[0] == 80


def test_atomic_writes_fsync_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync-folder" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        return real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "out" / "manifest.json"
    storage.write_json(target.as_uri(), {"a": 1})
    assert events == ["fsync-file", "rename", "fsync-folder"]
    assert storage.read_json(target.as_uri()) == {"a": 1}


def test_status_lists_only_quarantines_that_still_stand(factory_home):
    """Issue 23 item 5: a date quarantined, then validated by a later run, is not listed."""
    from datetime import timedelta

    from model_factory.rollout.summary import quarantined_batches

    from tests.unit.pipeline.test_labels import ingest_validate

    settings = FactorySettings.from_env()
    spec = spec_file(factory_home.parent, "flowers")
    later = DAY + timedelta(days=1)
    for day in (DAY, later):
        bad = flowers(day, rows=60).drop(columns=["petal"])
        assert ingest_validate(spec, bad, day, settings)["status"] == "quarantined"
    assert {q["ds"] for q in quarantined_batches(settings, "flowers")} == {str(DAY), str(later)}
    assert ingest_validate(spec, flowers(DAY, rows=60), DAY, settings)["status"] == "validated"
    assert [q["ds"] for q in quarantined_batches(settings, "flowers")] == [str(later)]
