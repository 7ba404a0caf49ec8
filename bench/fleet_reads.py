"""How fast are the fleet reads (`status`, `show`, the view's fleet page) at many models?

    PYTHONPATH=include .venv/bin/python bench/fleet_reads.py --models 10000 \
        --out bench/results/fleet_reads_10000.json

Builds a fleet in a temp folder: ``--models`` specs (copies of churn and demand under new names,
as ``parse_many_specs`` writes them) and an MLflow SQLite registry holding, per model, two versions
(v1 blessed and champion, v2 rejected, each with the tags the factory writes: decision, reason,
holdout metric, checklist). The registry rows are inserted in bulk with SQLAlchemy into the
tables MLflow created (one client call per row would take an hour at 10,000 models); what is
timed are the product's own reads, through MLflow's client, unchanged. Airflow is not asked
(``--offline``): its part is one query per page for the rows shown.

Measured, medians of ``--repeats``:

- ``model-factory status --offline`` as a whole process (table and ``--json``), wall and CPU; the
  very first one in a fresh home, which builds the spec index (``io/fleet_index.py``), apart as
  ``status_first_ever``;
- ``model-factory show <one model> --offline --json``, wall and CPU;
- the view's fleet page (``GET /`` of the console app, first page, and a filtered page), first
  request of a fresh app (the specs' parse) and then warm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from parse_many_specs import write_specs  # noqa: E402


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORY_", "MLFLOW_TRACKING"))}
    return env | {
        "FACTORY_HOME": str(home / "factory"),
        "FACTORY_SPECS_DIR": str(home / "specs"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "PYTHONPATH": str(ROOT / "include"),
        "COLUMNS": "200",
    }


def build_registry(uri: str, names: list[str]) -> None:
    """Two versions a model with the factory's tags, v1 the champion; rows inserted in bulk."""
    import sqlalchemy as sa
    from mlflow.tracking import MlflowClient
    from model_factory.io import tag_schema

    MlflowClient(uri, uri).search_registered_models(max_results=1)  # MLflow creates its tables
    now = int(time.time() * 1000)
    ws = {"workspace": "default"}
    models, versions, tags, aliases = [], [], [], []
    for i, name in enumerate(names):
        metric = "roc_auc" if i % 2 == 0 else "rmse"
        models.append({"name": name, "creation_time": now, "last_updated_time": now, **ws})
        for version, decision in ((1, "blessed"), (2, "rejected")):
            versions.append(
                {
                    "name": name,
                    "version": version,
                    "creation_time": now + version,
                    "last_updated_time": now,
                    "current_stage": "None",
                    "source": f"file:///nowhere/{name}/{version}",
                    "run_id": None,
                    "status": "READY",
                    "storage_location": f"file:///nowhere/{name}/{version}",
                    **ws,
                }
            )
            for key, value in (
                (tag_schema.DECISION, decision),
                (tag_schema.DECISION_REASON, f"{decision} by the gates"),
                (tag_schema.holdout_metric(metric), "0.81"),
                (tag_schema.CHECKLIST, "passed"),
            ):
                tags.append({"name": name, "version": version, "key": key, "value": value, **ws})
        aliases.append({"name": name, "alias": "champion", "version": 1, **ws})
    engine = sa.create_engine(uri)
    meta = sa.MetaData()
    meta.reflect(
        engine, only=["registered_models", "model_versions", "model_version_tags", "registered_model_aliases"]
    )
    with engine.begin() as conn:
        conn.execute(meta.tables["registered_models"].insert(), models)
        conn.execute(meta.tables["model_versions"].insert(), versions)
        conn.execute(meta.tables["model_version_tags"].insert(), tags)
        conn.execute(meta.tables["registered_model_aliases"].insert(), aliases)
    engine.dispose()


def timed_process(argv: list[str], env: dict[str, str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0,):
        raise SystemExit(f"{argv} exited {done.returncode}: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "stdout_bytes": len(done.stdout)}


PAGE = """
import json, sys, time
from fastapi.testclient import TestClient
from model_factory.console.app import ConsoleConfig, create_app
client = TestClient(create_app(ConsoleConfig(require_user=lambda: "ops")))
out = {}
for label, path in (("first", "/"), ("warm", "/"), ("warm_again", "/"), ("filtered", "/?q=model_042"),
                    ("json_page", "/api/fleet?page=3")):
    t0 = time.perf_counter()
    response = client.get(path)
    out[label] = time.perf_counter() - t0
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    out[label + "_bytes"] = len(response.content)
print(json.dumps(out))
"""


def fleet_page(env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", PAGE], env=env, capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    cli = str(Path(sys.executable).parent / "model-factory")
    result: dict = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "models": args.models,
        "load_average_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="fleet-reads-") as tmp:
        home = Path(tmp)
        write_specs(home / "specs", args.models)
        names = sorted(path.stem for path in (home / "specs").glob("*.yaml"))
        t0 = time.perf_counter()
        build_registry(f"sqlite:///{home / 'mlflow.db'}", names)
        result["build_registry_s"] = time.perf_counter() - t0
        env = _env(home)
        one = names[len(names) // 2]
        # the first process in a fresh home builds the spec index (io/fleet_index.py): timed apart
        result["status_first_ever"] = timed_process([cli, "status", "--offline"], env)
        runs: dict[str, list] = {"status_table": [], "status_json": [], "show_json": [], "fleet_page": []}
        for _ in range(args.repeats):
            runs["status_table"].append(timed_process([cli, "status", "--offline"], env))
            runs["status_json"].append(timed_process([cli, "status", "--offline", "--json"], env))
            runs["show_json"].append(timed_process([cli, "show", one, "--offline", "--json"], env))
            runs["fleet_page"].append(fleet_page(env))
        result["runs"] = runs
    result["load_average_after"] = os.getloadavg()
    med = {
        name: {key: statistics.median(run[key] for run in found) for key in found[0]}
        for name, found in runs.items()
    }
    result["medians"] = med
    for name in ("status_table", "status_json", "show_json"):
        print(
            f"{name}: {med[name]['wall_s']:.2f} s wall, {med[name]['cpu_s']:.2f} s CPU "
            f"(whole process, {args.models} models)"
        )
    page = med["fleet_page"]
    print(
        f"fleet page: first {page['first']:.2f} s, warm {page['warm']:.2f} s, "
        f"filtered {page['filtered']:.2f} s, JSON page {page['json_page']:.2f} s"
    )
    first = result["status_first_ever"]
    print(f"status, first ever (builds the index): {first['wall_s']:.2f} s wall, {first['cpu_s']:.2f} s CPU")
    print(f"load average {result['load_average_before']} -> {result['load_average_after']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
