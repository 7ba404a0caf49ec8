"""A drift check result as one self-contained HTML page (inline CSS and SVG, nothing fetched).

The decision and its reasons come first, then data-quality failures (a broken feed, kept apart from
statistical drift), then a table of statistics per feature, then one chart per feature: reference vs
current shares per baseline bin (numeric) or per category (categorical), missing values as a bar.
Every piece of text from the data (feature and category names, context values) is escaped.
"""

from __future__ import annotations

import itertools
from html import escape
from typing import Any

from model_factory.monitoring.drift import DriftCheck

MAX_BARS = 40  # categories beyond this are summed into one "other" bar
_STATUS_COLOURS = {
    "drift": "#b42318",
    "concept_drift": "#b42318",
    "data_quality": "#b54708",
    "too_good": "#b54708",
    "insufficient_data": "#475467",
    "no_drift": "#067647",
    "ok": "#067647",
}
_REF_COLOUR, _CUR_COLOUR = "#4c78a8", "#f58518"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d2939;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.3rem}h2{font-size:1.2rem;margin-top:2rem}h3{font-size:1rem;margin:0}
.status{display:inline-block;color:#fff;padding:.25rem .7rem;border-radius:4px;font-weight:600}
.box{border-left:4px solid;padding:.5rem 1rem;margin:1rem 0;background:#f9fafb}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{border-bottom:1px solid #eaecf0;padding:.3rem .5rem;text-align:right}
th:first-child,td:first-child,td.text{text-align:left}
tr.drifted td{background:#fef3f2}.muted{color:#667085}
.feature{border:1px solid #eaecf0;border-radius:6px;padding:.8rem;margin:1rem 0}
.feature p{margin:.3rem 0;font-size:.85rem}
svg{max-width:100%;height:auto}
"""


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _edge(x: float) -> str:
    return format(x, ".4g")


def _bar_chart(labels: list[str], reference: list[float], current: list[float] | None, caption: str) -> str:
    """Grouped bars (reference, current) as inline SVG; shares as fractions of all rows."""
    if len(labels) > MAX_BARS:
        cur = current or [0.0] * len(labels)
        order = sorted(range(len(labels)), key=lambda i: -max(reference[i], cur[i]))
        keep, rest = sorted(order[: MAX_BARS - 1]), order[MAX_BARS - 1 :]
        other = f"other ({len(rest)})"
        labels = [labels[i] for i in keep] + [other]
        reference = [reference[i] for i in keep] + [sum(reference[i] for i in rest)]
        current = None if current is None else [cur[i] for i in keep] + [sum(cur[i] for i in rest)]
    n = len(labels)
    slot, left, top, plot_h, label_h = 44, 48, 28, 160, 90
    width = max(360, left + n * slot + 10)
    height = top + plot_h + label_h
    peak = max([*reference, *(current or []), 1e-9])
    ymax = min(1.0, peak * 1.1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(caption)}">',
        f'<rect x="{left}" y="6" width="10" height="10" fill="{_REF_COLOUR}"/>'
        f'<text x="{left + 14}" y="15" font-size="11">reference (training)</text>',
    ]
    if current is not None:
        parts.append(
            f'<rect x="{left + 150}" y="6" width="10" height="10" fill="{_CUR_COLOUR}"/>'
            f'<text x="{left + 164}" y="15" font-size="11">current batch</text>'
        )
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h - frac * plot_h
        parts.append(
            f'<line x1="{left}" x2="{width - 5}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaecf0"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{frac * ymax:.0%}</text>'
        )
    bar_w = (slot - 10) / (2 if current is not None else 1)
    for i, label in enumerate(labels):
        x0 = left + i * slot + 5
        series = [(reference[i], _REF_COLOUR, "reference")]
        if current is not None:
            series.append((current[i], _CUR_COLOUR, "current"))
        for j, (value, colour, name) in enumerate(series):
            h = plot_h * value / ymax
            parts.append(
                f'<rect x="{x0 + j * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}: {name} {value:.2%}</title></rect>'
            )
        tx, ty = x0 + (slot - 10) / 2, top + plot_h + 12
        short = label if len(label) <= 18 else label[:17] + "…"
        parts.append(
            f'<text x="{tx:.1f}" y="{ty}" font-size="10" text-anchor="end" '
            f'transform="rotate(-40 {tx:.1f} {ty})"><title>{escape(label)}</title>{escape(short)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _numeric_chart(name: str, feat: dict) -> str:
    dist = feat["distribution"]
    edges = dist["edges"]
    labels = [f"≤ {_edge(edges[0])}"]
    labels += [f"({_edge(a)}, {_edge(b)}]" for a, b in itertools.pairwise(edges)]
    labels += [f"> {_edge(edges[-1])}", "missing"]
    reference = [*dist["reference"], dist["reference_missing"]]
    current = None if dist["current"] is None else [*dist["current"], dist["current_missing"]]
    return _bar_chart(labels, reference, current, f"{name}: share of rows per training-quantile bin")


def _categorical_chart(name: str, feat: dict) -> str:
    dist = feat["distribution"]
    labels = [f"new: {c}" if new else c for c, new in zip(dist["categories"], dist["new"], strict=True)]
    reference, current = list(dist["reference"]), dist["current"]
    current = None if current is None else list(current)
    if dist.get("other_new"):
        labels.append(f"other new ({dist['other_new']['categories']})")
        reference.append(0.0)
        if current is not None:
            current.append(dist["other_new"]["share"])
    labels.append("missing")
    reference.append(dist["reference_missing"])
    if current is not None:
        current.append(dist["current_missing"])
    return _bar_chart(labels, reference, current, f"{name}: share of rows per category")


def _verdict(feat: dict) -> str:
    if feat["ignored"]:
        return "ignored by rule"
    if feat["data_quality"]:
        return "data quality"
    if not feat["present"]:
        return "absent"
    if feat["drifted"] is None:
        return "no decision"
    return "drifted" if feat["drifted"] else "no"


def _table_row(name: str, feat: dict) -> str:
    numeric = feat["kind"] == "numeric"
    if numeric:
        test = f"KS {_fmt(feat['ks_statistic'])} (p {_fmt(feat['ks_pvalue'], '.2g')})"
        effect = _fmt(feat["ks_statistic"])
        bounds = _pct(feat.get("outside_bounds_share"))
        if feat.get("outside_bounds_allowed") is not None and feat.get("outside_bounds_share") is not None:
            bounds += f" / {_pct(feat['outside_bounds_allowed'])}"
    else:
        test = f"χ² {_fmt(feat['chi2_statistic'], '.1f')} (p {_fmt(feat['chi2_pvalue'], '.2g')})"
        effect = f"TVD {_fmt(feat['tvd'])}"
        bounds = f"new {_pct(feat['new_share'])}" if feat["new_share"] else "-"
    missing = f"{_pct(feat['reference_missing_rate'])} → {_pct(feat['missing_rate'])}"
    cells = [
        f'<td class="text">{escape(name)}</td>',
        f'<td class="text">{feat["kind"]}</td>',
        f"<td>{_fmt(feat['psi'])}</td>",
        f"<td>{escape(test)}</td>",
        f"<td>{escape(effect)}</td>",
        f"<td>{escape(missing)}</td>",
        f"<td>{escape(bounds)}</td>",
        f'<td class="text">{escape(_verdict(feat))}</td>',
        f'<td class="text">{escape("; ".join(feat["why"]))}</td>',
    ]
    css = ' class="drifted"' if feat["drifted"] or feat["data_quality"] else ""
    return f"<tr{css}>{''.join(cells)}</tr>"


def _feature_section(name: str, feat: dict) -> str:
    chart = _numeric_chart(name, feat) if feat["kind"] == "numeric" else _categorical_chart(name, feat)
    lines = []
    if not feat["present"]:
        lines.append("The column is missing from the batch: only the training distribution is shown.")
    if feat["kind"] == "numeric" and feat["present"]:
        lines.append(
            f"mean {_fmt(feat['reference_mean'], '.4g')} → {_fmt(feat['mean'], '.4g')}, "
            f"std {_fmt(feat['reference_std'], '.4g')} → {_fmt(feat['std'], '.4g')}, "
            f"current range [{_fmt(feat['min'], '.4g')}, {_fmt(feat['max'], '.4g')}]"
        )
    if feat["kind"] == "categorical" and feat["new_category_count"]:
        named = ", ".join(f"{c} ({n:,})" for c, n in feat["new_categories"].items())
        lines.append(f"{feat['new_category_count']} categories never seen in training: {named}")
    lines += [f"data quality: {r}" for r in feat["data_quality"]]
    lines += [f"drifted: {w}" for w in feat["why"]]
    text = "".join(f"<p>{escape(line)}</p>" for line in lines)
    return f'<div class="feature"><h3>{escape(name)}</h3>{text}{chart}</div>'


def render_html(result: dict | DriftCheck, baseline: dict, *, title: str, context: dict | None = None) -> str:
    """The report page for one ``check_drift`` result (``baseline`` is the profile it was checked against).

    ``result`` is the ``DriftCheck`` or its ``to_dict()`` form; in the latter an optional
    ``result["concept_drift"]`` (a ``check_concept_drift`` result) gets its own box.
    """
    if isinstance(result, DriftCheck):
        result = result.to_dict()
    status = result["status"]
    colour = _STATUS_COLOURS.get(status, "#475467")
    features: dict[str, dict] = result["features"]
    context_rows = {
        **(context or {}),
        "rows in batch": f"{result['rows']:,}",
        "training rows (baseline)": f"{baseline.get('rows', 0):,}",
        "rule": ", ".join(f"{k}={v}" for k, v in result["rule"].items()),
    }
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p>Decision: <span class="status" style="background:{colour}">'
        f"{escape(status.replace('_', ' ').upper())}</span></p>",
        "<ul>" + "".join(f"<li>{escape(r)}</li>" for r in result["reasons"]) + "</ul>",
        "<table>"
        + "".join(
            f'<tr><td class="text">{escape(str(k))}</td><td class="text">{escape(str(v))}</td></tr>'
            for k, v in context_rows.items()
        )
        + "</table>",
    ]
    if result["data_quality"]:
        parts.append(
            f'<div class="box" style="border-color:{_STATUS_COLOURS["data_quality"]}">'
            "<h2>Data-quality failures (input contract broken, not statistical drift)</h2><ul>"
            + "".join(f"<li>{escape(r)}</li>" for r in result["data_quality"])
            + "</ul></div>"
        )
    concept = result.get("concept_drift")
    if concept:
        concept_status = str(concept.get("status", "unknown"))
        parts.append(
            f'<div class="box" style="border-color:{_STATUS_COLOURS.get(concept_status, "#475467")}">'
            f"<h2>Concept drift (live metric on labelled rows): {escape(concept_status.replace('_', ' '))}"
            "</h2><ul>"
            + "".join(f"<li>{escape(str(r))}</li>" for r in concept.get("reasons", []))
            + "</ul></div>"
        )
    if result.get("bounds_alerts"):
        parts.append(
            '<div class="box" style="border-color:#475467"><h2>Values outside the training bounds</h2>'
            '<p class="muted">Reported for the owner; the drift decision rests on the statistics below.</p>'
            "<ul>" + "".join(f"<li>{escape(r)}</li>" for r in result["bounds_alerts"]) + "</ul></div>"
        )
    order = sorted(features, key=lambda n: -(features[n]["psi"] or 0.0))
    header = [
        "feature",
        "kind",
        "PSI",
        "test",
        "effect",
        "missing (train → now)",
        "outside bounds / allowed",
        "drifted",
        "why",
    ]
    parts += [
        "<h2>Statistics per feature</h2>",
        '<p class="muted">PSI over training-quantile bins (numeric) or categories, missing values as their '
        "own cell. KS: two-sample Kolmogorov-Smirnov statistic on non-missing values; χ²: contingency "
        "test of training vs batch category counts; TVD: total variation distance.</p>",
        "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>",
        *(_table_row(n, features[n]) for n in order),
        "</table>",
        "<h2>Distributions</h2>",
        *(_feature_section(n, features[n]) for n in order),
        "</body></html>",
    ]
    return "\n".join(parts)
