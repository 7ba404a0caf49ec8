"""Time and peak memory of the drift check on a large batch, against a naive numpy/scipy pass.

    PYTHONPATH=include .venv/bin/python bench/drift_bench.py [--rows 1000000 --features 25]

Generates a reference set and a current batch (numeric and categorical features, a few of them
shifted), builds the baseline once from the reference (reported, not part of the check), writes the
current batch to Parquet in several row groups, then measures, each in a fresh subprocess so peaks
are not shared:

* ``check_parquet``: ``check_drift(baseline, path)`` (baseline JSON loaded inside the timing);
* ``check_dataframe``: ``check_drift(baseline, df)`` with the batch already in memory;
* ``naive_files``: what a check without a stored baseline does (see FINDINGS "Drift, for scale"):
  re-read reference and current from Parquet, then per feature sort the reference for decile PSI
  bins, ``scipy.stats.ks_2samp`` and ``chi2_contingency``;
* ``naive_inmemory``: the same with both frames already in memory.

Time is the best (and median) of ``--repeats`` runs. Memory: the peak RSS growth during the first
run (Linux VmHWM, reset just before), and in a second subprocess the tracemalloc peak (numpy and
Python allocations; pyarrow's own pool is reported separately). Writes
bench/results/drift_bench.json and prints a table.
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
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
MODES = ("check_parquet", "check_dataframe", "naive_files", "naive_inmemory")
SHIFTED = {"num_0": 0.5, "num_3": 0.3}  # mean shifts in std units on the current batch
CAT_SHIFTED = "cat_1"


# --------------------------------------------------------------------------------------------------
# Data


def feature_names(features: int) -> tuple[list[str], list[str]]:
    n_cat = max(1, round(features * 0.4))
    return [f"num_{i}" for i in range(features - n_cat)], [f"cat_{i}" for i in range(n_cat)]


def generate(rows: int, features: int, seed: int, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    numeric, categorical = feature_names(features)
    data: dict[str, object] = {}
    for i, name in enumerate(numeric):
        kind = i % 5
        shift = SHIFTED.get(name, 0.0) if shifted else 0.0
        if kind == 0:
            values = rng.normal(50 + 10 * shift, 10, rows)
        elif kind == 1:
            values = np.exp(rng.normal(shift * 0.5, 0.5, rows))
        elif kind == 2:
            values = rng.gamma(1.5, 20, rows) + shift * 24
        elif kind == 3:
            values = rng.poisson(3 + shift * 1.7, rows).astype("float64")
        else:
            values = np.round(rng.uniform(0, 100, rows), 1)
        if i % 3 == 0:
            values[rng.random(rows) < 0.01] = np.nan
        data[name] = values
    cardinalities = [3, 4, 5, 8, 12, 20, 30, 50, 100, 200]
    for j, name in enumerate(categorical):
        k = cardinalities[j % len(cardinalities)]
        weights = 1.0 / np.arange(1, k + 1)
        if shifted and name == CAT_SHIFTED:
            weights = weights[::-1]
        labels = np.array([f"{name}_v{v}" for v in range(k)], dtype=object)
        data[name] = pd.array(labels[rng.choice(k, size=rows, p=weights / weights.sum())], dtype="str")
    return pd.DataFrame(data)


# --------------------------------------------------------------------------------------------------
# The measured work (runs in a child process)


def naive_check(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> dict:
    """PSI on reference deciles + KS + chi-square, computing everything from the raw reference."""
    from scipy import stats

    out = {}
    for col in numeric:
        ref = reference[col].dropna().to_numpy()
        cur = current[col].dropna().to_numpy()
        ref_sorted = np.sort(ref)  # what the stored sketch saves at check time
        edges = np.unique(np.quantile(ref_sorted, np.linspace(0.1, 0.9, 9)))
        p = np.bincount(np.searchsorted(edges, ref_sorted), minlength=len(edges) + 1) / ref.size
        q = np.bincount(np.searchsorted(edges, cur), minlength=len(edges) + 1) / cur.size
        p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
        ks = stats.ks_2samp(ref_sorted, cur)
        out[col] = {"psi": float(np.sum((q - p) * np.log(q / p))), "ks": float(ks.statistic)}
    for col in categorical:
        ref_counts = reference[col].value_counts(dropna=False)
        cur_counts = current[col].value_counts(dropna=False)
        table = pd.concat([ref_counts, cur_counts], axis=1).fillna(0).to_numpy().T
        chi2 = stats.chi2_contingency(table, correction=False)
        p, q = np.maximum(table[0] / table[0].sum(), 1e-4), np.maximum(table[1] / table[1].sum(), 1e-4)
        out[col] = {"psi": float(np.sum((q - p) * np.log(q / p))), "chi2": float(chi2.statistic)}
    return out


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(mode: str, workdir: Path, repeats: int, trace: bool) -> dict:
    import pyarrow as pa
    from model_factory.monitoring import drift
    from model_factory.pipeline import profile

    meta = json.loads((workdir / "meta.json").read_text())
    numeric, categorical = meta["numeric"], meta["categorical"]
    current_path, reference_path = workdir / "current.parquet", workdir / "reference.parquet"
    baseline_path = workdir / "baseline.json"
    preloaded: dict[str, pd.DataFrame] = {}
    if mode == "check_dataframe":
        preloaded["current"] = pd.read_parquet(current_path)
    if mode == "naive_inmemory":
        preloaded["current"] = pd.read_parquet(current_path)
        preloaded["reference"] = pd.read_parquet(reference_path)
    if mode == "check_dataframe":
        baseline = profile.baseline_from_json(baseline_path.read_text())

    def work() -> dict:
        if mode == "check_parquet":
            base = profile.baseline_from_json(baseline_path.read_text())
            return drift.check_drift(base, current_path)
        if mode == "check_dataframe":
            return drift.check_drift(baseline, preloaded["current"])
        if mode == "naive_files":
            return naive_check(
                pd.read_parquet(reference_path), pd.read_parquet(current_path), numeric, categorical
            )
        return naive_check(preloaded["reference"], preloaded["current"], numeric, categorical)

    pool = pa.default_memory_pool()
    arrow_before = pool.max_memory()
    if trace:
        tracemalloc.start()
        work()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {"tracemalloc_peak_mb": peak / 2**20}
    rss_before = _rss_mb("VmRSS")
    reset = _reset_peak_rss()
    times, cpu, result = [], [], None
    for i in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = work()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if i == 0:
            peak = _rss_mb("VmHWM") if reset else float("nan")
    assert result is not None
    summary = {
        "seconds_min": min(times),
        "seconds_median": statistics.median(times),
        "seconds_all": times,
        "cpu_seconds_min": min(cpu),
        "rss_before_mb": rss_before,
        "rss_peak_delta_mb": peak - rss_before,
        "arrow_pool_peak_mb": (pool.max_memory() - arrow_before) / 2**20 if mode == "check_parquet" else None,
    }
    if mode.startswith("check"):
        summary["status"] = result.status
        summary["stats"] = {
            name: {"psi": f["psi"], "ks": f.get("ks_statistic"), "chi2": f.get("chi2_statistic")}
            for name, f in result.features.items()
        }
    else:
        summary["stats"] = result
    return summary


# --------------------------------------------------------------------------------------------------
# Parent


def run_child(mode: str, workdir: Path, repeats: int, trace: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--workdir", str(workdir), "--repeats", str(repeats)]
    if trace:
        cmd.append("--trace")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE.parent / "include"), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{mode} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_inputs(
    workdir: Path, rows: int, ref_rows: int, features: int, row_groups: int
) -> tuple[float, str, dict[str, float]]:
    """The reference (Parquet) and its baseline (JSON), the shifted current batch in ``row_groups``
    row groups, the feature lists; the baseline's build seconds, its JSON and the files' MiB."""
    from model_factory.pipeline import profile

    numeric, categorical = feature_names(features)
    print(f"generating {ref_rows:,} reference and {rows:,} current rows x {features} features ...")
    reference = generate(ref_rows, features, seed=1, shifted=False)
    t0 = time.perf_counter()
    baseline = profile.build_baseline(reference, numeric, categorical)
    build_s = time.perf_counter() - t0
    baseline_text = json.dumps(baseline)
    (workdir / "baseline.json").write_text(baseline_text)
    reference.to_parquet(workdir / "reference.parquet", index=False)
    del reference
    current = generate(rows, features, seed=2, shifted=True)
    current.to_parquet(workdir / "current.parquet", index=False, row_group_size=-(-rows // row_groups))
    del current
    (workdir / "meta.json").write_text(json.dumps({"numeric": numeric, "categorical": categorical}))
    sizes = {p.name: p.stat().st_size / 2**20 for p in workdir.iterdir()}
    return build_s, baseline_text, sizes


def ratios_to_naive(results: dict) -> dict:
    """Time, CPU and peaks of the two checks over the naive passes'."""
    naive = results["naive_files"]
    return {
        mode: {
            "time_vs_naive_files": results[mode]["seconds_min"] / naive["seconds_min"],
            "time_vs_naive_inmemory": results[mode]["seconds_min"] / results["naive_inmemory"]["seconds_min"],
            "cpu_vs_naive_files": results[mode]["cpu_seconds_min"] / naive["cpu_seconds_min"],
            "rss_peak_vs_naive_files": results[mode]["rss_peak_delta_mb"] / naive["rss_peak_delta_mb"],
            "tracemalloc_peak_vs_naive_files": results[mode]["tracemalloc_peak_mb"]
            / naive["tracemalloc_peak_mb"],
        }
        for mode in ("check_parquet", "check_dataframe")
    }


def print_report(report: dict, features: int, out: Path) -> None:
    results, agreement = report["results"], report["agreement_with_naive"]
    naive = results["naive_files"]
    print(
        f"\n{report['rows']:,} current rows x {features} features ({report['features']['numeric']} numeric, "
        f"{report['features']['categorical']} categorical), reference {report['reference_rows']:,} rows; "
        f"baseline built in {report['baseline']['build_seconds']:.2f} s "
        f"({report['baseline']['json_kb']:.0f} KB JSON)\n"
    )
    print(
        f"{'mode':<17}{'wall min':>10}{'median':>9}{'CPU min':>9}{'RSS peak +MB':>14}{'tracemalloc MB':>16}"
        f"{'wall vs naive':>15}"
    )
    for mode, r in results.items():
        ratio = r["seconds_min"] / naive["seconds_min"]
        print(
            f"{mode:<17}{r['seconds_min']:>9.2f}s{r['seconds_median']:>8.2f}s{r['cpu_seconds_min']:>8.2f}s"
            f"{r['rss_peak_delta_mb']:>14.0f}{r['tracemalloc_peak_mb']:>16.0f}{ratio:>14.2f}x"
        )
    print(
        f"\nKS statistic vs scipy ks_2samp on the raw data: max |difference| "
        f"{agreement['max_abs_ks_difference']:.5f}; PSI vs the naive binning: max |difference| "
        f"{agreement['max_abs_psi_difference']:.4f}; status {results['check_parquet']['status']}"
    )
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="current batch rows")
    parser.add_argument("--reference-rows", type=int, default=None, help="default: same as --rows")
    parser.add_argument("--features", type=int, default=25)
    parser.add_argument("--row-groups", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "drift_bench.json")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", choices=MODES, default=None)
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(child(args.child, args.workdir, args.repeats, args.trace)))
        return 0

    ref_rows = args.reference_rows or args.rows
    numeric, categorical = feature_names(args.features)
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        workdir = Path(tmp)
        build_s, baseline_text, sizes = write_inputs(
            workdir, args.rows, ref_rows, args.features, args.row_groups
        )
        results = {}
        for mode in MODES:
            print(f"  {mode} ...", flush=True)
            results[mode] = run_child(mode, workdir, args.repeats, trace=False)
            results[mode] |= run_child(mode, workdir, 1, trace=True)

    ours, theirs = results["check_parquet"]["stats"], results["naive_files"]["stats"]
    agreement = {
        "max_abs_ks_difference": max(abs(ours[c]["ks"] - theirs[c]["ks"]) for c in numeric),
        "max_abs_psi_difference": max(
            abs(ours[c]["psi"] - theirs[c]["psi"]) for c in [*numeric, *categorical]
        ),
    }
    for r in results.values():
        r.pop("stats", None)
    import pyarrow
    import scipy

    report = {
        "rows": args.rows,
        "reference_rows": ref_rows,
        "features": {"numeric": len(numeric), "categorical": len(categorical)},
        "row_groups": args.row_groups,
        "repeats": args.repeats,
        "file_mb": sizes,
        "baseline": {"build_seconds": build_s, "json_kb": len(baseline_text) / 1024},
        "results": results,
        "ratios": ratios_to_naive(results),
        "agreement_with_naive": agreement,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "pyarrow": pyarrow.__version__,
            "scipy": scipy.__version__,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report, args.features, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
