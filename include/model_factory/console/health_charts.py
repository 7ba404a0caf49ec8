"""The model page's health charts over time, drawn server-side as inline SVG (no script, nothing
fetched: the view's CSP stays strict). Plain geometry from the health history and the drift
checks; the template only writes the numbers out.

Charts: realized vs estimated metric with the estimate's 95% band and the gate threshold; PSI per
feature from the drift checks with the PSI threshold; label coverage; p95 latency.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from types import SimpleNamespace

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 120, 14, 30  # the plot area's margins (right: the legend)
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#8c564b", "#e377c2", "#17becf")
MAX_FEATURES = 8  # drift chart: the features with the highest PSI


@dataclass(frozen=True)
class Line:
    name: str
    color: str
    segments: list[str]  # SVG polyline points, one per run of days with a value
    dots: list[tuple[float, float, str]]  # (x, y, tooltip) per value
    dashed: bool = False


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    lines: list[Line] = field(default_factory=list)
    band: str | None = None  # SVG polygon points
    band_name: str | None = None
    rule: tuple[float, str] | None = None  # (y, label): the threshold
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    empty: str | None = None  # why there is nothing to draw
    width: int = WIDTH
    height: int = HEIGHT
    plot: tuple[int, int, int, int] = (LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)


def _scale(lo: float, hi: float) -> tuple[float, float]:
    if hi - lo < 1e-9:
        pad = abs(hi) * 0.05 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def line_chart(
    key: str,
    title: str,
    days: Sequence[date],
    series: dict[str, list[float | None]],
    *,
    dashed: Sequence[str] = (),
    band: tuple[str, list[float | None], list[float | None]] | None = None,
    rule: tuple[float, str] | None = None,
    fmt: Callable[[float], str] = lambda v: f"{v:.3g}",
    floor: float | None = None,
) -> Chart:
    """One chart over ``days``: a line per series (None: no value that day, the line breaks)."""
    values = [v for vals in series.values() for v in vals if v is not None]
    if band:
        values += [v for v in band[1] + band[2] if v is not None]
    if not days or not values:
        return Chart(key, title, empty="no figures yet")
    if rule:
        values.append(rule[0])
    lo, hi = _scale(min(values), max(values))
    if floor is not None:
        lo = max(lo, floor)
    x0, y0, x1, y1 = LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM
    step = (x1 - x0) / max(len(days) - 1, 1)

    def x(i: int) -> float:
        return round(x0 + (i * step if len(days) > 1 else (x1 - x0) / 2), 1)

    def y(v: float) -> float:
        return round(y1 - (v - lo) / (hi - lo) * (y1 - y0), 1)

    lines = []
    for n, (name, vals) in enumerate(series.items()):
        segments: list[str] = []
        run: list[str] = []
        dots: list[tuple[float, float, str]] = []
        for i, v in enumerate(vals):
            if v is None:
                if run:
                    segments.append(" ".join(run))
                run = []
                continue
            run.append(f"{x(i)},{y(v)}")
            dots.append((x(i), y(v), f"{name} {days[i]}: {fmt(v)}"))
        if run:
            segments.append(" ".join(run))
        lines.append(Line(name, COLORS[n % len(COLORS)], segments, dots, name in dashed))
    polygon = None
    if band:
        upper = [(i, h) for i, h in enumerate(band[2]) if h is not None and band[1][i] is not None]
        if upper:
            lower = [(i, band[1][i]) for i, _ in reversed(upper)]
            polygon = " ".join(f"{x(i)},{y(v)}" for i, v in upper + lower)  # type: ignore[arg-type]
    ticks = [lo + (hi - lo) * k / 4 for k in range(5)]
    every = max(1, len(days) // 6)
    return Chart(
        key,
        title,
        lines,
        polygon,
        band[0] if band else None,
        (y(rule[0]), rule[1]) if rule else None,
        [(y(t), fmt(t)) for t in ticks],
        [(x(i), days[i].strftime("%m-%d")) for i in range(0, len(days), every)],
    )


def _per_day(rows: list[dict]) -> dict[date, SimpleNamespace]:
    """The row of the version that served most predictions each day (the champion, mostly)."""
    best: dict[date, SimpleNamespace] = {}
    for raw in rows:
        row = SimpleNamespace(**raw)
        if isinstance(row.day, str):
            row.day = date.fromisoformat(row.day)
        if row.day not in best or row.predictions > best[row.day].predictions:
            best[row.day] = row
    return best


def health_charts(
    rows: list[dict],
    drift_checks: list[dict],
    metric: str,
    threshold: float | None,
    psi_threshold: float | None,
) -> list[Chart]:
    """The four charts from the ``model_health`` rows (``HealthRow`` as dicts) and the drift checks."""
    daily = _per_day(rows)
    days = sorted(daily)
    pick = [daily[d] for d in days]
    charts = [
        line_chart(
            "metric",
            f"{metric}: realized (on matured outcomes) vs estimated (before outcomes)",
            days,
            {"realized": [r.realized for r in pick], "estimated": [r.estimated for r in pick]},
            dashed=("estimated",),
            band=("estimate 95%", [r.estimated_low for r in pick], [r.estimated_high for r in pick]),
            rule=(threshold, f"threshold {threshold:g}") if threshold is not None else None,
            fmt=lambda v: f"{v:.3f}",
        )
    ]
    drift_days = sorted({date.fromisoformat(c["ds"]) for c in drift_checks})
    by_day = {date.fromisoformat(c["ds"]): c.get("psi", {}) for c in drift_checks}
    peak: dict[str, float] = {}
    for psi in by_day.values():
        for feature, value in psi.items():
            if value is not None:
                peak[feature] = max(peak.get(feature, 0.0), value)
    features = sorted(peak, key=lambda f: -peak[f])[:MAX_FEATURES]
    charts.append(
        line_chart(
            "drift",
            "Input drift: PSI per feature (drift checks)",
            drift_days,
            {f: [by_day[d].get(f) for d in drift_days] for f in sorted(features)},
            rule=(psi_threshold, f"PSI {psi_threshold:g}") if psi_threshold is not None else None,
            floor=0.0,
        )
    )
    # One series each, from zero up: (id, title, series name, value of a day's row, label format).
    single = (
        (
            "coverage",
            "Label coverage: share of matured predictions with an outcome",
            "coverage",
            lambda r: r.label_coverage,
            lambda v: f"{v:.0%}",
        ),
        (
            "latency",
            "p95 latency (ms) of served predictions",
            "p95 ms",
            lambda r: r.p95_ms,
            lambda v: f"{v:.1f}",
        ),
    )
    for key, title, series, value, fmt in single:
        charts.append(line_chart(key, title, days, {series: [value(r) for r in pick]}, fmt=fmt, floor=0.0))
    return charts
