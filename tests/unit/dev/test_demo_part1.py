"""The demo's first part runs day by day with each model's health step after its run and says how
long is left; the live traffic keeps to its rate cap."""

from __future__ import annotations

import time
from datetime import date, timedelta
from functools import partial
from types import SimpleNamespace

from model_factory.io.airflow_api import AirflowClient
from model_factory_dev import demo_pace, demo_part1, demo_part1_workers, health_story, simulator


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


def _plan(names_by_day: dict[int, list[str]], templates: dict[str, str] | None = None):
    start = date(2026, 1, 5)
    specs = {n: _spec(n, (templates or {}).get(n, "retrain")) for ns in names_by_day.values() for n in ns}
    days = sorted(names_by_day.items())
    return [(start + timedelta(days=d), specs[n]) for d, ns in days for n in sorted(ns)]


def test_each_models_days_form_one_chain_in_day_order_most_runs_first():
    runs = _plan({0: ["churn", "demand"], 1: ["churn", "demand", "scorer"]}, {"scorer": "batch_scoring"})

    chains = demo_part1_workers.chains_of(runs, story_model="demand")

    assert [(c.model, c.dag_runs) for c in chains] == [("demand", 2), ("churn", 2), ("scorer", 2)]
    assert chains[1].items == ((0, "2026-01-05"), (2, "2026-01-06"))  # plan indices, day order


def test_worker_lines_are_printed_in_the_plans_order_and_a_stopped_chain_is_said_at_once(capsys):
    runs = _plan({0: ["churn", "demand"], 1: ["churn", "demand"], 2: ["churn", "demand"]})
    part = demo_part1.Part1(None, None, runs, runs[0][1], None, False, len(runs))
    tally = demo_part1_workers._Tally(part, demo_part1_workers.chains_of(runs), [])

    tally.take("start", 1, "demand")
    tally.take("item", 1, (1, ["demand day 1"], 1))  # before churn's day 1 ends: held
    assert "demand day 1" not in capsys.readouterr().out
    tally.take("start", 0, "churn")
    tally.take("item", 0, (0, ["churn day 1"], 1))
    tally.take("item", 1, (3, ["demand day 2: stopped"], 0))
    tally.take("stopped", 1, ("demand", "ValueError on 2026-01-06: boom"))
    for index in (2, 4):
        tally.take("item", 0, (index, [f"churn day {index // 2 + 1}"], 1))
    tally.take("done", 0, ("churn", health_story.Story(notes=["churn's story"])))

    out = capsys.readouterr().out.splitlines()
    stopped = next(line for line in out if line.startswith("  !! demand"))
    assert "ValueError on 2026-01-06" in stopped and "1 of its days not run" in stopped
    ordered = [line.strip() for line in out if not line.startswith("  !!")]
    in_order = ["churn day 1", "demand day 1", "churn day 2", "demand day 2: stopped", "churn day 3"]
    assert ordered[:5] == in_order
    assert ordered[5].endswith("demand                 not run: its chain stopped before this day")
    assert tally.done == 4
    story = tally.story()
    assert story.notes[0] == "churn's story" and "demand: its chain of days stopped" in story.notes[1]
