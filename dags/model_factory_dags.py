"""The DAG factory: every spec in include/models becomes its template's DAGs.

The default template, ``retrain``, gives ``<model>__retrain``, ``<model>__drift_watch`` and
``<model>__canary``; ``model-factory templates`` lists the others (shipped, from
include/templates/, from installed packages). A spec or template that fails gives that model
an ``invalid_spec__<file>`` DAG with the reason; no other model is touched.

Parsing is cheap: a YAML read and a pydantic check per spec; scikit-learn, MLflow and Great
Expectations are only imported inside the tasks. When Airflow parses this file to run a task,
``get_parsing_context().dag_id`` names the DAG and only that model's spec is read. The weekly
Analyzer DAG (where data scientists get stuck) is defined here too. The logic lives in
model_factory.airflow.
"""

from __future__ import annotations

from airflow.sdk import get_parsing_context
from model_factory.airflow.build import dag_file_dags

globals().update(dag_file_dags(get_parsing_context().dag_id))
