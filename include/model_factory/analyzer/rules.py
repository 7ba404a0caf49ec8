"""Rules that turn error signals into challenges: Simplicity of Platform or Education & Training.

For each recurring error kind (seen by at least ``min_users`` users), the share of each segment's
users who saw it:

- **SoP** (the platform is too complex) when more than ``expert`` (50%) of Experts, more than
  ``intermediate`` (65%) of Intermediates and more than ``beginner`` (80%) of Beginners saw it:
  even people who know the platform trip on it;
- **ET** (people need docs or a tutorial) when it is concentrated among Beginners: at least
  ``et_min_share`` (30%) of them saw it and at least ``et_ratio`` (2) times the Experts' share;
- **watch** otherwise (recurring, but neither pattern), listed without a verdict.

The 50/65/80 thresholds are the platform study's; ``Thresholds.shifted(points)`` moves all three.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace

from model_factory.analyzer.events import STAGE_TITLES, UNKNOWN, Event
from model_factory.analyzer.segments import LABELS, Segmentation

SOP, ET, WATCH, UNCLASSIFIED = "SoP", "ET", "watch", "unclassified"


@dataclass(frozen=True)
class Thresholds:
    expert: float = 0.50
    intermediate: float = 0.65
    beginner: float = 0.80
    et_min_share: float = 0.30
    et_ratio: float = 2.0
    min_users: int = 3

    def shifted(self, points: float) -> Thresholds:
        """All three SoP thresholds moved by ``points`` percentage points (clipped to [0, 1])."""
        move = points / 100.0
        return replace(
            self,
            expert=min(1.0, max(0.0, self.expert + move)),
            intermediate=min(1.0, max(0.0, self.intermediate + move)),
            beginner=min(1.0, max(0.0, self.beginner + move)),
        )

    def sop(self) -> dict[str, float]:
        return {"Expert": self.expert, "Intermediate": self.intermediate, "Beginner": self.beginner}


README = "README"
SUGGESTIONS: list[tuple[str, str, str]] = [
    (
        r"^spec: unknown estimator param",
        f"{README} 'For data scientists: add a model': a table of each estimator's allowed params and a "
        "worked example spec per estimator",
        "field `estimator.params`: `model-factory new-model` should write the allowed params with their "
        "defaults, and the error should offer the closest allowed name",
    ),
    (
        r"^spec: estimator not allowed",
        f"{README} 'For data scientists: add a model': the allow-list and the `custom_training` template for "
        "anything else",
        "field `estimator.class`: offer the allowed classes in `new-model` instead of free text",
    ),
    (
        r"^validation: column missing",
        f"{README} 'What happens in one run': a tutorial on a quarantined batch (read REASON.txt, fix the "
        "source, re-run the date)",
        "field `features`: scaffold it from a sample (`model-factory new-model --from-data`) and have "
        "`model-factory validate` check a spec against a sample batch",
    ),
    (
        r"^validation: unseen category",
        f"{README} 'What happens in one run': how `validation.categories` is used and how to extend a set",
        "field `validation.categories`: learn the sets from data (`new-model --from-data`) and say which "
        "value was unseen in which column",
    ),
    (
        r"^validation: value out of range",
        f"{README} 'What happens in one run': how `validation.ranges` is checked",
        "field `validation.ranges`: suggest ranges from the training data instead of hand-written bounds",
    ),
    (
        r"^validation: ",
        f"{README} 'What happens in one run': the validation suite and the quarantine, with an example",
        "fields under `validation`: defaults learnt from data instead of hand-tuned limits",
    ),
    (
        r"^ingest: ",
        f"{README} 'What happens in one run': where batches are read from and what on_missing does",
        "field `source.uri`: check it at `model-factory validate` time (the file for a date exists)",
    ),
    (
        r"template",
        f"{README}: a templates tutorial (pick one, its template_params, write your own with `new-template`)",
        "field `template_params` and command `model-factory new-template`: generate the params block from "
        "the template's model, and report a template that raises with its own traceback line",
    ),
    (
        r"^custom code",
        f"{README}: the `custom_training` template, what a factory function must return",
        "field `estimator.factory`: check the factory at `validate` time, not in the task",
    ),
    (
        r"^trigger: bad conf",
        f"{README} 'For ops: trigger, watch, promote, roll back': the conf keys and the date format",
        "command `model-factory trigger MODEL --date YYYY-MM-DD`: take the date as an option and check it "
        "before anything reaches Airflow, instead of raw conf JSON",
    ),
    (
        r"^ops: (promote|rollback|abort|pin|unpin|canary) refused",
        f"{README} 'Serving and canary rollout': the rollout state machine (challenger, canary, champion, "
        "pin) with an example of each command",
        "commands `model-factory promote/rollback/canary`: show the serving state (`status`) in the refusal "
        "and say which command would work",
    ),
    (
        r"^gate: ",
        f"{README} 'What happens in one run': the gates (threshold, max_regression, too_good_jump) with an "
        "example of each verdict",
        "fields `gates.*`: show the candidate's numbers against each gate in the run's result",
    ),
    (
        r"^canary: ",
        f"{README} 'Serving and canary rollout': how a canary is judged and what a rollback means",
        "fields `canary.*`: fewer knobs; default min_samples and ramp from the model's traffic",
    ),
    (
        r"^spec: features",
        f"{README} 'For data scientists: add a model': the features section with an example (YAML lists of "
        "column names, numeric vs categorical)",
        "field `features`: scaffold it from a sample (`model-factory new-model --from-data`)",
    ),
    (
        r"^spec: malformed YAML",
        f"{README} 'For data scientists: add a model': a complete annotated spec to copy",
        "spec files: scaffold with `model-factory new-model` so nobody writes YAML from scratch",
    ),
    (
        r"^spec: ",
        f"{README} 'For data scientists: add a model': the spec sections, each with an example",
        "the spec field named in the error: a default, or scaffolding by `model-factory new-model`",
    ),
    (
        r"^platform: ",
        f"{README} 'The two commands': what must be running for each command",
        "the CLI: name what to start when Airflow or MLflow does not answer",
    ),
]
STAGE_SUGGESTIONS = {
    "data": ("README 'What happens in one run'", "the data-side spec fields (source, validation)"),
    "features": ("README 'For data scientists: add a model' (features)", "the `features` field"),
    "training": ("README 'What happens in one run' (train, evaluate, register)", "the training commands"),
    "deployment": ("README 'Serving and canary rollout'", "the rollout commands"),
    UNKNOWN: ("the README section for this error (its stage is not known)", "the command that reported it"),
}


def suggestion(kind: str, verdict: str, stage: str) -> str:
    for pattern, education, simplicity in SUGGESTIONS:
        if re.search(pattern, kind):
            return education if verdict == ET else simplicity
    education, simplicity = STAGE_SUGGESTIONS.get(stage, STAGE_SUGGESTIONS[UNKNOWN])
    return f"missing docs: {education}" if verdict == ET else f"too hard: {simplicity}"


@dataclass
class Finding:
    error_kind: str
    verdict: str
    """SoP | ET | watch | unclassified"""
    stage: str
    users: int
    events: int
    shares: dict[str, float] = field(default_factory=dict)
    """Per segment: the share of its users who saw this error."""
    seen_by: dict[str, int] = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)
    action: str = ""
    why: str = ""

    def to_dict(self) -> dict:
        return {
            "error_kind": self.error_kind,
            "class": self.verdict,
            "stage": self.stage,
            "stage_title": STAGE_TITLES.get(self.stage, self.stage),
            "users": self.users,
            "events": self.events,
            "shares": self.shares,
            "seen_by": self.seen_by,
            "examples": self.examples,
            "suggested_action": self.action,
            "why": self.why,
        }


def _verdict(shares: dict[str, float], thresholds: Thresholds) -> tuple[str, str]:
    sop = thresholds.sop()
    if all(shares[label] > sop[label] for label in LABELS):
        return SOP, "seen by " + ", ".join(
            f"{shares[label]:.0%} > {sop[label]:.0%} of {label}s" for label in LABELS
        )
    b, e = shares["Beginner"], shares["Expert"]
    if b >= thresholds.et_min_share and b >= thresholds.et_ratio * e:
        return ET, (
            f"concentrated among Beginners: {b:.0%} of them (>= {thresholds.et_min_share:.0%}) vs "
            f"{e:.0%} of Experts (ratio >= {thresholds.et_ratio:g})"
        )
    missed = [
        f"{label}s {shares[label]:.0%} <= {sop[label]:.0%}" for label in LABELS if shares[label] <= sop[label]
    ]
    return WATCH, "recurring, neither SoP (" + ", ".join(missed) + ") nor concentrated among Beginners"


def classify(
    events: list[Event], segmentation: Segmentation, thresholds: Thresholds | None = None, examples: int = 3
) -> tuple[list[Finding], dict]:
    """Findings for every recurring error kind, most users first; and what was left out."""
    thresholds = thresholds or Thresholds()
    by_kind: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.outcome == "error":
            by_kind[event.error_kind or "error: unclassified"].append(event)
    findings, rare = [], {}
    members = {label: segmentation.members(label) for label in LABELS} if segmentation.ok else {}
    for kind, evs in by_kind.items():
        users = {e.user for e in evs}
        if len(users) < thresholds.min_users:
            rare[kind] = len(users)
            continue
        stages = Counter(e.stage for e in evs)
        stage = max(stages, key=lambda s: (s != UNKNOWN, stages[s]))
        sample = sorted(evs, key=lambda e: e.at)
        picked = [
            sample[int(i * (len(sample) - 1) / max(1, examples - 1))]
            for i in range(min(examples, len(sample)))
        ]
        finding = Finding(
            error_kind=kind,
            verdict=UNCLASSIFIED,
            stage=stage,
            users=len(users),
            events=len(evs),
            examples=[
                {
                    "at": e.at.isoformat(timespec="seconds"),
                    "user": e.user,
                    "model": e.model,
                    "action": e.action,
                    "message": (e.message or "")[:300],
                }
                for e in picked
            ],
        )
        if members:
            finding.seen_by = {label: len(users & members[label]) for label in LABELS}
            finding.shares = {
                label: round(finding.seen_by[label] / len(members[label]), 3) if members[label] else 0.0
                for label in LABELS
            }
            finding.verdict, finding.why = _verdict(finding.shares, thresholds)
        else:
            finding.why = segmentation.reason or "no segmentation"
        finding.action = suggestion(kind, finding.verdict, stage) if finding.verdict in (SOP, ET) else ""
        findings.append(finding)
    order = {SOP: 0, ET: 1, WATCH: 2, UNCLASSIFIED: 3}
    findings.sort(key=lambda f: (order[f.verdict], -f.users, f.error_kind))
    return findings, {
        "rare_error_kinds": len(rare),
        "rare_threshold_users": thresholds.min_users,
        "rare_examples": dict(sorted(rare.items())[:10]),
    }


def sensitivity(
    events: list[Event],
    segmentation: Segmentation,
    base: Thresholds | None = None,
    points: tuple[float, ...] = (-10.0, 10.0),
) -> dict:
    """How the verdicts change when the three SoP thresholds move by ``points``."""
    base = base or Thresholds()
    verdicts = {0.0: {f.error_kind: f.verdict for f in classify(events, segmentation, base)[0]}}
    for move in points:
        verdicts[move] = {
            f.error_kind: f.verdict for f in classify(events, segmentation, base.shifted(move))[0]
        }
    out = {}
    for move in points:
        t = base.shifted(move)
        changed = {
            kind: {"from": verdicts[0.0][kind], "to": verdict}
            for kind, verdict in verdicts[move].items()
            if verdicts[0.0].get(kind) != verdict
        }
        out[f"{move:+.0f}"] = {
            "thresholds": {
                "Expert": round(t.expert, 2),
                "Intermediate": round(t.intermediate, 2),
                "Beginner": round(t.beginner, 2),
            },
            "counts": dict(Counter(verdicts[move].values())),
            "changed": changed,
        }
    out["+0"] = {"counts": dict(Counter(verdicts[0.0].values()))}
    return out
