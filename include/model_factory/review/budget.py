"""Data budget: the same pipeline fitted on growing shares of the training rows.

Teams used far more data and CPU than they needed for a tiny gain; this measures it per
version: holdout metric and fit CPU time per share (short fits repeated and averaged), and the
smallest share within the spec's tolerance of the full-data metric, with the CPU it would save.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from model_factory.spec import METRICS, ModelSpec


def run_data_budget(spec: ModelSpec, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> dict:
    """Fit on each ``evaluation.data_budget.shares`` of a seeded shuffle of the training rows;
    score each on the full holdout. A share that cannot be fitted (one class only) says why."""
    from model_factory.pipeline.evaluation import metric_value, predict_holdout
    from model_factory.pipeline.features import prepare_features, target_values
    from model_factory.pipeline.training import build_pipeline

    budget = spec.evaluation.data_budget
    metric = spec.gates.primary_metric
    order = np.random.default_rng(spec.split.seed).permutation(len(train_df))
    started = time.perf_counter()
    points = []
    all_classes = set(target_values(train_df, spec).astype(str)) if spec.task == "classification" else set()
    for share in budget.shares:
        rows = max(2, round(share * len(train_df)))
        part = train_df.iloc[order[:rows]]

        def skipped(why: str, share: float = share, rows: int = rows) -> dict:
            return {
                "share": share,
                "rows": rows,
                "metric": None,
                "cpu_seconds": None,
                "wall_seconds": None,
                "error": why,
            }

        seen = set(target_values(part, spec).astype(str)) if spec.task == "classification" else set()
        if seen != all_classes:  # scored against the full holdout it would not be comparable
            points.append(
                skipped(f"not scored: these {rows} rows hold {len(seen)} of the {len(all_classes)} classes")
            )
            continue
        pipeline = build_pipeline(spec) if spec.estimator.class_ else None
        if pipeline is None:
            points.append(skipped("not scored: the estimator is built by the model's own code"))
            continue
        try:
            cpu, wall, fits = timed_fit(pipeline, prepare_features(part, spec), target_values(part, spec))
            score = metric_value(metric, predict_holdout(pipeline, holdout_df, spec))
        except (ValueError, ArithmeticError) as exc:  # a fit or metric a small share cannot give
            points.append(skipped(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            continue
        points.append(
            {
                "share": share,
                "rows": rows,
                "metric": score,
                "cpu_seconds": round(cpu, 6),
                "wall_seconds": round(wall, 6),
                "fits_timed": fits,
            }
        )
    return {
        "metric": metric,
        "tolerance": budget.tolerance,
        "train_rows": len(train_df),
        "holdout_rows": len(holdout_df),
        "points": points,
        "seconds": round(time.perf_counter() - started, 3),
        **recommend(points, metric, budget.tolerance),
    }


MIN_TIMED_CPU_S = 0.2
"""A fit shorter than this is repeated (at most MAX_TIMED_FITS times) and timed per fit on the
total: one millisecond-long fit is below the noise of the CPU clock and the machine's load."""
MAX_TIMED_FITS = 20


def timed_fit(pipeline, features, target) -> tuple[float, float, int]:
    """Fit ``pipeline`` and return (CPU seconds, wall seconds, fits timed) per fit."""
    cpu0, wall0, fits = time.process_time(), time.perf_counter(), 0
    while True:
        pipeline.fit(features, target)
        fits += 1
        cpu = time.process_time() - cpu0
        if cpu >= MIN_TIMED_CPU_S or fits >= MAX_TIMED_FITS:
            return cpu / fits, (time.perf_counter() - wall0) / fits, fits


def cpu_time(seconds: float) -> str:
    """CPU time with the precision it needs: ``1.23 s``, ``45.6 ms``, ``0.8 ms``."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms" if seconds >= 0.001 else f"{seconds * 1000:.3f} ms"


def recommend(points: list[dict], metric: str, tolerance: float) -> dict:
    """The smallest share whose metric is within ``tolerance`` (relative) of the largest share's."""
    scored = [p for p in points if p.get("metric") is not None and not np.isnan(p["metric"])]
    if not scored:
        return {
            "recommended_share": None,
            "cpu_saved_seconds": None,
            "recommendation": "no share could be scored: no recommendation",
        }
    full = scored[-1]
    higher = METRICS[metric]["higher_is_better"]
    bound = abs(full["metric"]) * tolerance
    for point in scored:
        gap = (full["metric"] - point["metric"]) if higher else (point["metric"] - full["metric"])
        if gap <= bound:
            saved = max(0.0, full["cpu_seconds"] - point["cpu_seconds"])
            if point is full:
                text = (
                    f"use all the data: no smaller share is within {tolerance:.1%} of "
                    f"{metric} {full['metric']:.4f}"
                )
            else:
                text = (
                    f"{point['share']:.0%} of the training rows ({point['rows']:,}) scores "
                    f"{metric} {point['metric']:.4f}, within {tolerance:.1%} of the "
                    f"{full['share']:.0%} share's {full['metric']:.4f}"
                )
                if saved > 0 and full["cpu_seconds"]:
                    text += (
                        f", and would save {cpu_time(saved)} of CPU per fit "
                        f"({saved / full['cpu_seconds']:.0%}: {cpu_time(point['cpu_seconds'])} "
                        f"instead of {cpu_time(full['cpu_seconds'])})"
                    )
                else:  # the measured fits took no less CPU: say so rather than "saves 0.00 s"
                    text += (
                        f"; its fit took {cpu_time(point['cpu_seconds'])} of CPU against "
                        f"{cpu_time(full['cpu_seconds'])}: no measurable CPU saving"
                    )
            return {
                "recommended_share": point["share"],
                "cpu_saved_seconds": round(saved, 6),
                "recommendation": text,
            }
    raise AssertionError("the largest share is always within tolerance of itself")
