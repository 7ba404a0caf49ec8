"""The fleet read model: one row per model, and one model in detail, for the CLI and the Airflow view.

Sources, each optional so a down component costs only its own columns: the specs (a broken spec
is a row with its reason), the MLflow registry (versions, decisions, aliases, canary share; two
calls for the whole fleet), the object store (quarantined batches, drift checks), the prediction
DB (rollout decisions, alerts) and Airflow (last runs, next scheduled run) through the
``AirflowSource`` the caller passes (``fleet_airflow``): the REST client for the CLI, the metadata
DB inside the api-server for the plugin. What could not be read is named in ``sources``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_factory.io import registry_read, storage, tag_schema, tracking
from model_factory.io.fleet_index import BrokenSpec, SpecFacts, index_path, read_specs
from model_factory.io.registry_state import CANARY, SHADOW, parse_share
from model_factory.monitoring.alerts import stored_alerts
from model_factory.monitoring.health_history import LatestFigures, history, latest_figures
from model_factory.review.card_store import has_card
from model_factory.rollout.fleet_airflow import AirflowSource
from model_factory.rollout.summary import (
    drift_checks,
    latest_drift_check,
    quarantined_batches,
    rollout_decisions,
)
from model_factory.settings import FactorySettings

log = logging.getLogger(__name__)

RECENT_ALERTS = 5
DAG_KINDS = ("retrain", "drift_watch", "canary", "review", "score")
"""DAG id suffixes the shipped templates use; only those Airflow has are linked."""


def dag_ids(model: str) -> dict[str, str]:
    """The DAG ids the factory gives a model (the retrain template's three; others may add more)."""
    return {kind: f"{model}__{kind}" for kind in DAG_KINDS}


def _ms_to_iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _registry(settings: FactorySettings, names: list[str], whole: bool) -> tuple[dict, dict]:
    """Registered models and their versions: for the whole fleet in paged searches, for some models
    (``show``, one page of ``status``) by ``name IN (...)``, so one page never reads the other 9,950.
    Through ``io.registry_read``: the REST API or MLflow's tables when it can, not MLflow's client."""
    registered, versions = registry_read.read_registry(settings, None if whole else names)
    wanted = set(names)
    return (
        {name: model for name, model in registered.items() if name in wanted},
        {name: versions.get(name, []) for name in names},
    )


def _version_row(mv: Any, metric: str, aliases: dict[str, str]) -> dict:
    tags = dict(mv.tags or {})
    checklist = {
        k.removeprefix(tag_schema.CHECKLIST + "."): v
        for k, v in tags.items()
        if k.startswith(tag_schema.CHECKLIST + ".") and not k.endswith(".reason")
    }
    return {
        "version": str(mv.version),
        "created": _ms_to_iso(mv.creation_timestamp),
        "decision": tags.get(tag_schema.DECISION),
        "reason": tags.get(tag_schema.DECISION_REASON),
        "metric": _float(tags.get(tag_schema.holdout_metric(metric))),
        "aliases": sorted(a for a, v in aliases.items() if v == str(mv.version)),
        "run_id": mv.run_id,
        "checklist": tags.get(tag_schema.CHECKLIST),
        "checklist_items": checklist,
        "review": tags.get(tag_schema.REVIEW) or tags.get(tag_schema.REVIEW_DECISION),
    }


def _serving(registered: Any) -> dict:
    aliases = {a: str(v) for a, v in (registered.aliases or {}).items()} if registered else {}
    tags = dict(registered.tags or {}) if registered else {}
    canary = aliases.get(CANARY)
    applies = canary and tags.get(tag_schema.CANARY_VERSION) == canary
    share = _float(tags.get(tag_schema.CANARY_SHARE)) if applies else None
    return {
        "aliases": aliases,
        "champion": aliases.get("champion"),
        "challenger": aliases.get("challenger"),
        "canary": _canary(canary, share, tags),
        "pinned": tags.get(tag_schema.PINNED_VERSION),
        "shadow": _shadow(aliases.get(SHADOW), tags),
    }


def _shadow(version: str | None, tags: dict) -> dict | None:
    if not version or tags.get(tag_schema.SHADOW_VERSION) != version:
        return None
    return {
        "version": version,
        "share": parse_share(tags.get(tag_schema.SHADOW_SHARE)),
        "started_at": tags.get(tag_schema.SHADOW_STARTED_AT),
    }


def _canary(version: str | None, share: float | None, tags: dict) -> dict | None:
    if not version:
        return None
    return {
        "version": version,
        "share": share or 0.0,
        "stage": tags.get(tag_schema.CANARY_STAGE),
        "started_at": tags.get(tag_schema.CANARY_STARTED_AT),
    }


STORE_TREES = ("drift", "quarantine", "health")
LISTING_THREADS = 8
"""Listings of a page's model folders in flight at once on a remote store (one request each)."""


def _store_listing(
    settings: FactorySettings, only: list[str] | None = None
) -> dict[tuple[str, str], list[str]]:
    """The store's drift/, quarantine/ and health/ trees grouped by (tree, model). The whole fleet:
    three listings of the whole trees (not three per model: on S3 each listing is a request). Some
    models (a page, ``show``): their own folders only, so a page costs its models' files, not
    every model's history (on S3 the page's listings go out ``LISTING_THREADS`` at a time)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    prefixes = {tree: storage.join(settings.store_uri, tree).rstrip("/") + "/" for tree in STORE_TREES}
    if only is None:
        for tree, prefix in prefixes.items():
            for uri in storage.list_uris(prefix):
                grouped.setdefault((tree, uri.removeprefix(prefix).split("/", 1)[0]), []).append(uri)
        return grouped
    wanted = [(tree, model) for model in only for tree in STORE_TREES]

    def listing(key: tuple[str, str]) -> list[str]:
        return storage.list_uris(prefixes[key[0]] + f"{key[1]}/")

    if settings.store_uri.startswith("file:") or len(wanted) <= len(STORE_TREES):
        found = [listing(key) for key in wanted]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(LISTING_THREADS) as pool:
            found = list(pool.map(listing, wanted))
    for key, uris in zip(wanted, found, strict=True):
        if uris:
            grouped[key] = uris
    return grouped


def _alerts(settings: FactorySettings, names: list[str]) -> dict[str, list[dict]]:
    db = settings.prediction_db
    if db.startswith("sqlite:///") and not os.path.exists(db.removeprefix("sqlite:///")):
        return {}
    out: dict[str, list[dict]] = {}
    for alert in stored_alerts(db, names, limit=RECENT_ALERTS * max(len(names), 1) * 4):
        out.setdefault(alert["model"], []).append(alert)
    return out


def _health_figures(settings: FactorySettings, names: list[str]) -> dict[tuple[str, str], LatestFigures]:
    db = settings.prediction_db
    if db.startswith("sqlite:///") and not os.path.exists(db.removeprefix("sqlite:///")):
        return {}  # no gateway and no health check yet
    import sqlalchemy as sa

    engine = sa.create_engine(db)
    try:
        return latest_figures(engine, names)
    finally:
        engine.dispose()


def _health_history(settings: FactorySettings, model: str) -> list:
    """The model's ``model_health`` rows (``HealthRow``), oldest day first."""
    db = settings.prediction_db
    if db.startswith("sqlite:///") and not os.path.exists(db.removeprefix("sqlite:///")):
        return []
    import sqlalchemy as sa

    engine = sa.create_engine(db)
    try:
        return [asdict(row) for row in history(engine, model)]
    finally:
        engine.dispose()


def latest_health_check(uris: list[str]) -> dict | None:
    """The newest ``<store>/health/<model>/<ds>/report.json``'s decision and expiry forecast."""
    reports = sorted(uri for uri in uris if uri.endswith("/report.json"))
    if not reports:
        return None
    report = storage.read_json(reports[-1])
    keys = ("ds", "action", "reason", "expiry", "retrain_by", "cadence_days", "champion_version")
    return {key: report.get(key) for key in keys} | {"report_uri": reports[-1]}


def _health(figures: dict, check: dict | None, name: str, champion: str | None) -> dict | None:
    """The champion's live (realized) and estimated metric and the last check's expiry forecast."""
    found = figures.get((name, champion or ""))
    if found is None and check is None:
        return None
    return {
        "version": champion,
        "live": found.realized if found else None,
        "live_day": found.realized_day.isoformat() if found and found.realized_day else None,
        "estimated": found.estimated if found else None,
        "estimated_day": found.estimated_day.isoformat() if found and found.estimated_day else None,
        "check": check,
    }


def _attempt(sources: dict, name: str, read: Callable[[], Any], default: Any) -> Any:
    """Run one source's read; a failure is recorded in ``sources`` and costs only its columns."""
    try:
        value = read()
    except Exception as exc:  # each source may be down in its own way; say which and go on
        sources[name] = f"unreachable: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        log.info("fleet: %s not read: %s", name, exc)
        return default
    sources.setdefault(name, "ok")
    return value


def fleet(
    settings: FactorySettings, airflow: AirflowSource | None = None, only: str | list[str] | None = None
) -> dict:
    """Every model of ``settings.specs_dir``: ``{"models": [row...], "sources": {...}, "at": iso}``;
    with ``only`` (a model name, or a page of names), those models' rows alone, read without
    touching the others (``show``, one page of ``status`` at 10,000 models)."""
    return _read_fleet(settings, airflow, only)[0]


def fleet_specs(
    settings: FactorySettings, only: str | list[str] | None = None
) -> tuple[list[SpecFacts], list[BrokenSpec]]:
    """The specs' facts through the persistent index (``io.fleet_index``): a fresh process parses
    only the files that changed since the index last saw them."""
    wanted = None if only is None else {only} if isinstance(only, str) else set(only)
    return read_specs(settings.specs_dir, index_path(settings.home), settings, wanted)


def _read_fleet(
    settings: FactorySettings, airflow: AirflowSource | None, only: str | list[str] | None
) -> tuple[dict, dict, dict]:
    """``fleet``'s summary, and the registered models and versions it was built from."""
    specs, bad = fleet_specs(settings, only)
    names = [spec.model for spec in specs]
    sources: dict[str, str] = {}
    whole = only is None
    registered, versions = _attempt(sources, "mlflow", lambda: _registry(settings, names, whole), ({}, {}))
    alerts = _attempt(sources, "alerts", lambda: _alerts(settings, names), {})
    listed = _attempt(sources, "store", lambda: _store_listing(settings, None if whole else names), {})
    figures = _attempt(sources, "health", lambda: _health_figures(settings, names), {})
    all_dags = [dag for spec in specs for dag in dag_ids(spec.name).values()]
    if airflow is None:
        sources["airflow"] = "not asked"
        states: dict[str, dict] = {}
        runs: dict[str, dict] = {}
    else:
        states = _attempt(sources, "airflow", lambda: airflow.dag_states(all_dags), {})
        runs = (
            _attempt(sources, "airflow", lambda: airflow.latest_runs(all_dags), {})
            if sources["airflow"] == "ok"
            else {}
        )
    rows = []
    for spec in specs:
        rows.append(
            _model_row(spec, settings, sources, registered, versions, alerts, states, runs, listed, figures)
        )
    rows += [broken_row(error.path, error.problems) for error in bad]
    rows.sort(key=lambda row: row["model"])
    summary = {"models": rows, "sources": sources, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    return summary, registered, versions


def broken_row(path: str, problems: list[tuple[str, str]]) -> dict:
    """A spec that does not parse, as a fleet row with its reason."""
    # the id model_factory.airflow.build.safe_id gives (that module imports Airflow)
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", Path(path).name.removesuffix(".yaml"))[:236] or "_"
    reason = "; ".join(f"{field}: {why}" if field else why for field, why in problems)
    return {
        "model": Path(path).stem,
        "status": "broken",
        "reason": reason,
        "file": path,
        "dags": {"invalid_spec": f"invalid_spec__{safe}"},
    }


def _model_row(
    spec: SpecFacts,
    settings: FactorySettings,
    sources: dict,
    registered: dict,
    versions: dict,
    alerts: dict,
    states: dict,
    runs: dict,
    listed: dict,
    figures: dict,
) -> dict:
    name, metric = spec.model, spec.metric
    serving = _serving(registered.get(name))
    rows = [_version_row(mv, metric, serving["aliases"]) for mv in versions.get(name, [])]
    by_version = {row["version"]: row for row in rows}
    champion = by_version.get(serving["champion"] or "")
    latest = rows[-1] if rows else None
    last_check = _attempt(
        sources, "store", lambda: latest_drift_check(settings, name, listed.get(("drift", name), [])), None
    )
    quarantined = _attempt(
        sources,
        "store",
        lambda: quarantined_batches(settings, name, listed.get(("quarantine", name), [])),
        [],
    )
    ids = dag_ids(spec.name)
    retrain_run, drift_run = runs.get(ids["retrain"]), runs.get(ids["drift_watch"])
    recent = alerts.get(name, [])[:RECENT_ALERTS]
    check = _attempt(sources, "store", lambda: latest_health_check(listed.get(("health", name), [])), None)
    return {
        "model": name,
        "status": "ok",
        "template": spec.template,
        "task": spec.task,
        "owner": spec.owner,
        "metric": metric,
        "threshold": spec.threshold,
        "psi_threshold": spec.psi_threshold,
        "champion": serving["champion"],
        "champion_metric": champion["metric"] if champion else None,
        "champion_run_id": champion["run_id"] if champion else None,
        "canary": serving["canary"],
        "challenger": serving["challenger"],
        "pinned": serving["pinned"],
        "shadow": serving["shadow"],
        "held": [r["version"] for r in rows if r["decision"] == "held_for_review"],
        "versions": len(rows),
        "last_version": latest,
        "last_training": {
            "when": (retrain_run or {}).get("when") or (latest or {}).get("created"),
            "outcome": (retrain_run or {}).get("state") or ((latest or {}).get("decision")),
            "version_decision": (latest or {}).get("decision"),
            "url": (retrain_run or {}).get("url"),
        },
        "last_drift_check": last_check,
        "health": _health(figures, check, name, serving["champion"]),
        "last_drift_run": drift_run,
        "next_run": (states.get(ids["retrain"]) or {}).get("next_run"),
        "paused": (states.get(ids["retrain"]) or {}).get("is_paused"),
        "dags": {kind: dag for kind, dag in ids.items() if dag in states}
        if states
        else {kind: ids[kind] for kind in ("retrain", "drift_watch", "canary")},
        "quarantined": len(quarantined),
        "quarantines": quarantined,
        "alerts": recent,
        "checklist": (champion or latest or {}).get("checklist"),
    }


def model_detail(settings: FactorySettings, model: str, airflow: AirflowSource | None = None) -> dict:
    """One model in full: its fleet row, every version, rollout history, drift checks, quarantines,
    alerts, and which versions have a model card. KeyError naming the known models if unknown."""
    summary, registered, versions = _read_fleet(settings, airflow, only=model)
    row = next((r for r in summary["models"] if r["model"] == model), None)
    if row is None:
        names = sorted(path.stem for path in Path(settings.specs_dir).glob("*.yaml"))
        known = ", ".join(names[:50]) + (f" and {len(names) - 50} more" if len(names) > 50 else "")
        raise KeyError(f"no model {model!r} in {settings.specs_dir} (known: {known or 'none'})")
    detail = {**row, "sources": summary["sources"]}
    if row["status"] == "broken":
        return detail
    sources = summary["sources"]
    serving = _serving(registered.get(model))
    detail["versions_detail"] = [
        _version_row(mv, row["metric"], serving["aliases"]) for mv in reversed(versions.get(model, []))
    ]
    _attempt(sources, "mlflow", lambda: _mark_cards(settings, detail["versions_detail"][:20]), None)
    detail["drift_checks"] = list(
        reversed(_attempt(sources, "store", lambda: drift_checks(settings, model), []))
    )
    detail["rollouts"] = list(
        reversed(_attempt(sources, "decisions", lambda: rollout_decisions(settings, model), []))
    )
    detail["health_history"] = _attempt(sources, "health", lambda: _health_history(settings, model), [])
    detail["all_alerts"] = _attempt(sources, "alerts", lambda: _alerts(settings, [model]), {}).get(model, [])
    # imported here, not at the top: rollout.shadow pulls sklearn and skops in through
    # pipeline.registry, a third of a `status` process's CPU, and only `show` needs it
    from model_factory.rollout.shadow import shadow_comparison

    tags = dict(registered[model].tags or {}) if registered.get(model) else {}
    detail["shadow_comparison"] = _attempt(
        sources, "decisions", lambda: shadow_comparison(settings, model, tags), None
    )
    return detail


def _mark_cards(settings: FactorySettings, rows: list[dict]) -> None:
    """``card``: True where the version's run logged ``model_card.html``."""
    client = tracking.connect(settings)
    for row in rows:
        if row["run_id"]:
            row["card"] = has_card(client, row["run_id"])


def latest_cards(settings: FactorySettings, summary: dict) -> None:
    """``card_version`` on each fleet row: the champion's card, else the latest version's, when its
    run logged ``model_card.html`` (one artifact listing per model; the runs are the ones the
    registry read gave the row)."""

    def mark() -> None:
        client = None
        for row in summary["models"]:
            if row["status"] != "ok" or not row.get("last_version"):
                continue
            latest = row["last_version"]
            wanted = {row["champion"]: row.get("champion_run_id"), latest["version"]: latest["run_id"]}
            for version, run_id in wanted.items():
                if not version or not run_id:
                    continue
                client = client or tracking.connect(settings)
                if has_card(client, run_id):
                    row["card_version"] = version
                    break

    _attempt(summary["sources"], "mlflow", mark, None)
