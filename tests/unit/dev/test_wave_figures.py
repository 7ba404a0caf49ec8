"""bench/wave_figures.py: the nightly wave's figures from Airflow's task_instance rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
T0 = dt.datetime(2026, 1, 5, 2, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def figures(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import wave_figures

    return wave_figures


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def row(task_id, queued, start, end, dag_id="wave_0001__retrain", state="success"):
    return {
        "dag_id": dag_id,
        "run_id": "r",
        "task_id": task_id,
        "state": state,
        "try_number": 1,
        "queued": None if queued is None else at(queued),
        "start": None if start is None else at(start),
        "end": None if end is None else at(end),
        "priority": 1,
    }


def test_handoffs_measure_from_the_last_upstream_end_or_the_run_start(figures):
    upstream = figures.upstream_of(
        {"ingest": ["train", "budget"], "train": ["card"], "budget": ["card"], "card": []}
    )
    assert upstream == {"ingest": [], "train": ["ingest"], "budget": ["ingest"], "card": ["train", "budget"]}
    tasks = [
        row("ingest", 1, 3, 5),  # run started at 0
        row("train", 6, 7, 10),
        row("budget", 8, 12, 20),
        row("card", 22, 23, 24),  # ready when budget ended (20), the later of its upstreams
        row("skipped_one", None, None, None),
    ]
    runs = {("wave_0001__retrain", "r"): {"start": at(0)}}

    got = {h["task_id"]: h for h in figures.handoffs(tasks, runs, upstream | {"skipped_one": []})}

    assert set(got) == {"ingest", "train", "budget", "card"}
    assert got["ingest"] == {
        "task_id": "ingest",
        "ready_to_queued_s": 1.0,
        "queued_to_running_s": 2.0,
        "ready_to_running_s": 3.0,
        "running_s": 2.0,
    }
    assert got["budget"]["ready_to_queued_s"] == 3.0 and got["budget"]["queued_to_running_s"] == 4.0
    assert got["card"]["ready_to_queued_s"] == 2.0 and got["card"]["ready_to_running_s"] == 3.0


def test_a_task_whose_upstream_never_ran_has_no_handoff(figures):
    tasks = [row("ingest", None, None, None, state="skipped"), row("train", 1, 2, 3)]
    runs = {("wave_0001__retrain", "r"): {"start": at(0)}}
    assert figures.handoffs(tasks, runs, {"ingest": [], "train": ["ingest"]}) == []


def test_slot_use_and_starvation_split_the_idle_slot_time(figures):
    # Two slots, 0..10 s: a runs 0-4 (queued at 0), b queued at 0 runs 6-10, c queued at 5 runs 5-9.
    tasks = [row("a", 0, 0, 4), row("b", 0, 6, 10), row("c", 5, 5, 9)]

    use = figures.slot_use(tasks, slots=2)
    starved = figures.slot_starvation(tasks, slots=2)

    assert use["makespan_s"] == 10.0 and use["tasks"] == 3
    assert use["busy_share"] == pytest.approx(12 / 20)
    assert use["idle_slot_s_per_task"] == pytest.approx(8 / 3)
    # 0-4: one slot idle while b is queued (4 s); 4-5: both idle, b queued (1 with, 1 without);
    # 5-6: one idle, b queued (1 with); 9-10: one idle, nothing queued (1 without).
    assert starved == {"idle_slot_s_with_task_queued": 6.0, "idle_slot_s_nothing_queued": 2.0}


def test_the_extrapolation_names_the_term_that_bounds_the_wave(figures):
    per_task = {
        "worker_cpu_s": 1.0,
        "api_cpu_s": 0.2,
        "services_cpu_s": 0.3,
        "scheduler_cpu_s": 0.1,
        "db_cpu_s": 0.05,
    }

    one = figures.extrapolate(per_task, tasks=1000, workers=1, cores_per_worker=2.0)
    many = figures.extrapolate(per_task, tasks=1000, workers=64, cores_per_worker=2.0)

    assert one["terms_s"] == pytest.approx({"workers": 750.0, "scheduler": 100.0, "database": 50.0})
    assert one["bound"] == "workers" and one["makespan_s"] == pytest.approx(750.0)
    assert many["bound"] == "scheduler" and many["makespan_s"] == pytest.approx(100.0)


def test_spread_of_nothing_is_none_and_of_values_their_quantiles(figures):
    assert figures.spread([]) is None
    got = figures.spread([float(v) for v in range(1, 101)])
    assert got["median"] == 50.5 and got["p90"] == 90.0 and got["max"] == 100.0 and got["n"] == 100


def test_the_marginal_figures_take_the_idle_rate_off_and_fall_back_to_the_gross_ones(figures):
    gross = {
        "worker_cpu_s": 2.0,
        "scheduler_cpu_s": 0.5,
        "api_cpu_s": 0.2,
        "services_cpu_s": 0.3,
        "db_cpu_s": 0.1,
    }
    above = {
        "worker": 1.5,
        "scheduler": -0.01,
        "api-server": 0.1,
        "mlflow": 0.2,
        "s3": 0.05,
        "triggerer": 0.0,
    }

    assert figures.marginal_per_task({"per_task": gross}) == gross
    assert figures.marginal_per_task({"per_task": gross, "cpu_s_per_task_above_idle": above}) == {
        "worker_cpu_s": 1.5,
        "scheduler_cpu_s": 0.0,  # less than its idle rate: nothing added, never negative
        "api_cpu_s": 0.1,
        "services_cpu_s": 0.3,  # MLflow's idle rate is measured during its start-up: gross
        "db_cpu_s": 0.1,
    }


def test_half_the_runs_done_is_the_middle_end_and_none_while_fewer_ended(figures):
    assert figures._half_done([50.0, 10.0, 30.0, 40.0], 4) == 30.0  # the 2nd of 4 to end
    assert figures._half_done([50.0, 10.0, 30.0], 5) == 50.0  # the 3rd of 5
    assert figures._half_done([10.0], 5) is None  # 1 of 5 ended: half not reached
