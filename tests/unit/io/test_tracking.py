"""io.tracking: the registry version -> MLflow run link every reader of lineage goes through."""

import pytest
from mlflow.entities.model_registry import ModelVersion
from model_factory.errors import PermanentError
from model_factory.io.tracking import version_run_id


def test_a_version_registered_without_a_run_is_refused_naming_the_version():
    by_hand = ModelVersion(name="churn", version="7", creation_timestamp=0, run_id=None)
    with pytest.raises(PermanentError, match=r"churn v7 has no MLflow run"):
        version_run_id(by_hand)


def test_a_factory_version_gives_its_run():
    registered = ModelVersion(name="churn", version="3", creation_timestamp=0, run_id="abc123")
    assert version_run_id(registered) == "abc123"
