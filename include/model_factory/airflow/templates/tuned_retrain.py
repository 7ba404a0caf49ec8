"""``tuned_retrain``: the retrain shape with a hyperparameter search inside ``train``.

``template_params``: ``search`` (estimator parameter -> ``values: [...]`` or ``low``/``high``
with ``log``/``int``), ``trials``, ``max_minutes``, ``cv_folds``. Cross-validation runs on the
training part only; every trial is a nested MLflow run; the best is refit and gated as usual.
"""

from __future__ import annotations

from model_factory.airflow import blocks
from model_factory.airflow.templates.retrain import watch_and_rollout
from model_factory.pipeline.tuning import TuningParams, check_search
from model_factory.spec import LoadedSpec, ModelSpec

from airflow.sdk import DAG

NAME = "tuned_retrain"
DESCRIPTION = "Retrain with a random search (trials and minutes budget, CV on the training part)"
Params = TuningParams


def check(spec: ModelSpec) -> list[tuple[str, str]]:
    return check_search(spec)


def build(loaded: LoadedSpec, params: TuningParams) -> list[DAG]:
    doc = (
        f"Tuned: {params.trials} trials or {params.max_minutes:g} minutes over "
        f"{sorted(params.search)}, {params.cv_folds}-fold CV on the training part. "
    )
    return [
        blocks.retrain_dag(loaded, fit="model_factory.pipeline.tuning:fit_tuned", doc=doc),
        *watch_and_rollout(loaded),
    ]
