"""``retrain``: the factory's standard shape (the default template).

``<model>__retrain`` (ingest, validate, train, evaluate, register, announce challenger) on its
nightly cron or the drift asset, ``<model>__drift_watch`` and ``<model>__canary`` when enabled.
"""

from __future__ import annotations

from model_factory.airflow import blocks, health, review
from model_factory.airflow.templates import NoParams
from model_factory.spec import LoadedSpec, ModelSpec

from airflow.sdk import DAG

NAME = "retrain"
DESCRIPTION = "Nightly or drift-fired retrain of an allow-listed estimator, drift watch, canary"
Params = NoParams


def needs_estimator_class(spec: ModelSpec) -> list[tuple[str, str]]:
    if spec.estimator.factory:
        return [
            (
                "estimator.factory",
                f"template {spec.template!r} trains an allow-listed estimator "
                "class; your own code runs with template: custom_training",
            )
        ]
    return []


check = needs_estimator_class


def watch_and_rollout(loaded: LoadedSpec) -> list[DAG]:
    """The drift watch and canary DAGs every retraining template shares (when enabled), and the
    review DAG for held versions."""
    spec = loaded.spec
    dags = [blocks.drift_watch_dag(loaded)] if spec.drift.enabled else []
    dags += [health.health_dag(loaded)] if spec.outcomes.enabled else []
    return dags + ([blocks.canary_dag(loaded)] if spec.canary.enabled else []) + [review.review_dag(loaded)]


def build(loaded: LoadedSpec, params: NoParams) -> list[DAG]:
    return [blocks.retrain_dag(loaded), *watch_and_rollout(loaded)]
