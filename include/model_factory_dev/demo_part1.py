"""The demo's first part: every (day, model) DAG run through Airflow (``dag.test``, in this
process), churn's daily health check and demand's seasonal watch after their model's run of the
day, and a line with the time left while it runs (issue 22's first run).

Tried and dropped (2026-12-04): each model's days in a process forked from the demo after the DAG
bag was parsed. The forked ``dag.test`` never finished: its main thread waited on a lock while a
second thread spun (Airflow 3.3's in-process task runner after fork, with pyarrow's jemalloc
thread already running in the parent).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from model_factory.settings import FactorySettings

from model_factory_dev import health_story
from model_factory_dev.demo_pace import PROGRESS_EVERY_S, eta


def dag_ids(spec) -> list[str]:
    """The DAGs the demo runs per batch date for a spec, in order: retrain, then scoring."""
    return [f"{spec.name}__retrain"] + ([f"{spec.name}__score"] if spec.template == "batch_scoring" else [])


def run_dag(dag, day: date) -> tuple[str, dict[str, str], str]:
    """Run one DAG for one batch date through Airflow; return run state, task states, log.

    The batch date goes in the run's conf (``ds``, what every factory DAG reads first, as a
    trigger from the UI or CLI would); the run's logical date is now. ``dag.test`` starts a run
    at its logical date, so a batch date there made Airflow show each run lasting from that date
    until today (~330 days for the demo's dates).
    """
    with captured_output() as read_log, own_signal_handlers():
        run = dag.test(run_conf={"ds": day.isoformat()})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    return str(run.state), states, read_log()


@contextlib.contextmanager
def own_signal_handlers():
    """Give SIGTERM and SIGINT back their handlers after ``dag.test``: Airflow 3.3's task runner
    installs a SIGTERM handler for each task it runs in-process (it only calls the task's
    ``on_kill``) and never restores the old one, so without this the demo would ignore SIGTERM
    for the rest of its life. (While ``dag.test`` itself waits on a retry, it still does: that
    is Airflow's; docs/testing.md.)"""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def captured_output():
    """Send fd 1 and 2 to a temp file: Airflow's loggers hold their own handles to them."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        text: list[str] = []
        try:
            yield lambda: "".join(text)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            text.append(sink.read().decode(errors="replace"))


def failure_reason(log_text: str) -> list[str]:
    """The task's own explanation: the AirflowFailException message and its reason lines."""
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        if "AirflowFailException: " in line:
            reasons = [r.strip() for r in lines[i + 1 : i + 6] if r.strip().startswith("- ")]
            return [line.split("AirflowFailException: ", 1)[1].strip(), *reasons]
    return ["see the task log (make demo ARGS=--verbose)"]


def say_now(line: str) -> None:
    print(line, flush=True)


def health_phase(
    settings: FactorySettings, bag, story, spec, seasonal, day: date, say: Callable[[str], None] = say_now
) -> None:
    """After a day's DAG runs: churn's health check (scoring its batch first), demand's seasonal
    drift check. A health check asking for a retrain runs it (what its asset event does under the
    scheduler) and the blessed version it registers is promoted (what the canary does)."""
    if seasonal is not None:
        story.seasonal.append(health_story.seasonal_check(settings, seasonal, day))
    if spec is None:
        return
    story.metric, story.threshold = spec.gates.primary_metric, spec.gates.threshold
    started = time.perf_counter()
    try:
        checked, summary = health_story.health_day(settings, spec, day)
    except Exception as exc:  # no champion yet (the first retrain failed): said, the demo goes on
        story.notes.append(f"{day}: no health check: {type(exc).__name__}: {str(exc)[:160]}")
        return
    story.record(checked, summary)
    took = time.perf_counter() - started
    say(
        f"  {day}  {spec.name + '__health':<22} {checked.action:<8} {took:5.1f}s  (in-process) "
        f"{checked.reason[:100]}"
    )
    if checked.action != "retrain" or story.restored:
        return
    dag_id = f"{spec.name}__retrain"
    state, _, _ = run_dag(bag.dags[dag_id], day)
    retrained = health_story.latest_version(settings, spec) if state == "success" else None
    story.restored += health_story.restore(settings, spec, day, retrained, checked)
    say(f"  {day}  {dag_id:<22} {state:<8} fired by the health check; {story.restored[-1][12:140]}")


@dataclass
class Part1:
    """What the first part runs, and with what."""

    settings: FactorySettings
    bag: Any
    runs: list[tuple[date, Any]]
    story_spec: Any
    seasonal_spec: Any
    verbose: bool
    total: int
    say: Callable[[str], None] = say_now
    """Where the run lines go: printed at once here, handed to the demo by a worker process."""


def run_part1(part: Part1) -> health_story.Story:
    """Every (day, model) run in day order, in this process; after a model's run of a day, its
    health check (churn) or seasonal watch (demand). A progress line with the time left every
    ``PROGRESS_EVERY_S``. (``demo_part1_workers`` runs the same items in worker processes.)"""
    story = health_story.Story()
    started = last_said = time.monotonic()
    done = 0
    for day, spec in part.runs:
        done += run_item(part, story, day, spec)
        if time.monotonic() - last_said >= PROGRESS_EVERY_S and done < part.total:
            last_said = time.monotonic()
            print(
                f"      {part.total - done} of {part.total} DAG runs to go; {last_said - started:.0f}s so far"
                + eta(done, part.total, last_said - started),
                flush=True,
            )
    return story


def run_item(part: Part1, story: health_story.Story, day: date, spec) -> int:
    """One (day, model) of the plan: its DAG runs, then its health check or seasonal watch;
    the number of DAG runs it counted."""
    for dag_id in dag_ids(spec):
        run_one(part, spec, dag_id, day)
    health = spec if spec is part.story_spec else None
    seasonal = spec if spec is part.seasonal_spec else None
    if health is not None or seasonal is not None:
        health_phase(part.settings, part.bag, story, health, seasonal, day, part.say)
    return len(dag_ids(spec))


def run_one(part: Part1, spec, dag_id: str, day: date) -> None:
    if dag_id not in part.bag.dags:  # her template builds other DAGs, or it failed to build
        part.say(
            f"  {day}  {dag_id:<22} skipped: no such DAG (see `model-factory templates` and "
            f"any invalid_spec__{spec.name} DAG)"
        )
        return
    started = time.perf_counter()
    state, tasks, log_text = run_dag(part.bag.dags[dag_id], day)
    if part.verbose:
        part.say(log_text)
    line = f"  {day}  {dag_id:<22} {state:<8} {time.perf_counter() - started:5.1f}s"
    if state != "success":
        failed = [t for t, s in tasks.items() if s == "failed"]
        line += f"  failed at {','.join(failed)}:"
        line += "".join(f"\n      {r}" for r in failure_reason(log_text))
    elif set(tasks.values()) == {"skipped"}:
        line += "  skipped (see the task log)"
    part.say(line)
