"""The lifecycle checklist: what must be true before a version may serve.

Items are chosen per spec (``review.checklist``; unknown names fail at spec parse time). Each is
pass/fail with its reason, recorded as version tags ``factory.checklist.<item>`` (+ ``.reason``)
and ``factory.checklist`` = passed/failed; ``registry.require_blessed`` refuses a canary,
promotion or pin of a failing version unless an override with a reason is recorded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from model_factory.io import tag_schema
from model_factory.pipeline.registry import CHECKLIST_TAG
from model_factory.spec import ModelSpec

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

LINEAGE_TAGS = (
    tag_schema.DATA_URIS,
    tag_schema.DATA_SHA256,
    tag_schema.SPEC_HASH,
    tag_schema.GIT_REVISION,
    tag_schema.REQUIREMENTS_SHA256,
)


@dataclass
class Facts:
    """What the checklist looks at; gathered by the card step (``card.produce_card``)."""

    decision: str | None = None
    decision_reason: str = ""
    card_uri: str | None = None
    card_error: str | None = None
    run_tags: dict[str, str] = field(default_factory=dict)
    has_lineage_artifact: bool = False
    importance: dict | None = None
    slices: dict | None = None
    train_cpu_seconds: float | None = None


def _owner(spec: ModelSpec, facts: Facts) -> tuple[bool, str]:
    missing = [n for n in ("owner", "description") if not str(getattr(spec, n) or "").strip()]
    return (not missing, f"missing {missing}" if missing else f"owner {spec.owner}")


def _gates(spec: ModelSpec, facts: Facts) -> tuple[bool, str]:
    if facts.decision == "blessed":
        return True, facts.decision_reason or "blessed"
    return False, f"{facts.decision or 'not evaluated'}: {facts.decision_reason}"


def _card(spec: ModelSpec, facts: Facts) -> tuple[bool, str]:
    if facts.card_uri:
        return True, facts.card_uri
    return False, f"model card missing: {facts.card_error or 'not produced'}"


def _lineage(spec: ModelSpec, facts: Facts) -> tuple[bool, str]:
    missing = [t for t in LINEAGE_TAGS if facts.run_tags.get(t) in (None, "", "unknown")]
    if not facts.has_lineage_artifact:
        missing.append("lineage.json artifact")
    if missing:
        return False, f"missing: {', '.join(missing)}"
    dirty = facts.run_tags[tag_schema.GIT_REVISION].endswith("-dirty")
    return True, "data, spec, code, environment" + (
        " (code had local changes: reproduce cannot check it out)" if dirty else ""
    )


def _explanation(spec: ModelSpec, facts: Facts) -> tuple[bool, str]:
    imp = facts.importance or {}
    if imp.get("features"):
        return True, f"permutation importance, {imp.get('note', '')}"
    return False, f"no feature importance: {imp.get('note') or imp.get('error') or 'not computed'}"


def _slices(spec: ModelSpec, facts: Facts) -> tuple[bool, str]:
    if not spec.evaluation.slices:
        return True, "no slices configured (evaluation.slices)"
    sl = facts.slices or {}
    if "error" in sl:
        return False, f"slices not computed: {sl['error']}"
    absent = [p for p in sl.get("problems", []) if "is not in" in p]
    flagged = [
        f"{r['column']}={r['value']} ({r['metric']:.4f} vs {sl['overall']:.4f}, {r['rows']} rows)"
        for r in sl.get("rows", [])
        if r["flagged"]
    ]
    if absent or flagged:
        tolerance = spec.evaluation.slice_tolerance
        worse = [f"worse than the whole by more than {tolerance:.0%}: " + ", ".join(flagged)]
        return False, "; ".join(absent + (worse if flagged else []))
    return True, f"{len(sl.get('rows', []))} slices within {spec.evaluation.slice_tolerance:.0%}"


def _cost(spec: ModelSpec, facts: Facts) -> tuple[bool, str]:
    budget = spec.review.max_train_cpu_seconds
    if budget is None:
        return True, "no budget set (review.max_train_cpu_seconds)"
    if facts.train_cpu_seconds is None:
        return False, "training CPU seconds not recorded"
    ok = facts.train_cpu_seconds <= budget
    return ok, f"{facts.train_cpu_seconds:.1f} CPU s {'within' if ok else 'over'} the budget of {budget:g}"


CHECKS = {
    "owner_and_description": _owner,
    "gates_passed": _gates,
    "model_card": _card,
    "lineage_complete": _lineage,
    "explanation": _explanation,
    "slices_within_tolerance": _slices,
    "training_cost": _cost,
}


@dataclass(frozen=True)
class Item:
    item: str
    passed: bool
    reason: str


def evaluate_checklist(spec: ModelSpec, facts: Facts) -> list[Item]:
    """The spec's checklist items, in its order, each pass/fail with its reason."""
    items = []
    for name in spec.review.checklist:
        try:
            passed, reason = CHECKS[name](spec, facts)
        except Exception as exc:  # a broken check fails its item, never the registration
            passed, reason = False, f"check failed: {type(exc).__name__}: {exc}"
        items.append(Item(name, passed, reason))
    return items


def record_checklist(client: MlflowClient, model: str, version: str, items: list[Item]) -> dict[str, Any]:
    """Tag each item's result, a failing item's reason, and the overall passed/failed on the version.

    A passing item's reason is on the card (and in ``review/card.json``); as a tag it only
    widened MLflow's version table."""
    from model_factory.pipeline.registry import MAX_TAG_CHARS

    current = client.get_model_version(model, version).tags or {}
    for item in items:
        client.set_model_version_tag(
            model, version, f"{CHECKLIST_TAG}.{item.item}", "pass" if item.passed else "fail"
        )
        reason_tag = f"{CHECKLIST_TAG}.{item.item}.reason"
        if not item.passed:
            client.set_model_version_tag(model, version, reason_tag, item.reason[:MAX_TAG_CHARS])
        elif reason_tag in current:  # a re-record where the item now passes
            client.delete_model_version_tag(model, version, reason_tag)
    overall = "passed" if all(i.passed for i in items) else "failed"
    client.set_model_version_tag(model, version, CHECKLIST_TAG, overall)
    return {"status": overall, "items": [asdict(i) for i in items]}
