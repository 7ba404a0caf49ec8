"""Celery workers that start their tasks warm (the CeleryExecutor's counterpart of WarmLocalExecutor).

Airflow's Celery worker forks its pool from its main process, and each task from a pool process.
Pointing ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS`` at ``CELERY_CONFIG`` here imports this module
while the worker builds its Celery app; it keeps Airflow's default configuration unchanged and
adds one receiver: when the worker imports its task modules (before it forks the pool), the
tasks' heavy libraries are imported too, as Airflow itself does for a few of its own modules.
docker-compose.yaml and the dev stack's Celery mode set it.
"""

from __future__ import annotations

from typing import Any

from celery.signals import import_modules
from model_factory.airflow.executor import log, warm_imports

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

CELERY_CONFIG = DEFAULT_CELERY_CONFIG


@import_modules.connect
def warm_worker(*args: Any, **kwargs: Any) -> None:
    """In the worker's main process, before it forks its pool."""
    took = warm_imports()
    log.info(
        "Celery worker: pre-imported %d modules in %.1f s before forking its pool",
        len(took),
        sum(took.values()),
    )
