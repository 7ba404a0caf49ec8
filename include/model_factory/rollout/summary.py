"""A holistic view of all models: registry state and quarantined batches, as rows and a table."""

from __future__ import annotations

import os

from model_factory.io import storage, tag_schema, tracking
from model_factory.io.batches import validated_dates
from model_factory.io.registry_state import CHALLENGER, CHAMPION, current_alias_version
from model_factory.serving import predlog
from model_factory.serving.settings import prediction_db_uri
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec


def quarantined_batches(settings: FactorySettings, model: str, uris: list[str] | None = None) -> list[dict]:
    """Every quarantined batch of a model that still stands (its date has no validated batch
    since), with the first line of its reason (``uris``: the model's quarantine listing when
    the caller already has it)."""
    out: list[dict] = []
    if uris is None:
        uris = storage.list_uris(storage.join(settings.store_uri, "quarantine", model))
    if not uris:
        return out
    superseded = validated_dates(settings.store_uri, model)
    for uri in uris:
        if not uri.endswith("/REASON.txt") or uri.rsplit("/", 3)[-3] in superseded:
            continue
        text = storage.read_bytes(uri).decode()
        why = [line[2:] for line in text.splitlines() if line.startswith("- ")]
        out.append({"ds": uri.rsplit("/", 3)[-3], "folder": uri.rsplit("/", 1)[0], "reasons": why})
    return out


def drift_checks(settings: FactorySettings, model: str, uris: list[str] | None = None) -> list[dict]:
    """Every drift check of a model (one per batch date), oldest first (``uris``: as above)."""
    if uris is None:
        uris = storage.list_uris(storage.join(settings.store_uri, "drift", model))
    out = [_drift_check(uri) for uri in uris if uri.endswith("/report.json")]
    return sorted(out, key=lambda check: check["ds"])


def latest_drift_check(settings: FactorySettings, model: str, uris: list[str] | None = None) -> dict | None:
    """The newest drift check alone (a fleet row): one report read, not the model's whole history.
    Reports live at ``drift/<model>/<ds>/report.json``; the newest ``ds`` folder holds the newest."""
    if uris is None:
        uris = storage.list_uris(storage.join(settings.store_uri, "drift", model))
    reports = sorted((uri.rsplit("/", 2)[-2], uri) for uri in uris if uri.endswith("/report.json"))
    return _drift_check(reports[-1][1]) if reports else None


def _drift_check(uri: str) -> dict:
    report = storage.read_json(uri)
    features = (report.get("data_drift") or {}).get("features") or {}
    return {
        "ds": report["ds"],
        "status": report["status"],
        "reasons": report["reasons"],
        "report_uri": uri.removesuffix(".json") + ".html",
        "psi": {name: f.get("psi") for name, f in features.items()},
    }


def rollout_decisions(settings: FactorySettings, model: str) -> list[dict]:
    """Canary starts, ramps, promotions, rollbacks and ops actions, oldest first (prediction DB)."""
    uri = prediction_db_uri(settings)
    if uri.startswith("sqlite:///") and not os.path.exists(uri.removeprefix("sqlite:///")):
        return []  # no gateway and no rollout yet
    return predlog.decisions(uri, model)


def model_rows(settings: FactorySettings, specs: list[ModelSpec]) -> list[dict]:
    client = tracking.connect(settings)
    rows = []
    for spec in specs:
        name = spec.registered_model_name
        versions = client.search_model_versions(f"name = '{name}'")
        decisions = [v.tags.get(tag_schema.DECISION, "?") for v in versions]
        champion = current_alias_version(client, name, CHAMPION)
        metric = spec.gates.primary_metric
        champion_metric = None
        if champion:
            tag = client.get_model_version(name, champion).tags.get(tag_schema.holdout_metric(metric))
            champion_metric = float(tag) if tag else None
        rows.append(
            {
                "model": name,
                "task": spec.task,
                "versions": len(versions),
                "blessed": decisions.count("blessed"),
                "rejected": decisions.count("rejected"),
                "held_for_review": decisions.count("held_for_review"),
                "champion": champion,
                "metric": metric,
                "champion_metric": champion_metric,
                "challenger": current_alias_version(client, name, CHALLENGER),
                "quarantined": quarantined_batches(settings, name),
                "drift_checks": drift_checks(settings, name),
                "rollouts": rollout_decisions(settings, name),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    header = [
        "model",
        "task",
        "versions",
        "blessed/rejected/held",
        "champion",
        "metric",
        "challenger",
        "quarantined",
        "last drift check",
    ]
    table = [header]
    for r in rows:
        metric = f"{r['metric']}={r['champion_metric']:.4f}" if r["champion_metric"] is not None else "-"
        table.append(
            [
                r["model"],
                r["task"],
                str(r["versions"]),
                f"{r['blessed']}/{r['rejected']}/{r['held_for_review']}",
                f"v{r['champion']}" if r["champion"] else "-",
                metric,
                f"v{r['challenger']}" if r["challenger"] else "-",
                str(len(r["quarantined"])),
                (
                    f"{r['drift_checks'][-1]['status']} ({r['drift_checks'][-1]['ds']})"
                    if r.get("drift_checks")
                    else "-"
                ),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    details = [
        f"  {r['model']} {q['ds']}: {'; '.join(q['reasons'][:2])}  [{q['folder']}]"
        for r in rows
        for q in r["quarantined"]
    ]
    if details:
        lines += ["", "Quarantined batches (nothing was trained on them):", *details]
    checks = [
        f"  {r['model']} {c['ds']}: {c['status']}: {'; '.join(c['reasons'][:2]) or 'no finding'}"
        f"\n      report: {c['report_uri']}"
        for r in rows
        for c in r.get("drift_checks", [])
    ]
    if checks:
        lines += ["", "Drift checks against the champion's training baseline:", *checks]
    shown = (
        "canary_started",
        "canary_promoted",
        "canary_rolled_back",
        "canary_aborted",
        "promoted",
        "rolled_back",
        "pinned",
        "unpinned",
        "load_failed",
        "shadow_started",
        "shadow_stopped",
        "shadow_load_failed",
    )
    rollouts = [
        f"  {r['model']} v{d['version']} {d['action']} by {d['actor']}: {(d['reason'] or '')[:160]}"
        for r in rows
        for d in r.get("rollouts", [])
        if d["action"] in shown
    ]
    if rollouts:
        lines += ["", "Rollout decisions (live traffic, canary DAG and ops):", *rollouts]
    return "\n".join(lines)
