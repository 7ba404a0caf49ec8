"""``batch_scoring``: the retrain shape plus ``<model>__score``, which scores each day's batch
with the champion (input contract checked first, predictions as Parquet per date, output drift
against the champion's holdout predictions)."""

from __future__ import annotations

from model_factory.airflow import blocks
from model_factory.airflow.templates.retrain import needs_estimator_class, watch_and_rollout
from model_factory.pipeline.scoring import ScoringParams
from model_factory.spec import LoadedSpec

from airflow.sdk import DAG

NAME = "batch_scoring"
DESCRIPTION = "Retrain as usual, and score each day's batch with the champion into Parquet"
Params = ScoringParams
check = needs_estimator_class


def build(loaded: LoadedSpec, params: ScoringParams) -> list[DAG]:
    return [
        blocks.retrain_dag(loaded),
        blocks.scoring_dag(loaded, params.schedule),
        *watch_and_rollout(loaded),
    ]
