"""The fleet's spec index: what each spec file says that a fleet row needs, kept across processes.

``status`` is a fresh process: parsing 10,000 specs (YAML and validation) cost it more than half
its 30 CPU-s. The index is one SQLite file (``<FACTORY_HOME>/fleet_index.sqlite``) with a row per
spec file holding its (mtime_ns, size) and the facts the fleet row shows (or the file's problems
when it is broken). A read stats every file and re-parses only those whose mtime or size changed,
or whose parser changed (the row carries a fingerprint of ``spec.py``): the index is never staler
than the files' stat, the same bound the in-process cache had. Files gone from the folder lose
their row. A corrupt, foreign or unreadable index is moved aside (named in the log) and rebuilt;
when it cannot be written at all the specs are parsed as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from model_factory import spec as spec_module
from model_factory.settings import FactorySettings
from model_factory.spec import SpecError, load_spec

log = logging.getLogger(__name__)

INDEX_FILE = "fleet_index.sqlite"
SCHEMA = 1


@dataclass(frozen=True)
class SpecFacts:
    """A good spec's fields a fleet row shows."""

    path: str
    name: str
    model: str
    owner: str
    template: str
    task: str
    metric: str
    threshold: float | None
    psi_threshold: float | None


@dataclass(frozen=True)
class BrokenSpec:
    """A spec that does not parse: its file and the problems ``SpecError`` named."""

    path: str
    problems: list[tuple[str, str]]


def index_path(home: Path) -> Path:
    return Path(home) / INDEX_FILE


_FINGERPRINT: str | None = None


def parser_fingerprint() -> str:
    """Changes when the spec parser does (a code upgrade re-parses every spec once)."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        source = Path(spec_module.__file__).read_bytes()
        _FINGERPRINT = f"{SCHEMA}:" + hashlib.sha256(source).hexdigest()[:16]
    return _FINGERPRINT


def facts_of(path: Path, settings: FactorySettings) -> SpecFacts | BrokenSpec:
    """Parse one spec file into what the index keeps."""
    try:
        spec = load_spec(path, settings)
    except SpecError as exc:
        return BrokenSpec(str(path), [(str(f), str(w)) for f, w in exc.problems])
    return SpecFacts(
        path=str(path),
        name=spec.name,
        model=spec.registered_model_name,
        owner=spec.owner,
        template=getattr(spec, "template", None) or "retrain",
        task=spec.task,
        metric=spec.gates.primary_metric,
        threshold=spec.gates.threshold,
        psi_threshold=spec.drift.psi_threshold if spec.drift.enabled else None,
    )


def _encode(facts: SpecFacts | BrokenSpec) -> str:
    kind = "broken" if isinstance(facts, BrokenSpec) else "ok"
    return json.dumps({"kind": kind, **asdict(facts)})


def _decode(text: str) -> SpecFacts | BrokenSpec:
    data = json.loads(text)
    kind = data.pop("kind")
    if kind == "broken":
        return BrokenSpec(data["path"], [(f, w) for f, w in data["problems"]])
    return SpecFacts(**data)


def _open(path: Path) -> sqlite3.Connection:
    """The index, created when missing; a corrupt or foreign file is moved aside and recreated."""
    for attempt in (1, 2):
        try:
            conn = sqlite3.connect(path, timeout=30)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS spec_facts (path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL,"
                " size INTEGER NOT NULL, parser TEXT NOT NULL, facts TEXT NOT NULL)"
            )
            conn.execute("SELECT path, mtime_ns, size, parser, facts FROM spec_facts LIMIT 1").fetchall()
            return conn
        except sqlite3.DatabaseError as exc:
            if attempt == 2 or not path.exists():
                raise
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            log.warning("fleet index %s unreadable (%s): moved to %s and rebuilt", path, exc, aside)
            path.rename(aside)
    raise AssertionError("unreachable")


def read_specs(
    specs_dir: Path, index: Path, settings: FactorySettings, only: set[str] | None = None
) -> tuple[list[SpecFacts], list[BrokenSpec]]:
    """The facts of every ``*.yaml`` in ``specs_dir`` (with ``only``, of those model names' files),
    re-parsing only files the index does not hold at their current mtime and size."""
    # strings, not Path objects: at 10,000 files building and sorting Paths cost a fleet page 0.3 s
    base = str(Path(specs_dir))  # the spelling str(Path / name) gives, which the index rows keep
    if only is None:
        with os.scandir(base) as entries:
            paths = sorted(entry.path for entry in entries if entry.name.endswith(".yaml"))
    else:  # names, never paths out of the folder
        paths = sorted(os.path.join(base, f"{name}.yaml") for name in only if Path(name).name == name)
    stats: dict[str, tuple[int, int]] = {}
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:  # removed meanwhile, or no such model
            continue
        stats[path] = (stat.st_mtime_ns, stat.st_size)
    try:
        index.parent.mkdir(parents=True, exist_ok=True)
        conn = _open(index)
    except (OSError, sqlite3.DatabaseError) as exc:
        log.warning("fleet index %s not usable (%s): parsing every spec", index, exc)
        found = [facts_of(Path(p), settings) for p in stats]
        return _split(found)
    try:
        return _split(_refresh(conn, stats, Path(specs_dir), settings, whole=only is None))
    finally:
        conn.close()


def _refresh(
    conn: sqlite3.Connection,
    stats: dict[str, tuple[int, int]],
    specs_dir: Path,
    settings: FactorySettings,
    whole: bool,
) -> list[SpecFacts | BrokenSpec]:
    fingerprint = parser_fingerprint()
    held: dict[str, tuple[int, int, str, str]] = {}
    prefix = str(specs_dir).rstrip("/") + "/"
    if whole:
        found = conn.execute(
            "SELECT path, mtime_ns, size, parser, facts FROM spec_facts WHERE substr(path, 1, ?) = ?",
            (len(prefix), prefix),
        ).fetchall()
    else:  # a page's files: their rows only, not the fleet's
        found = []
        wanted = list(stats)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            found += conn.execute(
                "SELECT path, mtime_ns, size, parser, facts FROM spec_facts"
                f" WHERE path IN ({', '.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
    for path, mtime, size, parser, text in found:
        held[path] = (mtime, size, parser, text)
    out: list[SpecFacts | BrokenSpec] = []
    changed: list[tuple[str, int, int, str, str]] = []
    for path, (mtime, size) in stats.items():
        row = held.get(path)
        facts: SpecFacts | BrokenSpec | None = None
        if row and row[:3] == (mtime, size, fingerprint):
            try:
                facts = _decode(row[3])
            except (ValueError, KeyError, TypeError):
                facts = None  # a row this code cannot read: parse the file again
        if facts is None:
            facts = facts_of(Path(path), settings)
            changed.append((path, mtime, size, fingerprint, _encode(facts)))
        out.append(facts)
    gone = [(path,) for path in held if path not in stats] if whole else []
    if changed or gone:
        try:
            with conn:
                conn.executemany("INSERT OR REPLACE INTO spec_facts VALUES (?, ?, ?, ?, ?)", changed)
                conn.executemany("DELETE FROM spec_facts WHERE path = ?", gone)
        except sqlite3.DatabaseError as exc:  # read-only or locked: the answer stands, next read re-parses
            log.warning("fleet index not updated (%s)", exc)
    return out


def _split(found: list[SpecFacts | BrokenSpec]) -> tuple[list[SpecFacts], list[BrokenSpec]]:
    good = [f for f in found if isinstance(f, SpecFacts)]
    bad = [f for f in found if isinstance(f, BrokenSpec)]
    return good, bad
