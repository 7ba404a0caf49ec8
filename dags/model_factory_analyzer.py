"""The weekly Analyzer DAG: where data scientists get stuck (model_factory.airflow.analyzer).

The models' DAGs are in the ``model_factory_shard_<i>_of_<n>.py`` files beside this one: each
builds the specs whose file name hashes to its shard (model_factory.airflow.shards).
"""

from model_factory.airflow.analyzer import analyzer_dags

globals().update(analyzer_dags())
