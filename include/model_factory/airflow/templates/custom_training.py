"""``custom_training``: the retrain shape with the data scientist's own estimator or pipeline.

``estimator: {factory: "module:function", params: {...}}`` names a function in ``code/<module>.py``
beside the specs; it is imported inside ``train`` (never while the DAG file parses) and returns a
scikit-learn-compatible estimator taking the factory's prepared features. Splitting, signature,
baseline, lineage (the code file's sha256), gates, registry, drift watch and canary stay the
factory's.
"""

from __future__ import annotations

from model_factory.airflow import blocks
from model_factory.airflow.templates import NoParams
from model_factory.airflow.templates.retrain import watch_and_rollout
from model_factory.spec import LoadedSpec, ModelSpec

from airflow.sdk import DAG

NAME = "custom_training"
DESCRIPTION = "Retrain with your own estimator/pipeline from code/<module>.py beside the specs"
Params = NoParams


def check(spec: ModelSpec) -> list[tuple[str, str]]:
    if not spec.estimator.factory:
        return [
            (
                "estimator.factory",
                'custom_training needs estimator: {factory: "module:function"} '
                "naming a function in the code/ folder beside the specs",
            )
        ]
    return []


def build(loaded: LoadedSpec, params: NoParams) -> list[DAG]:
    doc = f"Own code: `{loaded.spec.estimator.factory}` from `code/` beside the spec. "
    return [
        blocks.retrain_dag(loaded, fit="model_factory.pipeline.custom_code:fit_custom", doc=doc),
        *watch_and_rollout(loaded),
    ]
