"""System health per served version from the prediction log: rate, errors, latency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
from model_factory.monitoring.outcomes import NS_PER_DAY, nanoseconds, rows_by_version_and_day


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


def system_health_by_day(log: pd.DataFrame) -> dict[tuple[object, date], SystemHealth]:
    """``system_health`` of each (version, day) of the log in one pass, keyed by the log's version
    value and the day (what the health check asks of every served version and day)."""
    created_at = pd.to_datetime(log["created_at"])
    code, versions = pd.factorize(log["version"])
    code[created_at.isna().to_numpy()] = -1
    day = np.floor_divide(nanoseconds(created_at), NS_PER_DAY)
    ok = (log["status"] == "ok").to_numpy()
    latency = pd.to_numeric(log["latency_ms"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    out = {}
    for (version_code, day_number), these in rows_by_version_and_day(code, day).items():
        version, on = versions[version_code], date(1970, 1, 1) + timedelta(days=day_number)
        served = latency[these[ok[these]]]
        served = served[~np.isnan(served)]
        p50, p95 = np.percentile(served, [50, 95]).tolist() if served.size else (None, None)
        out[(version, on)] = SystemHealth(
            str(version), len(these), len(these) / (24 * 60), float((~ok[these]).mean()), p50, p95
        )
    return out
