"""Bring up the factory's production configuration on this machine, as real processes.

The same pieces as docker-compose.yaml, without Docker: ``airflow scheduler``, ``dag-processor``,
``triggerer``, ``api-server`` and (CeleryExecutor) ``celery worker``; an ``mlflow server``; and an
S3 endpoint (moto's server mode) holding the factory's store, the source batches and MLflow's
artifacts. Every component is its own process group with its own log file under ``home/logs``;
``start()`` waits until each one answers, ``stop()`` ends them all and removes what the stack
created in shared services (its PostgreSQL databases, its Redis keys).

Two shapes, one API::

    # Production configuration: Postgres metadata DB, CeleryExecutor on Redis, MLflow server
    # (Postgres backend store, artifacts on S3), everything on a fresh moto S3 endpoint.
    cfg = StackConfig(home=tmp, executor="CeleryExecutor",
                      postgres_url="postgresql://postgres@127.0.0.1:5432/postgres",
                      redis_url="redis://127.0.0.1:6379/5")
    # Light: LocalExecutor + SQLite, file:// store, MLflow on SQLite, no server processes
    # besides Airflow's own four.
    cfg = StackConfig(home=tmp, mlflow_server=False, s3=False)

    with Stack(cfg) as stack:              # start() ... stop(), even on errors
        api = stack.client()               # AirflowClient: token, unpause, trigger, wait...
        api.wait_for_dag("churn__retrain")
        api.unpause("churn__retrain")
        run = api.trigger("churn__retrain", conf={"ds": "2026-01-05"})
        api.wait_for_run("churn__retrain", run["dag_run_id"], timeout=300)

``stack.env`` is the complete environment of the components (AIRFLOW_HOME, the factory's
``FACTORY_*``, ``MLFLOW_TRACKING_URI``, ``AWS_*``), for running CLIs or library code against the
same state. ``python -m model_factory_dev.stack up|down|status|demo`` is the command line
(``make prod-up``, ``make prod-demo``, ``make prod-down``).

Processes die with the Python process that started them (``PR_SET_PDEATHSIG``; start the stack
from the main thread), except with ``detach=True`` (the CLI's ``up``), where ``down`` ends them
from the state file ``home/stack.json``.
"""

from model_factory.io.airflow_api import AirflowApiError, AirflowClient

from model_factory_dev.stack.cli import down, main
from model_factory_dev.stack.config import (
    ADMIN_USER,
    CELERY,
    DEFAULT_POSTGRES_URL,
    DEFAULT_REDIS_URL,
    LOCAL,
    TERMINAL_RUN_STATES,
    WARM_CELERY,
    WARM_LOCAL,
    StackConfig,
    StackError,
    free_port,
)
from model_factory_dev.stack.orchestration import Stack
from model_factory_dev.stack.services import check_postgres, check_redis, create_database, drop_database

__all__ = [
    "ADMIN_USER",
    "CELERY",
    "DEFAULT_POSTGRES_URL",
    "DEFAULT_REDIS_URL",
    "LOCAL",
    "TERMINAL_RUN_STATES",
    "WARM_CELERY",
    "WARM_LOCAL",
    "AirflowApiError",
    "AirflowClient",
    "Stack",
    "StackConfig",
    "StackError",
    "check_postgres",
    "check_redis",
    "create_database",
    "down",
    "drop_database",
    "free_port",
    "main",
]
