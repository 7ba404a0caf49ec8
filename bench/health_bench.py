"""Bench row: the health check on 1,000,000 predictions joined with 1,000,000 outcomes, vs NannyML.

What each side runs, timed separately in the same process (data already in memory):

* **estimate** (like for like with NannyML's ``CBPE``): ours checks the holdout's calibration and
  estimates accuracy and ROC AUC of the 1M served scores; NannyML 0.13.1 (its own virtualenv, as
  Evidently's: its dependency tree is too heavy for the runtime) fits ``CBPE`` on the same holdout
  and estimates the same rows in one chunk;
* **realized** (like for like with NannyML's ``PerformanceCalculator``): accuracy and ROC AUC on
  the 1M rows with their outcomes already attached (the bench joins them once, untimed, for both);
* **whole check** (ours only; NannyML has no equivalent): ``check_health`` from the raw frames:
  the join by id with every rule counted, per version and day realized and estimated metrics,
  output drift and system health from a 1M-row log, the window, expiry forecast and decision.

Each side runs in a fresh process (peak RSS is the process's), alternating, ``--repeats`` times;
medians are reported. The estimates must agree within 0.005.

    python bench/health_bench.py [--rows 1000000] [--holdout 50000] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
NANNYML = ["nannyml==0.13.1", "statsmodels", "pandas>=2.2,<3", "pyarrow"]  # statsmodels: used, undeclared
AGREE = 0.005
T0 = pd.Timestamp("2026-03-01")


def generate(workdir: Path, rows: int, holdout_rows: int, seed: int = 0) -> None:
    """A calibrated binary classifier: holdout (labelled) and served predictions + outcomes."""
    rng = np.random.default_rng(seed)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        p = 1 / (1 + np.exp(-1.5 * rng.normal(size=n)))
        return p, (rng.random(n) < p).astype(np.int64)

    p, y = draw(holdout_rows)
    pd.DataFrame({"score": p, "prediction": (p >= 0.5).astype(np.int64), "outcome": y}).to_parquet(
        workdir / "holdout.parquet", index=False
    )
    p, y = draw(rows)
    at = T0 + pd.to_timedelta(rng.integers(0, 10 * 86_400, rows), unit="s")
    ids = np.char.add("p", np.arange(rows).astype(str))
    pd.DataFrame(
        {"id": ids, "version": "1", "predicted_at": at, "prediction": (p >= 0.5).astype(np.int64), "score": p}
    ).to_parquet(workdir / "predictions.parquet", index=False)
    order = rng.permutation(rows)  # outcomes arrive in another order than the predictions
    event = at + pd.to_timedelta(rng.integers(60, 86_400, rows), unit="s")
    pd.DataFrame(
        {
            "id": ids[order],
            "outcome": y[order],
            "event_time": event[order],
            "arrived_at": event[order] + pd.Timedelta(days=2),
        }
    ).to_parquet(workdir / "outcomes.parquet", index=False)
    pd.DataFrame(  # the rows with their outcomes attached, for the like-for-like realized metrics
        {"prediction": (p >= 0.5).astype(np.int64), "score": p, "outcome": y}
    ).to_parquet(workdir / "labelled.parquet", index=False)
    pd.DataFrame(  # the gateway's log of the same requests, for the whole check's system health
        {
            "request_id": ids,
            "entity_id": ids,
            "version": "1",
            "status": np.where(rng.random(rows) < 0.005, "error", "ok"),
            "latency_ms": rng.gamma(2.0, 2.0, rows),
            "created_at": at,
        }
    ).to_parquet(workdir / "log.parquet", index=False)


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would carry a big parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ours_child(workdir: Path) -> dict:
    from model_factory.monitoring import performance as perf
    from model_factory.monitoring.health import HealthPolicy, Holdout, check_health

    holdout = pd.read_parquet(workdir / "holdout.parquet")
    predictions = pd.read_parquet(workdir / "predictions.parquet")
    outcomes = pd.read_parquet(workdir / "outcomes.parquet")
    labelled = pd.read_parquet(workdir / "labelled.parquet")
    log = pd.read_parquet(workdir / "log.parquet")
    metrics = ("accuracy", "roc_auc")

    started, cpu = time.perf_counter(), time.process_time()
    calibration = perf.check_calibration(holdout["score"].to_numpy(), holdout["outcome"].to_numpy() == 1)
    scores = predictions["score"].to_numpy()
    estimated = {m: perf.estimate_classifier(m, scores, calibration).value for m in metrics}
    estimate_s, estimate_cpu = time.perf_counter() - started, time.process_time() - cpu

    started, cpu = time.perf_counter(), time.process_time()
    y, pred, score = (labelled[c].to_numpy() for c in ("outcome", "prediction", "score"))
    realized = {m: perf.realized(m, y, pred, score).value for m in metrics}
    realized_s, realized_cpu = time.perf_counter() - started, time.process_time() - cpu

    started, cpu = time.perf_counter(), time.process_time()
    report = check_health(
        "bench",
        predictions,
        outcomes,
        Holdout(
            holdout["outcome"].to_numpy(), holdout["prediction"].to_numpy(), holdout["score"].to_numpy(), 0.8
        ),
        HealthPolicy("roc_auc", 0.75, True, "classification"),
        (T0 + pd.Timedelta(days=14)).to_pydatetime(),
        log=log,
        classes=[0, 1],
    )
    whole_s, whole_cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "estimate_seconds": estimate_s,
        "realized_seconds": realized_s,
        "whole_seconds": whole_s,
        "estimate_cpu_seconds": estimate_cpu,
        "realized_cpu_seconds": realized_cpu,
        "whole_cpu_seconds": whole_cpu,
        "peak_mb": peak_rss_mb(),
        "matched": report.counts.matched,
        "days": len(report.days),
        "calibrated": calibration.calibrated,
        "estimated": estimated,
        "realized": realized,
    }


NANNYML_CHILD = r"""
import json, os, sys, time
os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
import pandas as pd
import nannyml as nml
workdir = sys.argv[1]
metrics = ["accuracy", "roc_auc"]
columns = dict(y_pred_proba="score", y_pred="prediction", y_true="outcome", metrics=metrics,
               problem_type="classification_binary", chunk_number=1)
reference = pd.read_parquet(f"{workdir}/holdout.parquet")
analysis = pd.read_parquet(f"{workdir}/predictions.parquet", columns=["prediction", "score"])
labelled = pd.read_parquet(f"{workdir}/labelled.parquet")
started, cpu = time.perf_counter(), time.process_time()
cbpe = nml.CBPE(**columns).fit(reference)
estimated = cbpe.estimate(analysis).filter(period="analysis").to_df()
estimate_s, estimate_cpu = time.perf_counter() - started, time.process_time() - cpu
started, cpu = time.perf_counter(), time.process_time()
calculator = nml.PerformanceCalculator(**columns).fit(reference)
realized = calculator.calculate(labelled).filter(period="analysis").to_df()
realized_s, realized_cpu = time.perf_counter() - started, time.process_time() - cpu
peak = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"estimate_seconds": estimate_s, "realized_seconds": realized_s, "peak_mb": peak,
                  "estimate_cpu_seconds": estimate_cpu, "realized_cpu_seconds": realized_cpu,
                  "estimated": {m: float(estimated[(m, "value")].iloc[0]) for m in metrics},
                  "realized": {m: float(realized[(m, "value")].iloc[0]) for m in metrics}}))
"""

NANNYML_COVERS = (
    "CBPE fit on the holdout + estimate of accuracy and ROC AUC over all rows in one chunk; "
    "PerformanceCalculator fit + realized accuracy and ROC AUC on the same rows with their outcomes "
    "already attached (the bench joins them, untimed). No join by id, per-day split, intervals, "
    "output drift or system health."
)


def run_child(argv: list[str], env: dict | None = None) -> dict:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if done.returncode:
        raise RuntimeError(f"{argv[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_bench(rows: int, holdout: int, repeats: int, log=print) -> dict:
    """The bench row: both sides alternating in fresh processes, medians of ``repeats``."""
    import venvs

    nanny_python = venvs.ensure("nannyml", NANNYML, log=log)
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
    with tempfile.TemporaryDirectory(prefix="health-bench-") as tmp:
        workdir = Path(tmp)
        generate(workdir, rows, holdout)
        (workdir / "nannyml_child.py").write_text(NANNYML_CHILD)
        ours, theirs = [], []
        for i in range(repeats):  # alternating, so a busy spell hits both sides
            log(f"health bench: run {i + 1}/{repeats}")
            ours.append(run_child(["nice", sys.executable, __file__, "--child", str(workdir)], env))
            theirs.append(
                run_child(["nice", str(nanny_python), str(workdir / "nannyml_child.py"), str(workdir)], env)
            )

    def median(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    metrics = ("accuracy", "roc_auc")
    gap = {m: abs(ours[0]["estimated"][m] - theirs[0]["estimated"][m]) for m in metrics}
    row = {
        "rows": rows,
        "holdout_rows": holdout,
        "repeats": repeats,
        "nannyml_covers": NANNYML_COVERS,
        "ours_estimate_seconds": median(ours, "estimate_seconds"),
        "ours_realized_seconds": median(ours, "realized_seconds"),
        "ours_whole_seconds": median(ours, "whole_seconds"),
        "ours_peak_mb": median(ours, "peak_mb"),
        "nannyml_estimate_seconds": median(theirs, "estimate_seconds"),
        "nannyml_realized_seconds": median(theirs, "realized_seconds"),
        "nannyml_peak_mb": median(theirs, "peak_mb"),
        "ours_estimated": ours[0]["estimated"],
        "nannyml_estimated": theirs[0]["estimated"],
        "ours_realized": ours[0]["realized"],
        "nannyml_realized": theirs[0]["realized"],
        "matched": ours[0]["matched"],
        "days": ours[0]["days"],
        "estimate_gap": gap,
        "agree_within": AGREE,
        "agree": all(g <= AGREE for g in gap.values()),
        "runs": {"ours": ours, "nannyml": theirs},
    }
    ours_both = row["ours_estimate_seconds"] + row["ours_realized_seconds"]
    theirs_both = row["nannyml_estimate_seconds"] + row["nannyml_realized_seconds"]
    for side, runs in (("ours", ours), ("nannyml", theirs)):
        for step in ("estimate", "realized") + (("whole",) if side == "ours" else ()):
            row[f"{side}_{step}_cpu_seconds"] = median(runs, f"{step}_cpu_seconds")
    # CPU seconds too: on a shared machine the wall clock also counts waiting for a core
    row["speedup_estimate_cpu"] = row["nannyml_estimate_cpu_seconds"] / row["ours_estimate_cpu_seconds"]
    row["speedup_estimate"] = row["nannyml_estimate_seconds"] / row["ours_estimate_seconds"]
    row["speedup_estimate_and_realized"] = theirs_both / ours_both
    row["speedup_whole_check_vs_nannyml_both"] = theirs_both / row["ours_whole_seconds"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--holdout", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(ours_child(args.child)))
        return 0
    row = run_bench(args.rows, args.holdout, args.repeats)
    print(json.dumps(row, indent=2))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    return 0 if row["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
