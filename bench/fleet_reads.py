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
  request of a fresh app (the specs' parse) and then warm; wall, and the process's CPU per request
  (``*_cpu``: every thread, the test client's included).

``--store-days N`` fills the store as N nights of checks would: per model, N drift reports
(``drift/<model>/<ds>/report.json`` and ``.html``) and N health reports, every tenth model one
quarantined batch. ``--home DIR`` builds the fleet there once and reuses it (several runs, or
trees, on one fleet). ``--compare DIR`` times another tree's ``include/`` (e.g. main's, from
``git worktree``) on the same fleet in the same session: each repeat runs both, the order swapped
every repeat (A B, B A, ...); its runs and medians are under ``compare``.
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


def _env(home: Path, include: Path = ROOT / "include") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORY_", "MLFLOW_TRACKING"))}
    return env | {
        "FACTORY_HOME": str(home / "factory"),
        "FACTORY_SPECS_DIR": str(home / "specs"),
        "FACTORY_STORE_URI": (home / "store").as_uri(),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "PYTHONPATH": str(include),
        "COLUMNS": "200",
    }


def fill_store(store: Path, names: list[str], days: int) -> int:
    """``days`` nights of drift and health reports per model, one quarantine every tenth model;
    the number of files written."""
    written = 0
    first = 20_000  # day numbers from 2024-10-04 on: ISO dates, as the DAGs name their folders
    for i, name in enumerate(names):
        for day in range(days):
            ds = time.strftime("%Y-%m-%d", time.gmtime((first + day) * 86400))
            drift = store / "drift" / name / ds
            drift.mkdir(parents=True, exist_ok=True)
            status = "drift" if (i + day) % 17 == 0 else "no_drift"
            features = {"data_drift": {"features": {"tenure": {"psi": 0.01 * (day % 7)}}}}
            report = {"ds": ds, "status": status, "reasons": [] if status == "no_drift" else ["tenure psi"]}
            (drift / "report.json").write_text(json.dumps(report | features))
            (drift / "report.html").write_text("<html></html>")
            health = store / "health" / name / ds
            health.mkdir(parents=True, exist_ok=True)
            check = {
                "ds": ds,
                "action": "none",
                "reason": "within bounds",
                "expiry": None,
                "retrain_by": None,
            }
            (health / "report.json").write_text(
                json.dumps(check | {"cadence_days": 1, "champion_version": "1"})
            )
            written += 3
        if i % 10 == 0 and days:
            folder = store / "quarantine" / name / ds / "0123456789ab"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "REASON.txt").write_text("Batch quarantined\n- column tenure: 12% nulls\n")
            written += 1
    return written


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
    t0, c0 = time.perf_counter(), time.process_time()
    response = client.get(path)
    out[label] = time.perf_counter() - t0
    out[label + "_cpu"] = time.process_time() - c0
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    out[label + "_bytes"] = len(response.content)
print(json.dumps(out))
"""


def fleet_page(env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", PAGE], env=env, capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _medians(runs: dict[str, list]) -> dict:
    return {
        name: {key: statistics.median(run[key] for run in found) for key in found[0]}
        for name, found in runs.items()
    }


def _build(home: Path, models: int, store_days: int, result: dict) -> list[str]:
    specs = home / "specs"
    if not (home / "built.json").exists():
        write_specs(specs, models)
        names = sorted(path.stem for path in specs.glob("*.yaml"))
        t0 = time.perf_counter()
        build_registry(f"sqlite:///{home / 'mlflow.db'}", names)
        result["build_registry_s"] = time.perf_counter() - t0
        result["store_files"] = fill_store(home / "store", names, store_days)
        (home / "built.json").write_text(json.dumps({"models": models, "store_days": store_days}))
    built = json.loads((home / "built.json").read_text())
    if built != {"models": models, "store_days": store_days}:
        raise SystemExit(f"{home} holds another fleet {built}: use another --home")
    return sorted(path.stem for path in specs.glob("*.yaml"))


def _one_round(cli: str, env: dict[str, str], one: str, runs: dict[str, list]) -> None:
    load = os.getloadavg()[0]
    for name, argv in (
        ("status_table", [cli, "status", "--offline"]),
        ("status_json", [cli, "status", "--offline", "--json"]),
        ("show_json", [cli, "show", one, "--offline", "--json"]),
    ):
        runs[name].append(timed_process(argv, env) | {"load_1min": load})
    runs["fleet_page"].append(fleet_page(env) | {"load_1min": load})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store-days", type=int, default=0, help="nights of drift/health reports per model")
    parser.add_argument(
        "--home", type=Path, help="build the fleet here once and reuse it (default: a temp folder)"
    )
    parser.add_argument("--compare", type=Path, help="another tree's include/ to time alongside, alternating")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    cli = str(Path(sys.executable).parent / "model-factory")
    result: dict = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "models": args.models,
        "store_days": args.store_days,
        "load_average_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="fleet-reads-") as tmp:
        home = args.home or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        names = _build(home, args.models, args.store_days, result)
        sides = {"this": _env(home)}
        if args.compare:
            sides["compare"] = _env(home, args.compare.resolve())
        one = names[len(names) // 2]
        # the first process in a fresh home builds the spec index (io/fleet_index.py): timed apart
        # (a reused --home has its index already: the figure is then a warm one)
        result["status_first_ever"] = timed_process([cli, "status", "--offline"], sides["this"])
        runs: dict[str, dict[str, list]] = {
            side: {"status_table": [], "status_json": [], "show_json": [], "fleet_page": []} for side in sides
        }
        for repeat in range(args.repeats):
            order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
            for side in order:
                _one_round(cli, sides[side], one, runs[side])
        result["runs"] = runs["this"]
    result["load_average_after"] = os.getloadavg()
    result["medians"] = _medians(runs["this"])
    if args.compare:
        result["compare"] = {"include": str(args.compare), "runs": runs["compare"]}
        result["compare"]["medians"] = _medians(runs["compare"])
    for side in sides:
        m = _medians(runs[side])
        label = "" if side == "this" else f"[{args.compare}] "
        for name in ("status_table", "status_json", "show_json"):
            print(
                f"{label}{name}: {m[name]['wall_s']:.2f} s wall, {m[name]['cpu_s']:.2f} s CPU "
                f"(whole process, {args.models} models)"
            )
        page = m["fleet_page"]
        print(
            f"{label}fleet page: first {page['first']:.2f} s, warm {page['warm']:.2f} s "
            f"({page['warm_cpu']:.2f} s CPU), filtered {page['filtered']:.2f} s, "
            f"JSON page {page['json_page']:.2f} s"
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
