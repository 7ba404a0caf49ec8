"""The demo's first part runs day by day with each model's health step after its run and says how
long is left; the live traffic keeps to its rate cap."""

from __future__ import annotations

import time
from datetime import date, timedelta
from functools import partial
from types import SimpleNamespace

from model_factory.io.airflow_api import AirflowClient
from model_factory_dev import demo_pace, demo_part1, simulator


class _RecordingDag:
    def __init__(self, dag_id: str, calls: list) -> None:
        self.dag_id, self.calls = dag_id, calls

    def test(self, run_conf):
        self.calls.append((self.dag_id, run_conf["ds"]))
        return SimpleNamespace(state="success", get_task_instances=lambda: [])


def _spec(name: str, template: str = "retrain"):
    return SimpleNamespace(name=name, template=template)


def test_part1_runs_day_by_day_and_each_models_health_step_follows_its_run(monkeypatch, capsys):
    calls: list = []
    specs = [_spec("churn"), _spec("demand"), _spec("scorer", "batch_scoring")]
    days = [date(2026, 1, 5) + timedelta(days=i) for i in range(2)]
    runs = sorted(((d, s) for s in specs for d in days), key=lambda p: (p[0], p[1].name))
    built = [i for s in specs for i in demo_part1.dag_ids(s) if i != "demand__retrain"]
    bag = SimpleNamespace(dags={i: _RecordingDag(i, calls) for i in built})
    monkeypatch.setattr(
        demo_part1,
        "health_phase",
        lambda settings, bag, story, spec, seasonal, day, say: calls.append(
            ("health" if spec else "seasonal", (spec or seasonal).name, day.isoformat())
        ),
    )
    total = sum(len(demo_part1.dag_ids(s)) for _, s in runs)
    part = demo_part1.Part1(None, bag, runs, specs[0], specs[1], False, total)

    demo_part1.run_part1(part)

    first, second = (d.isoformat() for d in days)
    assert calls == [
        ("churn__retrain", first),
        ("health", "churn", first),
        ("seasonal", "demand", first),  # its DAG is missing: said, its watch still runs
        ("scorer__retrain", first),
        ("scorer__score", first),
        ("churn__retrain", second),
        ("health", "churn", second),
        ("seasonal", "demand", second),
        ("scorer__retrain", second),
        ("scorer__score", second),
    ]
    assert "demand__retrain        skipped: no such DAG" in capsys.readouterr().out


def test_the_time_left_follows_the_pace_so_far():
    assert demo_pace.eta(0, 26, 10.0) == ""
    assert demo_pace.eta(26, 26, 100.0) == ""
    assert demo_pace.eta(13, 26, 100.0) == ", about 100s left at this pace"


def test_the_clock_prints_each_part_and_keeps_it_for_the_summary(capsys):
    clock = demo_pace.Clock()
    with clock.part("part 1"):
        pass
    end = clock.begin("part 2")
    end()
    assert [name for name, _ in clock.parts] == ["part 1", "part 2"]
    assert "[part 1: 0s; demo at" in capsys.readouterr().out
    assert clock.lines()[-1].startswith("total (this process)")


def test_live_traffic_keeps_to_its_rate_cap(monkeypatch):
    monkeypatch.setattr(
        simulator,
        "simulate_traffic",
        lambda *a, requests, **k: {"requests": requests, "by_arm": {}, "by_version": {}, "errors": {}},
    )
    loop = simulator.TrafficLoop("http://unused", "churn", None, batch=10)
    loop.rate = 100.0
    started = time.monotonic()
    with loop:
        time.sleep(0.5)
    took = time.monotonic() - started
    assert 0 < loop.sent <= 100.0 * took + 10  # never faster than the cap (one batch of slack)
    assert not loop.failures


def test_a_waited_run_says_what_it_waits_for(monkeypatch, capsys):
    states = iter(["running", "running", "success"])
    api = SimpleNamespace(
        run=lambda dag_id, run_id: {"state": next(states)},
        task_instances=lambda dag_id, run_id: [{"task_id": "stage_1_wait", "state": "up_for_reschedule"}],
    )
    api.wait_for_run = partial(AirflowClient.wait_for_run, api)  # the client's own polling
    monkeypatch.setattr(demo_pace, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(demo_pace.time, "sleep", lambda s: None)
    run = demo_pace.wait_for_run(api, "churn__canary", "r1", "the canary's outcomes", timeout_s=60)
    assert run["state"] == "success"
    out = capsys.readouterr().out
    assert "waiting for the canary's outcomes: stage_1_wait up_for_reschedule" in out
    assert "gives up in" in out
