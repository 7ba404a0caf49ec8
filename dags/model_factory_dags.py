"""The DAG factory: every spec in include/models becomes its template's DAGs.

The default template, ``retrain``, gives ``<model>__retrain``, ``<model>__drift_watch`` and
``<model>__canary``; ``model-factory templates`` lists the others (shipped, from
include/templates/, from installed packages). A spec or template that fails gives that model
an ``invalid_spec__<file>`` DAG with the reason; no other model is touched.

Parsing is cheap: a YAML read and a pydantic check per spec; scikit-learn, MLflow and Great
Expectations are only imported inside the tasks. The logic lives in model_factory.airflow.
"""

from __future__ import annotations

from model_factory.airflow.analyzer import analyzer_dags
from model_factory.airflow.build import build_all

globals().update(build_all())
globals().update(analyzer_dags())  # the Analyzer's weekly report: where data scientists get stuck
