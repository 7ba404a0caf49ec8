"""Read-only registry searches for fleet reads, without importing MLflow when the store allows it.

``import mlflow`` and its store classes cost a fresh process about 2.5 CPU-s on the 2-core dev VM
(``mlflow/__init__`` imports ``mlflow.genai`` and FastAPI; the SQLAlchemy store brings alembic):
more than the rest of ``model-factory status`` at 10,000 models together. The fleet only needs
names, aliases, tags and versions, so it reads them here:

- ``http(s)://`` tracking URI: MLflow's documented REST API (``registered-models/search`` and
  ``model-versions/search``, paged), with the token or basic auth and TLS settings MLflow's own
  client reads from the environment;
- ``sqlite``/``postgresql``/``mysql`` URI: a SELECT on MLflow's registry tables, with the rules
  MLflow's SQLAlchemy store applies to a search (the default workspace, soft-deleted versions and
  prompts left out);
- anything else, a workspace or auth plug-in MLflow's environment asks for, or a database whose
  tables do not look like the ones read here: MLflow's client, as before.

Nothing is cached: every call reads the registry.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from model_factory.settings import FactorySettings

log = logging.getLogger(__name__)

IS_PROMPT_TAG = "mlflow.prompt.is_prompt"
DELETED_STAGE = "Deleted_Internal"
DEFAULT_WORKSPACE = "default"
PAGE_SIZE = 1000
"""The largest page MLflow's server returns for a registered-model search."""
NAMES_PER_QUERY = 100
SQL_SCHEMES = ("sqlite", "postgresql", "mysql")
FALLBACK_ENV = ("MLFLOW_WORKSPACE", "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_CLIENT_CERT_PATH")
"""Environment that changes what MLflow's client would read or how it signs in: use the client."""


@dataclass(frozen=True)
class RegisteredModel:
    """The fields of MLflow's ``RegisteredModel`` the fleet reads."""

    name: str
    aliases: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelVersion:
    """The fields of MLflow's ``ModelVersion`` the fleet reads."""

    name: str
    version: str
    creation_timestamp: int | None = None
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


Registry = tuple[dict[str, Any], dict[str, list[Any]]]


def read_registry(settings: FactorySettings, names: list[str] | None) -> Registry:
    """``({name: registered model}, {name: [versions, oldest first]})`` for ``names`` (None: the
    whole registry). Names that are not registered have no entry in the first and ``[]`` in the second."""
    uri = settings.tracking_uri
    if not any(os.environ.get(key) for key in FALLBACK_ENV) and not _workspaces_enabled():
        if uri.startswith(("http://", "https://")):
            return _collect(names, *_from_rest(uri, names))
        if uri.split(":", 1)[0].split("+", 1)[0] in SQL_SCHEMES:
            found = _from_sql(uri, names)
            if found is not None:
                return _collect(names, *found)
    return _collect(names, *_from_mlflow(settings, names))


def _workspaces_enabled() -> bool:
    return os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower() in ("true", "1")


def _collect(names: list[str] | None, models: Iterable[Any], versions: Iterable[Any]) -> Registry:
    wanted = None if names is None else set(names)
    registered = {m.name: m for m in models if wanted is None or m.name in wanted}
    by_name: dict[str, list[Any]] = {name: [] for name in (names or registered)}
    for mv in versions:
        if wanted is None or mv.name in wanted:
            by_name.setdefault(mv.name, []).append(mv)
    for found in by_name.values():
        found.sort(key=lambda mv: int(mv.version))
    return registered, by_name


def _chunks(names: list[str] | None) -> list[list[str] | None]:
    if names is None:
        return [None]
    safe = [name for name in names if "'" not in name]  # names are [A-Za-z0-9_-]; never in a filter
    return [safe[start : start + NAMES_PER_QUERY] for start in range(0, len(safe), NAMES_PER_QUERY)]


def _name_filter(chunk: list[str] | None) -> str | None:
    if chunk is None:
        return None
    listed = ", ".join(f"'{name}'" for name in chunk)
    return f"name = {listed}" if len(chunk) == 1 else f"name IN ({listed})"


# --- MLflow's client (any store) -----------------------------------------------------------------


def _from_mlflow(settings: FactorySettings, names: list[str] | None) -> tuple[list, list]:
    from model_factory.io import tracking

    client = tracking.connect(settings)
    models: list = []
    versions: list = []
    for chunk in _chunks(names):
        clause = _name_filter(chunk)
        models += _client_pages(client.search_registered_models, clause)
        versions += _client_pages(client.search_model_versions, clause)
    return models, versions


def _client_pages(search: Any, clause: str | None) -> list:
    found: list = []
    token = None
    while True:
        page = search(filter_string=clause, max_results=PAGE_SIZE, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return found


# --- REST (an MLflow tracking server) ------------------------------------------------------------


def _from_rest(uri: str, names: list[str] | None) -> tuple[list, list]:
    import requests

    session = requests.Session()
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif user and password:
        session.auth = (user, password)
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        session.verify = False
    elif os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        session.verify = os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "20"))
    base = uri.rstrip("/") + "/api/2.0/mlflow"
    models: list = []
    versions: list = []
    with session:
        for chunk in _chunks(names):
            clause = _name_filter(chunk)
            for found in _rest_pages(session, f"{base}/registered-models/search", clause, timeout):
                models += [_rest_model(m) for m in found.get("registered_models", [])]
            for found in _rest_pages(session, f"{base}/model-versions/search", clause, timeout):
                versions += [_rest_version(v) for v in found.get("model_versions", [])]
    return models, versions


def _rest_pages(session: Any, url: str, clause: str | None, timeout: float) -> Iterable[dict]:
    token = None
    while True:
        params = {"max_results": PAGE_SIZE} | ({"filter": clause} if clause else {})
        if token:
            params["page_token"] = token
        response = session.get(url, params=params, timeout=timeout)
        if response.status_code != 200:
            raise RegistryReadError(f"{url} answered {response.status_code}: {response.text[:300]}")
        page = response.json()
        yield page
        token = page.get("next_page_token")
        if not token:
            return


class RegistryReadError(RuntimeError):
    """The tracking server refused a registry search (the message carries its answer)."""


def _tags(pairs: list[dict] | None) -> dict[str, str]:
    return {pair["key"]: pair.get("value", "") for pair in pairs or []}


def _rest_model(data: dict) -> RegisteredModel:
    aliases = {a["alias"]: str(a["version"]) for a in data.get("aliases") or []}
    return RegisteredModel(data["name"], aliases, _tags(data.get("tags")))


def _rest_version(data: dict) -> ModelVersion:
    created = data.get("creation_timestamp")
    return ModelVersion(
        data["name"],
        str(data["version"]),
        int(created) if created is not None else None,
        data.get("run_id") or None,
        _tags(data.get("tags")),
    )


# --- SQL (MLflow's own database) -----------------------------------------------------------------


def _from_sql(uri: str, names: list[str] | None) -> tuple[list, list] | None:
    """The registry from MLflow's tables, or None (use MLflow's client) when the database is not
    there yet or its tables are not the ones read here (another MLflow schema)."""
    import sqlalchemy as sa

    if uri.startswith("sqlite:///") and not os.path.exists(uri.removeprefix("sqlite:///")):
        return None  # MLflow's client creates the database
    engine = sa.create_engine(uri)
    try:
        with engine.connect() as conn:
            return _sql_reads(conn, names)
    except sa.exc.DBAPIError as exc:
        if isinstance(exc, (sa.exc.OperationalError, sa.exc.ProgrammingError)) and _schema_problem(exc):
            log.info("registry tables not as expected (%s): reading through MLflow's client", exc)
            return None
        raise
    finally:
        engine.dispose()


def _schema_problem(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(
        word in text for word in ("no such table", "no such column", "does not exist", "unknown column")
    )


def _sql_reads(conn: Any, names: list[str] | None) -> tuple[list, list]:
    import sqlalchemy as sa

    def table(name: str, *columns: str) -> Any:  # quoted per dialect ("key" is reserved in MySQL)
        return sa.table(name, *(sa.column(c) for c in (*columns, "workspace")))

    tables = {
        "models": table("registered_models", "name"),
        "model_tags": table("registered_model_tags", "name", "key", "value"),
        "aliases": table("registered_model_aliases", "name", "alias", "version"),
        "versions": table("model_versions", "name", "version", "creation_time", "run_id", "current_stage"),
        "version_tags": table("model_version_tags", "name", "version", "key", "value"),
    }
    rows: dict[str, list] = {key: [] for key in tables}
    for chunk in _chunks(names):
        for key, found in tables.items():
            columns = [c for c in found.c if c.name not in ("workspace", "current_stage")]
            query = sa.select(*columns).where(found.c.workspace == DEFAULT_WORKSPACE)
            if key == "versions":  # MLflow's soft delete (its search leaves these out)
                query = query.where(found.c.current_stage != DELETED_STAGE)
            if chunk is not None:
                query = query.where(found.c.name.in_(chunk))
            rows[key] += conn.execute(query).all()
    model_tags: dict[str, dict[str, str]] = {}
    for name, key, value in rows["model_tags"]:
        model_tags.setdefault(name, {})[key] = value
    aliases: dict[str, dict[str, str]] = {}
    for name, alias, version in rows["aliases"]:
        aliases.setdefault(name, {})[alias] = str(version)
    version_tags: dict[tuple[str, str], dict[str, str]] = {}
    for name, version, key, value in rows["version_tags"]:
        version_tags.setdefault((name, str(version)), {})[key] = value
    models = [  # prompts live in the same tables; MLflow's model search leaves them out
        RegisteredModel(name, aliases.get(name, {}), model_tags.get(name, {}))
        for (name,) in rows["models"]
        if model_tags.get(name, {}).get(IS_PROMPT_TAG) != "true"
    ]
    versions = []
    for name, version, created, run_id in rows["versions"]:
        tags = version_tags.get((name, str(version)), {})
        if tags.get(IS_PROMPT_TAG) != "true":
            versions.append(ModelVersion(name, str(version), created, run_id or None, tags))
    return models, versions
