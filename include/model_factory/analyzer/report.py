"""The Analyzer's report: events -> signals -> segments -> findings, as JSON and as a table."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from model_factory.analyzer.collect import ApiGetter, SourceStatus, collect_all
from model_factory.analyzer.events import STAGE_TITLES, STAGES, UNKNOWN, Event, utcnow
from model_factory.analyzer.people import ENV_SYSTEM_USERS, SYSTEM_USERS, Population, population, system_users
from model_factory.analyzer.rules import ET, SOP, UNCLASSIFIED, WATCH, Thresholds, classify, sensitivity
from model_factory.analyzer.segments import LABELS, Segmentation, segment_users
from model_factory.analyzer.signals import stage_table, user_signals
from model_factory.analyzer.store import ENV_ENABLED, AnalyzerSettings, EventStore
from model_factory.settings import FactorySettings

NO_USER = "unknown"


def analyze(
    events: list[Event],
    thresholds: Thresholds | None = None,
    seeds: tuple[int, ...] = tuple(range(10)),
    sources: list[SourceStatus] | None = None,
    recording: dict | None = None,
    service_accounts: frozenset[str] = SYSTEM_USERS,
) -> dict[str, Any]:
    """The whole analysis of ``events`` as one JSON-ready dict; ``service_accounts``: whose events
    are not a person's (``people.system_users(settings)``; default: the built-in ones)."""
    thresholds = thresholds or Thresholds()
    sources = sources or []
    report: dict[str, Any] = {
        "generated_at": utcnow().isoformat(timespec="seconds"),
        "recording": recording or {},
        "sources": [s.to_dict() for s in sources],
        "lacks": [s.message for s in sources if not s.ok],
        "thresholds": {
            "SoP": thresholds.sop(),
            "et_min_share": thresholds.et_min_share,
            "et_ratio": thresholds.et_ratio,
            "min_users": thresholds.min_users,
        },
        "messages": [],
        "findings": [],
        "summary": {SOP: 0, ET: 0, WATCH: 0, UNCLASSIFIED: 0},
    }
    if not events:
        report["status"] = "no_events"
        report["messages"].append(
            "no events recorded yet: events appear as people use the model-factory CLI, trigger DAG runs, "
            "and as batches are quarantined, versions judged by the gates and canaries concluded"
            + (
                ""
                if (recording or {}).get("enabled", True)
                else f" (recording is switched off in this installation: {ENV_ENABLED}=off)"
            )
        )
        return report
    report["status"] = "ok"
    report["events"], notes = _event_counts(events)
    report["messages"] += notes
    persons = population([e for e in events if e.user != NO_USER], service_accounts)
    people = persons.people
    signals = user_signals(people)
    segmentation = segment_users(
        {user: s for user, s in signals.items() if user not in persons.not_segmented},
        seeds=seeds,
        unplaced=len(persons.not_segmented),
    )
    report["users"] = len(signals)
    report["excluded_users"] = persons.excluded
    report["not_segmented"] = persons.not_segmented
    report["segmentation"] = segmentation.to_dict()
    report["messages"] += _segmentation_notes(persons, segmentation, len(seeds))
    report["user_signals"] = [
        {**s.to_dict(), "segment": segmentation.segments.get(user)} for user, s in sorted(signals.items())
    ]
    report["stages"] = stage_table(signals)
    findings, left_out = classify(people, segmentation, thresholds)
    report["findings"] = [f.to_dict() for f in findings]
    report["summary"] = {
        verdict: sum(f.verdict == verdict for f in findings) for verdict in (SOP, ET, WATCH, UNCLASSIFIED)
    }
    report["left_out"] = left_out
    if segmentation.ok:
        report["sensitivity"] = sensitivity(people, segmentation, thresholds)
    if not findings:
        report["messages"].append(
            f"no recurring error: no error kind was seen by {thresholds.min_users} or more users"
        )
    return report


def _event_counts(events: list[Event]) -> tuple[dict[str, Any], list[str]]:
    """What was recorded (totals, time span, by source and stage), and notes on the events that
    have no known stage or name no user."""
    unknown_stage = [e for e in events if e.stage not in STAGES]
    anonymous = [e for e in events if e.user == NO_USER]
    counts: dict[str, Any] = {
        "total": len(events),
        "first": min(e.at for e in events).isoformat(timespec="seconds"),
        "last": max(e.at for e in events).isoformat(timespec="seconds"),
        "by_source": dict(Counter(e.source for e in events)),
        "by_stage": {stage: sum(e.stage == stage for e in events) for stage in (*STAGES, UNKNOWN)},
        "errors": sum(e.outcome == "error" for e in events),
        "unknown_stage": {
            "count": len(unknown_stage),
            "actions": dict(Counter(e.action for e in unknown_stage).most_common(8)),
        },
        "without_user": len(anonymous),
    }
    notes: list[str] = []
    if unknown_stage:
        notes.append(
            f"{len(unknown_stage)} events have no known lifecycle stage (e.g. "
            f"{', '.join(list(counts['unknown_stage']['actions'])[:4])}): they count as "
            "actions and errors of their users, under stage 'unknown'"
        )
    if anonymous:
        notes.append(
            f"{len(anonymous)} events name no user (e.g. runs Airflow shows no triggering "
            "user for): left out of the per-user signals"
        )
    return counts, notes


def _segmentation_notes(persons: Population, segmentation: Segmentation, seed_count: int) -> list[str | None]:
    """Notes on who is left out of the segments, and on segments that failed (their reason) or
    depend on the seed."""
    notes: list[str | None] = []
    if persons.excluded:
        notes.append(
            f"{len(persons.excluded)} service accounts left out ({', '.join(sorted(persons.excluded))}): "
            f"not data scientists (names in {ENV_SYSTEM_USERS} add to root, airflow, demo...)"
        )
    if persons.not_segmented:
        notes.append(
            f"{len(persons.not_segmented)} users not placed in a segment (outcomes pinned on them only, or "
            "too little activity of their own): their errors count, they weigh on no segment's share"
        )
    if not segmentation.ok:
        notes.append(segmentation.reason)
    elif not segmentation.stability.get("stable"):
        notes.append(
            "segments depend on the K-means seed (lowest adjusted Rand index "
            f"{segmentation.stability['min_ari']} over {seed_count} seeds): read the shares with care"
        )
    return notes


def build_report(
    settings: FactorySettings,
    analyzer: AnalyzerSettings | None = None,
    api: ApiGetter | bool | None = True,
    since: datetime | None = None,
    thresholds: Thresholds | None = None,
    registry: bool = True,
    collect: bool = True,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Collect what the sources have (``api=True``: the Airflow ``settings`` name), then analyze.

    ``since``/``until``: only events in that window (the weekly DAG looks at the last 13 weeks).
    ``collect=False``: analyze only the events already stored.
    """
    analyzer = analyzer or AnalyzerSettings.of(settings)
    store = EventStore(analyzer)
    if not collect:
        sources = [SourceStatus("collection", True, message="skipped (--no-collect): stored events only")]
    elif analyzer.enabled:
        if api is True:
            from model_factory.io.airflow_api import AirflowClient

            api = AirflowClient.from_settings(settings, timeout_s=10.0)
        client = api or None
        sources = collect_all(store, settings, client, registry=registry)
    else:
        sources = [
            SourceStatus(
                "collection",
                False,
                message=(
                    f"recording is switched off in this installation ({ENV_ENABLED}=off): nothing new "
                    "was collected; events recorded earlier are analyzed"
                ),
            )
        ]
    from sqlalchemy.engine import make_url

    recording = {
        "enabled": analyzer.enabled,
        "pseudonymized": analyzer.pseudonymize,
        "db": make_url(analyzer.db_uri).render_as_string(hide_password=True),
    }
    report = analyze(
        store.events(since=since, until=until),
        thresholds,
        sources=sources,
        recording=recording,
        service_accounts=system_users(settings),
    )
    report["window"] = {
        "since": since and since.isoformat(timespec="seconds"),
        "until": until and until.isoformat(timespec="seconds"),
    }
    return report


def write_report(report: dict[str, Any], store_uri: str) -> str:
    """``analyzer/reports/<date>/report.json`` (+ ``report.txt``) in the store; returns the JSON's URI."""
    from model_factory.io import storage

    day = report["generated_at"][:10]
    folder = storage.join(store_uri, "analyzer", "reports", day)
    storage.write_bytes(storage.join(folder, "report.txt"), format_report(report).encode())
    return storage.write_json(storage.join(folder, "report.json"), report)


def weeks_ago(weeks: int) -> datetime:
    return utcnow() - timedelta(weeks=weeks)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines


def format_report(report: dict[str, Any]) -> str:
    """The report as plain text: what was read, the segments, the findings, the threshold sensitivity."""
    lines = ["Analyzer: where data scientists get stuck", ""]
    for source in report.get("sources", []):
        mark = "ok " if source["ok"] else "n/a"
        lines.append(
            f"  [{mark}] {source['source']}: {source['message']}"
            + (f" ({source['new_events']} new events)" if source.get("new_events") else "")
        )
    if report["status"] == "no_events":
        lines += ["", *report["messages"]]
        return "\n".join(lines)
    ev = report["events"]
    users = f"{report['users']} user" + ("" if report["users"] == 1 else "s")
    lines += [
        "",
        f"{ev['total']} events ({ev['errors']} errors) from {users}, {ev['first']} .. {ev['last']}; "
        + "by stage: "
        + ", ".join(f"{k} {v}" for k, v in ev["by_stage"].items() if v),
    ]
    if report["segmentation"]["ok"]:
        lines += _segment_lines(report["segmentation"])
    if report["findings"]:
        lines += _finding_lines(report["findings"])
    if report.get("sensitivity"):
        lines += _sensitivity_lines(report["sensitivity"])
    left = report.get("left_out", {})
    if left.get("rare_error_kinds"):
        lines += [
            "",
            f"{left['rare_error_kinds']} error kinds seen by fewer than {left['rare_threshold_users']} "
            "users are not judged (too rare to be a pattern).",
        ]
    if report["messages"] or report["lacks"]:
        lines += [
            "",
            *(f"note: {m}" for m in report["messages"]),
            *(f"lacking: {m}" for m in report["lacks"]),
        ]
    summary = report["summary"]
    lines += [
        "",
        f"{summary[SOP]} Simplicity-of-Platform and {summary[ET]} Education-&-Training challenges, "
        f"{summary[WATCH]} to watch, {summary[UNCLASSIFIED]} unclassified.",
    ]
    return "\n".join(lines)


def _segment_lines(seg: dict[str, Any]) -> list[str]:
    """The segments' section: how they were found, and each one's size and centroid."""
    stab = seg["stability"]
    lines = [
        "",
        f"Segments (K-means, k={seg['k']}, features: {', '.join(seg['features'])}; "
        f"adjusted Rand index over {len(stab['seeds'])} seeds: min {stab['min_ari']}, "
        f"{'stable' if stab['stable'] else 'NOT stable'})",
    ]
    header = ["segment", "users", *seg["features"]]
    rows = [
        [label, str(seg["sizes"][label]), *(str(seg["centroids"][label][f]) for f in seg["features"])]
        for label in LABELS
    ]
    return lines + ["  " + line for line in _table(header, rows)]


def _finding_lines(findings: list[dict[str, Any]]) -> list[str]:
    """The findings' section: a table of every finding, then why and what to do for each SoP and ET."""
    lines = ["", "Findings (recurring error kinds; share of each segment's users who saw it):"]
    header = ["class", "stage", "error kind", "users", "Beginner", "Intermed.", "Expert"]
    rows = [
        [
            f["class"],
            f["stage"],
            f["error_kind"][:60],
            str(f["users"]),
            *(_pct(f["shares"].get(label)) for label in LABELS),
        ]
        for f in findings
    ]
    lines += ["  " + line for line in _table(header, rows)]
    for f in findings:
        if f["class"] not in (SOP, ET):
            continue
        lines += [
            "",
            f"  {f['class']} {f['error_kind']} ({STAGE_TITLES.get(f['stage'], f['stage'])}): {f['why']}",
            f"    action: {f['suggested_action']}",
        ]
        for example in f["examples"][:2]:
            lines.append(
                f"    e.g. {example['at']} {example['user']} {example['model'] or ''} "
                f"{example['action']}: {' '.join(example['message'].split())[:140]}"
            )
    return lines


def _sensitivity_lines(sens: dict[str, Any]) -> list[str]:
    """What would change if the SoP thresholds moved ten points down or up."""
    lines = ["", "If the SoP thresholds (50/65/80%) moved:"]
    for key in ("-10", "+10"):
        move = sens.get(key)
        if move is None:
            continue
        changed = (
            "; ".join(f"{k}: {v['from']} -> {v['to']}" for k, v in move["changed"].items()) or "no change"
        )
        t = move["thresholds"]
        lines.append(
            f"  {key} points ({t['Expert']:.0%}/{t['Intermediate']:.0%}/{t['Beginner']:.0%}): {changed}"
        )
    return lines


def collect_demo_runs(api: ApiGetter, settings: FactorySettings) -> SourceStatus:
    """While the demo's Airflow runs: keep the runs it triggered, for the findings at its end."""
    return collect_all(EventStore(AnalyzerSettings.of(settings)), settings, api=api, registry=False)[0]


def demo_findings(settings: FactorySettings) -> str:
    """The Analyzer's findings on the demo's own events: printed at the end of ``make demo``."""
    try:
        return format_report(build_report(settings, api=None))
    except Exception as exc:  # the demo's own result matters more than its epilogue
        return f"Analyzer: no findings ({type(exc).__name__}: {exc})"
