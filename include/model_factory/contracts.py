"""The typed hand-offs between pipeline steps, and who asked for an ops or registry action.

Each step returns one of these and the next step takes it. They are ``TypedDict``s on purpose:
XCom carries small JSON values, so a step's result must stay a plain dict on the wire, and a
TypedDict types that dict for readers and type checkers without a conversion at every task
boundary. ``total=False`` marks keys that only some outcomes carry.

:class:`Attribution` is a frozen dataclass instead: it never crosses XCom, and it is checked once,
where an entry point (CLI, Airflow task, demo) builds it, rather than in every function it passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict

from model_factory.errors import UnattributedError


@dataclass(frozen=True)
class Attribution:
    """Who asked for an ops or registry action and why: recorded with it as ``actor`` and
    ``reason`` (the decision's keys, the ``factory.<action>.by|reason`` tags). Both must be
    non-empty text; the entry point builds it once and every function below passes it on."""

    actor: str
    reason: str

    def __post_init__(self) -> None:
        for field, needed in (("actor", "an actor (who asks)"), ("reason", "a reason (why)")):
            value = getattr(self, field)
            if not isinstance(value, str):
                raise UnattributedError(f"the request's {field} must be text, not {type(value).__name__}")
            if not value.strip():
                raise UnattributedError(f"the request needs {needed}: it is recorded with the action")


class IngestedManifest(TypedDict):
    """``ingest_batch``: the raw copy of one source batch, keyed by content (its manifest.json)."""

    model: str
    ds: str
    source_uri: str
    raw_uri: str
    parsed_uri: NotRequired[str | None]
    """The rows as Parquet (a CSV parsed at ingest; a Parquet batch's raw copy); None when the
    bytes are not a readable table. Absent in manifests written before batches were parsed once."""
    format: str
    sha256: str
    bytes: int
    rows: int | None
    parse_error: str | None
    ingested_at: str


class IngestedBatch(IngestedManifest):
    """``ingest_batch``'s result: the manifest, and whether this call copied the batch."""

    already_ingested: bool


class ValidatedBatch(TypedDict):
    """``validate_batch`` when the batch passed: the typed rows training reads."""

    status: Literal["validated"]
    validated_uri: str
    validation_uri: str
    rows: int
    sha256: str
    ds: str


class QuarantinedBatch(TypedDict):
    """``validate_batch`` when the batch failed: where it is kept, and why."""

    status: Literal["quarantined"]
    quarantine_uri: str
    reasons: list[str]
    ds: str
    sha256: str


ValidationResult = ValidatedBatch | QuarantinedBatch


class TrainedModel(TypedDict):
    """``train_model``: the MLflow run, the logged model and the holdout it is judged on."""

    run_id: str
    model_uri: str
    holdout_uri: str
    reused: bool


class RegisteredVersion(TypedDict):
    """``register_version``: the registry's answer for one trained run."""

    model: str
    version: str
    status: str
    reason: str
    alias: str | None
    champion_version: str | None
    duplicate: NotRequired[bool]
