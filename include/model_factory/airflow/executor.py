"""``WarmLocalExecutor``: Airflow's LocalExecutor with the tasks' heavy imports done once.

Airflow's LocalExecutor forks its workers from the scheduler, and each worker forks a process per
task. With the plain executor every task of every run imports Great Expectations, MLflow and
scikit-learn again (measured: ``import great_expectations`` alone 2.5 to 7 s inside ``validate``,
``import mlflow`` 1.8 s inside ``train``; bench/retrain_bench.py). This executor imports them in
the scheduler just before it forks its workers, so every task starts with them loaded; the
memory is shared copy-on-write between the workers and their tasks.

Select it with ``AIRFLOW__CORE__EXECUTOR=model_factory.airflow.executor.WarmLocalExecutor``
(the dev stack and ``make demo`` do). Nothing else changes: it is a LocalExecutor.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
import warnings

from airflow.executors.local_executor import LocalExecutor

log = logging.getLogger("model_factory.airflow")

# What the retrain, scoring and review tasks import (model_factory defers these to task bodies).
WARM_MODULES = (
    "pyarrow.parquet",
    "scipy.stats",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.impute",
    "sklearn.inspection",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "skops.io",
    "great_expectations",
    "mlflow",
    "mlflow.models",
    "mlflow.sklearn",
    "mlflow.tracking",
    "jinja2",
    "matplotlib.pyplot",
    "model_factory.pipeline.validation",
    "model_factory.pipeline.training",
    "model_factory.pipeline.evaluation",
    "model_factory.pipeline.registry",
    "model_factory.io.model_loading",
    "model_factory.monitoring.drift",
    "model_factory.review.card",
)


def warm_imports(modules: tuple[str, ...] = WARM_MODULES) -> dict[str, float]:
    """Import each module (skipping, with a warning, one that fails); seconds each took."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")
    took: dict[str, float] = {}
    with warnings.catch_warnings():
        # skops probes scipy's names on modules Airflow has deprecated: a thousand log lines
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)  # Airflow's DeprecatedImportWarning
        for name in modules:
            start = time.perf_counter()
            try:
                importlib.import_module(name)
            except Exception as exc:  # a missing optional library must not stop the scheduler
                log.warning("WarmLocalExecutor: could not pre-import %s: %s", name, exc)
                continue
            took[name] = time.perf_counter() - start
    return took


class WarmLocalExecutor(LocalExecutor):
    """A LocalExecutor whose forked workers (and their tasks) start with the heavy imports done."""

    def start(self) -> None:
        if self.is_mp_using_fork:  # with spawn, workers start fresh and gain nothing
            took = warm_imports()
            log.info(
                "WarmLocalExecutor: pre-imported %d modules in %.1f s before forking workers",
                len(took),
                sum(took.values()),
            )
        super().start()
