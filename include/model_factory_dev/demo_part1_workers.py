"""The demo's first part in worker processes (issue 22's first run): each model's days in order,
two models at a time, the lines printed in the plan's order as if it ran in one process.

A model's days depend on each other (each retrain is gated against the champion of the day
before; churn's health check and demand's seasonal watch follow their model's run of the day).
Different models do not: each trains and registers its own model from its own spec, and they
share only the day's source batches, written before part 1 starts. So each model's chain of days
goes to one worker, whole, in order; the chains run side by side.

The workers are *spawned* (fresh interpreters), never forked: a ``dag.test`` forked from a process
that had already parsed the DAG bag never finished (demo_part1's docstring). Each worker parses the
DAG bag and imports the tasks' libraries once, then runs one chain after another. Airflow's
metadata DB is SQLite in WAL mode (Airflow sets it); MLflow's SQLite store is created here, once,
before the workers start, so they never race to create its schema.
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import os
import queue
import signal
import time
import traceback
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from model_factory.settings import FactorySettings

from model_factory_dev import health_story
from model_factory_dev.demo_pace import PROGRESS_EVERY_S, eta
from model_factory_dev.demo_part1 import Part1, captured_output, dag_ids, run_item

WORKER_LOG = "demo_part1_worker{}.log"  # under FACTORY_HOME: what Airflow and MLflow log in a worker
SQLITE_CONNECT_ARGS = {"timeout": 60}  # a worker's Airflow metadata DB connections (worker_main)


@dataclass(frozen=True)
class Chain:
    """One model's (plan index, batch date) items, in day order: what one worker runs whole."""

    model: str
    items: tuple[tuple[int, str], ...]
    dag_runs: int


def chains_of(runs: list[tuple[date, Any]], story_model: str | None = None) -> list[Chain]:
    """The plan's items grouped by model (day order kept), most DAG runs first (the model with the
    health story first among equals: its health checks add to its runs)."""
    items: dict[str, list[tuple[int, str]]] = {}
    counts: dict[str, int] = {}
    for index, (day, spec) in enumerate(runs):
        items.setdefault(spec.name, []).append((index, day.isoformat()))
        counts[spec.name] = counts.get(spec.name, 0) + len(dag_ids(spec))
    chains = [Chain(model, tuple(found), counts[model]) for model, found in items.items()]
    return sorted(chains, key=lambda c: (-c.dag_runs, c.model != story_model, c.model))


def run_part1_in_workers(part: Part1, workers: int) -> health_story.Story:
    """Part 1's items in ``workers`` spawned processes, one model's chain at a time each; every
    line printed in the plan's order (a line waits for the lines before it), a progress line with
    the DAG runs left every ``PROGRESS_EVERY_S``. A chain that stops (its worker raised or died) is
    said at once; its later days are not run and the other models go on."""
    from model_factory.io import tracking

    tracking.connect(part.settings)  # MLflow's schema, made once here: the workers never race for it
    story_model = part.story_spec.name if part.story_spec is not None else None
    seasonal_model = part.seasonal_spec.name if part.seasonal_spec is not None else None
    chains = chains_of(part.runs, story_model)
    context = multiprocessing.get_context("spawn")
    jobs: Any = context.Queue()
    results: Any = context.Queue()
    synced: Any = context.Event()
    for chain in chains:
        jobs.put(chain)
    count = max(1, min(workers, len(chains)))
    for _ in range(count):
        jobs.put(None)
    logs = [Path(part.settings.home) / WORKER_LOG.format(n) for n in range(count)]
    processes = [
        context.Process(
            target=worker_main,
            args=(n, jobs, results, synced, story_model, seasonal_model, part.verbose, str(logs[n])),
            name=f"demo-part1-{n}",
            daemon=True,
        )
        for n in range(count)
    ]
    for process in processes:
        process.start()
    with captured_output():  # Airflow's log lines: not the demo's
        sync_dags_to_db()  # while the workers import
    synced.set()
    tally = _Tally(part, chains, logs)
    try:
        tally.follow(processes, results)
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
    return tally.story()


class _Tally:
    """What the workers reported: lines held until the lines before them are printed, the chain
    each worker holds, the stories of the health and seasonal chains, the chains that stopped."""

    def __init__(self, part: Part1, chains: list[Chain], logs: list[Path]) -> None:
        self.part, self.logs = part, logs
        self.chain_of = {chain.model: chain for chain in chains}
        self.lines: dict[int, list[str]] = {}
        self.next_line = 0
        self.done = 0
        self.holding: dict[int, str] = {}
        self.reported: set[int] = set()
        self.stories: dict[str, health_story.Story] = {}
        self.failures: list[str] = []
        self.started = self.last_said = time.monotonic()

    def follow(self, processes: list[Any], results: Any) -> None:
        ended: set[int] = set()
        while len(ended) < len(processes):
            try:
                self.take(*results.get(timeout=1.0))
                continue
            except queue.Empty:
                pass
            for number, process in enumerate(processes):
                if number not in ended and not process.is_alive():
                    with contextlib.suppress(queue.Empty):  # what it sent before it ended
                        while True:
                            self.take(*results.get(timeout=0.2))
                    ended.add(number)
                    model = self.holding.pop(number, None)
                    if model is not None or process.exitcode:
                        self.stopped(
                            model,
                            f"worker {number} ended with exit code {process.exitcode}",
                            number,
                        )
            self.progress()
        for index in range(len(self.part.runs)):  # chains no worker could take
            if index not in self.reported:
                day, spec = self.part.runs[index]
                self.item(index, [f"  {day}  {spec.name:<22} not run: no worker left to run it"], 0)

    def take(self, kind: str, number: int, payload: Any) -> None:
        if kind == "start":
            self.holding[number] = payload
        elif kind == "item":
            self.item(*payload)
        elif kind == "done":
            model, story = payload
            self.holding.pop(number, None)
            self.stories[model] = story
        elif kind == "stopped":
            model, reason = payload
            self.holding.pop(number, None)
            self.stopped(model, reason, number)

    def item(self, index: int, lines: list[str], dag_runs: int) -> None:
        self.reported.add(index)
        self.lines[index] = lines
        self.done += dag_runs
        while self.next_line in self.lines:
            for line in self.lines.pop(self.next_line):
                print(line, flush=True)
            self.next_line += 1

    def stopped(self, model: str | None, reason: str, number: int) -> None:
        """Say at once that a chain stopped; its days not run yet are said in the plan's order."""
        log = self.logs[number] if number < len(self.logs) else "its worker's log"
        if model is None:
            print(f"  part 1 worker {number} stopped: {reason} (log: {log})", flush=True)
            return
        left = [(i, day) for i, day in self.chain_of[model].items if i not in self.reported]
        note = (
            f"{model}: its chain of days stopped ({reason}); {len(left)} of its days not run, the "
            f"other models went on (log: {log})"
        )
        self.failures.append(note)
        print(f"  !! {note}", flush=True)
        for index, day in left:
            self.item(index, [f"  {day}  {model:<22} not run: its chain stopped before this day"], 0)

    def progress(self) -> None:
        now = time.monotonic()
        if now - self.last_said < PROGRESS_EVERY_S or self.done >= self.part.total:
            return
        self.last_said = now
        running = ", ".join(sorted(self.holding.values())) or "starting"
        print(
            f"      {self.part.total - self.done} of {self.part.total} DAG runs to go (running: {running}); "
            f"{now - self.started:.0f}s so far" + eta(self.done, self.part.total, now - self.started),
            flush=True,
        )

    def story(self) -> health_story.Story:
        """The health chain's story with the seasonal chain's lines and every stopped chain noted."""
        part = self.part
        story = self.stories.get(part.story_spec.name if part.story_spec else "", health_story.Story())
        if part.seasonal_spec is not None and part.seasonal_spec.name in self.stories:
            story.seasonal = self.stories[part.seasonal_spec.name].seasonal
        story.notes += self.failures
        return story


def sync_dags_to_db() -> None:
    """Write every DAG of the bundles to the metadata DB, as each ``dag.test`` does first: done here
    once before the workers run anything, since two workers writing the same new DAGs at once
    failed (``UNIQUE constraint failed`` on ``dag``). Later syncs find the rows and update them."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.utils.session import create_session

    manager = DagBundlesManager()
    with create_session() as session:
        manager.sync_bundles_to_db(session=session)
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        sync_bag_to_db(bag, bundle.name, bundle.version)


def worker_main(
    number: int,
    jobs: Any,
    results: Any,
    synced: Any,
    story_model: str | None,
    seasonal_model: str | None,
    verbose: bool,
    log_path: str,
) -> None:
    """A spawned worker: its output to ``log_path``, the DAG bag parsed and the tasks' libraries
    imported once, then whole chains from ``jobs`` until it takes None; every item's lines (and
    each chain's story) go back through ``results``."""
    log = open(log_path, "w", buffering=1)  # noqa: SIM115 (the worker's life): Airflow's and MLflow's own output
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    faulthandler.register(signal.SIGUSR1, file=log, all_threads=True)  # `kill -USR1 <pid>`: its stacks
    # Two processes write Airflow's SQLite metadata DB: a writer waits up to a minute for the other
    # one's transaction (sqlite3's default, 5 s, failed a run on a machine at load 15)
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = f"{__name__}.SQLITE_CONNECT_ARGS"
    from airflow.dag_processing.dagbag import DagBag
    from model_factory.airflow.executor import warm_imports
    from model_factory.settings import PROJECT_ROOT
    from model_factory.spec import load_specs

    settings = FactorySettings.from_env()
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    specs = {loaded.spec.name: loaded.spec for loaded in load_specs(settings.specs_dir, settings)[0]}
    warm_imports()
    synced.wait()  # the DAGs are in the metadata DB: no two workers insert them
    lines: list[str] = []
    part = Part1(
        settings,
        bag,
        [],
        specs.get(story_model or ""),
        specs.get(seasonal_model or ""),
        verbose,
        0,
        say=lines.append,
    )
    while (chain := jobs.get()) is not None:
        results.put(("start", number, chain.model))
        story = health_story.Story()
        stopped = None
        for index, day in chain.items:
            try:
                dag_runs = run_item(part, story, date.fromisoformat(day), specs[chain.model])
            except Exception as exc:  # the chain stops here; the worker takes the next chain
                traceback.print_exc(file=log)
                stopped = f"{type(exc).__name__} on {day}: {str(exc)[:300]}"
                lines.append(f"  {day}  {chain.model:<22} stopped: {stopped}")
                dag_runs = 0
            results.put(("item", number, (index, list(lines), dag_runs)))
            lines.clear()
            if stopped:
                results.put(("stopped", number, (chain.model, stopped)))
                break
        else:
            results.put(("done", number, (chain.model, story)))
