"""System health per served version from the prediction log: rate, errors, latency."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SystemHealth:
    version: str
    requests: int
    requests_per_minute: float
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None


def system_health(log: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> list[SystemHealth]:
    """Per version over [start, end): ``log`` has version, status (ok | error), latency_ms, created_at."""
    window = log[(log["created_at"] >= start) & (log["created_at"] < end)]
    minutes = max((end - start) / pd.Timedelta(minutes=1), 1e-9)
    out = []
    for version, rows in window.groupby("version", sort=True):
        ok = rows.loc[rows["status"] == "ok", "latency_ms"].dropna().to_numpy(dtype="float64")
        p50, p95 = np.percentile(ok, [50, 95]).tolist() if ok.size else (None, None)
        out.append(
            SystemHealth(
                str(version), len(rows), len(rows) / minutes, float((rows["status"] != "ok").mean()), p50, p95
            )
        )
    return out
