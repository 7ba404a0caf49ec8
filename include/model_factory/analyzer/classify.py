"""An error's kind: stable across users, models and wordings; never read from the message text.

Where the kind comes from, in order:

1. a factory error's own ``kind`` (``model_factory.errors``: every factory error class has one;
   a ``SpecError`` has one per problem, from the validator or pydantic's error type);
2. the exception's type, for errors the factory does not define (click's usage errors, a refused
   connection, MLflow's refusals), looked up along its class hierarchy by qualified name;
3. structured records the factory writes: the GX result kept with a quarantined batch (the
   expectation type of each failed check), the ``factory.error_kind=<kind>`` line a failing
   task logs, the action of a canary decision;
4. else a kind made of what is known structurally (the command, the task id, the spec field),
   never of the words of the message.

So rewording any message changes no kind and no statistic of the Analyzer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from model_factory.analyzer.events import COMMAND_STAGES, SPEC_FIELD_STAGES, UNKNOWN
from model_factory.errors import ERROR_KIND_LOG_KEY, KIND_STAGES, ErrorKind, SpecProblemError

__all__ = [
    "exception_kind",
    "kind_stage",
    "logged_kinds",
    "spec_problem_kind",
    "validation_kinds",
]


def kind_stage(kind: str) -> str | None:
    """The lifecycle stage a kind implies, if any."""
    return KIND_STAGES.get(kind)


# ---- exceptions --------------------------------------------------------------------------------

UNREACHABLE = ErrorKind.SERVICE_UNREACHABLE.value
TYPE_KINDS: dict[str, str] = {
    "builtins.ConnectionError": UNREACHABLE,
    "builtins.TimeoutError": UNREACHABLE,
    "model_factory.io.airflow_api.AirflowUnreachableError": UNREACHABLE,
    "model_factory.io.tracking.TrackingUnavailableError": UNREACHABLE,
    "requests.exceptions.ConnectionError": UNREACHABLE,
    "httpx.ConnectError": UNREACHABLE,
    "urllib3.exceptions.NewConnectionError": UNREACHABLE,
    "model_factory.io.batches.UnreadableBatchError": ErrorKind.UNREADABLE_BATCH.value,
    "model_factory.io.batches.MissingBatchError": ErrorKind.MISSING_BATCH.value,
    "model_factory.io.batches.SourceUriError": ErrorKind.SOURCE_REFUSED.value,
    "model_factory.pipeline.custom_code.CustomCodeError": ErrorKind.CUSTOM_CODE_FAILED.value,
    "model_factory.serving.models.LoadError": ErrorKind.LOAD_FAILED.value,
    # refusals of an operation: one kind per command ({command} is filled in)
    "model_factory.pipeline.registry.PromotionError": "ops: {command} refused by a rollout rule",
    "model_factory.review.approval.ReviewError": "ops: {command} refused by a review rule",
    "model_factory.io.airflow_api.AirflowApiError": "ops: {command} refused by Airflow",
    "mlflow.exceptions.MlflowException": "ops: {command} refused by the registry",
    "model_factory.scaffold.ScaffoldError": "ops: {command} refused: bad sample data",
    "model_factory.pipeline.scoring.NoChampionError": "ops: {command} refused: no champion",
    "model_factory.monitoring.watch.NoBaselineError": "ops: {command} refused: no baseline",
    "model_factory.review.reproduce.ReproduceError": "ops: {command} refused: cannot reproduce",
}
"""Kinds of errors by exception type (qualified name), for types without their own ``kind``."""

USAGE_TYPES = {
    "NoSuchOption": "no such option",
    "BadOptionUsage": "bad option usage",
    "BadArgumentUsage": "bad argument usage",
    "BadParameter": "invalid value",
    "MissingParameter": "missing {param_type}",
    "UsageError": "usage error",
}
"""click's (and typer's copy of click's) usage errors: the command line itself was wrong."""


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _usage_kind(exc: BaseException, command: str | None) -> str | None:
    for cls in type(exc).__mro__:
        if cls.__module__.split(".")[0] in ("click", "typer", "_typer") and cls.__name__ in USAGE_TYPES:
            param_type = getattr(exc, "param_type", None) or "parameter"
            what = USAGE_TYPES[cls.__name__].format(param_type=param_type)
            return f"cli: {command or 'model-factory'} usage error: {what}"
    return None


def exception_kind(exc: BaseException, command: str | None = None) -> tuple[str, str | None]:
    """``(kind, implied stage)`` of an exception, from its ``kind`` or its type (never its text)."""
    if isinstance(exc, SpecProblemError):
        return exc.problem_kind.value, kind_stage(exc.problem_kind)
    usage = _usage_kind(exc, command)
    if usage:
        return usage, COMMAND_STAGES.get(command or "")
    for cls in type(exc).__mro__:
        if _qualified(cls) in TYPE_KINDS:
            pattern = TYPE_KINDS[_qualified(cls)]
            kind = pattern.format(command=command or "model-factory")
            per_command = "{command}" in pattern
            return kind, kind_stage(kind) or (COMMAND_STAGES.get(command or "") if per_command else None)
        own = cls.__dict__.get("kind")
        if isinstance(own, ErrorKind):
            return own.value, kind_stage(own)
    kind = f"{command}: {type(exc).__name__}" if command else f"error: {type(exc).__name__}"
    return kind, None


# ---- spec problems -----------------------------------------------------------------------------

PYDANTIC_TYPES = {
    "missing": "missing",
    "extra_forbidden": "unknown field",
    "value_error": "invalid value",
    "assertion_error": "invalid value",
    "literal_error": "not one of the choices",
    "enum": "not one of the choices",
    "string_pattern_mismatch": "wrong pattern",
    "too_short": "too short",
    "too_long": "too long",
    "greater_than": "too small",
    "greater_than_equal": "too small",
    "less_than": "too large",
    "less_than_equal": "too large",
}
"""Pydantic's error types in words; other ``*_type``/``*_parsing`` errors are ``wrong type``."""


def _type_words(problem: str | None) -> str:
    if problem is None:
        return "invalid"
    if problem in PYDANTIC_TYPES:
        return PYDANTIC_TYPES[problem]
    if problem.endswith(("_type", "_parsing")) or problem.startswith(("int_", "float_", "bool_")):
        return "wrong type"
    return problem.replace("_", " ")


def general_field(field_path: str) -> str:
    """A field path without its particulars: list indexes and user-chosen keys become ``[]``/``*``."""
    general = re.sub(r"\.\d+(?=\.|$)", "[]", field_path or "")
    return re.sub(r"^(validation\.(ranges|categories)|tags|template_params)\.[^.]+", r"\1.*", general)


def spec_problem_kind(field_path: str, problem: str | None) -> tuple[str, str]:
    """One spec problem (its field and its machine-readable kind) -> (error kind, stage of its field).

    ``problem`` is what ``SpecError.kinds`` holds: an ``ErrorKind`` value, a pydantic error type,
    or None."""
    top = field_path.split(".", 1)[0] if field_path and field_path != "(top level)" else ""
    stage = SPEC_FIELD_STAGES.get(top, UNKNOWN)
    if problem is not None and problem in ErrorKind._value2member_map_:
        return problem, kind_stage(problem) or stage
    if problem == "extra_forbidden":
        return f"spec: unknown field in {top or 'top level'}", stage
    if top == "template_params" and problem is None:
        return ErrorKind.SPEC_BAD_TEMPLATE_PARAMS.value, "training"
    return f"spec: {general_field(field_path) or 'top level'}: {_type_words(problem)}", stage


def spec_error_problems(error: Any) -> list[tuple[str, str, str | None]]:
    """``(field, reason, kind)`` for each problem of a ``SpecError`` (or any error: one problem)."""
    problems = list(getattr(error, "problems", None) or [("", str(error))])
    kinds = list(getattr(error, "kinds", None) or [])
    kinds += [None] * (len(problems) - len(kinds))
    return [(field, reason, kind) for (field, reason), kind in zip(problems, kinds, strict=False)]


# ---- structured records ------------------------------------------------------------------------

EXPECTATION_KINDS = {
    "expect_column_to_exist": ErrorKind.COLUMN_MISSING,
    "expect_column_values_to_be_in_set": ErrorKind.UNSEEN_CATEGORY,
    "expect_column_values_to_be_between": ErrorKind.OUT_OF_RANGE,
    "expect_column_values_to_not_be_null": ErrorKind.TOO_MANY_NULLS,
    "expect_column_values_to_be_in_type_list": ErrorKind.WRONG_COLUMN_TYPE,
    "expect_column_values_to_be_of_type": ErrorKind.WRONG_COLUMN_TYPE,
    "expect_table_row_count_to_be_between": ErrorKind.TOO_FEW_ROWS,
    "factory_expect_labels_in_known_classes": ErrorKind.UNSEEN_CLASS_LABEL,
}
FACTORY_CHECK_KINDS = {
    "classes": ErrorKind.UNSEEN_CLASS_LABEL,
    "labels": ErrorKind.UNSEEN_CLASS_LABEL,
    "numbers": ErrorKind.WRONG_COLUMN_TYPE,
}


def validation_kinds(result: dict[str, Any] | None) -> list[str]:
    """The kind of each failed check of a GX validation result, in the result's order."""
    kinds = []
    for item in (result or {}).get("results") or []:
        if item.get("success"):
            continue
        config = item.get("expectation_config") or {}
        check = (config.get("meta") or {}).get("factory_check")
        kind = FACTORY_CHECK_KINDS.get(check or "") or EXPECTATION_KINDS.get(config.get("type", ""))
        kinds.append(kind.value if kind else f"validation: {config.get('type', 'check')} failed")
    return kinds


_LOGGED_KIND = re.compile(re.escape(ERROR_KIND_LOG_KEY) + r"=([^\n\"]+)")


def logged_kinds(log_text: str) -> list[str]:
    """The kinds a failing task named in its log (``factory.error_kind=<kind>`` lines)."""
    return [match.group(1).strip() for match in _LOGGED_KIND.finditer(log_text or "")]


def first_kind(kinds: Iterable[str]) -> str | None:
    return next(iter(kinds), None)
