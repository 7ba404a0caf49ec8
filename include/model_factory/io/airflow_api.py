"""A small client of Airflow 3's public REST API (``/api/v2``): what the CLI and the dev stack use
to trigger, list and wait for runs, never going around Airflow.

Where Airflow is: ``FACTORY_AIRFLOW_URL`` (default http://localhost:8080, ``make ui``); who logs in:
``FACTORY_AIRFLOW_USER``/``FACTORY_AIRFLOW_PASSWORD``, else the simple auth manager's generated
password file in ``AIRFLOW_HOME``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from model_factory.settings import FactorySettings

ADMIN_USER = "admin"
TERMINAL_RUN_STATES = ("success", "failed")
DEFAULT_URL = "http://localhost:8080"
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"


class AirflowUnreachableError(ConnectionError):
    """Nothing answers at the Airflow URL: the message says what to start."""

    def __init__(self, base_url: str, cause: object):
        super().__init__(
            f"Airflow's API server is not reachable at {base_url} ({cause}). Start Airflow with "
            "`make ui` (or `airflow standalone`), or point FACTORY_AIRFLOW_URL at the running one."
        )


class AirflowApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str):
        self.status = status
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:500]}")


TRIGGER_ATTEMPTS = 4


class AirflowClient:
    """A small client of Airflow 3's public REST API (``/api/v2``) with the simple auth manager.

    ``password=None`` asks for a token without credentials, which only works with
    ``[core] simple_auth_manager_all_admins = True``.
    """

    def __init__(
        self, base_url: str, username: str = ADMIN_USER, password: str | None = None, timeout_s: float = 30.0
    ):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout_s = timeout_s
        self._token: str | None = None

    @classmethod
    def from_airflow_home(cls, base_url: str, airflow_home: Path | str, username: str = ADMIN_USER):
        """Use the password the simple auth manager generated into AIRFLOW_HOME."""
        path = Path(airflow_home) / "simple_auth_manager_passwords.json.generated"
        return cls(base_url, username, json.loads(path.read_text())[username])

    @classmethod
    def from_settings(cls, settings: FactorySettings, timeout_s: float = 30.0) -> AirflowClient:
        """``FACTORY_AIRFLOW_URL``/``_USER``/``_PASSWORD``, else the generated password in AIRFLOW_HOME
        (the embedded ``make ui``); no password found means a token without credentials."""
        base_url, username, password = settings.airflow_url, settings.airflow_user, settings.airflow_password
        generated = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / PASSWORDS_FILE
        if password is None and generated.exists():
            with contextlib.suppress(ValueError, KeyError):
                password = json.loads(generated.read_text())[username]
        return cls(base_url, username, password, timeout_s=timeout_s)

    def _send(self, method: str, url: str, **kwargs: Any) -> Any:
        import requests

        try:
            return requests.request(method, url, timeout=self.timeout_s, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise AirflowUnreachableError(self.base_url, type(exc).__name__) from exc

    def ui_url(self, dag_id: str, run_id: str | None = None) -> str:
        """The Airflow UI page of a DAG or of one of its runs."""
        url = f"{self.base_url}/dags/{quote(dag_id)}"
        return f"{url}/runs/{quote(run_id)}" if run_id else url

    def token(self) -> str:
        if self.password is None:
            response = self._send("GET", f"{self.base_url}/auth/token")
        else:
            response = self._send(
                "POST",
                f"{self.base_url}/auth/token",
                json={"username": self.username, "password": self.password},
            )
        if response.status_code not in (200, 201):
            raise AirflowApiError("POST", "/auth/token", response.status_code, response.text)
        self._token = response.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in (1, 2):
            token = self._token or self.token()
            response = self._send(
                method, f"{self.base_url}{path}", headers={"Authorization": f"Bearer {token}"}, **kwargs
            )
            if response.status_code == 401 and attempt == 1:
                self._token = None  # expired: log in again once
                continue
            if response.status_code >= 400:
                raise AirflowApiError(method, path, response.status_code, response.text)
            return response.json() if response.content else None
        raise AssertionError("unreachable")

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    # ---- API
    def health(self) -> dict:
        return self._send("GET", f"{self.base_url}/api/v2/monitor/health").json()

    def version(self) -> dict:
        return self.get("/api/v2/version")

    def dag(self, dag_id: str) -> dict:
        return self.get(f"/api/v2/dags/{quote(dag_id)}")

    def dags(self, **params: Any) -> list[dict]:
        return self.get("/api/v2/dags", limit=1000, **params)["dags"]

    def all_dags(self, page_size: int = 1000, **params: Any) -> list[dict]:
        """Every DAG ``params`` select (e.g. ``dag_id_prefix_pattern="a__|b__"``), page by page:
        ``dags()`` stops at the first 1,000, a fleet of 10,000 models has 30,000 and more."""
        found: list[dict] = []
        while True:
            page = self.get("/api/v2/dags", limit=page_size, offset=len(found), **params)
            found += page["dags"]
            if not page["dags"] or len(found) >= page.get("total_entries", 0):
                return found

    def import_errors(self) -> list[dict]:
        return self.get("/api/v2/importErrors", limit=1000)["import_errors"]

    def wait_for_dag(self, dag_id: str, timeout_s: float = 120.0) -> dict:
        """Wait until the DAG processor has parsed and serialized ``dag_id``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.dag(dag_id)
            except AirflowApiError as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > deadline:
                errors = self.import_errors()
                raise TimeoutError(
                    f"DAG {dag_id} not parsed within {timeout_s:.0f} s; import errors: {errors}"
                )
            time.sleep(1.0)

    def set_paused(self, dag_id: str, paused: bool) -> dict:
        return self.request("PATCH", f"/api/v2/dags/{quote(dag_id)}", json={"is_paused": paused})

    def unpause(self, dag_id: str) -> dict:
        return self.set_paused(dag_id, False)

    def pause(self, dag_id: str) -> dict:
        return self.set_paused(dag_id, True)

    def trigger(
        self,
        dag_id: str,
        conf: dict | None = None,
        run_id: str | None = None,
        logical_date: str | None = None,
    ) -> dict:
        """Start a run. With a ``run_id`` the call is idempotent, so a server error (Airflow answers
        500 "Database error" when its SQLite metadata DB stays locked past its busy timeout) is
        retried, and a retry that finds the run already created returns it."""
        body: dict[str, Any] = {"logical_date": logical_date, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns"
        attempts = TRIGGER_ATTEMPTS if run_id else 1
        for attempt in range(1, attempts + 1):
            try:
                return self.request("POST", path, json=body)
            except AirflowApiError as exc:
                if run_id and attempt > 1 and exc.status == 409:  # an earlier attempt did create it
                    return self.run(dag_id, run_id)
                if exc.status < 500 or attempt == attempts:
                    raise
                time.sleep(2.0 * attempt)
        raise AssertionError("unreachable")

    def latest_runs(self, dag_ids: list[str], limit: int = 1000) -> dict[str, dict]:
        """The newest run of each of ``dag_ids`` (by run_after), in one request."""
        if not dag_ids:
            return {}
        body = {"dag_ids": dag_ids, "order_by": "-run_after", "page_limit": limit}
        latest: dict[str, dict] = {}
        for run in self.request("POST", "/api/v2/dags/~/dagRuns/list", json=body)["dag_runs"]:
            latest.setdefault(run["dag_id"], run)
        return latest

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}")

    def runs(self, dag_id: str, limit: int = 100, newest_first: bool = False) -> list[dict]:
        order = "-run_after" if newest_first else "run_after"
        return self.get(f"/api/v2/dags/{quote(dag_id)}/dagRuns", limit=limit, order_by=order)["dag_runs"]

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout_s: float = 300.0,
        states: Iterable[str] = TERMINAL_RUN_STATES,
        poll_s: float = 1.0,
        on_poll: Callable[[dict, float], None] | None = None,
    ) -> dict:
        """Poll until the run reaches one of ``states``; TimeoutError naming the task states.
        ``on_poll(run, seconds_waited)`` after each poll that finds it still going."""
        wanted = set(states)
        started = time.monotonic()
        deadline = started + timeout_s
        while True:
            run = self.run(dag_id, run_id)
            if run["state"] in wanted:
                return run
            if on_poll is not None:
                on_poll(run, time.monotonic() - started)
            if time.monotonic() > deadline:
                tasks = {
                    t["task_id"]: (t["state"], t.get("try_number"))
                    for t in self.task_instances(dag_id, run_id)
                }
                raise TimeoutError(
                    f"{dag_id} run {run_id} still {run['state']} after {timeout_s:.0f} s; tasks: {tasks}"
                )
            time.sleep(poll_s)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances"
        return self.get(path, limit=1000)["task_instances"]

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict:
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances/{quote(task_id)}"
        return self.get(path)

    def task_tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict]:
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances/{quote(task_id)}/tries"
        return self.get(path)["task_instances"]

    def wait_for_task(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Iterable[str],
        timeout_s: float = 120.0,
        poll_s: float = 0.25,
    ) -> dict:
        wanted = set(states)
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(AirflowApiError):  # 404 until the scheduler creates it
                ti = self.task_instance(dag_id, run_id, task_id)
                if ti["state"] in wanted:
                    return ti
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{dag_id}.{task_id} ({run_id}) not in {sorted(wanted)} within {timeout_s:.0f} s"
                )
            time.sleep(poll_s)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = (
            f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances/"
            f"{quote(task_id)}/xcomEntries/{quote(key)}"
        )
        return self.get(path, deserialize="true").get("value")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        path = (
            f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances/"
            f"{quote(task_id)}/logs/{try_number}"
        )
        payload = self.get(path, full_content="true")
        content = payload.get("content", "")
        if not isinstance(content, list):
            return str(content)
        lines = []
        for item in content:
            if not isinstance(item, dict):
                lines.append(str(item))
                continue
            lines.append(str(item.get("event", "")))
            # Structured logs keep the exception apart from the message: show type and text.
            lines += [f"{e.get('exc_type')}: {e.get('exc_value')}" for e in item.get("error_detail") or []]
        return "\n".join(lines)
