"""One command, side by side: each row of the performance table against its alternative, same run.

    model-factory bench [--quick] [--repeats 3] [--rows 1000000] [--out bench/results]
    make bench

For every row the project's path (A) and the alternative a user would pick (B) run in turn,
A B A B ..., ``--repeats`` times; each run is a fresh process (or, for serving, a load against an
already warm server) that reports its own wall and CPU seconds and peak memory. The table gives
the median (and minimum) of each side, the ratio of medians, and the target. The machine's load
average is recorded before and after. Rows:

* serving, 1 and 8 callers: the gateway (fast path, uvicorn workers) vs ``mlflow models serve``,
  MLServer (sklearn runtime), BentoML and LitServe serving the same registered version with the
  same number of worker processes, each from a virtualenv of its own (``serving_peers.py``);
  single-row HTTP requests over keep-alive connections, each server in its own protocol;
* drift, 1M vs 1M rows x 25 columns: ``check_drift`` on a Parquet batch vs Evidently 0.7.23
  ``DataDriftPreset`` (its own virtualenv: it needs pandas 2), with the flagged columns compared;
* drift, 10M vs 10M: ``check_drift`` alone (Evidently did not finish in 330 s at 15.9 GB);
* validation, 1M rows: the factory's validate step (``validate_batch``: chunked GX run of the
  spec's suite; a Parquet batch in bounded row groups is copied to validated/, not rewritten)
  vs GX ``batch.validate`` of the same suite on the same data read whole;
* DAG-file parse of 500, 2,000 and 10,000 specs in shard files of about ``SPECS_PER_SHARD``
  specs: the largest file and all files, wall and CPU (``bench/parse_many_specs.py``).
* a gateway with 1,000 registered models under a 16 MiB model budget (``bench/gateway_fleet.py``):
  nothing loaded at start, cold and warm p50/p99, a skewed load's hit rate, resident MiB.
* retrain at 1M rows: ``<model>__retrain`` under a dev stack's real scheduler (WarmLocalExecutor)
  vs a bare script doing the same work (``bench/retrain_bench.py``), trigger to ``register`` done.
* health, 1M predictions joined with 1M outcomes (``bench/health_bench.py``): the estimate vs
  NannyML's ``CBPE`` (its own virtualenv), like for like, and the whole ``check_health`` vs NannyML's
  CBPE + ``PerformanceCalculator`` (which do no join).

``--quick`` runs small data in-process-light: drift at 20k rows against a naive scipy pass,
the compiled predictor against the scikit-learn pipeline in-process, validation at 20k rows;
the external alternatives (Evidently, mlflow serve) and the DAG parse are skipped and the table
says so. It exists so a unit test keeps this command working; its numbers are not the table.

Writes ``<out>/latest.json`` and ``<out>/latest.md`` (``quick.json``/``quick.md`` with --quick).
The serving rows are in ``serving_row.py``, the table in ``report_table.py``, the measuring
helpers in ``measure.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the bench's own modules, also when this file is loaded by path

from measure import DAY, REPO, alternate, child_env, peak_rss_mb, summarise  # noqa: E402
from report_table import build_rows, table  # noqa: E402
from serving_row import row_serving, row_serving_quick  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Measuring


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


IN_PROCESS = False  # --quick: measure in this process (imports once), not a fresh one per run


def child_json(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run a measuring child; its last stdout line is its JSON report."""
    if IN_PROCESS and cmd[:2] == [sys.executable, __file__]:
        args = dict(zip(cmd[2::2], cmd[3::2], strict=False))
        child, workdir = args["--child"], Path(args["--workdir"])
        if child == "drift":
            return drift_child(workdir)
        if child == "naive_drift":
            return naive_drift_child(workdir)
        return validation_child(workdir, args.get("--which", "ours"))
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env or child_env(), check=False
    )
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------
# Drift


def drift_data(workdir: Path, rows: int, reference: bool, row_group: int = 250_000) -> dict:
    """Reference (optional, for Evidently) and current Parquet files plus the stored baseline."""
    import drift_bench
    import pyarrow as pa
    import pyarrow.parquet as pq
    from model_factory.pipeline import profile

    numeric, categorical = drift_bench.feature_names(25)
    ref = drift_bench.generate(rows, 25, seed=1, shifted=False)
    started = time.perf_counter()
    baseline = profile.build_baseline(ref, numeric, categorical)
    build_s = time.perf_counter() - started
    (workdir / "baseline.json").write_text(json.dumps(baseline))
    if reference:
        ref.to_parquet(workdir / "reference.parquet", index=False, row_group_size=row_group)
    del ref
    writer = None
    step = 1_000_000
    for start in range(0, rows, step):  # generated a million rows at a time: bounded here too
        part = drift_bench.generate(min(step, rows - start), 25, seed=2 + start, shifted=True)
        table = pa.Table.from_pandas(part, preserve_index=False)
        writer = writer or pq.ParquetWriter(workdir / "current.parquet", table.schema)
        writer.write_table(table, row_group_size=row_group)
    assert writer is not None
    writer.close()
    return {"numeric": numeric, "categorical": categorical, "baseline_build_s": build_s}


def drift_child(workdir: Path) -> dict:
    """Ours: the stored baseline + check_drift streaming the Parquet batch."""
    from model_factory.monitoring import drift
    from model_factory.pipeline import profile

    started, cpu = time.perf_counter(), time.process_time()
    baseline = profile.baseline_from_json((workdir / "baseline.json").read_text())
    result = drift.check_drift(baseline, workdir / "current.parquet")
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "peak_mb": peak_rss_mb(),
        "flagged": sorted(result.drifted_features),
        "status": result.status,
    }


def naive_drift_child(workdir: Path) -> dict:
    """Quick mode's stand-in alternative: scipy on the raw reference and current (drift_bench)."""
    import drift_bench
    import pandas as pd

    meta = json.loads((workdir / "meta.json").read_text())
    started, cpu = time.perf_counter(), time.process_time()
    drift_bench.naive_check(
        pd.read_parquet(workdir / "reference.parquet"),
        pd.read_parquet(workdir / "current.parquet"),
        meta["numeric"],
        meta["categorical"],
    )
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "peak_mb": peak_rss_mb(),
    }


def row_drift(rows: int, repeats: int, evidently: bool, quick: bool, log) -> dict:
    import venvs

    work = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    try:
        log(f"drift: generating {rows:,} vs {rows:,} rows x 25 columns ...")
        meta = drift_data(work, rows, reference=evidently or quick)
        (work / "meta.json").write_text(json.dumps(meta))
        ours_cmd = [sys.executable, __file__, "--child", "drift", "--workdir", str(work)]
        alternative: dict[str, Any]
        if evidently:
            python = venvs.ensure("evidently", venvs.EVIDENTLY, log)
            theirs_cmd = [str(python), str(HERE / "evidently_child.py"), str(work)]
            name = "Evidently 0.7.23 DataDriftPreset (own venv, pandas 2)"
        elif quick:
            theirs_cmd = [sys.executable, __file__, "--child", "naive_drift", "--workdir", str(work)]
            name = "naive scipy pass on raw data (quick stand-in; Evidently skipped)"
        else:
            theirs_cmd, name = None, "Evidently: not run at this size (did not finish in 330 s, 15.9 GB)"
        log(f"drift: {repeats} alternating runs ...")
        a, b = alternate(
            lambda: child_json(ours_cmd, 3600),
            (lambda: child_json(theirs_cmd, 3600, env={**os.environ})) if theirs_cmd else None,
            repeats,
        )
        alternative = {"name": name, **(summarise(b) if b else {})}
        ours = summarise(a) | {"flagged": a[0]["flagged"], "baseline_build_s": meta["baseline_build_s"]}
        if b and "flagged" in b[0]:
            alternative["flagged"] = b[0]["flagged"]
            ours["same_columns_flagged"] = a[0]["flagged"] == b[0]["flagged"]
        return {"ours": ours, "alternative": alternative}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Validation


def validation_data(workdir: Path, rows: int) -> None:
    from model_factory_dev import demo_data

    frame = demo_data.generate_batch("churn", DAY, rows=rows)
    frame.to_parquet(workdir / "batch.parquet", index=False, row_group_size=250_000)


def validation_child(workdir: Path, which: str) -> dict:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations  # noqa: F401  (import cost reported apart: workers pre-import it)
    import pandas as pd
    from model_factory.pipeline import validation
    from model_factory.settings import FactorySettings
    from model_factory.spec import load_spec

    spec_dir = REPO / "include" / "models"
    spec = load_spec(spec_dir / "churn.yaml", FactorySettings.from_env())
    path = workdir / "batch.parquet"
    started, cpu = time.perf_counter(), time.process_time()
    if which == "ours":
        store = (workdir / f"store-{os.getpid()}").as_uri()
        ingested = {
            "raw_uri": path.as_uri(),
            "parsed_uri": path.as_uri(),
            "ds": str(DAY),
            "format": "parquet",
            "sha256": "bench",
        }  # as ingest_batch writes it
        out = validation.validate_batch(spec, ingested, FactorySettings(store_uri=store), spec_dir)
        status, expectations = out["status"], None
    else:
        df = pd.read_parquet(path)
        suite = validation._Suite(spec, list(df.columns), spec_dir)
        batch = suite.batch_definition.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(suite.suite)
        status, expectations = ("validated" if result.success else "failed"), len(suite.suite.expectations)
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "peak_mb": peak_rss_mb(),
        "status": status,
        "expectations": expectations,
    }


def row_validation(rows: int, repeats: int, log) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    try:
        log(f"validation: generating {rows:,} churn rows ...")
        validation_data(work, rows)
        cmd = [sys.executable, __file__, "--child", "validation", "--workdir", str(work), "--which"]
        log(f"validation: {repeats} alternating runs ...")
        a, b = alternate(
            lambda: child_json([*cmd, "ours"], 1800), lambda: child_json([*cmd, "gx"], 1800), repeats
        )
        return {
            "ours": summarise(a) | {"status": a[0]["status"]},
            "alternative": {
                "name": "GX batch.validate, same suite, whole frame",
                **summarise(b),
                "expectations": b[0]["expectations"],
            },
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# DAG parse


PARSE_SPECS = (500, 2_000, 10_000)
SPECS_PER_SHARD = 150  # what docs/performance.md tells a fleet to aim for


def row_dag_parse(log) -> dict:
    """``bench/parse_many_specs.py --parse-only`` at 500, 2,000 and 10,000 specs, split into shard
    files of about ``SPECS_PER_SHARD`` specs each: every shard file parsed in its own process (what
    the dag-processor does; the largest file is what ``dagbag_import_timeout`` judges), and one
    task's parse (Airflow's parsing context: its model only)."""
    results = {}
    for specs in PARSE_SPECS:
        shards = max(1, math.ceil(specs / SPECS_PER_SHARD))
        out = Path(tempfile.mkdtemp(prefix="bench-parse-")) / "parse.json"
        log(f"dag parse: {specs} specs in {shards} shard files (bench/parse_many_specs.py) ...")
        subprocess.run(
            [
                sys.executable,
                str(HERE / "parse_many_specs.py"),
                "--specs",
                str(specs),
                "--shards",
                str(shards),
                "--parse-only",
                "--out",
                str(out),
            ],
            check=True,
            env=child_env(),
            capture_output=True,
            timeout=3600,
        )
        results[str(specs)] = json.loads(out.read_text())
        shutil.rmtree(out.parent, ignore_errors=True)
    return {"ours": results}


def row_gateway_fleet(log) -> dict:
    """``bench/gateway_fleet.py``: 1,000 registered models behind one gateway process, 16 MiB."""
    out = Path(tempfile.mkdtemp(prefix="bench-fleet-")) / "fleet.json"
    log("gateway fleet: 1,000 models under a 16 MiB budget (bench/gateway_fleet.py) ...")
    subprocess.run(
        [sys.executable, str(HERE / "gateway_fleet.py"), "--out", str(out)],
        check=True,
        env=child_env(),
        capture_output=True,
        timeout=3600,
    )
    result = json.loads(out.read_text())
    shutil.rmtree(out.parent, ignore_errors=True)
    return result


# --------------------------------------------------------------------------------------------------
# Entry

ROWS = ("serving", "drift", "drift_10m", "validation", "dag_parse", "retrain", "health", "gateway_fleet")
# the keys of ``results`` each --only row writes: an --only run keeps the other rows of the last report
RESULT_KEYS = {
    "serving": ("serving",),
    "drift": ("drift_1m",),
    "drift_10m": ("drift_10m",),
    "validation": ("validation",),
    "dag_parse": ("dag_parse",),
    "retrain": ("retrain",),
    "health": ("health_1m",),
    "gateway_fleet": ("gateway_fleet",),
}


def run(
    quick: bool = False,
    repeats: int | None = None,
    rows: int | None = None,
    out: Path | None = None,
    only: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the bench; returns the report and writes ``<out>/{latest,quick}.{json,md}``.

    With ``only``, the rows run now replace theirs in the last report and the others are kept,
    each with when it ran and the load, so one row can be re-measured alone."""
    repeats = repeats or (2 if quick else 3)
    rows = rows or (20_000 if quick else 1_000_000)
    out = out or HERE / "results"
    unknown = sorted(set(only or []) - set(ROWS))
    if unknown:
        raise ValueError(f"unknown rows {unknown}; choose from {','.join(ROWS)}")
    wanted = set(only or ROWS)
    report: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "repeats": repeats,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before": loadavg()},
    }
    results: dict[str, Any] = {"skipped": {}}
    out.mkdir(parents=True, exist_ok=True)
    global IN_PROCESS
    IN_PROCESS = quick
    if quick:  # imports before any timing: in-process runs would otherwise time the first import
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations  # noqa: F401
        import scipy.stats  # noqa: F401
        from model_factory.monitoring import drift  # noqa: F401
    if "serving" in wanted:
        results["serving"] = row_serving_quick(repeats, 100, log) if quick else row_serving(repeats, 500, log)
    if "drift" in wanted:
        results["drift_1m"] = row_drift(rows, repeats, evidently=not quick, quick=quick, log=log) | {
            "rows": rows
        }
    if "drift_10m" in wanted and not quick:
        results["drift_10m"] = row_drift(10 * rows, repeats, evidently=False, quick=False, log=log) | {
            "rows": 10 * rows
        }
    if "validation" in wanted:
        results["validation"] = row_validation(rows, repeats, log) | {"rows": rows}
    if "dag_parse" in wanted and not quick:
        results["dag_parse"] = row_dag_parse(log)
    if "retrain" in wanted and not quick:
        from retrain_bench import row_retrain

        results["retrain"] = row_retrain(rows, repeats, log)
    if "health" in wanted and not quick:
        from health_bench import run_bench

        results["health_1m"] = run_bench(rows, 50_000, repeats, log)
        (out / "health_bench.json").write_text(json.dumps(results["health_1m"], indent=2) + "\n")
    if "gateway_fleet" in wanted and not quick:
        results["gateway_fleet"] = row_gateway_fleet(log)
    if quick:
        results["skipped"]["Evidently, mlflow models serve, 10M drift, DAG parse, retrain DAG"] = (
            "skipped in --quick (no virtualenvs, small data, no Airflow stack)"
        )
    report["machine"]["load_after"] = loadavg()
    report["finished_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    stem = "quick" if quick else "latest"
    if only and not quick:
        results = keep_other_rows(out / f"{stem}.json", results, wanted, report)
    report["results"] = results
    report["rows"] = build_rows(results, quick)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / f"{stem}.md").write_text(table(report))
    report["written"] = [str(out / f"{stem}.json"), str(out / f"{stem}.md")]
    return report


def keep_other_rows(previous: Path, results: dict, wanted: set[str], report: dict) -> dict:
    """``results`` plus the rows of the last full report that this --only run did not measure
    (the table says which rows are kept and when they were measured)."""
    if not previous.is_file():
        return results
    old = json.loads(previous.read_text())
    machine = old.get("machine", {})
    kept = {}
    for row, keys in RESULT_KEYS.items():
        if row in wanted:
            continue
        for key in keys:
            if key in old.get("results", {}):
                # each kept row says when it was measured: its own stamp, else the old run's
                stamp = {
                    "measured_at": old.get("finished_at"),
                    "load": [machine.get("load_before"), machine.get("load_after")],
                }
                kept[key] = stamp | old["results"][key]
    if kept:
        report["kept"] = sorted(kept)
    return {**kept, **results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", default=None, help=f"comma list: {','.join(ROWS)}")
    parser.add_argument("--table-only", type=Path, default=None, help="rewrite the .md of this JSON report")
    parser.add_argument("--child", choices=["drift", "naive_drift", "validation"], default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--which", default="ours")
    args = parser.parse_args(argv)
    if args.table_only:
        report = json.loads(args.table_only.read_text())
        report["rows"] = build_rows(report["results"], report["mode"] == "quick")
        args.table_only.write_text(json.dumps(report, indent=2, default=str) + "\n")
        args.table_only.with_suffix(".md").write_text(table(report))
        print(table(report), end="")
        return 0
    if args.child == "drift":
        print(json.dumps(drift_child(args.workdir)))
        return 0
    if args.child == "naive_drift":
        print(json.dumps(naive_drift_child(args.workdir)))
        return 0
    if args.child == "validation":
        print(json.dumps(validation_child(args.workdir, args.which)))
        return 0
    only = args.only.split(",") if args.only else None
    report = run(args.quick, args.repeats, args.rows, args.out, only)
    print(table(report), end="")
    print("wrote " + ", ".join(report["written"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
