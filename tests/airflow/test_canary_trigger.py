"""The canary stage's deferrable sensor and its trigger: what the triggerer can re-create and run,
when it fires, and how the sensor judges, defers again or gives up.

The real scheduler and triggerer run them in ``tests/e2e/test_canary_scheduler.py`` (with a
triggerer restart while a stage waits)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred
from model_factory.airflow.sensors import CanaryStageSensor
from model_factory.airflow.triggers import SETTLE_SECONDS, CanaryOutcomesTrigger
from model_factory.settings import FactorySettings
from model_factory.spec import load_specs

from tests.conftest import REPO
from tests.unit.rollout.test_canary import _log_labelled

CHURN = next(
    loaded.spec
    for loaded in load_specs(REPO / "include" / "models", FactorySettings.from_env())[0]
    if loaded.spec.name == "churn"
)


def _trigger(**overrides) -> CanaryOutcomesTrigger:
    kwargs = {
        "model": "churn",
        "versions": {"champion": "1", "canary": "2"},
        "since": "2030-01-01T12:00:00+00:00",
        "stage_since": "2030-01-01T12:00:00+00:00",
        "min_samples": 40,
        "wake_at": (datetime.now(UTC) + timedelta(seconds=30)).isoformat(),
        "poll_seconds": 0.05,
    }
    return CanaryOutcomesTrigger(**{**kwargs, **overrides})


@pytest.fixture
def prediction_db(tmp_path, monkeypatch) -> str:
    db = f"sqlite:///{tmp_path / 'predictions.db'}"
    monkeypatch.setenv("FACTORY_PREDICTION_DB_URI", db)
    return db


def _first_event(trigger: CanaryOutcomesTrigger, timeout_s: float = 10.0) -> dict:
    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), timeout_s))


def test_the_triggerer_re_creates_it_from_what_airflow_stores():
    """Airflow stores classpath + encrypted kwargs (Trigger.from_object) and the triggerer inflates
    them with import_string: the same trigger comes back, after a triggerer restart too."""
    from airflow._shared.module_loading import import_string
    from airflow.models.trigger import Trigger
    from airflow.serialization.decoders import smart_decode_trigger_kwargs

    trigger = _trigger()
    row = Trigger.from_object(trigger)
    stored = Trigger._decrypt_kwargs(row.encrypted_kwargs)
    inflated = import_string(row.classpath)(**{k: smart_decode_trigger_kwargs(v) for k, v in stored.items()})
    assert inflated.serialize() == trigger.serialize()
    assert row.classpath == "model_factory.airflow.triggers.CanaryOutcomesTrigger"
    json.dumps(trigger.serialize()[1])  # plain JSON: no URL, no object
    assert not [v for v in trigger.serialize()[1].values() if isinstance(v, str) and "://" in v]


def test_it_loads_no_spec_no_dag_and_no_model_code_in_the_triggerer(prediction_db):
    """Importing and running the trigger pulls in the factory's settings and its prediction-log
    reader only: never a DAG file, the spec loader or a model's training code."""
    code = (
        "import sys, asyncio\n"
        "from model_factory.airflow.triggers import CanaryOutcomesTrigger as T\n"
        "t = T(model='churn', versions={'champion': '1', 'canary': '2'}, since='2030-01-01T00:00:00',\n"
        "      stage_since='2030-01-01T00:00:00', min_samples=1, wake_at='2000-01-01T00:00:00+00:00')\n"
        "async def one():\n"
        "    async for event in t.run():\n"
        "        return event.payload\n"
        "print(asyncio.run(one())['why'])\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('model_factory'))))\n"
        "heavy = ('mlflow', 'sklearn', 'pandas', 'great_expectations')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True
    ).stdout.splitlines()
    assert out[0] == "poke_interval"
    loaded = set(out[1].split())
    assert loaded <= {
        "model_factory",
        "model_factory.settings",
        "model_factory.airflow",
        "model_factory.airflow.triggers",
        "model_factory.rollout",
        "model_factory.rollout.outcomes",
        "model_factory.serving",
        "model_factory.serving.logwrite",
        "model_factory.serving.predlog",
        "model_factory.serving.settings",
    }, loaded
    assert out[2:] in ([], [""]), out[2:]


def test_it_fires_once_the_stage_has_enough_outcomes(prediction_db):
    _log_labelled(prediction_db, 0, 40, at=datetime(2030, 1, 1, 12, 0, 1))
    event = _first_event(_trigger())
    assert event == {"why": "samples", "counts": {"champion": 40, "canary": 40, "canary_in_stage": 40}}


def test_enough_outcomes_fire_it_no_sooner_than_not_before(prediction_db):
    """SETTLE_SECONDS: a resume right after the deferral races the executor's event of the
    process that deferred (Airflow 3.3 then fails the task)."""
    _log_labelled(prediction_db, 0, 40, at=datetime(2030, 1, 1, 12, 0, 1))
    not_before = datetime.now(UTC) + timedelta(seconds=0.5)
    event = _first_event(_trigger(not_before=not_before.isoformat()))
    assert event["why"] == "samples" and datetime.now(UTC) >= not_before


def test_short_of_outcomes_it_fires_at_wake_at_with_what_it_counted(prediction_db):
    _log_labelled(prediction_db, 0, 39, at=datetime(2030, 1, 1, 12, 0, 1))
    wake_at = datetime.now(UTC) + timedelta(seconds=0.3)
    event = _first_event(_trigger(wake_at=wake_at.isoformat()))
    assert datetime.now(UTC) >= wake_at
    assert event == {"why": "poke_interval", "counts": {"champion": 39, "canary": 39, "canary_in_stage": 39}}


def test_a_new_stage_waits_for_outcomes_of_its_own(prediction_db):
    _log_labelled(prediction_db, 0, 60, at=datetime(2030, 1, 1, 12, 0, 1))
    later = _trigger(stage_since="2030-01-01T12:00:02+00:00", wake_at=datetime.now(UTC).isoformat())
    assert _first_event(later)["counts"] == {"champion": 60, "canary": 60, "canary_in_stage": 0}


def test_a_wake_at_in_the_past_fires_at_once_after_a_restart(prediction_db):
    """Absolute times: a trigger re-created after its triggerer was down past wake_at fires at
    once, so the sensor judges the stage at once."""
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    assert _first_event(_trigger(wake_at=past), timeout_s=2)["why"] == "poke_interval"


def test_an_unreadable_prediction_db_waits_for_wake_at(monkeypatch):
    monkeypatch.setenv("FACTORY_PREDICTION_DB_URI", "postgresql+psycopg2://nobody:x@127.0.0.1:1/none")
    soon = (datetime.now(UTC) + timedelta(seconds=0.3)).isoformat()
    assert _first_event(_trigger(wake_at=soon)) == {"why": "poke_interval", "counts": None}


def test_not_counting_it_only_waits_for_wake_at(prediction_db):
    _log_labelled(prediction_db, 0, 40, at=datetime(2030, 1, 1, 12, 0, 1))
    soon = datetime.now(UTC) + timedelta(seconds=0.3)
    event = _first_event(_trigger(wake_at=soon.isoformat(), counting=False))
    assert event == {"why": "poke_interval", "counts": None} and datetime.now(UTC) >= soon


# --- the sensor ---------------------------------------------------------------------------------


class _State:
    canary, champion, share = "2", "1", 0.5
    started_at = "2030-01-01T12:00:00+00:00"
    updated_at = "2030-01-01T12:05:00+00:00"


def _sensor(
    monkeypatch, decisions: list[str], counted: list[bool] | None = None, soon: bool = False, **kwargs
) -> CanaryStageSensor:
    """The sensor with its judgements scripted: what its in-worker counts find, in order (each
    window's length goes to ``sensor.windows``), and whether the missing outcomes come ``soon``."""
    sensor = CanaryStageSensor(
        task_id="stage_2_wait", spec=CHURN, stage=2, poke_interval=15, timeout=600, **kwargs
    )
    verdicts, found = iter(decisions), iter(counted or [])
    sensor.windows = []  # type: ignore[attr-defined]
    monkeypatch.setattr(sensor, "judge", lambda context: ({"decision": next(verdicts)}, _State()))
    monkeypatch.setattr(sensor, "soon", lambda state: soon)

    def count_in_worker(state, until: datetime) -> bool:
        sensor.windows.append(round((until - datetime.now(UTC)).total_seconds()))  # type: ignore[attr-defined]
        return next(found)

    monkeypatch.setattr(sensor, "count_in_worker", count_in_worker)
    return sensor


def test_the_sensor_returns_a_verdict_or_defers_to_the_trigger(monkeypatch):
    assert _sensor(monkeypatch, ["continue"]).execute({}) == {"decision": "continue"}
    # first wait: counted in the worker for one poke_interval, then judged again
    sensor = _sensor(monkeypatch, ["wait", "promote"], counted=[True])
    assert sensor.execute({}) == {"decision": "promote"} and sensor.windows == [15]
    # still short, but due within SETTLE_SECONDS: counted in the worker that much longer
    sensor = _sensor(monkeypatch, ["wait", "wait", "continue"], counted=[False, True], soon=True)
    assert sensor.execute({}) == {"decision": "continue"} and sensor.windows == [15, SETTLE_SECONDS]
    sensor = _sensor(monkeypatch, ["wait", "wait"], counted=[False])
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    assert sensor.windows == [15]
    trigger, kwargs = deferred.value.trigger, deferred.value.kwargs
    assert deferred.value.method_name == "execute_complete"
    assert isinstance(trigger, CanaryOutcomesTrigger) and trigger.counting
    settle = (datetime.fromisoformat(trigger.not_before) - datetime.now(UTC)).total_seconds()
    assert SETTLE_SECONDS - 2 < settle <= SETTLE_SECONDS
    assert (trigger.versions, trigger.min_samples) == (
        {"canary": "2", "champion": "1"},
        CHURN.canary.min_samples,
    )
    assert (trigger.since, trigger.stage_since) == (_State.started_at, _State.updated_at)
    wake_in = (datetime.fromisoformat(trigger.wake_at) - datetime.now(UTC)).total_seconds()
    assert 13 < wake_in <= 15  # the full analysis at least every poke_interval
    give_up = datetime.fromisoformat(kwargs["give_up_at"])
    assert 598 < (give_up - datetime.now(UTC)).total_seconds() <= 600
    assert 598 < deferred.value.timeout.total_seconds() <= 600


def test_resumed_it_judges_again_and_stops_counting_when_a_count_was_not_enough(monkeypatch):
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert _sensor(monkeypatch, ["promote"]).execute_complete(
        {}, give_up_at=later, event={"why": "samples", "counts": {}}
    ) == {"decision": "promote"}
    with pytest.raises(TaskDeferred) as deferred:  # a count said enough, the analysis did not
        _sensor(monkeypatch, ["wait"]).execute_complete(
            {}, give_up_at=later, event={"why": "samples", "counts": {}}
        )
    assert not deferred.value.trigger.counting  # else it would be resumed again at once
    with pytest.raises(TaskDeferred) as deferred:  # the same in the worker, before a first deferral
        _sensor(monkeypatch, ["wait", "wait"], counted=[True], soon=True).execute({})
    assert not deferred.value.trigger.counting
    sensor = _sensor(monkeypatch, ["wait"])  # resumed at wake_at, nothing due soon: deferred again
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute_complete({}, give_up_at=later, event={"why": "poke_interval", "counts": None})
    assert deferred.value.trigger.counting and deferred.value.kwargs == {"give_up_at": later}
    assert sensor.windows == []
    sensor = _sensor(monkeypatch, ["wait", "promote"], counted=[True], soon=True)  # due soon: waits
    event = {"why": "poke_interval", "counts": None}
    assert sensor.execute_complete({}, give_up_at=later, event=event) == {"decision": "promote"}
    assert sensor.windows == [SETTLE_SECONDS]


def test_in_the_worker_it_counts_until_there_are_enough_or_its_time_is_up(prediction_db):
    state = _State()
    state.model, state.updated_at = "churn", state.started_at
    sensor = CanaryStageSensor(task_id="stage_1_wait", spec=CHURN, stage=1)
    assert not sensor.count_in_worker(state, datetime.now(UTC) + timedelta(seconds=1.5))
    _log_labelled(prediction_db, 0, CHURN.canary.min_samples, at=datetime(2030, 1, 1, 12, 0, 1))
    t0 = datetime.now(UTC)
    assert sensor.count_in_worker(state, t0 + timedelta(seconds=30))
    assert (datetime.now(UTC) - t0).total_seconds() < 5


def test_soon_means_the_missing_outcomes_are_due_within_the_settle_time(prediction_db):
    """At the rates since the canary and its stage began (the prediction log's own counts)."""
    now = datetime.now(UTC)
    state = _State()
    state.model = "churn"
    state.started_at = (now - timedelta(seconds=20)).isoformat()
    state.updated_at = state.started_at
    sensor = CanaryStageSensor(task_id="stage_1_wait", spec=CHURN, stage=1)
    assert not sensor.soon(state)  # nothing yet: no rate to tell
    n = CHURN.canary.min_samples
    _log_labelled(prediction_db, 0, int(n * 0.6), at=(now - timedelta(seconds=1)).replace(tzinfo=None))
    assert not sensor.soon(state)  # 60% in 20 s: the rest in about 13 s
    _log_labelled(prediction_db, 10_000, int(n * 0.3), at=(now - timedelta(seconds=1)).replace(tzinfo=None))
    assert sensor.soon(state)  # 90% in 20 s: the rest in about 2 s


def test_seconds_to_enough_at_the_rates_so_far():
    from model_factory.rollout.outcomes import LabelledCounts

    assert LabelledCounts(500, 250, 250).seconds_to(500, 10, 10) == 10  # the canary's 25/s
    assert LabelledCounts(500, 400, 100).seconds_to(500, 40, 10) == 40  # the stage's own 10/s
    assert LabelledCounts(500, 500, 500).seconds_to(500, 1, 1) == 0
    assert LabelledCounts(500, 0, 0).seconds_to(500, 10, 10) == float("inf")


def test_past_its_timeout_the_sensor_fails_instead_of_deferring(monkeypatch):
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    with pytest.raises(AirflowSensorTimeout):
        _sensor(monkeypatch, ["wait"]).execute_complete({}, give_up_at=past, event=None)


def test_not_deferrable_it_pokes_in_reschedule_mode(monkeypatch):
    sensor = _sensor(monkeypatch, ["wait", "rollback"], deferrable=False, mode="reschedule")
    waiting, judged = sensor.poke({}), sensor.poke({})
    assert (waiting.is_done, waiting.xcom_value) == (False, None)
    assert (judged.is_done, judged.xcom_value) == (True, {"decision": "rollback"})
