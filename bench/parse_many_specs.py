"""How long does the DAG file take to parse with many model specs?

    PYTHONPATH=include .venv/bin/python bench/parse_many_specs.py --specs 200 \
        --out bench/results/parse_many_specs.json

Writes ``--specs`` specs (copies of churn and demand under new names, alternating) into a temp
folder and points FACTORY_SPECS_DIR at it, then measures, each in a fresh process:

- ``DagBag`` parse of dags/model_factory_dags.py (the import the dag-processor runs; its own
  ``dagbag_stats`` duration, the CPU seconds of that parse and the process's wall time including
  Airflow's import);
- the same parse as a task's process does it: Airflow's parsing context names one DAG
  (``model_001__retrain``), so only that model is built (``task_parse``);
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
from pathlib import Path

import yaml

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
TASK_DAG_ID = "model_001__retrain"  # what a task's process parses for (Airflow's parsing context)


def write_specs(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    models = ROOT / "include" / "models"
    bases = [yaml.safe_load((models / f"{m}.yaml").read_text()) for m in ("churn", "demand")]
    for i in range(count):
        raw = dict(bases[i % 2])
        raw["name"] = f"model_{i:03d}"
        (folder / f"model_{i:03d}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def _env(home: Path, specs: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FACTORY_"))}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"), "FACTORY_SPECS_DIR": str(specs),
        "FACTORY_HOME": str(home / "factory"), "PYTHONPATH": str(ROOT / "include"),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    })  # fmt: skip
    return env


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    return time.perf_counter() - t0, done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--parse-only", action="store_true", help="skip reserialize and the dag-processor")
    args = parser.parse_args(argv)
    airflow = str(Path(sys.executable).parent / "airflow")
    result: dict = {"host": platform.node(), "cpus": os.cpu_count(), "specs": args.specs,
                    "load_average_before": os.getloadavg()}  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="many-specs-") as tmp:
        home, specs = Path(tmp) / "airflow", Path(tmp) / "specs"
        write_specs(specs, args.specs)
        env = _env(home, specs)
        dag_file = str(ROOT / "dags" / "model_factory_dags.py")

        # A task's process: the task runner sets these around its parse of the DAG file.
        task_env = env | {"_AIRFLOW_PARSING_CONTEXT_DAG_ID": TASK_DAG_ID,
                          "_AIRFLOW_PARSING_CONTEXT_TASK_ID": "train"}  # fmt: skip
        runs, task_runs = [], []
        for _ in range(args.repeats):  # alternating: the machine's load hits both alike
            for into, run_env in ((runs, env), (task_runs, task_env)):
                wall, done = timed([sys.executable, "-c", PARSE, dag_file], run_env)
                if done.returncode:
                    raise SystemExit(done.stderr[-3000:])
                into.append(json.loads(done.stdout.strip().splitlines()[-1]) | {"process_wall_s": wall})
        result["dagbag"], result["task_parse"] = runs, task_runs
        result["load_average_after"] = os.getloadavg()
        best = min(runs, key=lambda r: r["dagbag_s"])
        parse_s = statistics.median(r["file_parse_s"][0] for r in runs)
        cpu_s = statistics.median(r["dagbag_cpu_s"] for r in runs)
        process_s = min(r["process_wall_s"] for r in runs)
        print(f"DagBag of {args.specs} specs: {best['dags']} DAGs, {best['import_errors']} import errors; "
              f"file parse {parse_s:.2f} s wall, {cpu_s:.2f} s CPU (medians of {args.repeats}), "
              f"process {process_s:.1f} s incl. Airflow import", flush=True)  # fmt: skip
        task_s = statistics.median(r["file_parse_s"][0] for r in task_runs)
        task_cpu = statistics.median(r["dagbag_cpu_s"] for r in task_runs)
        print(f"a task's parse ({TASK_DAG_ID}): {task_runs[0]['dags']} DAGs, {task_s:.2f} s wall, "
              f"{task_cpu:.2f} s CPU; load average {result['load_average_after']}", flush=True)  # fmt: skip
        if args.parse_only:
            return _write(result, args.out)

        wall, done = timed([airflow, "db", "migrate"], env)
        result["db_migrate_s"] = wall
        wall, done = timed([airflow, "dags", "reserialize"], env)
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        result["reserialize_s"] = wall
        print(f"airflow dags reserialize: {wall:.1f} s", flush=True)

        wall, done = timed([airflow, "dag-processor", "--num-runs", "1"], env)
        result["dag_processor_one_loop_s"] = wall
        listed = subprocess.run([airflow, "dags", "list", "-o", "json"], env=env, capture_output=True,
                                text=True)  # fmt: skip
        rows = [line for line in listed.stdout.splitlines() if line.startswith("[")]
        result["dags_in_db"] = len(json.loads(rows[-1])) if rows else None
        print(f"airflow dag-processor --num-runs 1: {wall:.1f} s (start, parse, DB write)", flush=True)
        print(f"DAGs in the metadata DB: {result['dags_in_db']}")

    return _write(result, args.out)


def _write(result: dict, out: Path | None) -> int:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
