"""The demo's health story (issue 20): churn's champion decays; its health check sees it coming.

Per demo day, after that day's DAG runs: churn's batch is scored by its champion (batch scoring's
own ``score_batch``, ids from ``customer_id``), then ``run_health_check`` judges the champion as
of that day from those predictions and the outcomes file that arrives two days late
(``churn_outcomes/<day>.csv``, the spec's ``outcomes.source``). ``demand``'s drift watch checks the
day's batch against the same weekday in the weeks before (``drift.reference: same_weekday``).
Every figure printed comes from these checks; nothing here decides anything the factory does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from model_factory.contracts import Attribution
from model_factory.settings import FactorySettings

STORY_MODEL = "churn"
SEASONAL_MODEL = "demand"
MIN_DAY_OUTCOMES = 30  # a day's realized metric counts from this many outcomes (as the expiry trend's)


@dataclass
class HealthDay:
    day: date
    champion: str
    action: str
    reason: str
    estimated: float | None  # the champion's estimate on this day's batch (before any outcome)
    window_realized: float | None
    expiry: str | None
    retrain_by: str | None


@dataclass
class Story:
    """What the demo prints at the end: one line per day, then the turning points."""

    threshold: float = 0.0
    metric: str = ""
    days: list[HealthDay] = field(default_factory=list)
    seasonal: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # (day, version): (realized metric, the day it became known)
    realized: dict[tuple[date, str], tuple[float, date]] = field(default_factory=dict)

    def record(self, checked: HealthDay, summary: dict[str, Any]) -> None:
        """Keep the check's line and the realized metric of every day it could measure (first seen)."""
        self.days.append(checked)
        for (day, version), value in realized_by_day(summary).items():
            self.realized.setdefault((day, version), (value, checked.day))


def _batch(settings: FactorySettings, spec, day: date) -> dict[str, Any]:
    """The day's raw batch in the shape ``score_batch`` reads (no ingest copy needed here)."""
    from model_factory.io.batches import resolve_source_uri

    uri = resolve_source_uri(spec.source.uri, day.isoformat(), settings)
    return {"raw_uri": uri, "source_uri": uri, "format": spec.source.format, "ds": day.isoformat()}


def score_day(settings: FactorySettings, spec, day: date) -> dict[str, Any]:
    """Score the day's batch with the champion, as a ``batch_scoring`` model would (ids kept)."""
    from model_factory.pipeline.scoring import champion, score_batch

    scoring = spec.model_copy(update={"template_params": {"id_column": "customer_id"}})
    return score_batch(scoring, _batch(settings, spec, day), champion(spec, settings), settings)  # type: ignore[arg-type]


def check_day(settings: FactorySettings, spec, day: date) -> dict[str, Any]:
    from model_factory.monitoring.health_watch import run_health_check
    from model_factory.serving.settings import prediction_db_uri

    return run_health_check(spec, day.isoformat(), settings, prediction_db_uri(settings))


def estimated_on(summary: dict[str, Any], day: date) -> float | None:
    """The champion's estimated metric on ``day``'s own batch, from the check's report."""
    import json

    from model_factory.io import storage

    report = json.loads(storage.read_bytes(summary["report_uri"]))["report"]
    for row in report["days"]:
        if str(row["day"]) == day.isoformat() and row["version"] == summary["champion_version"]:
            return row["estimated"]["value"]
    return None


def realized_by_day(summary: dict[str, Any]) -> dict[tuple[date, str], float]:
    """(day, version): the realized metric, for every served day with matured outcomes."""
    import json

    from model_factory.io import storage

    report = json.loads(storage.read_bytes(summary["report_uri"]))["report"]
    return {
        (date.fromisoformat(str(row["day"])), row["version"]): row["realized"]["value"]
        for row in report["days"]
        if row["realized"]["n"] >= MIN_DAY_OUTCOMES and row["realized"]["value"] is not None
    }


def health_day(settings: FactorySettings, spec, day: date) -> tuple[HealthDay, dict[str, Any]]:
    score_day(settings, spec, day)
    summary = check_day(settings, spec, day)
    return HealthDay(
        day,
        summary["champion_version"],
        summary["action"],
        summary["reason"],
        estimated_on(summary, day),
        summary["realized"],
        summary["expiry"],
        summary["retrain_by"],
    ), summary


def seasonal_check(settings: FactorySettings, spec, day: date) -> str:
    """The drift watch's check of ``day``'s batch under the spec's seasonal reference."""
    from model_factory.monitoring.watch import check_batch

    try:
        checked = check_batch(spec, day.isoformat(), settings)
    except Exception as exc:  # no champion yet, no batch: said, never fatal to the demo
        return f"{day}  {spec.name}: no check ({type(exc).__name__}: {str(exc)[:120]})"
    import json

    from model_factory.io import storage

    report = json.loads(storage.read_bytes(checked["report_json_uri"]))
    inputs, concept = report["data_drift"], report["concept_drift"]
    reason = (inputs.get("reasons") or [""])[0][:110]
    concept_reason = "; ".join(concept.get("reasons") or [])[:160]
    return (
        f"{day}  inputs vs {spec.drift.reference}: {inputs['status']} ({reason}); concept vs "
        f"{concept.get('reference_kind', 'the holdout')}: {concept.get('status')} ({concept_reason})"
    )


def format_story(story: Story) -> list[str]:
    """The summary's health section: per day estimated vs realized, the alerts, the restore."""
    if not story.days:
        return [f"{STORY_MODEL}: no health check ran (its spec has no `outcomes:` section enabled)"]

    def fig(value: float | None) -> str:
        return f"{value:.3f}" if value is not None else "  -  "

    lines = [
        f"{STORY_MODEL}: {story.metric} of the champion per day: estimated from its probabilities the day "
        f"it scores, realized when the outcomes arrive (2 days later); gate bar {story.threshold:g}",
        "  day         champion  estimated  realized (known on)     window realized  expiry (retrain by)"
        "             check",
    ]
    for d in story.days:
        expiry = f"{d.expiry} (by {d.retrain_by})" if d.expiry else "-"
        value, known = story.realized.get((d.day, d.champion), (None, None))
        real = f"{fig(value)} (on {known})" if known else "not yet"
        lines.append(
            f"  {d.day}  v{d.champion:<7} {fig(d.estimated):>9}  {real:<22}  "
            f"{fig(d.window_realized):>15}  {expiry:<34}  {d.action}"
        )
    for action in ("alert", "retrain"):
        first = next((d for d in story.days if d.action == action), None)
        if first is not None:
            lines.append(f"  first {action}: {first.day}: {first.reason[:200]}")
    lines += [f"  {line}" for line in story.restored + story.notes]
    lines += [f"{SEASONAL_MODEL}'s drift watch (seasonal reference), per demo day:"]
    lines += [f"  {line}" for line in story.seasonal]
    return lines


def restore(
    settings: FactorySettings, spec, day: date, retrained: str | None, before: HealthDay
) -> list[str]:
    """Promote the retrain's blessed version (the canary's job under the scheduler) and check again."""
    from model_factory.io import tag_schema, tracking
    from model_factory.pipeline.registry import PromotionError, promote
    from model_factory.review.approval import approve_version

    if retrained is None:
        return [f"{day}: the retrain failed: the champion stays v{before.champion}"]
    name, lines = spec.registered_model_name, []
    tags = tracking.connect(settings).get_model_version(name, retrained).tags
    if tags.get(tag_schema.DECISION) == "held_for_review":
        # "Too good to be true" against a decayed champion is what a restore looks like: the
        # demo's reviewer says so (`model-factory review approve` does the same).
        why = (tags.get(tag_schema.DECISION_REASON) or "")[:160]
        approval = f"expected after the health check of {day}: the champion has decayed"
        approve_version(name, retrained, settings, Attribution("demo-reviewer", approval))
        lines.append(
            f"{day}: v{retrained} was held for review ({why}...); the demo's reviewer "
            "approved it: the champion it beats has decayed"
        )
    try:
        reason = f"health check of {day}: {before.reason[:90]}"
        promote(name, retrained, settings, Attribution("demo", reason))
    except PromotionError as exc:
        return [
            *lines,
            f"{day}: the retrain's v{retrained} is not promoted ({exc}): the champion stays "
            f"v{before.champion}",
        ]
    after, _ = health_day(settings, spec, day)
    holdout = _holdout_metric(settings, spec, retrained)

    def fig(value: float | None) -> str:
        return f"{value:.3f}" if value is not None else "none"

    return [
        *lines,
        f"{day}: the retrain it fired: v{retrained} (holdout {spec.gates.primary_metric} "
        f"{fig(holdout)}, trained on the latest batches); promoted (the scheduler part shows a canary "
        f"doing this on live traffic); re-checked the same day: v{retrained}'s estimate "
        f"{fig(after.estimated)} (v{before.champion}: {fig(before.estimated)}); the realized window "
        f"holds v{before.champion}'s outcomes until v{retrained}'s arrive",
    ]


def latest_version(settings: FactorySettings, spec) -> str | None:
    """The newest registered version (a retrain on unchanged batches reuses tonight's training)."""
    from model_factory.io import tracking

    name = spec.registered_model_name
    versions = [int(v.version) for v in tracking.connect(settings).search_model_versions(f"name='{name}'")]
    return str(max(versions)) if versions else None


def _holdout_metric(settings: FactorySettings, spec, version: str) -> float | None:
    """The version's holdout metric, as the registry's tag records it."""
    from model_factory.io import tag_schema, tracking

    tags = tracking.connect(settings).get_model_version(spec.registered_model_name, version).tags
    value = tags.get(tag_schema.holdout_metric(spec.gates.primary_metric))
    return float(value) if value else None
