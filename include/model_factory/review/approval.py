"""Approve or reject a version the gates held for review; expire one nobody reviewed.

Who, when and why are tagged on the version (``factory.review.by|at|reason|status``). An
approved version is blessed "by review": it becomes challenger (champion when there is none)
and its canary starts as for any blessed version; a rejected or expired one is tagged.

One decision per version: before writing anything, a review claims the version in the factory's
own database (:mod:`model_factory.io.claims`, a primary key only one caller can insert). An
approve racing a reject (or an expiry) on the same version: exactly one wins; the other is
refused naming the winner, and writes nothing, so the audit tags never mix.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from model_factory.contracts import Attribution
from model_factory.io import claims, tag_schema, tracking
from model_factory.io.airflow_api import AirflowApiError
from model_factory.io.registry_state import CHALLENGER, CHAMPION, current_alias_version
from model_factory.pipeline.registry import CHECKLIST_TAG, attest_version, attested, record_decision
from model_factory.settings import FactorySettings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

HELD = "held_for_review"
_NOUN = {"approved": "approval", "rejected": "rejection", "expired": "expiry"}


class ReviewError(ValueError):
    """A review request that cannot be carried out; the message says why."""


def _held(client, model: str, version: str):
    try:
        mv = client.get_model_version(model, version)
    except Exception as exc:
        raise ReviewError(f"model {model!r} has no version {version!r}") from exc
    status = mv.tags.get(tag_schema.DECISION)
    reviewed = mv.tags.get(tag_schema.REVIEW_STATUS)
    if reviewed:
        by, at = mv.tags.get(tag_schema.REVIEW_BY), mv.tags.get(tag_schema.REVIEW_AT)
        raise ReviewError(
            f"{model} v{version} was already {reviewed} by {by} at {at}: "
            f"{mv.tags.get(tag_schema.REVIEW_REASON)}"
        )
    if status != HELD:
        raise ReviewError(
            f"{model} v{version} is {status or 'not evaluated'}, not held for review: "
            "there is nothing to approve or reject"
        )
    return mv


def require_held(model: str, version: str, settings: FactorySettings) -> None:
    """ReviewError unless ``version`` is held and not reviewed yet."""
    _held(tracking.connect(settings), model, version)


def held_versions(model: str, settings: FactorySettings) -> list[dict]:
    """Versions waiting for a person, oldest first, with how long they have waited."""
    client = tracking.connect(settings)
    now = datetime.now(UTC).timestamp() * 1000
    out = []
    for mv in client.search_model_versions(f"name = '{model}'"):
        if mv.tags.get(tag_schema.DECISION) == HELD and not mv.tags.get(tag_schema.REVIEW_STATUS):
            out.append(
                {
                    "model": model,
                    "version": str(mv.version),
                    "reason": mv.tags.get(tag_schema.DECISION_REASON),
                    "waiting_hours": round((now - mv.creation_timestamp) / 3_600_000, 2),
                }
            )
    return sorted(out, key=lambda v: int(v["version"]))


def _refresh_checklist(client, model: str, version: str, passed: bool, reason: str) -> None:
    """The review settles the 'gates_passed' item; the overall result follows the items."""
    tags = client.get_model_version(model, version).tags
    if f"{CHECKLIST_TAG}.gates_passed" not in tags:
        return
    result = "pass" if passed else "fail"
    client.set_model_version_tag(model, version, f"{CHECKLIST_TAG}.gates_passed", result)
    if passed:  # a passing item's reason is not a tag (review.checklist.record_checklist)
        if f"{CHECKLIST_TAG}.gates_passed.reason" in tags:
            client.delete_model_version_tag(model, version, f"{CHECKLIST_TAG}.gates_passed.reason")
    else:
        client.set_model_version_tag(model, version, f"{CHECKLIST_TAG}.gates_passed.reason", reason[:5000])
    tags = client.get_model_version(model, version).tags
    prefix = f"{CHECKLIST_TAG}."
    items = [v for k, v in tags.items() if k.startswith(prefix) and "." not in k[len(prefix) :]]
    client.set_model_version_tag(
        model, version, CHECKLIST_TAG, "passed" if all(v == "pass" for v in items) else "failed"
    )


def _attest(client, settings: FactorySettings, model: str, version: str, decision: str) -> None:
    """Re-sign the version for the review's decision, with the model digest signed at registration."""
    mv = client.get_model_version(model, version)
    digest = (mv.tags or {}).get(tag_schema.MODEL_DIGEST, "")
    attest_version(client, settings, model, version, mv.run_id, decision, digest)


def _claim(settings: FactorySettings, mv: ModelVersion, status: str, actor: str) -> claims.Claim:
    """This review's claim on the version, or ReviewError naming the review that got there first.
    The same actor repeating the same decision (a retried task) carries on."""
    subject = f"review:{mv.name}:v{mv.version}:{mv.run_id}"
    won = claims.claim(claims.claims_db_uri(settings), subject, status, actor)
    if not won.won and (won.actor, won.outcome) != (actor, status):
        raise ReviewError(
            f"{mv.name} v{mv.version} was already {won.outcome} by {won.actor} at "
            f"{won.at}; this {_NOUN.get(status, status)} was not recorded"
        )
    return won


def _review(
    settings: FactorySettings, model: str, version: str, attribution: Attribution, status: str, apply
) -> dict:
    """Check the version is held, claim it, then record the review (``apply`` writes the rest).
    A failure after the claim releases it: the version is still held, anyone may decide again.
    The reason is recorded without its surrounding blanks."""
    client = tracking.connect(settings)
    attribution = replace(attribution, reason=attribution.reason.strip())
    mv = _held(client, model, version)
    if not attested(client, settings, model, version, HELD):
        raise ReviewError(
            f"{model} v{version} is tagged {HELD}, but the factory did not register it so "
            "(its attestation does not match): nothing to review"
        )
    won = _claim(settings, mv, status, attribution.actor)
    try:
        held_why = mv.tags.get(tag_schema.DECISION_REASON, "")
        details = {"status": status, "held_because": held_why, "claim": won.token}
        decision = record_decision(client, model, version, tag_schema.REVIEW_ACTION, attribution, details)
        why = f"{status} by {attribution.actor}: {attribution.reason} (held because: {held_why})"
        extra = apply(client, why)
    except Exception:
        if won.won:
            claims.release(claims.claims_db_uri(settings), won)
        raise
    return {**decision, "status": status, **extra, "changed": True}


def approve_version(model: str, version: str, settings: FactorySettings, attribution: Attribution) -> dict:
    """Bless a held version by review; it becomes challenger (or champion when there is none)."""

    def bless(client, why: str) -> dict:
        client.set_model_version_tag(model, version, tag_schema.DECISION, "blessed")
        client.set_model_version_tag(model, version, tag_schema.DECISION_REASON, why[:5000])
        _attest(client, settings, model, version, "blessed")
        _refresh_checklist(client, model, version, True, why)
        alias = CHAMPION if current_alias_version(client, model, CHAMPION) is None else CHALLENGER
        client.set_registered_model_alias(model, alias, version)
        return {"alias": alias}

    return _review(settings, model, version, attribution, "approved", bless)


def reject_version(
    model: str, version: str, settings: FactorySettings, attribution: Attribution, status: str = "rejected"
) -> dict:
    """Reject a held version by review (``status`` "expired" when the window ran out)."""

    def reject(client, why: str) -> dict:
        client.set_model_version_tag(model, version, tag_schema.DECISION, "rejected")
        client.set_model_version_tag(model, version, tag_schema.DECISION_REASON, why[:5000])
        _attest(client, settings, model, version, "rejected")
        _refresh_checklist(client, model, version, False, why)
        return {"alias": None}

    return _review(settings, model, version, attribution, status, reject)


def expire_version(model: str, version: str, settings: FactorySettings, window_hours: float) -> dict:
    """Nobody reviewed within the spec's window: rejected, saying so."""
    why = f"nobody reviewed it within review.window_hours ({window_hours:g} h): expired as rejected"
    return reject_version(model, version, settings, Attribution("review window", why), status="expired")


def expire_overdue(model: str, settings: FactorySettings, window_hours: float) -> list[dict]:
    """Expire every held version of ``model`` older than the window (for reviews outside Airflow)."""
    return [
        expire_version(model, v["version"], settings, window_hours)
        for v in held_versions(model, settings)
        if v["waiting_hours"] > window_hours
    ]


def review_in_airflow(
    client, model: str, version: str, approve: bool, attribution: Attribution
) -> dict | None:
    """Answer the waiting ``<model>__review`` task of ``version`` through Airflow's REST API, so
    the review DAG records it and (approved) starts the canary. None: no such review waits."""
    dag_id = f"{model}__review"
    try:
        details = client.get(f"/api/v2/dags/{quote(dag_id)}/dagRuns/~/hitlDetails", limit=100)["hitl_details"]
    except AirflowApiError as exc:
        if exc.status == 404:
            return None
        raise
    for detail in details:
        if detail.get("response_received") or not detail["subject"].endswith(f" v{version}"):
            continue
        ti = detail["task_instance"]
        path = (
            f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(ti['dag_run_id'])}/taskInstances/"
            f"{quote(ti['task_id'])}/{ti.get('map_index', -1)}/hitlDetails"
        )
        client.request(
            "PATCH",
            path,
            json={
                "chosen_options": ["Approve" if approve else "Reject"],
                "params_input": {"reason": attribution.reason, "actor": attribution.actor},
            },
        )
        return {"dag_id": dag_id, "run_id": ti["dag_run_id"], "url": client.ui_url(dag_id, ti["dag_run_id"])}
    return None
