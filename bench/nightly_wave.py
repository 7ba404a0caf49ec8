"""A nightly wave: N small models' retrains through the production configuration.

    nice -n 10 python bench/nightly_wave.py --models 100 --out bench/results/nightly_wave_100.json

Generates N specs (copies of churn: LogisticRegression on 300 rows; every tenth one ``tier: "1"``),
uploads one small batch per model, brings up the dev stack's production configuration
(model_factory_dev.stack: scheduler, dag-processor, triggerer, api-server, Celery worker on
Redis, MLflow server, moto S3; Airflow's and MLflow's metadata in two FRESH PostgreSQL databases
``wave_<hex>_airflow`` / ``_mlflow`` that are dropped at the end), waits for every
``<model>__retrain`` DAG, unpauses them and triggers all N for one night through the REST API.

Why triggering is the nightly schedule's wave: a scheduled run and a triggered run differ only in
who inserts the ``dag_run`` row (the scheduler's run-creation step, at most
``max_dagruns_to_create_per_loop`` = 10 per loop, or the API server); from then on both are
scheduled, queued to Celery, run and recorded the same way. Triggering all at once is the herd
without the spread: every model due in the same second, the worst case for the queue. With
``spread_cron`` the same N runs arrive over the spec's hour, so a wave whose makespan here is under
an hour keeps up with its arrivals. The specs carry no schedule, so no run the bench did not ask
for can start.

Measured: makespan (first run queued -> last task ended), from Airflow's ``task_instance`` rows
the hand-off latencies (a task's upstream done -> it is queued -> it runs), the worker slots'
busy share, each component's CPU (process tree, psutil), the Airflow database's load
(``pg_stat_database`` deltas, peak connections, CPU of its backends), failures, and when tier-1
models finished against the others. Then an extrapolation to 10,000 models and W workers from
the per-task figures (``extrapolate``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import yaml
from model_factory.io import storage
from model_factory_dev import demo_data
from model_factory_dev.stack import CELERY, DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL, Stack, StackConfig
from wave_figures import TIER1_EVERY, extrapolations, marginal_per_task, summarize, upstream_of

ROOT = Path(__file__).resolve().parents[1]
NIGHT = "2026-01-05"
TERMINAL = ("success", "failed")
IDLE_S = 20.0  # the stack's idle CPU is measured this long before the trigger
PG_COUNTERS = (
    "xact_commit",
    "xact_rollback",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "blks_read",
    "blks_hit",
)

# ---------------------------------------------------------------------------- the fleet


def write_specs(folder: Path, count: int) -> list[str]:
    """``count`` copies of churn named ``wave_0000``...: no schedule (the bench triggers), no drift
    watch, health or canary DAGs (never triggered here); every TIER1_EVERY-th is tier 1."""
    folder.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load((ROOT / "include" / "models" / "churn.yaml").read_text())
    names = []
    for i in range(count):
        name = f"wave_{i:04d}"
        raw = {
            **base,
            "name": name,
            "schedule": None,
            "source": {**base["source"], "uri": f"${{FACTORY_DATA_ROOT}}/{name}/{{ds}}.csv"},
            "drift": {**base["drift"], "enabled": False},
            "outcomes": {**base["outcomes"], "enabled": False},
            "canary": {**base["canary"], "enabled": False},
            "tags": {"team": "wave", "tier": "1" if i % TIER1_EVERY == 0 else "3"},
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        names.append(name)
    return names


def upload_batches(stack: Stack, names: list[str], rows: int) -> None:
    """One ``rows``-row churn batch of NIGHT per model (the same rows under each model's path)."""
    with tempfile.TemporaryDirectory() as tmp:
        (path,) = demo_data.write_demo_batches(
            Path(tmp), dt.date.fromisoformat(NIGHT), 1, rows=rows, models=["churn"]
        )
        with stack.environ(), ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: storage.upload_file(path, storage.join(stack.data_root, n, f"{NIGHT}.csv")),
                    names,
                )
            )


# ---------------------------------------------------------------------------- measuring


def _pg(stack: Stack):
    import psycopg2

    url = stack.config.postgres_url.rsplit("/", 1)[0] + f"/{stack.airflow_db_name}"
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and all its descendants, live and reaped."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            continue
    return total


class Sampler(threading.Thread):
    """Every ``period_s``: each component's tree CPU, the Airflow DB's connections and the CPU of
    its backends (the last value seen per backend pid), and the runs' states."""

    def __init__(self, stack: Stack, period_s: float = 2.0):
        super().__init__(daemon=True)
        self.stack, self.period_s = stack, period_s
        self.stop_event = threading.Event()
        self.cpu: dict[str, float] = {}
        self.backend_cpu: dict[int, float] = {}
        self.backend_cpu_start: dict[int, float] = {}
        self.peak_connections = 0
        self.samples = 0
        self.runs: dict[str, int] = {}
        self.conn = _pg(stack)

    def components_cpu(self) -> dict[str, float]:
        return {n: _tree_cpu(c.pid) for n, c in self.stack.components.items() if c.pid}

    def sample(self) -> None:
        self.cpu = self.components_cpu()
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            pids = [row[0] for row in cur.fetchall()]
            cur.execute("SELECT state, count(*) FROM dag_run GROUP BY state")
            self.runs = dict(cur.fetchall())
        self.peak_connections = max(self.peak_connections, len(pids))
        for pid in pids:
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            self.backend_cpu_start.setdefault(pid, t.user + t.system)
            self.backend_cpu[pid] = t.user + t.system
        self.samples += 1

    def db_backend_cpu(self) -> float:
        return sum(self.backend_cpu[p] - self.backend_cpu_start[p] for p in self.backend_cpu)

    def run(self) -> None:
        while not self.stop_event.wait(self.period_s):
            try:
                self.sample()
            except Exception as exc:  # a sample lost is reported, not fatal
                print(f"sampler: {exc}", file=sys.stderr, flush=True)


def pg_counters(conn) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database WHERE datname = current_database()"
        )
        return dict(zip(PG_COUNTERS, cur.fetchone(), strict=True))


def read_task_rows(conn, dag_ids: set[str]) -> tuple[list[dict], dict[tuple[str, str], dict]]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT dag_id, run_id, task_id, state, try_number, queued_dttm, start_date, end_date, "
            "priority_weight FROM task_instance"
        )
        tasks = [
            dict(
                zip(
                    (
                        "dag_id",
                        "run_id",
                        "task_id",
                        "state",
                        "try_number",
                        "queued",
                        "start",
                        "end",
                        "priority",
                    ),
                    r,
                    strict=True,
                )
            )
            for r in cur.fetchall()
            if r[0] in dag_ids
        ]
        cur.execute("SELECT dag_id, run_id, state, queued_at, start_date, end_date FROM dag_run")
        runs = {
            (r[0], r[1]): dict(zip(("state", "queued", "start", "end"), r[2:], strict=True))
            for r in cur.fetchall()
            if r[0] in dag_ids
        }
    return tasks, runs


def dag_upstream(stack: Stack, dag_id: str) -> dict[str, list[str]]:
    listed = stack.client().get(f"/api/v2/dags/{dag_id}/tasks")["tasks"]
    return upstream_of({t["task_id"]: t["downstream_task_ids"] for t in listed})


# ---------------------------------------------------------------------------- the run


def bring_up(args: argparse.Namespace, home: Path, names: list[str]) -> Stack:
    config = StackConfig(
        home=home,
        executor=CELERY,
        postgres_url=args.postgres_url,
        redis_url=args.redis_url,
        name=f"wave_{secrets.token_hex(4)}",  # fresh databases wave_<hex>_airflow/_mlflow, dropped at stop
        specs_dir=home / "specs",
        worker_concurrency=args.concurrency,
        parallelism=args.parallelism,
        start_timeout_s=600,
    )
    stack = Stack(config)
    t0 = time.perf_counter()
    stack.start()
    print(f"stack up in {time.perf_counter() - t0:.0f} s ({stack.airflow_db_name})", flush=True)
    upload_batches(stack, names, args.rows)
    api = stack.client()
    t0 = time.perf_counter()
    deadline = time.monotonic() + args.parse_timeout
    while (got := api.get("/api/v2/dags", dag_id_pattern="__retrain", limit=1)["total_entries"]) < len(names):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {got} of {len(names)} retrain DAGs parsed: {api.import_errors()[:3]}")
        time.sleep(5)
    stack.timings["all_dags_parsed_s"] = time.perf_counter() - t0
    api.request(
        "PATCH",
        "/api/v2/dags",
        params={"dag_id_pattern": "__retrain", "limit": len(names)},
        json={"is_paused": False},
    )
    print(
        f"{len(names)} retrain DAGs parsed and unpaused in {stack.timings['all_dags_parsed_s']:.0f} s",
        flush=True,
    )
    return stack


def run_wave(stack: Stack, names: list[str], timeout_s: float) -> dict:
    api, dag_ids = stack.client(), {f"{n}__retrain" for n in names}
    conn = _pg(stack)
    sampler = Sampler(stack)
    time.sleep(5)  # let the unpause settle, then the components' idle CPU over IDLE_S
    idle0, t_idle = sampler.components_cpu(), time.perf_counter()
    time.sleep(IDLE_S)
    sampler.sample()
    idle_s = time.perf_counter() - t_idle
    cpu0, pg0, load0 = dict(sampler.cpu), pg_counters(conn), os.getloadavg()
    t0 = time.perf_counter()
    sampler.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda d: api.trigger(d, conf={"ds": NIGHT}, run_id=f"wave__{NIGHT}"), sorted(dag_ids)))
    triggered_s = time.perf_counter() - t0
    print(f"triggered {len(dag_ids)} runs in {triggered_s:.1f} s", flush=True)
    deadline = time.monotonic() + timeout_s
    while sum(sampler.runs.get(s, 0) for s in TERMINAL) < len(dag_ids) and time.monotonic() < deadline:
        time.sleep(10)
        print(
            f"  {time.perf_counter() - t0:6.0f} s  runs {sampler.runs}  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    wall = time.perf_counter() - t0
    sampler.stop_event.set()
    sampler.join()
    sampler.sample()
    pg1 = pg_counters(conn)
    tasks, runs = read_task_rows(conn, dag_ids)
    return {
        "wall_s": wall,
        "timed_out": wall >= timeout_s,
        "triggered_s": triggered_s,
        "load_average_before": load0,
        "load_average_after": os.getloadavg(),
        "cpu_s": {k: sampler.cpu.get(k, 0.0) - cpu0.get(k, 0.0) for k in sampler.cpu},
        "idle_cpu_per_s": {k: (cpu0.get(k, 0.0) - idle0.get(k, 0.0)) / idle_s for k in cpu0},
        "db": {
            "database": stack.airflow_db_name,
            "deltas": {k: pg1[k] - pg0[k] for k in PG_COUNTERS},
            "sampler_queries": sampler.samples * 2,
            "peak_connections": sampler.peak_connections,
            "backend_cpu_s": sampler.db_backend_cpu(),
            "pg_stat_statements": "not loaded (shared_preload_libraries is empty on the shared server; "
            "loading it needs a restart that would stop everyone else's databases)",
        },
        "tasks": tasks,
        "runs": runs,
        "upstream": dag_upstream(stack, sorted(dag_ids)[0]),
    }


def _when(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def refigure(path: Path) -> dict:
    """A result file's figures computed again (by this wave_figures) from the raw rows it keeps."""
    result = json.loads(path.read_text())
    keys = ("dag_id", "task_id", "state", "try_number", "queued", "start", "end", "priority")
    tasks = []
    for row in result["task_rows"]:
        task = dict(zip(keys, row, strict=True)) | {"run_id": f"wave__{result['night']}"}
        tasks.append(task | {k: _when(task[k]) for k in ("queued", "start", "end")})
    runs = {
        (d, f"wave__{result['night']}"): {
            "state": state,
            "queued": _when(q),
            "start": _when(s),
            "end": _when(e),
        }
        for d, state, q, s, e in result["run_rows"]
    }
    raw = {k: result[k] for k in ("cpu_s", "idle_cpu_per_s", "db", "wall_s")}
    raw |= {"tasks": tasks, "runs": runs, "upstream": result["upstream"]}
    names = [d.removesuffix("__retrain") for d, *_ in result["run_rows"]]
    result.update(summarize(raw, names, result["worker_concurrency"]))
    tasks_per_model = len(result["upstream"])  # the DAG's tasks (a wave cut short ran fewer)
    result["extrapolation_10000"] = extrapolations(marginal_per_task(result), tasks_per_model)
    return result


def wave_result(
    raw: dict, names: list[str], timings: dict[str, float], rows: int, concurrency: int, parallelism: int
) -> dict:
    """The wave's figures (summarize) with the machine, the settings, every task's and run's row,
    the DAG's upstream map and the extrapolation to 10,000 models."""
    result = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "niceness": os.nice(0),
        "night": NIGHT,
        "rows_per_batch": rows,
        "worker_concurrency": concurrency,
        "parallelism": parallelism,
        "stack_timings_s": {k: round(v, 1) for k, v in timings.items()},
        **{
            k: raw[k]
            for k in (
                "wall_s",
                "timed_out",
                "triggered_s",
                "load_average_before",
                "load_average_after",
                "cpu_s",
                "idle_cpu_per_s",
                "db",
            )
        },
        **summarize(raw, names, concurrency),
    }
    result["task_rows"] = [
        [
            t["dag_id"],
            t["task_id"],
            t["state"],
            t["try_number"],
            *(str(t[k]) if t[k] else None for k in ("queued", "start", "end")),
            t["priority"],
        ]
        for t in raw["tasks"]
    ]
    result["run_rows"] = [
        [d, r["state"], *(str(r[k]) if r[k] else None for k in ("queued", "start", "end"))]
        for (d, _), r in raw["runs"].items()
    ]
    result["upstream"] = raw["upstream"]
    tasks_per_model = len(result["upstream"])  # the DAG's tasks (a wave cut short ran fewer)
    result["extrapolation_10000"] = (
        extrapolations(marginal_per_task(result), tasks_per_model) if result["per_task"] else []
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker slots")
    parser.add_argument("--parallelism", type=int, default=8, help="[core] parallelism (queued + running)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up on the wave after this")
    parser.add_argument("--parse-timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the stack's home (logs) afterwards")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--refigure", type=Path, help="recompute a result file's figures from its rows")
    args = parser.parse_args(argv)
    if args.refigure:
        args.refigure.write_text(json.dumps(refigure(args.refigure), indent=2, default=str))
        print(f"rewrote {args.refigure}")
        return 0

    home = Path(tempfile.mkdtemp(prefix="nightly-wave-"))
    names = write_specs(home / "specs", args.models)
    stack = bring_up(args, home, names)
    try:
        raw = run_wave(stack, names, args.timeout)
    except BaseException:
        print(stack.diagnostics())
        raise
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    result = wave_result(raw, names, stack.timings, args.rows, args.concurrency, args.parallelism)
    print(
        json.dumps(
            {k: result[k] for k in ("makespan_s", "busy_share", "task_states", "per_task", "handoff")},
            indent=1,
            default=str,
        )
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
