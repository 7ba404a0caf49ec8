"""Task extra links on the factory's runs, resolved in the api-server from the task's own result:
the drift report on ``check``, the MLflow run on ``train``, the model card on ``register``.

They are global links (every template's tasks get them, whatever the operator class) that answer
only for the task they belong to and only when its result names what to link; otherwise the link
stays empty and the UI shows it disabled. The targets are pages of the factory's view
(``/factory/...``), so they too need an Airflow login.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

log = logging.getLogger(__name__)

MOUNT = "/factory"


def _root() -> str:
    try:
        from airflow.api_fastapi.app import API_ROOT_PATH

        return (API_ROOT_PATH or "/").rstrip("/")
    except ImportError:  # pragma: no cover - not inside the api-server
        return ""


def task_result(ti_key: Any) -> dict | None:
    """The task's ``return_value`` XCom as plain JSON (never unpickled/deserialized into objects)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key="return_value",
                run_id=ti_key.run_id,
                dag_ids=ti_key.dag_id,
                task_ids=ti_key.task_id,
                map_indexes=ti_key.map_index,
            ).with_only_columns(XComModel.value)
        ).first()
    if row is None:
        return None
    value = row.value
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


class _FactoryLink(BaseOperatorLink):
    task_id = ""
    needs: ClassVar[tuple[str, ...]] = ()
    """The keys of the task's result the link is made of: without one of them, no link."""

    def target(self, result: dict, ti_key: Any) -> str:
        raise NotImplementedError

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if ti_key.task_id != self.task_id:
            return ""
        try:
            result = task_result(ti_key)
            path = self.target(result, ti_key) if result and all(result.get(k) for k in self.needs) else None
        except Exception:  # a link must never break the task page
            log.exception("%s link for %s failed", self.name, ti_key)
            return ""
        return f"{_root()}{MOUNT}{path}" if path else ""


class DriftReportLink(_FactoryLink):
    """``check`` (drift watch) returns ``ds`` and ``report_uri``: link its HTML report."""

    name = "Drift report"
    task_id = "check"
    needs = ("report_uri", "ds")

    def target(self, result: dict, ti_key: Any) -> str:
        model = ti_key.dag_id.split("__", 1)[0]
        return f"/models/{quote(model)}/drift/{quote(str(result['ds']))}"


class MlflowRunLink(_FactoryLink):
    """``train`` returns the MLflow ``run_id``."""

    name = "MLflow run"
    task_id = "train"
    needs = ("run_id",)

    def target(self, result: dict, ti_key: Any) -> str:
        return f"/mlflow/runs/{quote(str(result['run_id']))}"


class CardLink(_FactoryLink):
    """``register`` returns ``model`` and ``version``: link the version's model card."""

    name = "Model card"
    task_id = "register"
    needs = ("model", "version")

    def target(self, result: dict, ti_key: Any) -> str:
        return f"/models/{quote(str(result['model']))}/versions/{quote(str(result['version']))}/card"
