"""The Airflow 3 plugin: the "Model factory" view in the UI's navigation, its FastAPI app, and task
extra links (drift report on ``check``, MLflow run on ``train``, card on ``register``).

Glue only: the pages are model_factory.console, the data is model_factory.rollout.fleet. What this
module adds is Airflow's: its login (``get_user``: no factory endpoint answers without an Airflow
session or token), its permission check for the buttons (may this user trigger that DAG?) and the
last/next runs read from the metadata DB of the api-server the app runs in.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import Request
from model_factory.airflow.extra_links import CardLink, DriftReportLink, MlflowRunLink

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

MOUNT = "/factory"
URL_ROUTE = "model-factory"


def _root() -> str:
    """The URL path Airflow is served under (``[api] base_url``), as the api-server computes it."""
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    path = urlsplit(conf.get("api", "base_url", fallback="/") or "/").path or "/"
    return path if path.endswith("/") else path + "/"


class MetadataAirflowSource:
    """Last runs and next runs from Airflow's metadata DB (the api-server's own session)."""

    def __init__(self, root: str):
        self.root = root

    def dag_states(self, dag_ids: list[str]) -> dict[str, dict]:
        from sqlalchemy import select

        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.execute(
                select(DagModel.dag_id, DagModel.is_paused, DagModel.next_dagrun_create_after).where(
                    DagModel.dag_id.in_(dag_ids), ~DagModel.is_stale
                )
            ).all()
        return {
            dag_id: {"next_run": next_run.isoformat() if next_run else None, "is_paused": paused}
            for dag_id, paused, next_run in rows
        }

    def latest_runs(self, dag_ids: list[str]) -> dict[str, dict]:
        from sqlalchemy import func, select

        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            newest = select(func.max(DagRun.id)).where(DagRun.dag_id.in_(dag_ids)).group_by(DagRun.dag_id)
            runs = session.scalars(select(DagRun).where(DagRun.id.in_(newest))).all()
            return {
                run.dag_id: {
                    "run_id": run.run_id,
                    "state": str(run.state.value if hasattr(run.state, "value") else run.state),
                    "when": (run.end_date or run.start_date or run.run_after).isoformat()
                    if (run.end_date or run.start_date or run.run_after)
                    else None,
                    "url": f"{self.root}dags/{run.dag_id}/runs/{run.run_id}",
                }
                for run in runs
            }


def can_trigger(user: Any, dag_id: str) -> bool:
    """What Airflow's auth manager says: may ``user`` create a run of ``dag_id``?"""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    return _authorized(user, dag_id, "POST", DagAccessEntity.RUN)


def can_unpause(user: Any, dag_id: str) -> bool:
    """May ``user`` edit ``dag_id`` (what ``PATCH /api/v2/dags/{dag_id}``, the unpause, requires)?"""
    return _authorized(user, dag_id, "PUT", None)


def _authorized(user: Any, dag_id: str, method: Literal["POST", "PUT"], entity: Any) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    try:
        return get_auth_manager().is_authorized_dag(
            method=method, access_entity=entity, details=DagDetails(id=dag_id), user=user
        )
    except Exception:  # an auth manager that cannot answer shows no button
        log.exception("model factory view: permission check (%s) for %s failed", method, dag_id)
        return False


def readable_dag_ids(user: Any) -> set[str] | None:
    """The DAG ids Airflow's auth manager lets ``user`` read (``get_authorized_dag_ids``, the call
    Airflow's own DAG list uses); an auth manager that cannot answer shows no model."""
    from airflow.api_fastapi.app import get_auth_manager

    try:
        return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))
    except Exception:
        log.exception("model factory view: readable DAGs of %s unknown", user)
        return set()


def is_platform_team(user: Any) -> bool:
    """Per-user Analyzer detail: users Airflow's auth manager lets create connections (the simple
    auth manager's OP and ADMIN roles, FAB's Op and Admin), i.e. who runs the platform."""
    from airflow.api_fastapi.app import get_auth_manager

    try:
        return bool(get_auth_manager().is_authorized_connection(method="POST", user=user))
    except Exception:
        log.exception("model factory view: permission check for %s failed", user)
        return False


async def airflow_user(request: Request) -> Any:
    """Airflow's own ``get_user`` (session cookie or bearer JWT; 401/403 otherwise), imported at the
    first request: every Airflow process loads plugins (task runners too) and only the api-server
    serves this app, so the others need not import the API's security module."""
    from fastapi.security import HTTPBearer

    from airflow.api_fastapi.core_api.security import get_user

    bearer = await HTTPBearer(auto_error=False)(request)
    return await get_user(request, None, bearer)


def create_factory_app() -> Any:
    """The console app with Airflow's login dependency, permission check and metadata."""
    from model_factory.console.app import ConsoleConfig, create_app
    from model_factory.settings import FactorySettings

    root = _root()
    source = MetadataAirflowSource(root)
    return create_app(
        ConsoleConfig(
            require_user=airflow_user,
            settings=FactorySettings.from_env,
            airflow=lambda: source,
            can_run=can_trigger,
            can_unpause=can_unpause,
            user_name=lambda user: user.get_name(),
            readable_dag_ids=readable_dag_ids,
            sees_people=is_platform_team,
            root=root,
            mount=MOUNT,
        )
    )


class ModelFactoryPlugin(AirflowPlugin):
    """Registered from plugins/model_factory_plugin.py."""

    name = "model_factory"
    fastapi_apps = [{"app": create_factory_app(), "url_prefix": MOUNT, "name": "Model factory"}]
    external_views = [
        {
            "name": "Model factory",
            "href": f"{MOUNT}/",
            "url_route": URL_ROUTE,
            "destination": "nav",
            "icon": f"{MOUNT}/icon.svg",
        }
    ]
    global_operator_extra_links = [DriftReportLink(), MlflowRunLink(), CardLink()]
