"""The environment of a stack's components (Airflow, the factory, MLflow, S3) and of this process."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

from model_factory.settings import PROJECT_ROOT

from model_factory_dev.stack.config import (
    _INHERITED_PREFIXES,
    ADMIN_USER,
    CELERY,
    LOCAL,
    WARM_CELERY,
    WARM_LOCAL,
    _with_database,
    _with_driver,
    free_port,
)

FAST_RECOVERY_ENV = {
    # A task whose process died (worker killed) is failed -> retried after ~20 s,
    # not Airflow's default 300 s; running tasks heartbeat every 5 s.
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "5",
    # A queued task no worker picked up (its message died with a worker) is
    # requeued after 120 s instead of 600 s.
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
}
"""The scheduler's settings of a stack with ``fast_recovery`` (its default): a dead task noticed in ~20 s."""


class StackEnvironment:
    """Part of Stack: the components' environment, built once from the config (``self.env``)."""

    @property
    def airflow_db_name(self) -> str:
        return f"{self.config.name}_airflow"

    @property
    def mlflow_db_name(self) -> str:
        return f"{self.config.name}_mlflow"

    @property
    def store_uri(self) -> str:
        return self.env["FACTORY_STORE_URI"]

    @property
    def data_root(self) -> str:
        return self.env["FACTORY_DATA_ROOT"]

    def _secrets(self) -> dict[str, str]:
        """Per-stack secrets, kept in home so a restarted component uses the same ones."""
        path = self.home / "secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        from cryptography.fernet import Fernet

        values = {
            "fernet_key": Fernet.generate_key().decode(),
            "jwt_secret": secrets.token_hex(32),
            "api_secret_key": secrets.token_hex(32),
            "admin_password": secrets.token_urlsafe(12),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
        path.chmod(0o600)
        return values

    def _build_env(self) -> dict[str, str]:
        """Every variable the dev stack's processes share: this process's (less what the stack
        sets), Airflow's, the factory's and MLflow's, the executor's, the store's, then the config's."""
        c = self.config
        env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
        include = str(PROJECT_ROOT / "include")
        env["PYTHONPATH"] = include + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        secret = self._secrets()
        self.admin_password = secret["admin_password"]
        if c.postgres_url:
            airflow_db = _with_driver(_with_database(c.postgres_url, self.airflow_db_name))
        else:
            airflow_db = f"sqlite:///{self.airflow_home / 'airflow.db'}"
        env.update(self._components_env(secret, airflow_db))
        if c.fast_recovery:
            env.update(FAST_RECOVERY_ENV)
        if c.executor == CELERY:
            env.update(self._celery_env(airflow_db))
        if self.mlflow_url:
            env["MLFLOW_TRACKING_URI"] = self.mlflow_url
            # Clients fetch artifacts through the tracking server, not from presigned S3 URLs
            # (MLflow 3.17's default with an S3 destination): tasks, CLIs and the serving
            # gateway then need only the server, never the server's own view of S3.
            env["MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"] = "false"
        if self.s3_endpoint:
            env.update(
                {
                    "FACTORY_STORE_URI": f"s3://{self.bucket}/store",
                    "FACTORY_DATA_ROOT": f"s3://{self.bucket}/source",
                    "AWS_ENDPOINT_URL": self.s3_endpoint,
                    "AWS_ACCESS_KEY_ID": c.aws_access_key_id,
                    "AWS_SECRET_ACCESS_KEY": c.aws_secret_access_key,
                    "AWS_DEFAULT_REGION": c.aws_region,
                    "AWS_EC2_METADATA_DISABLED": "true",
                }
            )
        else:
            env["FACTORY_STORE_URI"] = (self.factory_home / "store").as_uri()
            env["FACTORY_DATA_ROOT"] = (self.factory_home / "source").as_uri()
        env.update(c.env)
        return env

    def _components_env(self, secret: dict[str, str], airflow_db: str) -> dict[str, str]:
        """Airflow's settings (folders, executor, database, API, ports, secrets) and the factory's."""
        c = self.config
        executor = WARM_LOCAL if c.executor == LOCAL and c.warm_imports else c.executor
        return {
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(c.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(c.plugins_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": str(c.parallelism),
            "AIRFLOW__CORE__FERNET_KEY": secret["fernet_key"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                self.airflow_home / "simple_auth_manager_passwords.json.generated"
            ),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__SECRET_KEY": secret["api_secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": secret["jwt_secret"],
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(self.scheduler_health_port),
            # Log servers of workers and triggerer: free ports, so stacks can run side by side.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            "GX_ANALYTICS_ENABLED": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "FACTORY_HOME": str(self.factory_home),
            "FACTORY_SPECS_DIR": str(c.specs_dir or PROJECT_ROOT / "include" / "models"),
            "PYTHONUNBUFFERED": "1",
        }

    def _celery_env(self, airflow_db: str) -> dict[str, str]:
        """The Celery executor's broker, result backend and worker settings."""
        c = self.config
        assert c.postgres_url is not None
        return {
            "AIRFLOW__CELERY__BROKER_URL": self.redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + airflow_db,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(c.worker_concurrency),
            **({"AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": WARM_CELERY} if c.warm_imports else {}),
            # Every broker key under "<name>:", so a shared Redis DB is never polluted
            # and stop() deletes exactly what this stack wrote.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": self.redis_prefix,
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
        }

    @contextlib.contextmanager
    def environ(self) -> Iterator[dict[str, str]]:
        """Temporarily put this process on the stack's factory/MLflow/S3 settings (not Airflow's)."""
        keys = [k for k in self.env if k.startswith(("FACTORY_", "MLFLOW_", "AWS_"))]
        saved = {k: os.environ.get(k) for k in keys}
        dropped = {
            k: os.environ.pop(k)
            for k in list(os.environ)
            if k.startswith(("FACTORY_", "MLFLOW_TRACKING", "AWS_")) and k not in keys
        }
        os.environ.update({k: self.env[k] for k in keys})
        _clear_storage_cache()
        try:
            yield self.env
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            os.environ.update(dropped)
            _clear_storage_cache()


def _clear_storage_cache() -> None:
    with contextlib.suppress(Exception):
        from model_factory.io import storage

        storage._s3_client.cache_clear()
