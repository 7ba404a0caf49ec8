"""What every bench row measures with: a process's peak memory, the children's environment, the
A B A B alternation and the medians of its runs."""

from __future__ import annotations

import datetime as dt
import os
import resource
import statistics
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DAY = dt.date(2026, 2, 2)  # the day the rows' demo data is generated for


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over exec from the
    forked parent, so a child of a big parent would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(HERE)])}


def summarise(runs: list[dict], key: str = "seconds") -> dict:
    values = [r[key] for r in runs]
    out = {"runs": runs, f"{key}_median": statistics.median(values), f"{key}_min": min(values)}
    peaks = [r["peak_mb"] for r in runs if r.get("peak_mb") is not None]
    if peaks:
        out["peak_mb_max"] = max(peaks)
    return out


def alternate(a: Callable[[], dict], b: Callable[[], dict] | None, repeats: int) -> tuple[list, list]:
    """A B A B ...: pairing keeps the comparison fair while the machine's speed drifts."""
    runs_a, runs_b = [], []
    for _ in range(repeats):
        runs_a.append(a())
        if b is not None:
            runs_b.append(b())
    return runs_a, runs_b


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None
