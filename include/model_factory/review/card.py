"""The model card: one self-contained HTML page per version (Jinja2, images inline as base64
PNG so it opens offline), logged with the version's MLflow run and linked from the registered
version's description.

``evaluate_sections`` is the plain part (fitted model + holdout + spec in, metrics, plots,
slices and importance out); ``produce_card`` gathers the rest from MLflow and the store,
renders, logs, links and records the checklist. A card that fails to render never fails the
registration: the checklist then fails "model card missing", naming the error.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from model_factory.io import attestation, storage, tag_schema, tracking
from model_factory.review.card_store import CARD_ARTIFACT, card_uri
from model_factory.settings import FactorySettings
from model_factory.spec import METRICS, ModelSpec

if TYPE_CHECKING:
    from model_factory.review.checklist import Facts

log = logging.getLogger(__name__)

CARD_DATA_ARTIFACT = "review/card.json"
BUDGET_ARTIFACT = "review/data_budget.json"
TEMPLATES = Path(__file__).parent / "templates"


def evaluate_sections(
    spec: ModelSpec, model: Any, holdout: pd.DataFrame, champion: Any | None = None
) -> dict:
    """Holdout metrics (candidate and champion on the same rows), plots, slices, importance."""
    from model_factory.pipeline.evaluation import metrics_from_predictions, predict_holdout
    from model_factory.review import plots
    from model_factory.review.importance import permutation_importance_sampled, slice_metrics

    timings: dict[str, float] = {}
    started = time.perf_counter()
    preds = {"candidate": predict_holdout(model, holdout, spec)}
    if champion is not None:
        preds["champion"] = predict_holdout(champion, holdout, spec)
    metrics = {name: metrics_from_predictions(p) for name, p in preds.items()}
    timings["predict_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    figures = plots.evaluation_plots(preds)
    timings["plots_seconds"] = time.perf_counter() - started

    slices = slice_metrics(preds["candidate"], holdout, spec)
    started = time.perf_counter()
    try:
        importance = permutation_importance_sampled(model, holdout, spec)
        if importance["features"]:
            figures["importance"] = plots.importance_plot(importance["features"])
    except Exception as exc:  # named on the card and failing the 'explanation' item
        importance = {"features": [], "note": f"failed: {type(exc).__name__}: {exc}"}
    timings["importance_seconds"] = time.perf_counter() - started
    return {
        "holdout_rows": len(holdout),
        "metrics": metrics,
        "metric_names": [m for m, info in METRICS.items() if info["task"] == spec.task],
        "figures": figures,
        "slices": slices,
        "importance": importance,
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


# The run tags of the card's lineage table, in order.
LINEAGE_TABLE_TAGS = (
    tag_schema.DS,
    tag_schema.DATA_ROWS,
    tag_schema.DATA_SHA256,
    tag_schema.SPEC_HASH,
    tag_schema.GIT_REVISION,
    tag_schema.REQUIREMENTS_SHA256,
    tag_schema.HOLDOUT_URI,
    tag_schema.AIRFLOW_DAG_ID,
    tag_schema.AIRFLOW_RUN_ID,
)


def render_card(context: dict) -> str:
    """The card's HTML from its context (see ``produce_card`` for the keys)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
    from model_factory.review.budget import cpu_time

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
    )
    env.filters["num"] = lambda v, digits=4: "n/a" if v is None or v != v else f"{v:.{digits}f}"
    env.filters["pct"] = lambda v: "n/a" if v is None or v != v else f"{v:.1%}"
    env.globals.update(lineage_tags=LINEAGE_TABLE_TAGS, tag_prefix=tag_schema.PREFIX)
    env.filters["cpu"] = lambda v: "n/a" if v is None or v != v else cpu_time(v)
    return env.get_template("model_card.html.j2").render(**context)


def _validation_summaries(inputs: list[dict], s3: storage.S3Options | None) -> list[dict]:
    """The GX summary beside each validated batch the version was trained on."""
    out = []
    for info in inputs:
        uri = info["uri"].rsplit("/", 1)[0] + "/validation.json"
        row = {"uri": info["uri"], "rows": info.get("rows"), "sha256": info.get("sha256", "")}
        try:
            result = storage.read_json(uri, s3)
            stats = result.get("statistics", {})
            row.update(
                success=result.get("success"),
                evaluated=stats.get("evaluated_expectations"),
                successful=stats.get("successful_expectations"),
            )
        except Exception as exc:
            row.update(success=None, error=f"no validation result at {uri}: {type(exc).__name__}")
        out.append(row)
    return out


def _load_json_artifact(client: Any, run_id: str, path: str) -> dict | None:
    import mlflow

    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")
    except Exception:
        return None


def _budget_context(spec: ModelSpec, budget: dict | None) -> dict | None:
    if budget is None or "figure" in budget or not budget.get("points"):
        return budget
    from model_factory.review.plots import budget_plot

    scored = [p for p in budget["points"] if p.get("metric") is not None]
    figure = budget_plot(scored, budget["metric"], budget.get("recommended_share")) if scored else None
    return {**budget, "figure": figure}


def _checklist_facts(mv: Any, run: Any, lineage: dict | None) -> Facts:
    """What the checklist knows before the card is made: the version's decision, the run's tags,
    lineage and training cost."""
    from model_factory.review.checklist import Facts

    return Facts(
        decision=mv.tags.get(tag_schema.DECISION),
        decision_reason=mv.tags.get(tag_schema.DECISION_REASON, ""),
        run_tags=run.data.tags,
        has_lineage_artifact=lineage is not None,
        train_cpu_seconds=run.data.metrics.get("train_cpu_seconds"),
    )


def _card_models(
    client: Any, name: str, version: str, champion_version: str | None, settings: FactorySettings
) -> tuple[Any, Any | None]:
    """The version's fitted model and its champion's (None without another champion).

    The one safe loader, by version number (never by a run tag anyone can rewrite): the card of a
    rejected or held version is made too, so only the champion must be blessed."""
    from model_factory.io.model_loading import load_registered

    code_dir = settings.specs_dir / "code"
    model = load_registered(
        client, name, version, code_dir=code_dir, require_blessed=False, key=None
    ).estimator
    champion = None
    if champion_version and champion_version != version:
        key = attestation.signing_key(settings)
        champion = load_registered(client, name, str(champion_version), code_dir=code_dir, key=key).estimator
    return model, champion


def _decision_section(facts: Facts, decision: dict, mv: Any) -> dict:
    """The card's decision: status and reason, the gain interval over the champion, the review."""
    review_prefix = f"{tag_schema.REVIEW}."
    return {
        "status": facts.decision,
        "reason": facts.decision_reason,
        "interval": decision.get("champion_gain_interval"),
        "review": {k.split(".", 2)[2]: v for k, v in mv.tags.items() if k.startswith(review_prefix)},
    }


def _log_card(client: Any, run_id: str, context: dict) -> str:
    """Render the card, log it and its data (``CARD_DATA_ARTIFACT``, to re-render) with the run."""
    html = render_card(context)
    client.log_text(run_id, html, CARD_ARTIFACT)
    client.log_text(run_id, json.dumps(_storable(context), default=str), CARD_DATA_ARTIFACT)
    return html


def produce_card(
    spec: ModelSpec,
    registered: dict,
    settings: FactorySettings,
    s3: storage.S3Options | None = None,
) -> dict:
    """Build, log and link the card of a registered version; record its checklist.

    Never raises for a card problem: the version stays registered and the checklist says
    "model card missing" with the error.
    """
    from model_factory.io.batches import parse_batch
    from model_factory.pipeline.registry import card_page_url, link_card
    from model_factory.review.checklist import evaluate_checklist, record_checklist

    started = time.perf_counter()
    client = tracking.connect(settings)
    name, version = registered["model"], str(registered["version"])
    mv = client.get_model_version(name, version)
    run_id = tracking.version_run_id(mv)
    run = client.get_run(run_id)
    tags = run.data.tags
    decision = _load_json_artifact(client, run_id, "decision.json") or {}
    lineage = _load_json_artifact(client, run_id, "lineage.json")
    facts = _checklist_facts(mv, run, lineage)
    context: dict[str, Any] = {}
    try:
        holdout_uri = tags[tag_schema.HOLDOUT_URI]
        holdout = parse_batch(storage.read_bytes(holdout_uri, s3), "parquet", holdout_uri)
        champion_version = decision.get("champion_version")
        model, champion = _card_models(client, name, version, champion_version, settings)
        sections = evaluate_sections(spec, model, holdout, champion)
        facts.importance, facts.slices = sections["importance"], sections["slices"]
        context = {
            "spec": spec.model_dump(mode="json", by_alias=True),
            "template": getattr(spec, "template", None) or "retrain",
            "model": name,
            "version": version,
            "run_id": run_id,
            "created": mv.creation_timestamp,
            "champion_version": champion_version if champion is not None else None,
            "primary_metric": spec.gates.primary_metric,
            "lineage": {
                "inputs": (lineage or {}).get("inputs", []),
                "tags": {k: v for k, v in tags.items() if k.startswith(tag_schema.PREFIX)},
            },
            "validation": _validation_summaries((lineage or {}).get("inputs", []), s3),
            "cost": {
                k: run.data.metrics.get(k)
                for k in ("train_wall_seconds", "train_cpu_seconds", "process_peak_rss_mb")
            },
            "params": run.data.params,
            "decision": _decision_section(facts, decision, mv),
            "budget": _budget_context(spec, _load_json_artifact(client, run_id, BUDGET_ARTIFACT)),
            **sections,
        }
        facts.card_uri = card_uri(run.info.artifact_uri)
        items = evaluate_checklist(spec, facts)
        context["checklist"] = items
        html = _log_card(client, run_id, context)
    except Exception as exc:
        log.exception("model card of %s v%s failed", name, version)
        facts.card_uri, facts.card_error = None, f"{type(exc).__name__}: {exc}"
        html = ""
    items = evaluate_checklist(spec, facts)
    recorded = record_checklist(client, name, version, items)
    link_card(
        client, name, version, facts.card_uri, facts.card_error or "", card_page_url(settings, name, version)
    )
    return {
        "model": name,
        "version": version,
        "card_uri": facts.card_uri,
        "card_error": facts.card_error,
        "card_bytes": len(html.encode()),
        "checklist": recorded,
        "timings": {**context.get("timings", {}), "card_seconds": round(time.perf_counter() - started, 3)},
    }


def _storable(context: dict) -> dict:
    from dataclasses import asdict, is_dataclass

    return {
        k: ([asdict(i) for i in v] if k == "checklist" else v)
        for k, v in context.items()
        if not is_dataclass(v)
    }


def add_budget_to_card(spec: ModelSpec, run_id: str, budget: dict, settings: FactorySettings) -> str | None:
    """Log the data budget with the run and re-render the card with it (when the card exists).

    The budget runs as its own task beside the decision; whichever finishes last puts it on
    the card (``produce_card`` reads this artifact).
    """
    from model_factory.review.checklist import Item

    client = tracking.connect(settings)
    client.log_dict(run_id, budget, BUDGET_ARTIFACT)
    stored = _load_json_artifact(client, run_id, CARD_DATA_ARTIFACT)
    if stored is None:
        return None
    stored["budget"] = _budget_context(spec, budget)
    stored["checklist"] = [Item(**i) for i in stored["checklist"]]
    _log_card(client, run_id, stored)
    return card_uri(client.get_run(run_id).info.artifact_uri)


def after_deployment(rows: list[dict], holdout_metric: float | None) -> dict | None:
    """The "After deployment" section from the ``model_health`` rows of one version (plain dicts:
    review does not import monitoring): days served, the outcome-weighted realized metric against
    the holdout's, the latest estimate, and the days themselves (newest first, at most 30)."""
    if not rows:
        return None
    ordered = sorted(rows, key=lambda r: str(r["day"]))
    judged = [r for r in ordered if r.get("realized") is not None and r.get("outcomes")]
    outcomes = sum(r["outcomes"] for r in judged)
    realized = sum(r["realized"] * r["outcomes"] for r in judged) / outcomes if outcomes else None
    estimated = next((r for r in reversed(ordered) if r.get("estimated") is not None), None)
    return {
        "metric": ordered[-1]["metric"],
        "first_day": str(ordered[0]["day"]),
        "last_day": str(ordered[-1]["day"]),
        "predictions": sum(r["predictions"] for r in ordered),
        "outcomes": outcomes,
        "realized": realized,
        "holdout": holdout_metric,
        "latest_estimate": estimated["estimated"] if estimated else None,
        "latest_estimate_day": str(estimated["day"]) if estimated else None,
        "days": [{**r, "day": str(r["day"])} for r in reversed(ordered[-30:])],
    }


def add_health_to_card(name: str, version: str, rows: list[dict], settings: FactorySettings) -> str | None:
    """Re-render the card of a version that served with its post-deployment performance (its
    ``model_health`` rows); None when the version has no stored card data to re-render."""
    from model_factory.review.checklist import Item

    client = tracking.connect(settings)
    run_id = tracking.version_run_id(client.get_model_version(name, version))
    stored = _load_json_artifact(client, run_id, CARD_DATA_ARTIFACT)
    if stored is None:
        return None
    holdout = (stored.get("metrics") or {}).get(stored.get("primary_metric"))
    stored["after_deployment"] = after_deployment(rows, holdout if isinstance(holdout, float) else None)
    stored["checklist"] = [Item(**i) for i in stored["checklist"]]
    _log_card(client, run_id, stored)
    return card_uri(client.get_run(run_id).info.artifact_uri)


def data_budget_for_run(
    spec: ModelSpec, run_id: str, settings: FactorySettings, s3: storage.S3Options | None = None
) -> dict:
    """The data budget of a logged run: its own training rows (from its lineage) and holdout."""
    from model_factory.review.budget import run_data_budget
    from model_factory.review.reproduce import training_split

    client = tracking.connect(settings)
    lineage = _load_json_artifact(client, run_id, "lineage.json")
    if lineage is None:
        raise ValueError(f"run {run_id} has no lineage.json: cannot rebuild its training rows")
    train_df, holdout_df = training_split(
        spec, [i["uri"] for i in lineage["inputs"]], settings.chunk_rows, s3
    )
    budget = run_data_budget(spec, train_df, holdout_df)
    add_budget_to_card(spec, run_id, budget, settings)
    return budget
