"""Bench row: the health check on 1,000,000 predictions joined with 1,000,000 outcomes, vs NannyML.

Ours (``model_factory.monitoring``): join the outcomes to the predictions by id (every rule
applied and counted), realized accuracy and ROC AUC with intervals, the holdout calibration
check, and the CBPE-style estimate of both. NannyML 0.13.1's ``CBPE`` (its own virtualenv, as
Evidently's: its dependency tree is too heavy for the runtime) fits on the same holdout and
estimates the same period in one chunk; it does not join outcomes, so ours is timed both whole
and for the estimate alone. Each side runs in a fresh process (peak RSS is the process's),
alternating, ``--repeats`` times; medians are reported. The estimates must agree within 0.005.

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


def ours_child(workdir: Path) -> dict:
    import resource

    from model_factory.monitoring import performance as perf
    from model_factory.monitoring.outcomes import join_outcomes

    holdout = pd.read_parquet(workdir / "holdout.parquet")
    predictions = pd.read_parquet(workdir / "predictions.parquet")
    outcomes = pd.read_parquet(workdir / "outcomes.parquet")
    started = time.perf_counter()
    calibration = perf.check_calibration(holdout["score"].to_numpy(), holdout["outcome"].to_numpy() == 1)
    scores = predictions["score"].to_numpy()
    estimated = {m: perf.estimate_classifier(m, scores, calibration).value for m in ("accuracy", "roc_auc")}
    estimate_s = time.perf_counter() - started
    joined = join_outcomes(
        predictions, outcomes, as_of=T0 + pd.Timedelta(days=30), max_delay_days=30, classes=[0, 1]
    ).joined
    realized = {
        m: perf.realized(
            m, joined["outcome"].to_numpy(), joined["prediction"].to_numpy(), joined["score"].to_numpy()
        ).value
        for m in ("accuracy", "roc_auc")
    }
    return {
        "seconds": time.perf_counter() - started,
        "estimate_seconds": estimate_s,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "matched": len(joined),
        "calibrated": calibration.calibrated,
        "estimated": estimated,
        "realized": realized,
    }


NANNYML_CHILD = r"""
import json, os, resource, sys, time
os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
import pandas as pd
import nannyml as nml
workdir = sys.argv[1]
reference = pd.read_parquet(f"{workdir}/holdout.parquet")
analysis = pd.read_parquet(f"{workdir}/predictions.parquet", columns=["prediction", "score"])
started = time.perf_counter()
cbpe = nml.CBPE(y_pred_proba="score", y_pred="prediction", y_true="outcome", metrics=["accuracy", "roc_auc"],
                problem_type="classification_binary", chunk_number=1)
cbpe.fit(reference)
result = cbpe.estimate(analysis).filter(period="analysis").to_df()
seconds = time.perf_counter() - started
value = {m: float(result[(m, "value")].iloc[0]) for m in ("accuracy", "roc_auc")}
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "estimated": value}))
"""


def run_child(argv: list[str], env: dict | None = None) -> dict:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if done.returncode:
        raise RuntimeError(f"{argv[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    import venvs

    nanny_python = venvs.ensure("nannyml", NANNYML)
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
    with tempfile.TemporaryDirectory(prefix="health-bench-") as tmp:
        workdir = Path(tmp)
        generate(workdir, args.rows, args.holdout)
        (workdir / "nannyml_child.py").write_text(NANNYML_CHILD)
        ours, theirs = [], []
        for _ in range(args.repeats):  # alternating, so a busy spell hits both sides
            ours.append(run_child([sys.executable, __file__, "--child", str(workdir)], env))
            theirs.append(
                run_child([str(nanny_python), str(workdir / "nannyml_child.py"), str(workdir)], env)
            )
    median = statistics.median
    gap = {m: abs(ours[0]["estimated"][m] - theirs[0]["estimated"][m]) for m in ("accuracy", "roc_auc")}
    row = {
        "rows": args.rows,
        "holdout_rows": args.holdout,
        "repeats": args.repeats,
        "ours_seconds": median(r["seconds"] for r in ours),
        "ours_estimate_seconds": median(r["estimate_seconds"] for r in ours),
        "ours_peak_mb": median(r["peak_mb"] for r in ours),
        "nannyml_seconds": median(r["seconds"] for r in theirs),
        "nannyml_peak_mb": median(r["peak_mb"] for r in theirs),
        "ours_estimated": ours[0]["estimated"],
        "nannyml_estimated": theirs[0]["estimated"],
        "realized": ours[0]["realized"],
        "matched": ours[0]["matched"],
        "estimate_gap": gap,
        "agree_within": AGREE,
        "agree": all(g <= AGREE for g in gap.values()),
    }
    row["speedup_whole"] = row["nannyml_seconds"] / row["ours_seconds"]
    row["speedup_estimate"] = row["nannyml_seconds"] / row["ours_estimate_seconds"]
    print(json.dumps(row, indent=2))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))
    return 0 if row["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
