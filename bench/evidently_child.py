"""Evidently's DataDriftPreset on the bench's reference and current Parquet files (run in its venv).

    .factory/bench-venvs/evidently/bin/python bench/evidently_child.py WORKDIR

Prints one JSON line: seconds (read + report), CPU seconds, peak RSS, the columns Evidently flags.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def peak_mb() -> float:
    """VmHWM: ru_maxrss would carry the forking parent's peak over exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    workdir = Path(sys.argv[1])
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    started, cpu = time.perf_counter(), time.process_time()
    reference = pd.read_parquet(workdir / "reference.parquet")
    current = pd.read_parquet(workdir / "current.parquet")
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    data = snapshot.dict()
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    flagged, counted = [], None
    for metric in data.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type", "").endswith("DriftedColumnsCount"):
            counted = int(metric["value"]["count"])  # Evidently's own count: a check on the reading below
        if config.get("type", "").endswith("ValueDrift") and isinstance(metric.get("value"), int | float):
            threshold = config.get("threshold")
            column = config.get("column")
            value = metric["value"]
            method = str(config.get("method", ""))
            # p-value tests drift below the threshold, distances above it
            is_pvalue = "p_value" in method or "test" in method.lower()
            drifted = value < threshold if is_pvalue else value >= threshold
            if drifted:
                flagged.append(column)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_s,
                "peak_mb": peak_mb(),
                "flagged": sorted(flagged),
                "evidently_drifted_count": counted,
                "evidently_metrics": len(data.get("metrics", [])),
            }
        )
    )


if __name__ == "__main__":
    main()
