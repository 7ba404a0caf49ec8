"""The retrain row: ``<model>__retrain`` under the real scheduler vs a bare script doing the same work.

    python bench/retrain_bench.py --rows 1000000 --repeats 3 [--out bench/results/retrain.json]

Both sides get the same 1M-row churn batch as a CSV, a new one each repeat (its own date, so
neither side reuses anything), and run A B A B ...:

* **factory**: a dev stack (``model_factory_dev.stack``: scheduler, dag-processor, api-server,
  triggerer; LocalExecutor, SQLite metadata and MLflow, as the embedded defaults) with the
  churn spec alone; ``churn__retrain`` is triggered through the REST API and timed from the
  trigger to ``register``'s end (the same work as the script) and to the run's end (adds the
  model card, the data budget and the checklist, which the script does not do);
* **bare script** (``--bare``, a fresh process each time, imports included): read the CSV with
  pandas, validate it with GX ``batch.validate`` and the same suite, split, fit the same pipeline,
  evaluate it and the current champion on the holdout, log the run and the model to MLflow
  (pinned requirements) and register a version, setting ``champion`` when it is better.

Nothing is asserted on time: the JSON holds medians, minimums and every run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODEL = "churn"
FIRST_DAY = dt.date(2026, 3, 2)


def bench_spec(folder: Path) -> Path:
    """The shipped churn spec training on its own day only, with no drift watch or canary."""
    import yaml

    spec = yaml.safe_load((REPO / "include" / "models" / f"{MODEL}.yaml").read_text())
    spec["training"] = {"window_batches": 1}
    spec["drift"] = {"enabled": False}
    spec["canary"] = {"enabled": False}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{MODEL}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def write_batch(path: Path, day: dt.date, rows: int) -> None:
    from model_factory_dev import demo_data

    path.parent.mkdir(parents=True, exist_ok=True)
    demo_data.generate_batch(MODEL, day, rows=rows).to_csv(path, index=False)


# ---- the bare script ---------------------------------------------------------------------------


def bare(csv: Path, spec_path: Path, tracking_uri: str) -> dict:
    """What a data scientist would write instead of the factory: one process, no orchestration."""
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from model_factory.pipeline.evaluation import compute_metrics
    from model_factory.pipeline.features import prepare_features, target_values
    from model_factory.pipeline.training import (
        _pip_requirements,
        build_pipeline,
        split_holdout,
        trusted_types,
    )
    from model_factory.pipeline.validation import validate_frame
    from model_factory.settings import FactorySettings
    from model_factory.spec import load_spec

    spec = load_spec(spec_path, FactorySettings.from_env())
    df = pd.read_csv(csv)
    outcome = validate_frame(df, spec, spec_path.parent)  # GX batch.validate, the spec's suite
    if not outcome.success:
        raise SystemExit(f"validation failed: {outcome.reasons}")
    train, holdout = split_holdout(df, spec)
    model = build_pipeline(spec).fit(prepare_features(train, spec), target_values(train, spec))
    metric = spec.gates.primary_metric
    score = compute_metrics(model, holdout, spec)[metric]

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    try:
        champion = mlflow.sklearn.load_model(f"models:/{MODEL}@champion")
        champion_score = compute_metrics(champion, holdout, spec)[metric]
    except MlflowException:
        champion_score = None
    mlflow.set_experiment(MODEL)
    with mlflow.start_run():
        mlflow.log_params({"estimator": spec.estimator.class_, **spec.estimator.params})
        mlflow.log_metric(metric, score)
        example = prepare_features(train.head(5), spec)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=example,
            pip_requirements=_pip_requirements(),
            skops_trusted_types=trusted_types(model),
        )
    version = mlflow.register_model(info.model_uri, MODEL).version
    if champion_score is None or score >= champion_score:
        client.set_registered_model_alias(MODEL, "champion", version)
    return {"rows": len(df), metric: score, "champion": champion_score, "version": version}


# ---- the factory side ------------------------------------------------------------------------------


def _seconds(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return (dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds()


def factory_run(api, day: dt.date, timeout_s: float) -> dict:
    """Trigger ``churn__retrain`` for ``day``; wall seconds to register's end and to the run's end."""
    dag_id = f"{MODEL}__retrain"
    started = dt.datetime.now(dt.UTC)
    run = api.trigger(dag_id, conf={"ds": str(day)})
    done = api.wait_for_run(dag_id, run["dag_run_id"], timeout_s=timeout_s, poll_s=0.2)
    if done["state"] != "success":
        raise RuntimeError(f"{dag_id} {run['dag_run_id']} ended {done['state']}")
    tasks = {t["task_id"]: t for t in api.task_instances(dag_id, run["dag_run_id"])}
    trigger = started.isoformat()
    return {
        "seconds": _seconds(trigger, tasks["register"]["end_date"]),
        "to_run_end": _seconds(trigger, done.get("end_date")),
        "task_seconds": {k: round(t.get("duration") or 0.0, 2) for k, t in tasks.items()},
        "queued_to_start": {k: _seconds(t.get("queued_when"), t.get("start_date")) for k, t in tasks.items()},
    }


def row_retrain(rows: int, repeats: int, log=print, workdir: Path | None = None, warm: bool = True) -> dict:
    """Alternate factory and bare-script runs on fresh batches; medians and minimums of each.
    ``warm``: the stack's WarmLocalExecutor (False: Airflow's plain LocalExecutor)."""
    from model_factory_dev.stack import Stack, StackConfig

    workdir = Path(workdir or tempfile.mkdtemp(prefix="factory-bench-retrain-"))
    specs = workdir / "specs"
    spec_path = bench_spec(specs)
    config = StackConfig(
        home=workdir / "stack", mlflow_server=False, s3=False, specs_dir=specs, warm_imports=warm
    )
    bare_uri = f"sqlite:///{workdir / 'bare-mlflow.db'}"
    factory, script = [], []
    with Stack(config) as stack:
        api = stack.client()
        api.wait_for_dag(f"{MODEL}__retrain")
        api.unpause(f"{MODEL}__retrain")
        data_root = Path(stack.data_root.removeprefix("file://")) / MODEL
        # a warm-up pair (first imports from disk, MLflow's schema creation), not counted
        for n in range(repeats + 1):
            day = FIRST_DAY + dt.timedelta(days=n)
            csv = data_root / f"{day}.csv"
            write_batch(csv, day, rows)
            with stack.environ():
                result = factory_run(api, day, timeout_s=900)
            t0 = time.perf_counter()
            argv = [
                sys.executable,
                __file__,
                "--bare",
                str(csv),
                "--spec",
                str(spec_path),
                "--tracking-uri",
                bare_uri,
            ]
            env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
            out = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
            if out.returncode:
                raise RuntimeError(f"bare script failed:\n{out.stderr[-3000:]}")
            bare_result = {
                "seconds": time.perf_counter() - t0,
                **json.loads(out.stdout.strip().splitlines()[-1]),
            }
            label = "warm-up" if n == 0 else f"repeat {n}"
            log(
                f"retrain {label}: factory {result['seconds']:.1f} s to register ({result['to_run_end']:.1f}"
                f" s whole run), bare script {bare_result['seconds']:.1f} s"
            )
            if n:
                factory.append(result)
                script.append(bare_result)
            csv.unlink()

    def summary(runs: list[dict], key: str = "seconds") -> dict:
        values = [r[key] for r in runs if r.get(key) is not None]
        return {"median": statistics.median(values), "min": min(values)} if values else {}

    return {
        "rows": rows,
        "repeats": repeats,
        "executor": "WarmLocalExecutor" if warm else "LocalExecutor",
        "factory": {
            "to_register": summary(factory),
            "to_run_end": summary(factory, "to_run_end"),
            "runs": factory,
        },
        "bare": {**summary(script), "runs": script},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cold", action="store_true", help="Airflow's plain LocalExecutor")
    parser.add_argument("--bare", type=Path, default=None, help="(child) the bare script on this CSV")
    parser.add_argument("--spec", type=Path, default=None)
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args(argv)
    if args.bare:
        print(json.dumps(bare(args.bare, args.spec, args.tracking_uri)))
        return 0
    report = row_retrain(args.rows, args.repeats, warm=not args.cold)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
