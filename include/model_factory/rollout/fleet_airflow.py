"""Airflow as the fleet read model sees it: per DAG id, its schedule state and newest run
(``AirflowSource``), and that source over Airflow's REST API for the CLI (``RestAirflowSource``).
Inside the api-server the plugin reads Airflow's metadata DB instead (``MetadataAirflowSource``)."""

from __future__ import annotations

from typing import Any, Protocol

from model_factory.io.airflow_api import AirflowApiError

FEW_MODELS = 20
"""Up to this many DAG ids are asked of Airflow's REST API one by one."""
MAX_PAGE_MODELS = 500
"""Up to this many models' DAGs are asked of Airflow by id prefix; more, by listing every DAG."""
PREFIXES_PER_CALL = 50
"""Id prefixes in one ``/api/v2/dags`` query (its URL stays a few KB)."""


class AirflowSource(Protocol):
    """What the fleet asks Airflow: per DAG id, its schedule state and newest run."""

    def dag_states(self, dag_ids: list[str]) -> dict[str, dict]:
        """``{dag_id: {"next_run": iso | None, "is_paused": bool}}`` for the DAGs that exist."""

    def latest_runs(self, dag_ids: list[str]) -> dict[str, dict]:
        """``{dag_id: {"run_id", "state", "when", "url"}}`` for DAGs with a run."""


class RestAirflowSource:
    """Airflow through its REST API (the CLI)."""

    def __init__(self, client: Any):
        self.client = client

    def dag_states(self, dag_ids: list[str]) -> dict[str, dict]:
        """One GET per DAG for a few; for a page, the DAGs of its models by id prefix (Airflow's
        ``dag_id_prefix_pattern``, ``|`` between prefixes, ``PREFIXES_PER_CALL`` at a time); for more
        models than a page, every DAG, paged."""
        wanted = set(dag_ids)
        models = sorted({dag_id.rsplit("__", 1)[0] for dag_id in dag_ids})
        if len(dag_ids) <= FEW_MODELS:
            found = [self._dag(dag_id) for dag_id in dag_ids]
        elif len(models) <= MAX_PAGE_MODELS:
            found = []
            for start in range(0, len(models), PREFIXES_PER_CALL):
                chunk = models[start : start + PREFIXES_PER_CALL]
                found += self.client.all_dags(dag_id_prefix_pattern="|".join(f"{m}__" for m in chunk))
        else:
            found = self.client.all_dags()
        return {
            d["dag_id"]: {"next_run": d.get("next_dagrun_run_after"), "is_paused": d.get("is_paused")}
            for d in found
            if d and d["dag_id"] in wanted
        }

    def _dag(self, dag_id: str) -> dict | None:
        try:
            return self.client.dag(dag_id)
        except AirflowApiError as exc:
            if exc.status == 404:  # a template that does not define this kind of DAG
                return None
            raise

    def latest_runs(self, dag_ids: list[str]) -> dict[str, dict]:
        return {
            dag_id: {
                "run_id": run["dag_run_id"],
                "state": run["state"],
                "when": run.get("end_date") or run.get("start_date") or run.get("run_after"),
                "url": self.client.ui_url(dag_id, run["dag_run_id"]),
            }
            for dag_id, run in self.client.latest_runs(dag_ids).items()
        }
