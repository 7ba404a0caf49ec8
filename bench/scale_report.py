"""The fleet-scale rows of the performance page, from the JSON the scale benches wrote.

    python bench/scale_report.py            # writes bench/results/scale.md

Reads ``bench/results/parse_*specs*.json`` (``parse_many_specs.py``),
``bench/results/*fleet_reads_*.json`` (``fleet_reads.py``) and ``bench/results/nightly_wave_*.json``
(``nightly_wave.py``); each row names its file and the load
average it was measured under (CPU seconds are what to compare across loads: a wall time under a
load of 15 on 2 cores is mostly waiting).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from wave_figures import extrapolations, marginal_per_task

RESULTS = Path(__file__).resolve().parent / "results"


def _results(pattern: str, size_key: str) -> list[tuple[Path, dict]]:
    """Each result file matching ``pattern`` with its data, read once, smallest ``size_key`` first."""
    found = [(path, json.loads(path.read_text())) for path in RESULTS.glob(pattern)]
    return sorted(found, key=lambda item: item[1][size_key])


def _load(data: dict) -> str:
    before = data.get("load_average_before")
    return f"{before[0]:.1f}" if before else "?"


def parse_rows() -> list[str]:
    rows = []
    for path, data in _results("parse_*specs*.json", "specs"):
        runs = data["dagbag"] if isinstance(data.get("dagbag"), list) else [data["dagbag"]]
        largest_wall = statistics.median(r["dagbag_s"] for r in runs)
        largest_cpu = statistics.median(r["dagbag_cpu_s"] for r in runs)
        total_cpu = [r["total_parse_cpu_s"] for r in runs if r.get("total_parse_cpu_s") is not None]
        errors = runs[0].get("import_errors", 0)
        rows.append(
            f"| {data['specs']:,} | {data.get('shards') or 1} | {runs[0]['dags']:,} | {largest_cpu:.2f} s "
            f"| {largest_wall:.1f} s | {f'{statistics.median(total_cpu):.0f} s' if total_cpu else '—'} "
            f"| {errors} | {_load(data)} | `{path.name}` |"
        )
    return rows


def _fleet_row(data: dict, med: dict, tree: str, name: str) -> str:
    page = med["fleet_page"]
    status, show = med["status_table"], med["show_json"]
    first = data.get("status_first_ever") if tree != "before" else None
    first_cell = f"{first['cpu_s']:.1f} s ({first['wall_s']:.1f} s)" if first else "—"
    warm_cpu = f"{page['warm_cpu']:.2f} s (" if "warm_cpu" in page else ""
    store = f"{data['store_days']} nights" if data.get("store_days") else "empty"
    return (
        f"| {data['models']:,} | {store} | {tree} | {status['cpu_s']:.1f} s ({status['wall_s']:.1f} s) "
        f"| {first_cell} | {show['cpu_s']:.1f} s ({show['wall_s']:.1f} s) | {page['first']:.1f} s "
        f"| {warm_cpu}{page['warm']:.1f} s{')' if warm_cpu else ''} | {_load(data)} | `{name}` |"
    )


def fleet_rows() -> list[str]:
    rows = []
    for path, data in _results("*fleet_reads_*.json", "models"):
        ab = bool(data.get("compare"))  # an A/B run: the tree before, same fleet, same session
        rows.append(_fleet_row(data, data["medians"], "after" if ab else "—", path.name))
        if ab:
            rows.append(_fleet_row(data, data["compare"]["medians"], "before", path.name))
    return rows


# ---------------------------------------------------------------------------- the nightly wave


def _s(seconds: float) -> str:
    if seconds >= 7200:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def _done(runs: dict | None) -> str:
    return _s(runs["median"]) if runs else "none ended"


def _half(d: dict) -> str:
    if "half_runs_done_s" not in d:
        return "—"  # a result file without its raw rows
    half = d["half_runs_done_s"]
    return "not reached" if half is None else f"{_s(half)} ({half / d['makespan_s']:.0%})"


def wave_rows() -> list[tuple[Path, dict]]:
    return _results("nightly_wave_*.json", "models")


def wave_table(found: list[tuple[Path, dict]]) -> list[str]:
    rows = []
    for path, d in found:
        per, hand, db = d["per_task"], d["handoff"], d["db"]
        tier = d["run_done_s"]
        failed = d["task_states"].get("failed", 0) + d["run_states"].get("failed", 0)
        makespan = f"**{_s(d['makespan_s'])}**"
        if d.get("timed_out"):
            makespan = f"not reached: stopped at {_s(d['wall_s'])}"
        rows.append(
            f"| {d['models']:,} | {d['tasks_ran']:,} | {d['slots']} | {makespan} "
            f"| {d['busy_share']:.0%} | {hand['ready_to_running_s']['median']:.1f} s "
            f"/ {hand['queued_to_running_s']['median']:.1f} s | {hand['running_s']['median']:.1f} s "
            f"| {per['worker_cpu_s']:.2f} / {per['scheduler_cpu_s']:.2f} / {per['api_cpu_s']:.2f} "
            f"/ {per['services_cpu_s']:.2f} / {per['db_cpu_s']:.2f} s "
            f"| {per['db_transactions']:.0f} | {db['peak_connections']} "
            f"| {_done(tier['tier1'])} / {_done(tier['others'])} "
            f"| {_half(d)} | {failed} "
            f"| {_load(d)} -> {d['load_average_after'][0]:.1f} | `{path.name}` |"
        )
    return rows


def wave_extrapolation(path: Path, d: dict) -> list[str]:
    """The written extrapolation to 10,000 models from the largest wave measured."""
    per = marginal_per_task(d)
    tasks_per_model = len(d.get("upstream") or {}) or d["tasks_ran"] / d["models"]  # the DAG's tasks
    lines = [
        f"Extrapolated from `{path.name}` ({d['models']:,} models, {tasks_per_model:.0f} tasks each) to "
        f"10,000 models ({round(10_000 * tasks_per_model):,} tasks), workers of 2 cores, from the CPU "
        "seconds per task the wave added (each part's spend minus its idle rate): the workers' term "
        "(Celery worker + api-server's execution API + MLflow + S3, all of which scale out with the "
        "workers) divided by their cores, the one "
        "scheduler's term (one loop, at most one core) and the database's (its backends' CPU, one "
        "core).",
        "",
        "| workers (2 cores each) | workers' term | scheduler's term | database's term | bound | makespan |",
        "|---|---|---|---|---|---|",
    ]
    for e in extrapolations(per, tasks_per_model):
        t = e["terms_s"]
        lines.append(
            f"| {e['workers']} | {_s(t['workers'])} | {_s(t['scheduler'])} | {_s(t['database'])} "
            f"| {e['bound']} | **{_s(e['makespan_s'])}** |"
        )
    scaled = per["worker_cpu_s"] + per["api_cpu_s"] + per["services_cpu_s"]
    # workers past which the one scheduler (then the database) bounds the wave instead of them
    past_scheduler = scaled / (2.0 * per["scheduler_cpu_s"])
    past_db = scaled / (2.0 * per["db_cpu_s"])
    lines += [
        "",
        f"Per task the workers' side costs {scaled:.2f} CPU-s, the scheduler {per['scheduler_cpu_s']:.2f} "
        f"and the database {per['db_cpu_s']:.2f}: the workers' term dominates up to about "
        f"{past_scheduler:.0f} two-core workers; past that the single scheduler loop bounds the wave "
        f"(a second scheduler, which Airflow runs active-active, halves it), and the database only past "
        f"about {past_db:.0f} workers.",
    ]
    if "idle_slot_s_with_task_queued" in d:
        n = d["tasks_ran"]
        lines += [
            "",
            f"The worker slots stood idle {d['idle_slot_s_per_task']:.2f} s per task: "
            f"{d['idle_slot_s_with_task_queued'] / n:.2f} s with a task queued (Celery's delivery and "
            f"the task process starting) and {d['idle_slot_s_nothing_queued'] / n:.2f} s with nothing "
            "queued (the scheduler not yet having queued a ready task, or none ready: the wave's ramp "
            "and tail).",
        ]
    return [*lines, ""]


def wave_section() -> list[str]:
    found = wave_rows()
    if not found:
        return []
    return [
        "Nightly wave (`nightly_wave.py`): every model's `<model>__retrain` triggered for one night "
        "at once through the REST API on the production configuration (Celery worker on Redis, "
        "Airflow and MLflow on PostgreSQL, MLflow server, S3), churn-shaped models on 300-row "
        "batches, every tenth one tier 1. Makespan: first task queued -> last task ended. Hand-off: "
        "a task's upstream ended -> it ran (median), and queued -> running. CPU per task, in "
        "order: Celery worker (its task processes included) / scheduler / api-server / MLflow + S3 "
        "/ the Airflow database's backends. Tier 1 / others: median time to a run's end; half the "
        "runs done: when half the runs had ended (its share of the makespan); files named "
        "`_breadth_first` / `_depth_first` ran the "
        "same wave under Airflow's default `weight_rule` and under the factory's `upstream`).",
        "",
        "| models | tasks | worker slots | makespan | slots busy | hand-off / queued->running "
        "| task, median | CPU per task | DB commits per task | DB connections, peak "
        "| tier 1 / others done | half the runs done | failed | load before -> after | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *wave_table(found),
        "",
        *wave_extrapolation(*found[-1]),
    ]


def report() -> str:
    lines = [
        "DAG-file parse (`parse_many_specs.py --parse-only`): every shard file parsed in its own process, "
        "two at a time; the largest single file is what Airflow's `dagbag_import_timeout` judges.",
        "",
        "| specs | shard files | DAGs | largest file, CPU | largest file, wall | all files, CPU "
        "| import errors | load before | result |",
        "|---|---|---|---|---|---|---|---|---|",
        *parse_rows(),
        "",
    ]
    fleet = fleet_rows()
    if fleet:
        lines += [
            "Fleet reads (`fleet_reads.py`; Airflow not asked): `model-factory status --offline` and `show` "
            "as whole processes, CPU (wall), one page of 50 rows; `status` once more the very first time in "
            "a fresh home (it builds the spec index); the view's fleet page (`GET /`), first request of a "
            "fresh app and warm, wall (warm: CPU, then wall, where measured). Store: empty, or N nights of "
            "drift and health reports per model (`--store-days`). Tree: an A/B run (`--compare`) times "
            'the tree before a change ("before") beside the tree after it ("after"), alternating, in the '
            "same session.",
            "",
            "| models | store | tree | `status` | `status`, first ever | `show` | fleet page, first "
            "| fleet page, warm | load before | result |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *fleet,
            "",
        ]
    lines += wave_section()
    return "\n".join(lines)


def main() -> int:
    (RESULTS / "scale.md").write_text(report())
    print(f"wrote {RESULTS / 'scale.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
