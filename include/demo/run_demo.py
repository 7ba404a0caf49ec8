"""The demo: several days of batches for every demo model, run through Airflow, then a summary.

Each (day, model) is one real DAG run executed by Airflow in this process (``dag.test``),
against the embedded SQLite metadata DB, so the runs show up in the Airflow UI afterwards.
Run via ``make demo``; it expects AIRFLOW_HOME to be migrated (the Makefile does it).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

from model_factory import demo_data
from model_factory.config import PROJECT_ROOT, FactorySettings
from model_factory.spec import load_specs
from model_factory.summary import format_table, model_rows

START = date(2026, 1, 5)
DAYS = 6
FAULTS = {("churn", 3): "unseen_category", ("demand", 4): "dropped_column"}


def generate(settings: FactorySettings, days: int) -> Path:
    root = Path(urlparse(settings.data_root).path)
    demo_data.write_demo_batches(root, START, days, faults=FAULTS)
    return root


def run_dag(dag, day: date) -> tuple[str, dict[str, str], str]:
    """Run one DAG for one batch date through Airflow; return run state, task states, log.

    A second run of the same date replaces the first (``dag.test`` does that itself).
    """
    logical = datetime(day.year, day.month, day.day, tzinfo=UTC)
    with captured_output() as read_log:
        run = dag.test(logical_date=logical)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    return str(run.state), states, read_log()


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


DRIFTED = {"churn": 0.8}  # covariate shift of the production batch after the demo days


def _write_production_batch(settings: FactorySettings, model: str, day: date, shift: float) -> Path:
    root = Path(urlparse(settings.data_root).path)
    df = demo_data.generate_batch(model, day, rows=2000, covariate_shift=shift)
    return demo_data.write_batch(df, root / model / f"{day.isoformat()}.csv")


def drift_phase(settings: FactorySettings, specs, day: date) -> None:
    """A new production day arrives, drifted for churn: each model's watch DAG checks it, and the
    Airflow scheduler (not this script) starts the retrain the drift asset event asks for."""
    from model_factory.stack import Stack, StackConfig

    for spec in specs:
        _write_production_batch(settings, spec.name, day, DRIFTED.get(spec.name, 0.0))
    print(f"\nproduction batch for {day}: " + ", ".join(
        f"{s.name} (covariate shift {DRIFTED.get(s.name, 0.0):g})" for s in specs))  # fmt: skip
    print("starting Airflow's scheduler, dag-processor, triggerer and api-server (LocalExecutor) ...",
          flush=True)  # fmt: skip
    config = StackConfig(
        home=settings.home,
        mlflow_server=False,
        s3=False,
        env={
            "FACTORY_HOME": str(settings.home),
            "FACTORY_STORE_URI": settings.store_uri,
            "FACTORY_DATA_ROOT": settings.data_root,
        },
    )
    started = time.perf_counter()
    with Stack(config) as stack:
        api = stack.client()
        print(f"  up in {time.perf_counter() - started:.0f}s; API {stack.api_url}, logs in {stack.logs}")
        watches = {}
        for spec in specs:
            for kind in ("retrain", "drift_watch"):
                api.wait_for_dag(f"{spec.name}__{kind}")
                api.unpause(f"{spec.name}__{kind}")
            run = api.trigger(f"{spec.name}__drift_watch", conf={"ds": str(day)})
            watches[spec.name] = run["dag_run_id"]
        fired = []
        for spec in specs:
            dag_id = f"{spec.name}__drift_watch"
            run = api.wait_for_run(dag_id, watches[spec.name], timeout_s=600)
            states = {t["task_id"]: t["state"] for t in api.task_instances(dag_id, watches[spec.name])}
            checked = states.get("check") == "success"
            check = api.xcom(dag_id, watches[spec.name], "check") if checked else None
            verdict = check["status"] if check else states.get("check")
            print(f"  {dag_id:<22} {run['state']:<8} check: {verdict}; "
                  f"fire_retrain: {states.get('fire_retrain')}")  # fmt: skip
            if check:
                for reason in check["reasons"][:3]:
                    print(f"      - {reason}")
                print(f"      report: {check['report_uri']}")
            if states.get("fire_retrain") == "success":
                fired.append(spec.name)
        for name in fired:
            dag_id = f"{name}__retrain"
            deadline = time.monotonic() + 180
            runs: list[dict] = []
            while time.monotonic() < deadline and not runs:
                runs = [r for r in api.runs(dag_id) if r["run_type"] == "asset_triggered"]
                time.sleep(1)
            if not runs:
                print(f"  {dag_id}: no asset-triggered run within 180 s (see {stack.logs})")
                continue
            run = api.wait_for_run(dag_id, runs[-1]["dag_run_id"], timeout_s=600)
            ok = run["state"] == "success"
            registered = api.xcom(dag_id, run["dag_run_id"], "register") if ok else None
            outcome = (f"v{registered['version']} {registered['status']}, alias {registered['alias']}"
                       if registered else "see the Airflow UI")  # fmt: skip
            print(f"  {dag_id:<22} {run['state']:<8} started by the scheduler on the {name}__drift "
                  f"asset event ({run['dag_run_id']}): {outcome}")  # fmt: skip
        for spec in specs:  # leave the embedded state as `make demo` found it: nothing scheduled
            for kind in ("retrain", "drift_watch"):
                api.pause(f"{spec.name}__{kind}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--verbose", action="store_true", help="show Airflow's task logs")
    parser.add_argument("--no-scheduler", action="store_true",
                        help="skip the drift phase that runs under a real Airflow scheduler")  # fmt: skip
    args = parser.parse_args(argv)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)

    settings = FactorySettings.from_env()
    data_root = generate(settings, args.days)
    print(f"demo data: {args.days} days x {len(demo_data.MODELS)} models in {data_root}")
    print(f"  injected faults: {', '.join(f'{m} day {d + 1}: {f}' for (m, d), f in FAULTS.items())}")

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    if bag.import_errors:
        print(f"DAG import errors: {bag.import_errors}", file=sys.stderr)
        return 1
    specs = [loaded.spec for loaded in load_specs(settings.specs_dir)[0]]

    print(f"\nrunning {len(specs) * args.days} DAG runs through Airflow "
          f"(AIRFLOW_HOME={os.environ.get('AIRFLOW_HOME')})")  # fmt: skip
    for offset in range(args.days):
        day = START + timedelta(days=offset)
        for spec in specs:
            started = time.perf_counter()
            state, tasks, log_text = run_dag(bag.dags[f"{spec.name}__retrain"], day)
            if args.verbose:
                print(log_text)
            line = f"  {day}  {spec.name + '__retrain':<18} {state:<8} {time.perf_counter() - started:5.1f}s"
            if state != "success":
                failed = [t for t, s in tasks.items() if s == "failed"]
                line += f"  failed at {','.join(failed)}:"
                line += "".join(f"\n      {r}" for r in failure_reason(log_text))
            print(line, flush=True)

    if not args.no_scheduler:
        drift_phase(settings, specs, START + timedelta(days=args.days))

    print("\nModel factory summary\n")
    print(format_table(model_rows(settings, specs)))
    print(
        "\nLook closer:  make ui   (Airflow UI on http://localhost:8080, MLflow UI on "
        "http://localhost:5000; the Airflow admin password is printed at start-up)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
