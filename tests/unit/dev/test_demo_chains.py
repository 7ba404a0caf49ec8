"""The demo's first part runs each model's days in order, different models at the same time, and
says how many runs are left; the live traffic keeps to its rate cap."""

from __future__ import annotations

import os
import threading
import time
from datetime import date, timedelta
from types import SimpleNamespace

from model_factory_dev import demo_chains, demo_pace, simulator


class _FileRecordingDag:
    """A DAG whose ``test`` appends (pid, dag id, batch date) to a file: the chains run in forked
    processes, so only what they write survives."""

    def __init__(self, dag_id: str, log) -> None:
        self.dag_id, self.log = dag_id, log

    def test(self, run_conf):
        with open(self.log, "a") as out:
            out.write(f"{os.getpid()} {self.dag_id} {run_conf['ds']}\n")
        time.sleep(0.05)
        return SimpleNamespace(state="success", get_task_instances=lambda: [])


def _spec(name: str, template: str = "retrain"):
    return SimpleNamespace(name=name, template=template)


def test_each_models_days_run_in_order_in_its_own_process(tmp_path, capfd):
    log = tmp_path / "runs.txt"
    specs = [_spec("churn"), _spec("demand"), _spec("scorer", "batch_scoring")]
    days = [date(2026, 1, 5) + timedelta(days=i) for i in range(3)]
    runs = sorted(((d, s) for s in specs for d in days), key=lambda p: (p[0], p[1].name))
    bag = SimpleNamespace(
        dags={
            i: _FileRecordingDag(i, log)
            for s in specs
            for i in demo_chains.dag_ids(s)
            if i != "demand__retrain"
        }
    )
    total = sum(len(demo_chains.dag_ids(s)) for _, s in runs)
    part = demo_chains.Part1(None, bag, runs, None, None, False, total)
    assert list(part.chains) == ["churn", "demand", "scorer"]

    story = demo_chains.run_chains(part, workers=2)

    rows = [line.split() for line in log.read_text().splitlines()]
    by_dag: dict[str, list[str]] = {}
    pids: dict[str, set[str]] = {}
    for pid, dag_id, ds in rows:
        by_dag.setdefault(dag_id, []).append(ds)
        pids.setdefault(dag_id.split("__")[0], set()).add(pid)
    iso = [d.isoformat() for d in days]
    assert by_dag == {"churn__retrain": iso, "scorer__retrain": iso, "scorer__score": iso}
    assert len(pids["churn"]) == 1 and pids["churn"] != pids["scorer"]  # one chain, one process
    assert str(os.getpid()) not in pids["churn"] | pids["scorer"]
    out = capfd.readouterr().out
    assert "demand__retrain        skipped: no such DAG" in out  # said, the chain goes on
    assert story.days == [] and story.notes == []


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
    monkeypatch.setattr(demo_pace, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(demo_pace.time, "sleep", lambda s: None)
    run = demo_pace.wait_for_run(api, "churn__canary", "r1", "the canary's outcomes", timeout_s=60)
    assert run["state"] == "success"
    out = capsys.readouterr().out
    assert "waiting for the canary's outcomes: stage_1_wait up_for_reschedule" in out
    assert "gives up in" in out
    threading.enumerate()  # nothing left running
