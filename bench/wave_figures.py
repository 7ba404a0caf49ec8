"""The nightly wave's figures, from Airflow's task_instance/dag_run rows and the measured CPU:
pure functions (no Airflow, no database), so ``nightly_wave.py``'s JSON can be re-read and tested.

Task rows are dicts with ``dag_id``, ``run_id``, ``task_id``, ``state``, ``try_number``,
``queued``, ``start``, ``end`` (datetimes or None) and ``priority``; run rows map
``(dag_id, run_id)`` to ``state``, ``queued``, ``start``, ``end``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence

TIER1_EVERY = 10  # every tenth model of the wave is tier 1 (priority weight 100 instead of 1)
WORKER_CORES = 2.0  # the extrapolation's worker machines: this machine's size


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """Median, p90, p99, mean and max of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "mean": statistics.fmean(ordered),
        "max": ordered[-1],
    }


def upstream_of(downstream: dict[str, Iterable[str]]) -> dict[str, list[str]]:
    """A DAG's ``task -> downstream tasks`` turned into ``task -> upstream tasks``."""
    upstream: dict[str, list[str]] = {task: [] for task in downstream}
    for task, children in downstream.items():
        for child in children:
            upstream.setdefault(child, []).append(task)
    return upstream


def handoffs(
    tasks: list[dict], runs: dict[tuple[str, str], dict], upstream: dict[str, list[str]]
) -> list[dict]:
    """Per task instance that ran: when it was ready (its upstream tasks all ended, or its run
    started, for a first task), and the seconds ready -> queued (the scheduler), queued -> running
    (broker, a free worker slot, the worker starting it) and running -> ended (the task itself).

    ``tasks``: task_instance rows (dag_id, run_id, task_id, queued, start, end as datetimes);
    ``runs``: (dag_id, run_id) -> its dag_run row (``start``)."""
    ended = {(t["dag_id"], t["run_id"], t["task_id"]): t["end"] for t in tasks}
    out = []
    for t in tasks:
        if t["queued"] is None or t["start"] is None or t["end"] is None:
            continue  # skipped or never ran
        ups = [ended.get((t["dag_id"], t["run_id"], u)) for u in upstream.get(t["task_id"], [])]
        if any(u is None for u in ups):
            continue  # an upstream task did not run (skipped): no ready time to measure from
        ready = max(ups) if ups else runs[(t["dag_id"], t["run_id"])]["start"]
        out.append(
            {
                "task_id": t["task_id"],
                "ready_to_queued_s": (t["queued"] - ready).total_seconds(),
                "queued_to_running_s": (t["start"] - t["queued"]).total_seconds(),
                "ready_to_running_s": (t["start"] - ready).total_seconds(),
                "running_s": (t["end"] - t["start"]).total_seconds(),
            }
        )
    return out


def slot_use(tasks: list[dict], slots: int) -> dict[str, float]:
    """Makespan (first queued -> last ended), the worker slots' busy share over it, and the slot
    time per task that was not spent running one (scheduler, broker and start-up gaps, idle tail)."""
    ran = [t for t in tasks if t["queued"] is not None and t["start"] is not None and t["end"] is not None]
    if not ran:
        return {"makespan_s": 0.0, "busy_share": 0.0, "idle_slot_s_per_task": 0.0, "tasks": 0}
    first = min(t["queued"] for t in ran)
    last = max(t["end"] for t in ran)
    makespan = (last - first).total_seconds()
    busy = sum((t["end"] - t["start"]).total_seconds() for t in ran)
    capacity = slots * makespan
    return {
        "makespan_s": makespan,
        "busy_share": busy / capacity if capacity else 0.0,
        "idle_slot_s_per_task": (capacity - busy) / len(ran),
        "tasks": len(ran),
    }


def slot_starvation(tasks: list[dict], slots: int) -> dict[str, float]:
    """Idle worker-slot seconds over the wave, split by whether a queued task was waiting (the
    hand-off from the broker to a running task: Celery delivery, the task process starting) or
    nothing was queued (the scheduler had not queued the next ready task yet, or no task was
    ready: dependencies, the wave's ramp and tail)."""
    events: list[tuple[dt.datetime, int, int]] = []  # (time, queued delta, running delta)
    for t in tasks:
        if t["queued"] is None or t["start"] is None or t["end"] is None:
            continue
        events += [(t["queued"], 1, 0), (t["start"], -1, 1), (t["end"], 0, -1)]
    events.sort(key=lambda e: e[0])
    queued = running = 0
    with_queue = without_queue = 0.0
    for (at, dq, dr), (following, _, _) in itertools.pairwise(events):
        queued, running = queued + dq, running + dr
        span = (following - at).total_seconds()
        idle = max(0, slots - running)
        with_queue += min(idle, queued) * span
        without_queue += (idle - min(idle, queued)) * span
    return {"idle_slot_s_with_task_queued": with_queue, "idle_slot_s_nothing_queued": without_queue}


def extrapolate(per_task: dict[str, float], tasks: int, workers: int, cores_per_worker: float) -> dict:
    """The wave's makespan for ``tasks`` tasks on ``workers`` workers of ``cores_per_worker`` cores,
    from measured CPU seconds per task: the workers' share (worker + api-server + MLflow + S3,
    which scale out with them), the one scheduler's (a single loop: one core at most) and the
    database's (its backends; one server). The largest term is the bound; the others run beside it."""
    scaled = per_task["worker_cpu_s"] + per_task.get("api_cpu_s", 0.0) + per_task.get("services_cpu_s", 0.0)
    terms = {
        "workers": tasks * scaled / (workers * cores_per_worker),
        "scheduler": tasks * per_task["scheduler_cpu_s"],
        "database": tasks * per_task["db_cpu_s"] / per_task.get("db_cores", 1.0),
    }
    bound = max(terms, key=lambda k: terms[k])
    return {"tasks": tasks, "workers": workers, "terms_s": terms, "bound": bound, "makespan_s": terms[bound]}


def _half_done(ends: list[float], runs: int) -> float | None:
    half = (runs + 1) // 2
    return sorted(ends)[half - 1] if len(ends) >= half else None


def summarize(raw: dict, names: list[str], slots: int) -> dict:
    tasks, runs, upstream = raw["tasks"], raw["runs"], raw["upstream"]
    ran = [t for t in tasks if t["queued"] is not None and t["end"] is not None]  # run by a worker
    states: dict[str, int] = defaultdict(int)
    for t in tasks:
        states[t["state"] or "none"] += 1
    hand = handoffs(tasks, runs, upstream)
    n_tasks = len(ran)
    use = slot_use(tasks, slots) | slot_starvation(tasks, slots)
    first = min((r["queued"] for r in runs.values() if r["queued"]), default=None)
    done_at = {d: (r["end"] - first).total_seconds() for (d, _), r in runs.items() if r["end"] and first}
    tier1 = [v for d, v in done_at.items() if int(d[5:9]) % TIER1_EVERY == 0]
    others = [v for d, v in done_at.items() if int(d[5:9]) % TIER1_EVERY != 0]
    cpu = raw["cpu_s"]
    per_task = (
        {
            "worker_cpu_s": cpu.get("worker", 0.0) / n_tasks,
            "scheduler_cpu_s": cpu.get("scheduler", 0.0) / n_tasks,
            "api_cpu_s": cpu.get("api-server", 0.0) / n_tasks,
            "services_cpu_s": (cpu.get("mlflow", 0.0) + cpu.get("s3", 0.0)) / n_tasks,
            "dag_processor_cpu_s": cpu.get("dag-processor", 0.0) / n_tasks,
            "db_cpu_s": raw["db"]["backend_cpu_s"] / n_tasks,
            "db_transactions": raw["db"]["deltas"]["xact_commit"] / n_tasks,
            "db_rows_written": sum(
                raw["db"]["deltas"][k] for k in ("tup_inserted", "tup_updated", "tup_deleted")
            )
            / n_tasks,
        }
        if n_tasks
        else {}
    )
    idle = raw.get("idle_cpu_per_s", {})
    above_idle = (
        {name: (spent - idle.get(name, 0.0) * raw["wall_s"]) / n_tasks for name, spent in cpu.items()}
        if n_tasks
        else {}
    )
    by_task: dict[str, list[float]] = defaultdict(list)
    for h in hand:
        by_task[h["task_id"]].append(h["running_s"])
    return {
        "models": len(names),
        "tasks_ran": n_tasks,
        "task_states": dict(states),
        "run_states": {
            s: sum(1 for r in runs.values() if r["state"] == s) for s in {r["state"] for r in runs.values()}
        },
        "failed_tasks": sorted({(t["dag_id"], t["task_id"]) for t in tasks if t["state"] == "failed"})[:20],
        "retried_tasks": sum(1 for t in tasks if (t["try_number"] or 0) > 1),
        **use,
        "slots": slots,
        "handoff": {
            key: spread([h[key] for h in hand])
            for key in ("ready_to_queued_s", "queued_to_running_s", "ready_to_running_s", "running_s")
        },
        "running_s_by_task": {k: spread(v) for k, v in sorted(by_task.items())},
        "run_done_s": {"tier1": spread(tier1), "others": spread(others)},
        # When half the wave's runs had ended (None: fewer ended): what depth-first (weight_rule
        # "upstream") changes while the makespan stays the same work.
        "half_runs_done_s": _half_done(list(done_at.values()), len(names)),
        "per_task": per_task,
        "cpu_s_per_task_above_idle": above_idle,
    }


def extrapolations(per_task: dict, tasks_per_model: float) -> list[dict]:
    tasks = round(10_000 * tasks_per_model)
    return [extrapolate(per_task, tasks, w, WORKER_CORES) for w in (1, 4, 16, 64)]


def marginal_per_task(result: dict) -> dict[str, float]:
    """CPU seconds per task that the wave added to each part (its spend minus the part's idle rate
    over the wave's wall time): what a larger wave costs per task on a machine that is not shared.
    A result without an idle measurement gives its gross figures."""
    above = result.get("cpu_s_per_task_above_idle") or {}
    if not above:
        return dict(result["per_task"])
    return {
        "worker_cpu_s": max(0.0, above.get("worker", 0.0)),
        "scheduler_cpu_s": max(0.0, above.get("scheduler", 0.0)),
        "api_cpu_s": max(0.0, above.get("api-server", 0.0)),
        # MLflow's idle rate is taken right after its start (its job consumers starting): gross
        "services_cpu_s": result["per_task"]["services_cpu_s"],
        "db_cpu_s": result["per_task"]["db_cpu_s"],  # backends' CPU is sampled during the wave only
    }
