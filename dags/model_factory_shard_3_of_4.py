"""Shard 3 of 4 of the factory's DAGs: the specs whose name hashes to 3.

Written by ``python -m model_factory.airflow.shards``; see model_factory.airflow.shards.
"""

from airflow.sdk import get_parsing_context
from model_factory.airflow.shards import shard_dags

globals().update(shard_dags(__file__, get_parsing_context().dag_id))
