"""What does training on a sample cost in accuracy? Measured on the demo generator.

For each demo model (its shipped spec: churn = LogisticRegression, demand =
HistGradientBoostingRegressor), training days of ``--rows-per-day`` rows are generated, and a
holdout of the next ``--holdout-days`` days (a time split, as in production). The spec's pipeline
is then fitted on seeded random samples of growing size, each in a fresh process, recording the
spec's primary metric on the holdout, fit seconds and the process's peak RSS. The full data is
the last size.

    PYTHONPATH=include .venv/bin/python bench/train_sample.py --days 10 --rows-per-day 300000 \
        --sizes 10000,30000,100000,300000,1000000,3000000 --out bench/results/train_sample.json

It writes the samples to a temp folder as Parquet, so each fit process reads only its sample.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from result_file import write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

START = dt.date(2026, 1, 5)


def _fit_one(spec_path: str, train_path: str, holdout_path: str) -> dict:
    import pandas as pd
    from model_factory.pipeline.evaluation import compute_metrics
    from model_factory.pipeline.features import prepare_features, target_values
    from model_factory.pipeline.training import build_pipeline
    from model_factory.settings import FactorySettings
    from model_factory.spec import load_spec

    spec = load_spec(spec_path, FactorySettings.from_env())
    train = pd.read_parquet(train_path)
    holdout = pd.read_parquet(holdout_path)
    pipeline = build_pipeline(spec)
    t0, c0 = time.perf_counter(), time.process_time()
    pipeline.fit(prepare_features(train, spec), target_values(train, spec))
    fit_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    metrics = compute_metrics(pipeline, holdout, spec)
    return {
        "rows": len(train),
        "metric": spec.gates.primary_metric,
        "value": metrics[spec.gates.primary_metric],
        "metrics": metrics,
        "fit_s": round(fit_s, 2),
        "fit_cpu_s": round(cpu_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="churn,demand")
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--rows-per-day", type=int, default=300_000)
    parser.add_argument("--holdout-days", type=int, default=1)
    parser.add_argument("--sizes", default="10000,30000,100000,300000,1000000,3000000")
    parser.add_argument("--seeds", type=int, default=2, help="samples per size (different seeds)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd
    from model_factory_dev import demo_data

    sizes = [int(s) for s in args.sizes.split(",")]
    report = {
        "host": platform.node(),
        "python": platform.python_version(),
        "args": vars(args) | {"out": str(args.out)},
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="train-sample-") as tmp:
        for model in args.models.split(","):
            spec_path = str(ROOT / "include" / "models" / f"{model}.yaml")
            t0 = time.perf_counter()
            train = pd.concat(
                [
                    demo_data.generate_batch(model, START + dt.timedelta(days=d), rows=args.rows_per_day)
                    for d in range(args.days)
                ],
                ignore_index=True,
            )
            holdout_days = [START + dt.timedelta(days=args.days + d) for d in range(args.holdout_days)]
            holdout = pd.concat(
                [demo_data.generate_batch(model, day, rows=args.rows_per_day) for day in holdout_days],
                ignore_index=True,
            )
            holdout_path = Path(tmp) / f"{model}-holdout.parquet"
            holdout.to_parquet(holdout_path, index=False)
            print(
                f"{model}: {len(train):,} training rows, {len(holdout):,} holdout rows "
                f"(generated in {time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
            rows = []
            for size in sizes:
                if size > len(train):
                    continue
                for seed in range(args.seeds if size < len(train) else 1):
                    rng = np.random.default_rng(seed)
                    index = rng.choice(len(train), size=size, replace=False) if size < len(train) else None
                    sample = train if index is None else train.iloc[np.sort(index)]
                    path = Path(tmp) / f"{model}-{size}-{seed}.parquet"
                    sample.to_parquet(path, index=False)
                    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
                        result = pool.submit(_fit_one, spec_path, str(path), str(holdout_path)).result()
                    path.unlink()
                    result.update(fraction=round(size / len(train), 5), seed=seed)
                    rows.append(result)
                    print(
                        f"  {size:>9,} rows ({result['fraction']:7.2%}) seed {seed}: {result['metric']}="
                        f"{result['value']:.4f}  fit {result['fit_s']:6.1f} s  "
                        f"peak {result['peak_rss_mb']:,} MB",
                        flush=True,
                    )
            report["models"][model] = {"train_rows": len(train), "holdout_rows": len(holdout), "runs": rows}
            del train, holdout
    return write_result(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
