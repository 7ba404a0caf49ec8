"""String class names with three classes through the real retrain DAG (``dag.test``): the first
day trains, evaluates and registers; a day with +inf in a feature and a day with a class the
model never saw are quarantined at validation with the reason, and nothing trains on them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
import yaml
from model_factory.io import storage
from model_factory.settings import FactorySettings
from model_factory_dev import demo_data

from tests.conftest import REPO, factory_env
from tests.unit.pipeline.test_labels import FLOWERS, SPECIES, flowers

pytestmark = pytest.mark.e2e

START = date(2026, 3, 2)
SPEC = {**FLOWERS, "schedule": "@daily", "drift": {"enabled": False}, "canary": {"enabled": False}}


@pytest.fixture(scope="module")
def runs(airflow_db, tmp_path_factory):
    home = tmp_path_factory.mktemp("multiclass") / "factory"
    specs = home.parent / "specs"
    specs.mkdir()
    (specs / "flowers.yaml").write_text(yaml.safe_dump(SPEC))
    outside = home.parent / "outside"  # not under FACTORY_DATA_ROOT
    leaky = {**SPEC, "name": "leaky", "source": {"uri": f"{outside.as_uri()}/{{ds}}.csv"}, "retries": 2}
    (specs / "leaky.yaml").write_text(yaml.safe_dump(leaky))
    with factory_env(home, FACTORY_SPECS_DIR=str(specs)):
        days = [START + timedelta(days=n) for n in range(3)]
        with_inf = flowers(days[1])
        with_inf.loc[:3, "petal"] = np.inf
        unseen = flowers(days[2], species=[*SPECIES, "unicorn"])
        for day, frame in zip(days, [flowers(days[0]), with_inf, unseen], strict=True):
            demo_data.write_batch(frame, home / "source" / "flowers" / f"{day}.csv")
        demo_data.write_batch(flowers(days[0]), outside / f"{days[0]}.csv")

        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert "flowers__retrain" in bag.dags, bag.import_errors
        results = {}
        for day in days:
            run = bag.dags["flowers__retrain"].test(
                logical_date=datetime(day.year, day.month, day.day, tzinfo=UTC)
            )
            results[day] = (str(run.state), {ti.task_id: str(ti.state) for ti in run.get_task_instances()})
        leaky_run = bag.dags["leaky__retrain"].test(
            logical_date=datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC)
        )
        results["leaky"] = {ti.task_id: str(ti.state) for ti in leaky_run.get_task_instances()}
        yield {"days": days, "results": results, "home": home}


def test_string_multiclass_trains_registers_and_bad_days_are_quarantined(runs):
    first, with_inf, unseen = (runs["results"][d] for d in runs["days"])
    assert first[0] == "success", first
    assert first[1]["register"] == "success"
    for state, tasks in (with_inf, unseen):
        assert state == "failed" and tasks["validate"] == "failed"
        assert tasks["train"] == "upstream_failed"

    settings = FactorySettings.from_env()
    reasons = {}
    for day in runs["days"][1:]:
        [reason_uri] = [
            u
            for u in storage.list_uris(storage.join(settings.store_uri, "quarantine", "flowers", str(day)))
            if u.endswith("REASON.txt")
        ]
        reasons[day] = storage.read_bytes(reason_uri).decode()
    assert "column 'petal': 4 of 300 rows are non-finite (inf/-inf)" in reasons[runs["days"][1]]
    unseen_reason = reasons[runs["days"][2]]
    assert "'unicorn'" in unseen_reason and "learnt at the first training" in unseen_reason

    from model_factory.io.tracking import connect

    client = connect(settings)
    [version] = client.search_model_versions("name = 'flowers'")
    run = client.get_run(version.run_id)
    assert run.data.metrics["holdout_f1"] > 0.5 and run.data.metrics["holdout_log_loss"] > 0
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(f"models:/flowers/{version.version}")
    assert list(model.classes_) == SPECIES


def test_a_source_outside_the_data_roots_fails_ingest_and_copies_nothing(runs):
    """SourceUriError is a PermanentError: no retry (test_retry_policy checks the policy;
    dag.test itself never retries)."""
    assert runs["results"]["leaky"]["ingest"] == "failed", runs["results"]["leaky"]
    settings = FactorySettings.from_env()
    assert storage.list_uris(storage.join(settings.store_uri, "raw", "leaky")) == []
