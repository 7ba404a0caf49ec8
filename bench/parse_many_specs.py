"""How long does the DAG file take to parse with many model specs?

    PYTHONPATH=include .venv/bin/python bench/parse_many_specs.py --specs 2000 --shards 8 \
        --parse-only --out bench/results/parse_2000_specs.json

Writes ``--specs`` specs (copies of churn and demand under new names, alternating) into a temp
folder, points FACTORY_SPECS_DIR at it and writes ``--shards`` shard DAG files (default: as many
as dags/ has; model_factory.airflow.shards) into a temp dags folder, then measures:

- each shard file's ``DagBag`` parse in its own fresh process, ``--parallel`` at a time as the
  dag-processor's ``parsing_processes`` do (per file: its ``dagbag_stats`` duration and CPU
  seconds; the largest single parse; the sums; the round's wall including each process's
  Airflow import);
- the same parse as a task's process does it: Airflow's parsing context names one DAG
  (``model_001__retrain``) and only its shard file is parsed, building only that model
  (``task_parse``);
- ``airflow dags reserialize`` (parse + write every serialized DAG to a fresh SQLite DB);
- ``airflow dag-processor --num-runs 1`` (one full parsing loop of the real processor).

Airflow's limit per file is ``[core] dagbag_import_timeout`` (30 s by default) and
``[dag_processor] dag_file_processor_timeout`` (50 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from model_factory.airflow.shards import active_count, shard_of, write_shard_files
from result_file import write_result

ROOT = Path(__file__).resolve().parents[1]
PARSE = """
import time, json, resource, sys
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t1, c1 = time.perf_counter(), cpu()
bag = DagBag(dag_folder=sys.argv[1])
t2, c2 = time.perf_counter(), cpu()
stats = [s.duration.total_seconds() if hasattr(s.duration, "total_seconds") else s.duration
         for s in bag.dagbag_stats]
print(json.dumps({"airflow_import_s": t1 - t0, "dagbag_s": t2 - t1, "dagbag_cpu_s": c2 - c1,
                  "file_parse_s": stats, "dags": len(bag.dags),
                  "import_errors": len(bag.import_errors)}))
"""
MEASURE_TIMEOUT_S = 900
TASK_DAG_ID = "model_001__retrain"  # what a task's process parses for (Airflow's parsing context)


def write_specs(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    models = ROOT / "include" / "models"
    bases = [yaml.safe_load((models / f"{m}.yaml").read_text()) for m in ("churn", "demand")]
    for i in range(count):
        raw = dict(bases[i % 2])
        raw["name"] = f"model_{i:03d}"
        (folder / f"model_{i:03d}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def _env(home: Path, specs: Path, dags: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FACTORY_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "FACTORY_SPECS_DIR": str(specs),
            "FACTORY_HOME": str(home / "factory"),
            "PYTHONPATH": str(ROOT / "include"),
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
            # Measure the parse to its end: on a loaded machine a file's wall time (not its CPU) can
            # pass Airflow's 30 s, and a parse cut short measures nothing. The limit in force is reported.
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(MEASURE_TIMEOUT_S),
            "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        }
    )
    return env


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    return time.perf_counter() - t0, done


def parse_shards(files: list[Path], env: dict[str, str], parallel: int) -> dict:
    """Every shard file parsed in its own fresh process, ``parallel`` at a time (what the
    dag-processor does with ``parsing_processes``): each file's parse, and the whole round's wall."""

    def one(path: Path) -> dict:
        wall, done = timed([sys.executable, "-c", PARSE, str(path)], env)
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        return json.loads(done.stdout.strip().splitlines()[-1]) | {"process_wall_s": wall, "file": path.name}

    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        per_file = list(pool.map(one, files))
    round_wall = time.perf_counter() - t0
    largest = max(per_file, key=lambda r: r["dagbag_s"])
    return {
        # the keys bench/suite.py reads: the largest single file's parse, every file's DAGs
        "dagbag_s": largest["dagbag_s"],
        "dagbag_cpu_s": largest["dagbag_cpu_s"],
        "file_parse_s": [largest["file_parse_s"][0]],
        "largest_file": largest["file"],
        "dags": sum(r["dags"] for r in per_file),
        "import_errors": sum(r["import_errors"] for r in per_file),
        "total_parse_cpu_s": sum(r["dagbag_cpu_s"] for r in per_file),
        "total_parse_wall_s": sum(r["dagbag_s"] for r in per_file),
        "round_wall_s": round_wall,
        "parallel": parallel,
        "per_file": per_file,
    }


def time_airflow_commands(env: dict[str, str]) -> dict:
    """``airflow db migrate``, ``dags reserialize`` and one dag-processor loop, timed; the DAGs then
    in the metadata DB."""
    airflow = str(Path(sys.executable).parent / "airflow")
    wall, done = timed([airflow, "db", "migrate"], env)
    figures = {"db_migrate_s": wall}
    wall, done = timed([airflow, "dags", "reserialize"], env)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    figures["reserialize_s"] = wall
    print(f"airflow dags reserialize: {wall:.1f} s", flush=True)

    wall, done = timed([airflow, "dag-processor", "--num-runs", "1"], env)
    figures["dag_processor_one_loop_s"] = wall
    listed = subprocess.run([airflow, "dags", "list", "-o", "json"], env=env, capture_output=True, text=True)
    rows = [line for line in listed.stdout.splitlines() if line.startswith("[")]
    figures["dags_in_db"] = len(json.loads(rows[-1])) if rows else None
    print(f"airflow dag-processor --num-runs 1: {wall:.1f} s (start, parse, DB write)", flush=True)
    print(f"DAGs in the metadata DB: {figures['dags_in_db']}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=200)
    parser.add_argument(
        "--shards", type=int, default=0, help="shard DAG files (default: the number in dags/)"
    )
    parser.add_argument("--parallel", type=int, default=2, help="files parsed at once (parsing_processes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--parse-only", action="store_true", help="skip reserialize and the dag-processor")
    args = parser.parse_args(argv)
    shards = args.shards or active_count(ROOT / "dags") or 1
    result: dict = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "specs": args.specs,
        "shards": shards,
        "dagbag_import_timeout_s": MEASURE_TIMEOUT_S,
        "load_average_before": os.getloadavg(),
    }

    with tempfile.TemporaryDirectory(prefix="many-specs-") as tmp:
        home, specs, dags = Path(tmp) / "airflow", Path(tmp) / "specs", Path(tmp) / "dags"
        write_specs(specs, args.specs)
        files = write_shard_files(dags, shards)
        env = _env(home, specs, dags)
        task_file = files[shard_of(f"{TASK_DAG_ID.split('__')[0]}.yaml", shards)]

        # A task's process: the task runner sets these around its parse of the DAG file.
        task_env = env | {
            "_AIRFLOW_PARSING_CONTEXT_DAG_ID": TASK_DAG_ID,
            "_AIRFLOW_PARSING_CONTEXT_TASK_ID": "train",
        }
        runs, task_runs = [], []
        for _ in range(args.repeats):  # alternating: the machine's load hits both alike
            runs.append(parse_shards(files, env, args.parallel))
            wall, done = timed([sys.executable, "-c", PARSE, str(task_file)], task_env)
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            task_runs.append(json.loads(done.stdout.strip().splitlines()[-1]) | {"process_wall_s": wall})
        result["dagbag"], result["task_parse"] = runs, task_runs
        result["load_average_after"] = os.getloadavg()
        keys = ("dagbag_s", "dagbag_cpu_s", "total_parse_cpu_s", "total_parse_wall_s", "round_wall_s")
        med = {key: statistics.median(r[key] for r in runs) for key in keys}
        print(
            f"{args.specs} specs in {shards} shard files: {runs[0]['dags']} DAGs, "
            f"{runs[0]['import_errors']} import errors; largest file parse {med['dagbag_s']:.2f} s wall, "
            f"{med['dagbag_cpu_s']:.2f} s CPU; all files {med['total_parse_wall_s']:.1f} s wall, "
            f"{med['total_parse_cpu_s']:.1f} s CPU; a round of {shards} files {args.parallel} at a time "
            f"{med['round_wall_s']:.1f} s incl. each process's Airflow import (medians of {args.repeats})",
            flush=True,
        )
        task_s = statistics.median(r["file_parse_s"][0] for r in task_runs)
        task_cpu = statistics.median(r["dagbag_cpu_s"] for r in task_runs)
        print(
            f"a task's parse ({TASK_DAG_ID}): {task_runs[0]['dags']} DAGs, {task_s:.2f} s wall, "
            f"{task_cpu:.2f} s CPU; load average {result['load_average_after']}",
            flush=True,
        )
        if args.parse_only:
            return write_result(result, args.out)

        result |= time_airflow_commands(env)

    return write_result(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
