"""Fleet registry reads without MLflow's client: the same answer as MLflow's client, from its
tables (SQL) and from its REST API (MLflow's own server app, in process), and MLflow's client
whenever the fast path cannot vouch for its answer."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from model_factory.io import registry_read
from model_factory.settings import FactorySettings


def _registry(uri: str) -> None:
    """Three models as the factory leaves them, a soft-deleted version and a prompt."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, uri)
    for name in ("churn", "demand", "empty"):
        client.create_registered_model(name, tags={"factory.owner": f"{name}-team"})
    for name, count in (("churn", 3), ("demand", 2)):
        for i in range(count):
            client.create_model_version(
                name, f"s3://bucket/{name}/{i}", tags={"factory.decision": "blessed", "n": str(i)}
            )
    client.set_registered_model_alias("churn", "champion", "2")
    client.set_registered_model_alias("churn", "canary", "3")
    client.set_registered_model_alias("demand", "champion", "1")
    client.set_registered_model_tag("churn", "factory.canary.share", "0.1")
    client.delete_model_version("demand", "2")
    client.create_registered_model("a_prompt")
    client.create_model_version("a_prompt", "s3://bucket/prompt")
    # MLflow's prompt registry marks a prompt so; its client refuses the tag on a model
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as db:
        db.execute(
            "INSERT INTO registered_model_tags (key, value, name, workspace)"
            " VALUES (?, 'true', 'a_prompt', 'default')",
            (registry_read.IS_PROMPT_TAG,),
        )
        db.execute(
            "INSERT INTO model_version_tags (key, value, name, version, workspace)"
            " VALUES (?, 'true', 'a_prompt', 1, 'default')",
            (registry_read.IS_PROMPT_TAG,),
        )


def _plain(found: registry_read.Registry) -> tuple[dict, dict]:
    registered, versions = found
    return (
        {
            name: ({a: str(v) for a, v in (m.aliases or {}).items()}, dict(m.tags or {}))
            for name, m in registered.items()
        },
        {
            name: [
                (str(mv.version), mv.creation_timestamp, mv.run_id or None, dict(mv.tags or {}))
                for mv in found
            ]
            for name, found in versions.items()
        },
    )


@pytest.fixture(scope="module")
def sqlite_registry(tmp_path_factory: pytest.TempPathFactory) -> FactorySettings:
    """One registry for the module: MLflow creating its tables is most of a test's time."""
    home = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    _registry(uri)
    return FactorySettings(home=home, tracking_uri=uri)


NAMES = ["churn", "demand", "empty", "not_registered", "a_prompt"]


@pytest.mark.parametrize("names", [NAMES, ["demand"], None])
def test_the_tables_give_what_mlflows_client_gives(sqlite_registry: FactorySettings, names) -> None:
    fast = registry_read._from_sql(sqlite_registry.tracking_uri, names)
    assert fast is not None
    by_client = _plain(registry_read._collect(names, *registry_read._from_mlflow(sqlite_registry, names)))
    assert _plain(registry_read._collect(names, *fast)) == by_client
    if names == NAMES:
        registered, versions = by_client
        assert set(registered) == {"churn", "demand", "empty"}  # no prompt, nothing unregistered
        assert [v[0] for v in versions["demand"]] == ["1"]  # the deleted version is left out
        assert versions["not_registered"] == []


def test_read_registry_on_sqlite_never_imports_mlflows_client(
    sqlite_registry: FactorySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_read, "_from_mlflow", lambda *a: pytest.fail("MLflow's client was used"))
    registered, versions = registry_read.read_registry(sqlite_registry, ["churn"])
    assert registered["churn"].aliases == {"champion": "2", "canary": "3"}
    assert [mv.version for mv in versions["churn"]] == ["1", "2", "3"]


@pytest.mark.parametrize(
    "env",
    [{"MLFLOW_WORKSPACE": "team-a"}, {"MLFLOW_ENABLE_WORKSPACES": "true"}, {"MLFLOW_TRACKING_AUTH": "x"}],
)
def test_a_workspace_or_auth_plugin_goes_through_mlflows_client(
    sqlite_registry: FactorySettings, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    used: list[Any] = []
    monkeypatch.setattr(registry_read, "_from_mlflow", lambda settings, names: used.append(names) or ([], []))
    monkeypatch.setattr(registry_read, "_from_sql", lambda *a: pytest.fail("read the tables"))
    registry_read.read_registry(sqlite_registry, ["churn"])
    assert used == [["churn"]]


def test_tables_of_another_shape_or_no_database_yet_go_through_mlflows_client(tmp_path: Path) -> None:
    assert registry_read._from_sql(f"sqlite:///{tmp_path / 'none.db'}", ["a"]) is None
    sqlite3.connect(tmp_path / "other.db").execute(
        "CREATE TABLE registered_models (name TEXT)"
    ).connection.commit()
    assert registry_read._from_sql(f"sqlite:///{tmp_path / 'other.db'}", ["a"]) is None


class _FlaskSession:
    """``requests.Session`` answered by MLflow's own tracking-server app, in process."""

    def __init__(self, app: Any, calls: list[dict]) -> None:
        self.client = app.test_client()
        self.calls = calls
        self.headers: dict[str, str] = {}
        self.auth = None
        self.verify: Any = True

    def get(self, url: str, params: dict, timeout: float) -> Any:
        self.calls.append({"path": urlsplit(url).path, **params})
        answer = self.client.get(urlsplit(url).path, query_string=params)

        class Answer:
            status_code = answer.status_code
            text = answer.get_data(as_text=True)

            @staticmethod
            def json() -> Any:
                return answer.get_json()

        return Answer()

    def __enter__(self) -> _FlaskSession:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("names", [NAMES, None])
def test_the_rest_api_gives_what_mlflows_client_gives(
    sqlite_registry: FactorySettings, monkeypatch: pytest.MonkeyPatch, names
) -> None:
    import requests
    from mlflow.server import app, handlers

    store = handlers._model_registry_store_registry.get_store(sqlite_registry.tracking_uri)
    monkeypatch.setattr(handlers, "_model_registry_store", store)
    monkeypatch.setattr(registry_read, "PAGE_SIZE", 2)  # several pages
    calls: list[dict] = []
    monkeypatch.setattr(requests, "Session", lambda: _FlaskSession(app, calls))
    over_rest = registry_read.read_registry(
        sqlite_registry.model_copy(update={"tracking_uri": "http://mlflow:5000"}), names
    )
    by_client = registry_read._collect(names, *registry_read._from_mlflow(sqlite_registry, names))
    assert _plain(over_rest) == _plain(by_client)
    assert any(call.get("page_token") for call in calls)
    assert all(call["path"].startswith("/api/2.0/mlflow/") for call in calls)


def test_a_refusing_server_is_an_error_naming_its_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    class Refusing(_FlaskSession):
        def __init__(self) -> None:
            self.headers, self.auth, self.verify = {}, None, True

        def get(self, url: str, params: dict, timeout: float) -> Any:
            class Answer:
                status_code, text = 403, "PERMISSION_DENIED"

            return Answer()

    monkeypatch.setattr(requests, "Session", Refusing)
    settings = FactorySettings(tracking_uri="https://mlflow.example")
    with pytest.raises(registry_read.RegistryReadError, match="403: PERMISSION_DENIED"):
        registry_read.read_registry(settings, ["churn"])
