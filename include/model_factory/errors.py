"""The factory's errors and their machine-readable kinds.

Every factory error class carries a ``kind`` (an :class:`ErrorKind`): what went wrong, in words
that stay the same whatever the message says. The Analyzer counts errors by that kind and never
by the message text, so rewording a message changes no statistic.

``PermanentError`` marks a failure that no retry can fix (a bad label in the data, a model
that cannot be saved safely, a spec the data does not fit): the Airflow layer maps it to
``AirflowFailException`` so the task fails at once instead of burning its retries.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorKind(StrEnum):
    """The kinds of error the factory names. A value is what the Analyzer's report shows."""

    # data
    COLUMN_MISSING = "validation: column missing"
    UNSEEN_CATEGORY = "validation: unseen category"
    UNSEEN_CLASS_LABEL = "validation: unseen class label"
    OUT_OF_RANGE = "validation: value out of range"
    TOO_MANY_NULLS = "validation: too many nulls"
    WRONG_COLUMN_TYPE = "validation: wrong column type"
    TOO_FEW_ROWS = "validation: too few rows"
    VALIDATION_FAILED = "validation: batch failed"
    UNREADABLE_BATCH = "ingest: unreadable batch"
    MISSING_BATCH = "ingest: batch missing"
    SOURCE_REFUSED = "ingest: source URI refused"
    S3_CONNECTION_MISSING = "ingest: S3 connection missing"
    # spec and templates
    SPEC_INVALID = "spec: invalid"
    SPEC_UNKNOWN_PARAM = "spec: unknown estimator param"
    SPEC_ESTIMATOR_NOT_ALLOWED = "spec: estimator not allowed"
    SPEC_MALFORMED_YAML = "spec: malformed YAML"
    SPEC_UNREADABLE = "spec: unreadable file"
    SPEC_NAME_MISMATCH = "spec: name does not match the file"
    SPEC_BAD_TEMPLATE_PARAMS = "spec: bad template_params"
    SPEC_UNKNOWN_TEMPLATE = "spec: unknown template"
    TEMPLATE_RAISED = "template raised"
    CUSTOM_CODE_FAILED = "custom code: estimator factory failed"
    # training and runs
    BAD_TRIGGER_CONF = "trigger: bad conf"
    PERMANENT = "training: permanent failure"
    UNTRUSTED_MODEL = "training: untrusted model types"
    # deployment
    CANARY_ROLLED_BACK = "canary: rolled back"
    CANARY_ABORTED = "canary: aborted"
    LOAD_FAILED = "serving: version failed to load"
    # ops
    UNATTRIBUTED = "ops: who asked or why missing"
    # platform
    SERVICE_UNREACHABLE = "platform: service unreachable"


KIND_STAGES: dict[str, str] = {
    **{kind.value: "data" for kind in ErrorKind if kind.value.startswith(("validation:", "ingest:"))},
    ErrorKind.SPEC_UNKNOWN_PARAM: "training",
    ErrorKind.SPEC_ESTIMATOR_NOT_ALLOWED: "training",
    ErrorKind.SPEC_BAD_TEMPLATE_PARAMS: "training",
    ErrorKind.SPEC_UNKNOWN_TEMPLATE: "training",
    ErrorKind.TEMPLATE_RAISED: "training",
    ErrorKind.CUSTOM_CODE_FAILED: "features",
    ErrorKind.BAD_TRIGGER_CONF: "training",
    ErrorKind.PERMANENT: "training",
    ErrorKind.UNTRUSTED_MODEL: "training",
    ErrorKind.CANARY_ROLLED_BACK: "deployment",
    ErrorKind.CANARY_ABORTED: "deployment",
    ErrorKind.LOAD_FAILED: "deployment",
}
"""The lifecycle stage a kind implies; kinds not listed imply none (the caller's stage holds)."""

ERROR_KIND_LOG_KEY = "factory.error_kind"
"""A task that fails for a known reason logs ``factory.error_kind=<kind>``: the Analyzer reads
the kind from that key in the task log, not from the wording of the failure."""


def error_kind_line(kind: ErrorKind | str) -> str:
    """The log line that names a task failure's kind for the Analyzer."""
    return f"{ERROR_KIND_LOG_KEY}={kind}"


class FactoryError(Exception):
    """Base of the factory's own errors: ``kind`` says what went wrong, the message says where."""

    kind: ClassVar[ErrorKind] = ErrorKind.PERMANENT


class PermanentError(FactoryError, RuntimeError):
    """A failure that the same input will hit again on every retry; the message says what
    to change (the data, the spec or the code)."""

    kind = ErrorKind.PERMANENT


class LabelError(PermanentError, ValueError):
    """Target values the task cannot use (0.9 as a class, an unseen class, inf as a target)."""

    kind = ErrorKind.UNSEEN_CLASS_LABEL


class UntrustedModelError(PermanentError):
    """A fitted model holds types the factory will not trust when it is loaded again."""

    kind = ErrorKind.UNTRUSTED_MODEL


class SpecProblemError(FactoryError, ValueError):
    """One problem a spec validator found, with its kind (pydantic keeps it as the error's cause)."""

    kind = ErrorKind.SPEC_INVALID

    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(message)
        self.problem_kind = kind


class UnattributedError(FactoryError, ValueError):
    """An ops or registry request without who asked or why (``contracts.Attribution``)."""

    kind = ErrorKind.UNATTRIBUTED
