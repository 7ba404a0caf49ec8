"""The prediction log on its own: batched background writes, retries when the DB fails, portable URLs."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from model_factory.serving import predlog


def row(i: int, status: str = "ok") -> dict:
    return {
        "request_id": f"r{i}",
        "entity_id": None,
        "model": "m",
        "version": "1",
        "arm": "champion",
        "status": status,
        "error": None,
        "latency_ms": 1.0,
        "prediction": "{}",
        "score": 0.5,
        "inputs": None,
        "inputs_hash": "h",
        "created_at": predlog.utcnow(),
    }


def count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(predlog.PREDICTIONS)).scalar_one()


def wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_rows_are_written_in_the_background_and_flush_waits_for_them(tmp_path):
    log = predlog.PredictionLog(f"sqlite:///{tmp_path / 'p.db'}", batch_size=50).start()
    for i in range(120):
        log.log([row(i)])
    log.log([row(999, status="error")])
    assert log.known_request("r5")  # queued or written: feedback may come at once
    assert log.flush()
    assert count(log.engine) == 121 and log.written == 121
    assert log.known_request("r119") and not log.known_request("r999") and not log.known_request("nope")
    log.close()


def test_a_failing_database_keeps_the_rows_and_retries(tmp_path):
    log = predlog.PredictionLog(f"sqlite:///{tmp_path / 'p.db'}").start()
    predlog.PREDICTIONS.drop(log.engine)  # every insert fails from now on
    log.log([row(1), row(2)])
    wait_for(lambda: log.write_errors > 0)
    assert "no such table" in log.last_error
    assert log.known_request("r1")  # still pending, not lost
    predlog.METADATA.create_all(log.engine)  # the database is back
    assert log.flush(timeout_s=20)
    assert count(log.engine) == 2 and log.last_error is None and log.dropped == 0
    log.close()


def test_rows_beyond_max_pending_are_dropped_and_counted(tmp_path):
    log = predlog.PredictionLog(f"sqlite:///{tmp_path / 'p.db'}", max_pending=3).start()
    predlog.PREDICTIONS.drop(log.engine)
    log.log([row(0)])
    wait_for(lambda: log.write_errors > 0)
    log.log([row(i) for i in range(1, 8)])
    wait_for(lambda: log.dropped >= 5)
    predlog.METADATA.create_all(log.engine)
    assert log.flush(timeout_s=20)
    assert count(log.engine) == 3 and log.dropped == 5
    log.close()


def test_a_url_whose_driver_is_missing_says_what_is_missing():
    with pytest.raises(RuntimeError, match=r"driver module 'MySQLdb' is not installed"):
        predlog.engine_for("mysql+mysqldb://factory:secret@db.example/predictions")


def test_decisions_round_trip(tmp_path):
    db = f"sqlite:///{tmp_path / 'd.db'}"
    predlog.write_decision(
        db,
        {
            "model": "m",
            "version": "2",
            "action": "canary_started",
            "actor": "a",
            "reason": "r",
            "at": "2026-02-02T10:00:00+00:00",
            "details": {"share": 0.1},
            "changed": True,
        },
    )
    [decision] = predlog.decisions(db, "m")
    assert decision["at"].isoformat() == "2026-02-02T10:00:00"
    assert decision["details"] == {"share": 0.1, "changed": True}


POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def postgres_db():
    """A throwaway database on the machine's PostgreSQL (FACTORY_TEST_POSTGRES_URL), or a skip."""
    import os
    import uuid

    from model_factory_dev.stack import StackError, check_postgres, create_database, drop_database

    admin = os.environ.get("FACTORY_TEST_POSTGRES_URL", POSTGRES_ADMIN_URL)
    try:
        check_postgres(admin)
    except StackError as exc:
        pytest.skip(f"no PostgreSQL on this machine: {exc}")
    name = f"predlog_{uuid.uuid4().hex[:10]}"
    url = create_database(admin, name)
    try:
        yield url
    finally:
        engine = predlog._engines.pop(url, None)
        if engine is not None:
            engine.dispose()
        drop_database(admin, name)


@pytest.mark.integration
def test_the_same_code_runs_on_postgres(postgres_db):
    from datetime import UTC, datetime, timedelta

    from model_factory.rollout.canary import arm_outcomes

    started = datetime.now(UTC) - timedelta(seconds=5)
    log = predlog.PredictionLog(postgres_db).start()
    rows = [row(i) for i in range(4)]
    rows[3] = {**rows[3], "arm": "canary", "version": "2"}
    log.log(rows)
    log.log([{**row(9, status="error"), "arm": "canary", "version": "2"}])
    assert log.flush()
    assert log.known_request("r0")
    assert log.record_feedback("r0", 1) == "recorded"
    assert log.record_feedback("r0", 1) == "unchanged"  # a retry
    assert log.record_feedback("r0", 0) == "conflict"  # never overwritten
    log.record_feedback("r3", 1)
    log.close()
    predlog.write_decision(
        postgres_db,
        {"model": "m", "version": "2", "action": "load_failed", "actor": "gateway", "reason": "gone"},
    )
    arms = arm_outcomes(postgres_db, "m", started.isoformat())
    assert (arms["champion"].requests, arms["champion"].labelled, list(arms["champion"].outcomes)) == (
        3,
        1,
        [1.0],
    )
    assert (arms["canary"].requests, arms["canary"].errors, arms["canary"].labelled) == (2, 1, 1)
    assert arms["canary"].load_errors == ["v2: gone"]
    assert predlog.engine_for(postgres_db).dialect.name == "postgresql"


def test_a_log_written_by_an_older_gateway_gains_the_client_request_id_column(tmp_path):
    """Issue 18 finding 4 adds predictions.client_request_id: an existing log is migrated in place,
    its rows kept."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    old = sa.MetaData()
    columns = [c.copy() for c in predlog.PREDICTIONS.columns if c.name != "client_request_id"]
    sa.Table("predictions", old, *columns)
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(old.tables["predictions"].insert(), [row(1)])
    predlog.ensure_schema(engine)
    log = predlog.PredictionLog(engine).start()
    log.log([row(2) | {"client_request_id": "mine"}])
    assert log.flush()
    log.close()
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(predlog.PREDICTIONS.c.request_id, predlog.PREDICTIONS.c.client_request_id)
        ).all()
    assert sorted(found) == [("r1", None), ("r2", "mine")]
