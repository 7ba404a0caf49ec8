"""The fleet's spec index: re-parses only changed files, drops removed ones, survives corruption."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest
from model_factory.io import fleet_index
from model_factory.io.fleet_index import BrokenSpec, SpecFacts, read_specs

CHURN = (Path(__file__).resolve().parents[3] / "include" / "models" / "churn.yaml").read_text()


def _write(folder: Path, name: str, owner_suffix: str = "") -> Path:
    text = CHURN.replace("name: churn\n", f"name: {name}\n")
    if owner_suffix:
        text = text.replace("owner: ", f"owner: {owner_suffix}", 1)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the index actually parsed."""
    seen: list[str] = []
    original = fleet_index.facts_of

    def counting(path: Path) -> SpecFacts | BrokenSpec:
        seen.append(path.stem)
        return original(path)

    monkeypatch.setattr(fleet_index, "facts_of", counting)
    return seen


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    """An empty folder of specs."""
    folder = tmp_path / "specs"
    folder.mkdir()
    return folder


@pytest.fixture
def index(tmp_path: Path) -> Path:
    """Where the index is kept (no file yet)."""
    return tmp_path / "fleet_index.sqlite"


def test_a_second_process_reads_the_index_not_the_files(
    tmp_path: Path, specs: Path, parses: list[str]
) -> None:
    index = tmp_path / "home" / "fleet_index.sqlite"  # in a folder not made yet
    for name in ("a_model", "b_model"):
        _write(specs, name)
    good, bad = read_specs(specs, index)
    assert [f.model for f in good] == ["a_model", "b_model"] and bad == []
    assert parses == ["a_model", "b_model"]
    again, _ = read_specs(specs, index)
    assert again == good and parses == ["a_model", "b_model"]  # nothing re-parsed
    assert good[0].metric and good[0].template == "retrain" and good[0].owner


def test_a_spec_changed_after_its_row_was_written_is_read_again(
    specs: Path, index: Path, parses: list[str]
) -> None:
    path = _write(specs, "a_model")
    _write(specs, "b_model")
    first, _ = read_specs(specs, index)
    stat = path.stat()
    _write(specs, "a_model", owner_suffix="platform-")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # whatever the clock's resolution
    parses.clear()
    good, _ = read_specs(specs, index)
    assert parses == ["a_model"]
    assert good[0].owner == "platform-" + first[0].owner and good[1] == first[1]
    path.write_text(path.read_text() + "\nownr: typo\n")  # now broken
    good, bad = read_specs(specs, index)
    assert [f.model for f in good] == ["b_model"]
    assert bad[0].path == str(path) and any("ownr" in field for field, _ in bad[0].problems)
    path.unlink()
    good, bad = read_specs(specs, index)
    assert [f.model for f in good] == ["b_model"] and bad == []
    with sqlite3.connect(index) as conn:  # the removed file's row is gone
        assert [r[0] for r in conn.execute("SELECT path FROM spec_facts")] == [str(specs / "b_model.yaml")]


def test_a_new_parser_re_reads_every_spec(
    specs: Path, index: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(specs, "a_model")
    read_specs(specs, index)
    monkeypatch.setattr(fleet_index, "_FINGERPRINT", "1:another-parser")
    parses.clear()
    read_specs(specs, index)
    assert parses == ["a_model"]


def test_only_reads_the_named_files_and_keeps_the_rest(specs: Path, index: Path, parses: list[str]) -> None:
    for name in ("a_model", "b_model", "c_model"):
        _write(specs, name)
    good, _ = read_specs(specs, index, only={"b_model", "../etc/passwd", "nope"})
    assert [f.model for f in good] == ["b_model"] and parses == ["b_model"]
    parses.clear()
    read_specs(specs, index)
    assert parses == ["a_model", "c_model"]


def test_a_corrupt_index_is_moved_aside_named_and_rebuilt(
    tmp_path: Path, specs: Path, index: Path, parses: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    _write(specs, "a_model")
    index.write_bytes(b"this is not a database, it is garbage" * 100)
    with caplog.at_level(logging.WARNING, logger="model_factory.io.fleet_index"):
        good, _ = read_specs(specs, index)
    assert [f.model for f in good] == ["a_model"]
    assert str(index) in caplog.text and "rebuilt" in caplog.text
    assert list(tmp_path.glob("fleet_index.sqlite.corrupt-*"))
    parses.clear()
    read_specs(specs, index)
    assert parses == []  # the rebuilt index serves the next read


def test_a_row_this_code_cannot_read_is_parsed_again(specs: Path, index: Path, parses: list[str]) -> None:
    _write(specs, "a_model")
    read_specs(specs, index)
    with sqlite3.connect(index) as conn:
        conn.execute('UPDATE spec_facts SET facts = \'{"kind": "ok", "bogus": 1}\'')
    parses.clear()
    good, _ = read_specs(specs, index)
    assert [f.model for f in good] == ["a_model"] and parses == ["a_model"]


def test_an_unusable_index_place_still_answers(
    tmp_path: Path, specs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(specs, "a_model")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the home folder should be")
    with caplog.at_level(logging.WARNING, logger="model_factory.io.fleet_index"):
        good, _ = read_specs(specs, blocker / "fleet_index.sqlite")
    assert [f.model for f in good] == ["a_model"] and "not usable" in caplog.text
