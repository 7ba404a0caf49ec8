"""Events: who did what, when, at which lifecycle stage, with which outcome and how long it took.

This module says what an event is and which lifecycle stage a command, task or spec field belongs
to. Where events are kept: ``store``; how an error gets its kind: ``classify``; where events are
recorded as they happen (CLI, spec parsing): ``hooks``; events read from elsewhere: ``collect``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

# ---- lifecycle stages --------------------------------------------------------------------------

STAGES = ("data", "features", "training", "deployment")
UNKNOWN = "unknown"
STAGE_TITLES = {
    "data": "data collection, cleaning, labelling",
    "features": "feature engineering",
    "training": "model training",
    "deployment": "model deployment",
    UNKNOWN: "stage unknown",
}

SPEC_FIELD_STAGES = {
    "source": "data",
    "target": "data",
    "validation": "data",
    "schedule": "data",
    "features": "features",
    "estimator": "training",
    "split": "training",
    "training": "training",
    "gates": "training",
    "template": "training",
    "template_params": "training",
    "evaluation": "training",
    "review": "training",
    "retries": "training",
    "drift": "deployment",
    "canary": "deployment",
    "notify": "deployment",
}
"""A spec error's stage is the stage of its top-level field; name/owner/task/YAML errors: unknown."""

COMMAND_STAGES = {
    "new-model": "data",
    "validate": "training",
    "validate-specs": "training",
    "new-template": "training",
    "trigger": "training",
    "runs": "training",
    "reproduce": "training",
    "promote": "deployment",
    "rollback": "deployment",
    "abort": "deployment",
    "pin": "deployment",
    "unpin": "deployment",
    "canary": "deployment",
    "serve": "deployment",
    "status": "deployment",
    "show": "deployment",
    "summary": "deployment",
    "approve": "deployment",
    "reject": "deployment",
}
"""CLI commands by the part of the lifecycle they act on; others are recorded with stage unknown."""

NOT_TRACKED = frozenset({"analyze", "help"})
"""The platform team's own commands are not data scientists' actions."""

TASK_STAGES = {
    "ingest": "data",
    "validate": "data",
    "wait_for_batch": "data",
    "features": "features",
    "engineer_features": "features",
    "train": "training",
    "tune": "training",
    "evaluate": "training",
    "register": "training",
    "card": "training",
    "data_budget": "training",
    "explain": "training",
    "announce_challenger": "deployment",
    "check": "deployment",
    "fire_retrain": "deployment",
    "start": "deployment",
    "manual_action": "deployment",
    "score": "deployment",
}
DAG_KIND_STAGES = {
    "retrain": "training",
    "tuned_retrain": "training",
    "drift_watch": "deployment",
    "canary": "deployment",
    "batch_scoring": "deployment",
    "score": "deployment",
}


def task_stage(task_id: str) -> str:
    """The stage of a factory task (``stage_N_wait``/``stage_N_act`` are canary stages)."""
    base = task_id.rsplit(".", 1)[-1]
    if re.fullmatch(r"stage_\d+_(wait|act)", base):
        return "deployment"
    return TASK_STAGES.get(base, UNKNOWN)


def normalise_stage(stage: str | None) -> str:
    return stage if stage in STAGES else UNKNOWN


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# ---- the event ---------------------------------------------------------------------------------


@dataclass
class Event:
    user: str
    action: str
    """``cli.<command>``, ``spec.parse``, ``dag_run.<kind>``, ``task.<task_id>``,
    ``batch.quarantined``, ``gate.<decision>``, ``canary.<action>``..."""
    stage: str = UNKNOWN
    outcome: str = "ok"
    """``ok`` or ``error``."""
    at: datetime = field(default_factory=utcnow)
    source: str = "cli"
    model: str | None = None
    error_kind: str | None = None
    message: str | None = None
    duration_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    origin: str | None = None
    """Where an event read from elsewhere came from (its dedupe key); None for recorded ones."""

    def __post_init__(self) -> None:
        if self.error_kind is not None:
            self.error_kind = str(self.error_kind)  # an ErrorKind is stored as its plain value

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat(timespec="seconds")
        return out
