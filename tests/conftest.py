"""Test-wide isolation: Airflow, MLflow and the object store live in a temp dir, never the repo.

The environment is set at import time because Airflow reads its configuration when first
imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from model_factory.analyzer.store import EventStore
    from model_factory.settings import FactorySettings

REPO = Path(__file__).resolve().parents[1]
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="model-factory-tests-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_SESSION_DIR / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "FACTORY_HOME": str(_SESSION_DIR / "factory"),
        "FACTORY_DATA_ROOT": (_SESSION_DIR / "factory" / "source").as_uri(),
        "FACTORY_SPECS_DIR": str(REPO / "include" / "models"),
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
)
for _name in ("MLFLOW_TRACKING_URI", "FACTORY_STORE_URI", "FACTORY_MLFLOW_ARTIFACT_ROOT"):
    os.environ.pop(_name, None)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


# Process-wide variables that libraries set as a side effect and never unset: MLflow writes the
# tracking/registry URI it was given into os.environ (and FactorySettings reads it), and Airflow's
# dag.test()/get_dag set the DAG-parsing context (then the DAG file builds only that model).
LEAKY_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "_AIRFLOW_PARSING_CONTEXT_DAG_ID",
    "_AIRFLOW_PARSING_CONTEXT_TASK_ID",
)


@contextlib.contextmanager
def _restored(names: tuple[str, ...]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True, scope="module")
def no_environment_leaked_by_a_module() -> Iterator[None]:
    """A module's fixtures (a dag.test() in a module-scoped fixture) leave nothing to the next."""
    with _restored(LEAKY_ENV):
        yield


@pytest.fixture(autouse=True)
def no_environment_leaked_by_a_test() -> Iterator[None]:
    """Each test ends with those variables as it found them."""
    with _restored(LEAKY_ENV):
        yield


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata DB (SQLite) for this test session."""
    from airflow.utils import db

    db.initdb()
    return Path(os.environ["AIRFLOW_HOME"])


@pytest.fixture
def factory_home(tmp_path, monkeypatch) -> Path:
    """A fresh store, MLflow DB and source folder for one test."""
    from model_factory.io import storage

    home = tmp_path / "factory"
    monkeypatch.setenv("FACTORY_HOME", str(home))
    monkeypatch.setenv("FACTORY_DATA_ROOT", (home / "source").as_uri())
    storage._s3_client.cache_clear()
    return home


def shipped_specs(folder: Path, *names: str) -> Path:
    """``folder``, made, with copies of the shipped specs ``names`` (include/models/<name>.yaml)."""
    folder.mkdir()
    for name in names:
        shutil.copy(REPO / "include" / "models" / f"{name}.yaml", folder)
    return folder


@contextlib.contextmanager
def factory_env(home: Path, **env: str) -> Iterator[FactorySettings]:
    """The settings of a store, MLflow DB and source folder under ``home`` (plus ``env``), for a
    module-scoped fixture, which cannot use ``monkeypatch``; the environment is restored on exit."""
    from model_factory.io import storage
    from model_factory.settings import FactorySettings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACTORY_HOME", str(home))
        mp.setenv("FACTORY_DATA_ROOT", (home / "source").as_uri())
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        for name, value in env.items():
            mp.setenv(name, value)
        storage._s3_client.cache_clear()
        yield FactorySettings.from_env()


def settings_with(**values: object) -> FactorySettings:
    """The settings as the environment sets them now, with ``values`` in place of some fields
    (``store_uri=``, ``chunk_rows=``, ``source_roots=``...), validated as ``from_env`` validates
    them: what an entry point hands the core library."""
    from model_factory.settings import FactorySettings

    return FactorySettings(**values)  # type: ignore[arg-type]


@dataclass
class BatchFolders:
    """A test's source folder (``FACTORY_DATA_ROOT``) and object store, and the settings the ingest
    and validate tasks would pass for them."""

    source_dir: Path
    store_dir: Path
    chunk_rows: int | None = None  # None: the environment's (FACTORY_CHUNK_ROWS or its default)

    @property
    def store_uri(self) -> str:
        return self.store_dir.as_uri()

    @property
    def settings(self) -> FactorySettings:
        """The environment's settings now, with this store and chunk size."""
        chunk = {} if self.chunk_rows is None else {"chunk_rows": self.chunk_rows}
        return settings_with(store_uri=self.store_uri, **chunk)


def event_store() -> EventStore:
    """The Analyzer's event store as the environment (the test's FACTORY_HOME) sets it up."""
    from model_factory.analyzer.store import AnalyzerSettings, EventStore
    from model_factory.settings import FactorySettings

    return EventStore(AnalyzerSettings.of(FactorySettings.from_env()))


@dataclass
class PostCollector:
    """A real HTTP server on 127.0.0.1 that keeps every JSON body posted to it: where a spec's
    webhook connection sends the factory's alerts (through its notifier) in a test."""

    url: str
    received: list[dict] = field(default_factory=list)

    def connection(self) -> str:
        """An Airflow connection to it, as the value of an ``AIRFLOW_CONN_<ID>`` variable."""
        return json.dumps({"conn_type": "http", "extra": {"url": self.url}})

    def of_kind(self, kind: str) -> list[dict]:
        """The posted alerts of one kind (``task_failed``, ``version_promoted``...)."""
        return [posted for posted in self.received if posted["alert"]["kind"] == kind]


class _CollectorHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.collector.received.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[PostCollector]:
    """A :class:`PostCollector` serving for one test."""
    server = HTTPServer(("127.0.0.1", 0), _CollectorHandler)
    collector = PostCollector(f"http://127.0.0.1:{server.server_port}/hook")
    server.collector = collector  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield collector
    server.shutdown()
    server.server_close()
