"""Model specs: one YAML file per model, parsed into a typed, validated object.

Parsing is cheap on purpose (pydantic + yaml only): the Airflow DAG processor parses every spec
often, so nothing here imports scikit-learn, MLflow or Great Expectations.

Over 500 lines on purpose: the spec is one schema whose sections refer to each other; the JSON
Schema, the reference page and the validator are all generated from this one module.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from model_factory.errors import ErrorKind, FactoryError, SpecProblemError
from model_factory.settings import FactorySettings
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[a-z][a-z0-9_]{1,62}$"

# Factory-controlled estimator params are left out on purpose: the seed comes from
# `split.seed`, categorical handling from `features`. tests/unit/spec/test_spec.py checks these
# lists against the installed scikit-learn.
_TREE_PARAMS = (
    "ccp_alpha",
    "criterion",
    "max_depth",
    "max_features",
    "max_leaf_nodes",
    "min_impurity_decrease",
    "min_samples_leaf",
    "min_samples_split",
    "min_weight_fraction_leaf",
    "n_estimators",
)
_HGB_PARAMS = (
    "early_stopping",
    "interaction_cst",
    "l2_regularization",
    "learning_rate",
    "loss",
    "max_bins",
    "max_depth",
    "max_features",
    "max_iter",
    "max_leaf_nodes",
    "min_samples_leaf",
    "monotonic_cst",
    "n_iter_no_change",
    "scoring",
    "tol",
    "validation_fraction",
)
_GB_PARAMS = (
    *_TREE_PARAMS,
    "learning_rate",
    "loss",
    "n_iter_no_change",
    "subsample",
    "tol",
    "validation_fraction",
)

ESTIMATORS: dict[str, dict[str, Any]] = {
    "LogisticRegression": {
        "module": "sklearn.linear_model",
        "task": "classification",
        "params": (
            "C",
            "class_weight",
            "dual",
            "fit_intercept",
            "intercept_scaling",
            "l1_ratio",
            "max_iter",
            "n_jobs",
            "penalty",
            "solver",
            "tol",
        ),
    },
    "RandomForestClassifier": {
        "module": "sklearn.ensemble",
        "task": "classification",
        "params": (
            *_TREE_PARAMS,
            "bootstrap",
            "class_weight",
            "max_samples",
            "monotonic_cst",
            "n_jobs",
            "oob_score",
        ),
    },
    "HistGradientBoostingClassifier": {
        "module": "sklearn.ensemble",
        "task": "classification",
        "params": (*_HGB_PARAMS, "class_weight"),
    },
    "GradientBoostingClassifier": {
        "module": "sklearn.ensemble",
        "task": "classification",
        "params": _GB_PARAMS,
    },
    "LinearRegression": {
        "module": "sklearn.linear_model",
        "task": "regression",
        "params": ("copy_X", "fit_intercept", "n_jobs", "positive", "tol"),
    },
    "Ridge": {
        "module": "sklearn.linear_model",
        "task": "regression",
        "params": ("alpha", "copy_X", "fit_intercept", "max_iter", "positive", "solver", "tol"),
    },
    "ElasticNet": {
        "module": "sklearn.linear_model",
        "task": "regression",
        "params": (
            "alpha",
            "copy_X",
            "fit_intercept",
            "l1_ratio",
            "max_iter",
            "positive",
            "precompute",
            "selection",
            "tol",
        ),
    },
    "RandomForestRegressor": {
        "module": "sklearn.ensemble",
        "task": "regression",
        "params": (*_TREE_PARAMS, "bootstrap", "max_samples", "monotonic_cst", "n_jobs", "oob_score"),
    },
    "HistGradientBoostingRegressor": {
        "module": "sklearn.ensemble",
        "task": "regression",
        "params": (*_HGB_PARAMS, "quantile"),
    },
    "GradientBoostingRegressor": {
        "module": "sklearn.ensemble",
        "task": "regression",
        "params": (*_GB_PARAMS, "alpha"),
    },
}

METRICS: dict[str, dict[str, Any]] = {
    "roc_auc": {"task": "classification", "higher_is_better": True},
    "f1": {"task": "classification", "higher_is_better": True},
    "accuracy": {"task": "classification", "higher_is_better": True},
    "log_loss": {"task": "classification", "higher_is_better": False},
    "rmse": {"task": "regression", "higher_is_better": False},
    "mae": {"task": "regression", "higher_is_better": False},
    "r2": {"task": "regression", "higher_is_better": True},
}


class SpecError(FactoryError, ValueError):
    """A spec that cannot be used, naming the file, the field and the reason.

    ``kinds`` holds one machine-readable kind per problem (an ``ErrorKind`` value, or the
    pydantic error type such as ``extra_forbidden``/``missing``/``value_error``; None when
    unknown): the Analyzer reads these, never the reason's words."""

    kind = ErrorKind.SPEC_INVALID

    def __init__(
        self, path: Path | str, problems: list[tuple[str, str]], kinds: Sequence[str | None] | None = None
    ):
        self.path = str(path)
        self.problems = problems
        self.kinds: list[str | None] = list(kinds) if kinds else [None] * len(problems)
        lines = [f"{field}: {reason}" if field else reason for field, reason in problems]
        super().__init__(f"invalid model spec {self.path}:\n  " + "\n  ".join(lines))


URI_VARIABLE = re.compile(r"\$\{([^}]*)\}")
# Besides FACTORY_* variables, a source URI may use those named here (comma-separated): the
# environment of a worker holds secrets (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN...) that a spec
# author must not be able to copy into a URI, a log line or an error.
URI_VARIABLES_ENV = "FACTORY_URI_VARIABLES"


def uri_variable_allowed(name: str, uri_variables: str) -> bool:
    """May a source URI use ``${name}``? FACTORY_* ones and those in ``uri_variables``
    (FACTORY_URI_VARIABLES: comma-separated names)."""
    extra = {v.strip() for v in uri_variables.split(",") if v.strip()}
    return bool(re.fullmatch(r"FACTORY_[A-Z0-9_]+", name)) or name in extra


def settings_of(info: ValidationInfo) -> FactorySettings | None:
    """The settings a spec is validated against: ``context={"settings": ...}`` given by the caller
    (``load_spec``). Without them (a test, a spec read back from a run) the checks that depend
    on the installation use its defaults: this machine's cores, FACTORY_* variables only."""
    context = info.context
    return context.get("settings") if isinstance(context, dict) else None


def check_batch_uri(uri: str, settings: FactorySettings | None) -> str:
    """A per-date batch URI template: file:// or s3:// (or a ${FACTORY_...} prefix) with {ds};
    no query or fragment (``#``/``?`` would be dropped silently by URL parsing)."""
    if not re.match(r"^(file|s3)://", uri) and not uri.startswith("${"):
        raise ValueError(f"must start with file:// or s3:// (got {uri!r})")
    uri_variables = settings.uri_variables if settings else ""
    for name in URI_VARIABLE.findall(uri):
        if not uri_variable_allowed(name, uri_variables):
            raise ValueError(
                f"uses ${{{name}}}: only FACTORY_* variables (and those listed in "
                f"{URI_VARIABLES_ENV}) may appear in a batch URI"
            )
    if "?" in uri or "#" in uri:
        raise ValueError("must not contain '?' or '#': a URI query or fragment is not part of a path")
    if "{ds}" not in uri and "{ds_nodash}" not in uri:
        raise ValueError("must contain {ds} or {ds_nodash} so each run reads its own batch")
    return uri


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    uri: str = Field(description="Batch URI; {ds}/{ds_nodash} and ${ENV_VAR} are filled at run time")
    format: Literal["csv", "parquet"] = "csv"
    aws_conn_id: str | None = Field(
        default=None, description="Airflow connection with S3 endpoint/credentials (optional)"
    )
    on_missing: Literal["skip", "fail"] = "skip"

    @field_validator("uri")
    @classmethod
    def _uri_scheme(cls, uri: str, info: ValidationInfo) -> str:
        return check_batch_uri(uri, settings_of(info))


class FeaturesSpec(_Strict):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_features(self) -> FeaturesSpec:
        names = self.numeric + self.categorical
        if not names:
            raise ValueError("at least one numeric or categorical feature is required")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"features listed more than once: {dupes}")
        return self

    @property
    def all(self) -> list[str]:
        return self.numeric + self.categorical


class RangeSpec(_Strict):
    min: float | None = None
    max: float | None = None


class ValidationSpec(_Strict):
    ranges: dict[str, RangeSpec] = Field(default_factory=dict)
    categories: dict[str, list[str]] = Field(default_factory=dict)
    max_null_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    min_rows: int = Field(default=1, ge=1)
    extra_suite: str | None = Field(
        default=None, description="Hand-written GX suite (JSON), relative to the spec's folder"
    )
    allow_non_finite: list[str] = Field(
        default_factory=list,
        description="Numeric features (or a regression target) where inf/-inf are allowed; "
        "anywhere else a non-finite value quarantines the batch",
    )
    soft_ranges: dict[str, RangeSpec] = Field(
        default_factory=dict,
        description="Where values usually lie: values beyond are reported in the validation "
        "report ('watch') and left to the drift watch, never quarantined (ranges are hard)",
    )

    @field_validator("extra_suite")
    @classmethod
    def _suite_beside_the_spec(cls, value: str | None) -> str | None:
        """Confined like code: a relative .json path inside the spec's folder, no '..'."""
        if value is None:
            return value
        parts = Path(value).parts
        if Path(value).is_absolute() or value.startswith(("/", "\\", "~")) or ".." in parts or ":" in value:
            raise ValueError(
                f"{value!r}: give a path relative to the spec's folder, without '..' "
                "(e.g. my_model.expectations.json)"
            )
        if not value.endswith(".json"):
            raise ValueError(f"{value!r}: a GX suite is a .json file")
        return value


FACTORY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*:[A-Za-z_][A-Za-z0-9_]*$"


# Bounds on estimator params: a spec must not be able to ask a worker for 1e9 trees or every
# core of a shared machine. Ints not named here must lie within +-MAX_PARAM_INT.
PARAM_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "n_estimators": (1, 10_000),
    "max_iter": (1, 100_000),
    "max_depth": (1, 1_000),
    "max_leaf_nodes": (2, 1_000_000),
    "max_bins": (2, 255),
    "n_iter_no_change": (1, 10_000),
    "min_samples_leaf": (1, 10_000_000),
    "min_samples_split": (2, 10_000_000),
}
MAX_PARAM_INT = 10_000_000
MAX_PARAM_ITEMS = 1_000  # elements of a list/mapping param (monotonic_cst, class_weight)
MAX_PARAM_TEXT = 200
MAX_N_JOBS_ENV = "FACTORY_MAX_N_JOBS"


def max_n_jobs(settings: FactorySettings | None) -> int:
    """The most cores one training may ask for: FACTORY_MAX_N_JOBS, else this machine's cores."""
    import os

    value = settings.max_n_jobs if settings else None
    return value if value and value > 0 else (os.cpu_count() or 1)


def check_param(key: str, value: Any, depth: int = 0, *, cap: int) -> None:
    """Raise ValueError naming the param when its value is out of bounds (``n_jobs``: 1..``cap``)."""
    if depth > 3:
        raise ValueError(f"params.{key}: nested more than 3 levels deep")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if key == "n_jobs":
            if not 1 <= value <= cap:
                raise ValueError(
                    f"params.n_jobs must be between 1 and {cap} (the cores allowed per training; "
                    f"{MAX_N_JOBS_ENV} sets the cap), got {value}"
                )
            return
        low, high = PARAM_INT_BOUNDS.get(key, (-MAX_PARAM_INT, MAX_PARAM_INT))
        if not low <= value <= high:
            raise ValueError(f"params.{key} must be between {low} and {high}, got {value}")
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"params.{key} must be a finite number, got {value}")
        if key in PARAM_INT_BOUNDS or key == "n_jobs":
            if not value.is_integer():
                raise ValueError(f"params.{key} must be a whole number, got {value}")
            check_param(key, int(value), depth, cap=cap)
        return
    if isinstance(value, str):
        if len(value) > MAX_PARAM_TEXT:
            raise ValueError(f"params.{key}: text longer than {MAX_PARAM_TEXT} characters")
        return
    if isinstance(value, list | tuple | dict):
        if len(value) > MAX_PARAM_ITEMS:
            raise ValueError(f"params.{key}: more than {MAX_PARAM_ITEMS} items")
        items = value.values() if isinstance(value, dict) else value
        for item in items:
            check_param(key if key in ("class_weight",) else f"{key}[]", item, depth + 1, cap=cap)
        return
    raise ValueError(f"params.{key}: unsupported value of type {type(value).__name__}")


class EstimatorSpec(_Strict):
    class_: str | None = Field(default=None, alias="class")
    factory: str | None = Field(
        default=None,
        pattern=FACTORY_PATTERN,
        description="custom_training: 'module:function' in the code/ folder beside the specs",
    )
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _allowed(self, info: ValidationInfo) -> EstimatorSpec:
        cap = max_n_jobs(settings_of(info))
        if (self.class_ is None) == (self.factory is None):
            raise ValueError("give exactly one of 'class' (an allow-listed estimator) or 'factory'")
        if self.factory is not None:
            for key, value in self.params.items():  # the same bounds (n_jobs, sizes, finite)
                check_param(key, value, cap=cap)
            return self  # params go to the data scientist's function; checked when it runs
        if self.class_ not in ESTIMATORS:
            raise SpecProblemError(
                ErrorKind.SPEC_ESTIMATOR_NOT_ALLOWED,
                f"estimator {self.class_!r} is not allowed; choose one of {sorted(ESTIMATORS)}",
            )
        allowed = ESTIMATORS[self.class_]["params"]
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            raise SpecProblemError(
                ErrorKind.SPEC_UNKNOWN_PARAM,
                f"unknown params {unknown} for {self.class_}; allowed: {sorted(allowed)}",
            )
        for key, value in self.params.items():
            check_param(key, value, cap=cap)
        return self


class SplitSpec(_Strict):
    strategy: Literal["random", "time"] = "random"
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    time_column: str | None = None
    seed: int = 42

    @model_validator(mode="after")
    def _time_needs_column(self) -> SplitSpec:
        if self.strategy == "time" and not self.time_column:
            raise ValueError("strategy 'time' needs time_column")
        return self


# Default cap on the rows one training reads (bench/README.md, "train_sample.py"): on the demo
# models a 1,000,000-row sample scores within noise of the full data while bounding memory.
DEFAULT_MAX_TRAINING_ROWS = 1_000_000


class TrainingSpec(_Strict):
    window_batches: int = Field(
        default=3, ge=1, description="Train on this run's batch plus the previous validated ones"
    )
    max_rows: int | None = Field(
        default=DEFAULT_MAX_TRAINING_ROWS,
        ge=1000,
        description="Train on a seeded random sample of at most this many rows of the window "
        "(read chunk by chunk, so memory follows the sample); null: every row",
    )
    window_rows: int | None = Field(
        default=None,
        ge=1,
        description="Also reach back to earlier validated batches (beyond window_batches) until "
        "the window holds at least this many rows: small daily batches add up to enough evidence",
    )


class GatesSpec(_Strict):
    primary_metric: str
    threshold: float = Field(
        description="Absolute bar: at least this (higher-is-better) or at most this (lower)"
    )
    max_regression: float = Field(
        default=0.0, ge=0.0, description="Allowed relative loss vs the champion, e.g. 0.01 = 1%"
    )
    too_good_jump: float | None = Field(
        default=0.25, gt=0.0, description="Relative gain vs champion that holds for review"
    )
    too_good_score: float | None = Field(
        default=None,
        description="A score at/past this (e.g. roc_auc 0.999) holds for review, unless the "
        "champion scores as well on the same rows or the holdout is too small to tell; "
        "null: never held for the score alone",
    )
    min_holdout_rows: int = Field(
        default=100, ge=1, description="Fewer holdout rows: too small to decide against a champion"
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1.0, description="Paired bootstrap interval vs the champion"
    )
    baseline_margin: float | None = Field(
        default=None,
        ge=0.0,
        description="Beat a dummy model (class prior / mean) on the same rows by this much of "
        "the metric (absolute), on top of threshold; null: no baseline check",
    )

    @field_validator("primary_metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)}")
        return metric


# Airflow's cron presets (airflow.utils.dates.cron_presets); '@once'/'@continuous' are not
# schedules a nightly retrain or an hourly watch can mean.
CRON_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@midnight": "0 0 * * *",
}


@functools.lru_cache(maxsize=1024)
def check_schedule(schedule: str | None) -> str | None:
    """A 5-field cron expression or a cron preset, checked the way Airflow's cron timetable
    will read it (croniter, five fields): a schedule Airflow cannot run fails at parse time.
    Cached: hundreds of specs share a few schedules (a refused one raises again each time)."""
    if schedule is None:
        return None
    from croniter import croniter

    expression = CRON_PRESETS.get(schedule.strip(), schedule)
    if schedule.startswith("@") and schedule.strip() not in CRON_PRESETS:
        raise ValueError(f"{schedule!r} is not a schedule preset; use one of {sorted(CRON_PRESETS)}")
    try:
        fields = len(croniter(expression).expanded)
    except Exception as exc:
        raise ValueError(f"{schedule!r} is not a cron expression: {exc}") from None
    if fields != 5 or len(expression.split()) != 5:
        raise ValueError(f"{schedule!r} must have five cron fields (minute hour day month weekday)")
    return schedule


def daily_time(schedule: str | None) -> tuple[int, int] | None:
    """(hour, minute) of a once-a-day cron (``0 2 * * *``, ``@daily``), else None."""
    fields = CRON_PRESETS.get((schedule or "").strip(), schedule or "").split()
    if len(fields) != 5 or fields[2:] != ["*", "*", "*"] or not all(f.isdigit() for f in fields[:2]):
        return None
    return int(fields[1]), int(fields[0])


class DriftSpec(_Strict):
    """How ``<model>__drift_watch`` compares fresh data with the champion's training baseline."""

    enabled: bool = True
    schedule: str | None = Field(default="@hourly", description="When the watch DAG looks for data")
    data_uri: str | None = Field(
        default=None,
        description="Production/serving batches to watch ({ds} filled); default: source.uri",
    )
    psi_threshold: float = Field(default=0.2, gt=0.0, description="Any feature at/above: drift")
    drifted_share: float = Field(
        default=0.3, gt=0.0, le=1.0, description="This share of features drifted: drift"
    )
    min_rows: int = Field(
        default=500,
        ge=1,
        description="From this many rows (pooled) the effect-size rule decides with asymptotic tests",
    )
    small_min_rows: int = Field(
        default=100,
        ge=1,
        description="From this many rows up to min_rows, tests valid at small n decide (exact KS, "
        "permutation chi-square; the report states the smallest shift they can see); fewer: no "
        "decision, said so",
    )
    pool_days: int = Field(
        default=14,
        ge=0,
        description="A batch under min_rows is pooled with the batches of up to this many earlier "
        "validated days, newest first, until min_rows (0: never pool)",
    )
    ignore_features: list[str] = Field(
        default_factory=list,
        description="Reported, never judged: features that legitimately differ per batch (day_of_week)",
    )
    contract_k_sigma: float = Field(default=2.0, gt=0.0, description="Input contract: mean ± k sigma")
    contract_mostly: float = Field(default=0.95, gt=0.0, le=1.0)
    max_metric_drop: float = Field(
        default=0.05, gt=0.0, description="Concept drift: relative live-metric loss that retrains"
    )
    min_labels: int = Field(default=200, ge=1, description="Labelled rows needed for concept drift")
    cooldown_hours: float = Field(
        default=12.0, ge=0.0, description="No second drift-fired retrain within this window"
    )
    sensor_timeout_minutes: int = Field(default=55, ge=1)
    sensor_poke_seconds: int = Field(default=60, ge=1)
    reference: Literal["training", "rolling", "same_weekday", "same_period_last_year"] = Field(
        default="training",
        description="What a batch is compared with (its inputs, and with labels the champion's metric): "
        "the training baseline (and holdout), the days before, the same weekday in past weeks, or the "
        "same period 52 weeks ago (seasonal data)",
    )

    @field_validator("data_uri")
    @classmethod
    def _data_uri(cls, uri: str | None, info: ValidationInfo) -> str | None:
        return None if uri is None else check_batch_uri(uri, settings_of(info))

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, schedule: str | None) -> str | None:
        return check_schedule(schedule)


class NotifySpec(_Strict):
    """Where the owner's alerts go; the log/file alert is always written."""

    email: list[str] = Field(default_factory=list, description="Recipients (needs smtp_conn_id)")
    smtp_conn_id: str | None = None
    webhook_conn_id: str | None = Field(
        default=None, description="Airflow connection whose host/extra.url is a Slack-style webhook"
    )
    retrain_deadline: str | None = Field(
        default=None,
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="HH:MM (UTC): a nightly retrain not finished by then alerts the owner (an "
        "Airflow deadline alert; needs a daily `schedule`)",
    )


class CanarySpec(_Strict):
    """The live rollout of a blessed challenger (see ``<model>__canary``)."""

    enabled: bool = True
    ramp: list[float] = Field(default_factory=lambda: [0.1, 0.5, 1.0])
    min_samples: int = Field(
        default=500,
        ge=10,
        description="Labelled outcomes per arm per stage (500: a 15% AUC drop is caught ~94% of the time)",
    )
    max_stage_minutes: int = Field(default=60, ge=1, description="Give up waiting for samples")
    max_relative_drop: float = Field(default=0.02, ge=0.0)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    max_error_rate: float = Field(default=0.02, ge=0.0, le=1.0)
    max_p95_latency_ms: float = Field(default=250.0, gt=0.0)
    poke_seconds: int = Field(
        default=30,
        ge=1,
        description="The stage's full analysis runs at least this often (guardrails, deadline); between, "
        "its labelled outcomes are counted every second (in the worker, then on the triggerer)",
    )

    @field_validator("ramp")
    @classmethod
    def _ramp(cls, ramp: list[float]) -> list[float]:
        if not ramp or any(not 0.0 < share <= 1.0 for share in ramp):
            raise ValueError("ramp must be a non-empty list of shares in (0, 1]")
        if ramp != sorted(set(ramp)):
            raise ValueError(f"ramp must increase strictly (got {ramp})")
        return ramp


class DataBudgetSpec(_Strict):
    """Refit on growing shares of the training rows: how much data the model really needs."""

    @model_validator(mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        """``data_budget: false`` / ``true`` is short for ``{enabled: false}`` / ``{enabled: true}``."""
        if isinstance(value, bool):
            return {"enabled": value}
        if value is not None and not isinstance(value, dict | DataBudgetSpec):
            raise ValueError(
                f"got {value!r}; accepted forms: false, true, or a mapping {{enabled: false}} / "
                "{enabled: true, shares: [0.25, 0.5, 1.0], tolerance: 0.01}"
            )
        return value

    enabled: bool = True
    shares: list[float] = Field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])
    tolerance: float = Field(
        default=0.01,
        ge=0.0,
        description="Recommend the smallest share within this relative distance of the full-data metric",
    )

    @field_validator("shares")
    @classmethod
    def _shares(cls, shares: list[float]) -> list[float]:
        if not shares or any(not 0.0 < s <= 1.0 for s in shares) or shares != sorted(set(shares)):
            raise ValueError(f"shares must increase strictly within (0, 1] (got {shares})")
        return shares


class EvaluationSpec(_Strict):
    """What each version's model card shows: slices, explanation, data budget."""

    slices: list[str] = Field(
        default_factory=list, description="Columns (features or not) to report metrics per value"
    )
    slice_tolerance: float = Field(
        default=0.1, ge=0.0, description="A slice this much (relative) worse than the whole is flagged"
    )
    min_slice_rows: int = Field(default=30, ge=1, description="Smaller slices are shown, not judged")
    importance_max_rows: int = Field(
        default=5000, ge=100, description="Permutation importance on a seeded sample of the holdout"
    )
    importance_repeats: int = Field(default=3, ge=1, le=50)
    data_budget: DataBudgetSpec = Field(default_factory=DataBudgetSpec)


CHECKLIST_ITEMS = (
    "owner_and_description",
    "gates_passed",
    "model_card",
    "lineage_complete",
    "explanation",
    "slices_within_tolerance",
    "training_cost",
)


class ReviewSpec(_Strict):
    """The lifecycle checklist that gates serving, and how long a held version waits."""

    checklist: list[str] = Field(default_factory=lambda: list(CHECKLIST_ITEMS))
    window_hours: float = Field(
        default=72.0, gt=0.0, description="A held version nobody reviews by then expires as rejected"
    )
    max_train_cpu_seconds: float | None = Field(
        default=None, gt=0.0, description="Training cost budget checked by the 'training_cost' item"
    )
    reviewers: list[str] = Field(
        default_factory=list,
        description="Airflow user ids who may answer the review task (its HITL assigned_users): the "
        "login name with the simple auth manager, the user id with FAB; empty: anyone allowed to "
        "answer HITL tasks",
    )

    @field_validator("reviewers")
    @classmethod
    def _reviewer_ids(cls, reviewers: list[str]) -> list[str]:
        blank = [i for i, user in enumerate(reviewers) if not user.strip() or user != user.strip()]
        if blank:
            raise ValueError(f"reviewer ids must be non-empty, without surrounding spaces (items {blank})")
        repeated = sorted({user for user in reviewers if reviewers.count(user) > 1})
        if repeated:
            raise ValueError(f"reviewers listed twice: {repeated}")
        return reviewers

    @field_validator("checklist")
    @classmethod
    def _known_items(cls, items: list[str]) -> list[str]:
        unknown = [item for item in items if item not in CHECKLIST_ITEMS]
        if unknown:
            raise ValueError(f"unknown checklist items {unknown}; choose from {list(CHECKLIST_ITEMS)}")
        return items


OPERATIONAL_SECTIONS = (
    "schedule",
    "retries",
    "drift",
    "notify",
    "canary",
    "evaluation",
    "review",
    "task_timeout_minutes",
)


class OutcomeSourceSpec(_Strict):
    """True outcomes from another system (claims, CRM): one file per date, joined by id."""

    uri: str = Field(description="Outcome batch URI with {ds} (the day the outcomes arrived)")
    format: Literal["csv", "parquet"] = "csv"
    id_column: str = Field(description="The id the prediction was made for (the gateway's entity_id)")
    outcome_column: str = Field(description="The true outcome (a class, or a number)")
    event_time_column: str = Field(description="When the outcome happened")
    aws_conn_id: str | None = None

    @field_validator("uri")
    @classmethod
    def _uri(cls, uri: str, info: ValidationInfo) -> str:
        return check_batch_uri(uri, settings_of(info))


class OutcomesSpec(_Strict):
    """Where a model's true outcomes arrive, and how ``<model>__health`` judges them."""

    enabled: bool = Field(
        default=False, description="Build <model>__health (off until the model's outcomes are wired)"
    )
    gateway_feedback: bool = Field(default=True, description="Use the gateway's /feedback outcomes")
    source: OutcomeSourceSpec | None = Field(default=None, description="Outcomes from another system")
    max_delay_days: float = Field(
        default=7.0, gt=0.0, description="Outcomes arrive up to this late; older unlabelled = expired"
    )
    min_outcomes: int = Field(default=200, ge=1, description="Matured outcomes needed to decide")
    max_drop: float = Field(default=0.05, gt=0.0, description="Relative drop from holdout that acts")
    window_days: int = Field(default=7, ge=1, description="Days the decision looks back")
    warn_days: int = Field(default=14, ge=0, description="Alert when 'retrain by' is this close")
    retrain_on_estimate: bool = Field(
        default=False, description="An estimated (not yet realized) drop retrains, not only alerts"
    )
    schedule: str | None = Field(default="@daily", description="When the health check runs")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, schedule: str | None) -> str | None:
        return check_schedule(schedule)


class ModelSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    owner: str
    description: str
    task: Literal["classification", "regression"]
    schedule: str | None = "0 2 * * *"
    source: SourceSpec
    target: str = Field(
        description="The target column; or a mapping {name: ..., classes: [...]} listing the classes"
    )
    target_classes: list[StrictInt] | list[StrictStr] | None = Field(
        default=None,
        description="Set by `target: {name, classes}`: the classes a classifier knows; a batch "
        "with any other label is quarantined. Unset: learnt at the first training",
    )
    features: FeaturesSpec
    estimator: EstimatorSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    gates: GatesSpec
    drift: DriftSpec = Field(default_factory=DriftSpec)
    notify: NotifySpec = Field(default_factory=NotifySpec)
    canary: CanarySpec = Field(default_factory=CanarySpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    review: ReviewSpec = Field(default_factory=ReviewSpec)
    outcomes: OutcomesSpec = Field(default_factory=OutcomesSpec)
    tags: dict[str, str] = Field(default_factory=dict)
    retries: int = Field(default=2, ge=0, le=10)
    template: str = Field(
        default="retrain", pattern=r"^[a-z][a-z0-9_]{0,62}$", description="The DAG template"
    )
    template_params: dict[str, Any] = Field(
        default_factory=dict, description="Checked by the template's own params model"
    )
    task_timeout_minutes: int = Field(
        default=120, ge=1, le=24 * 60, description="execution_timeout of every task"
    )

    @model_validator(mode="before")
    @classmethod
    def _target_mapping(cls, raw: Any) -> Any:
        """``target: {name: y, classes: [a, b, c]}`` is ``target: y`` with its classes."""
        if isinstance(raw, dict) and isinstance(raw.get("target"), dict):
            target = dict(raw["target"])
            unknown = sorted(set(target) - {"name", "classes"})
            if unknown or "name" not in target:
                raise ValueError(
                    f"target: a mapping needs 'name' and may have 'classes' (got {sorted(target)})"
                )
            classes = target.get("classes")
            if isinstance(classes, list) and any(isinstance(c, bool) for c in classes):
                raise ValueError(
                    f"target.classes {classes}: unquoted yes/no/true/false are YAML booleans; "
                    'quote class names ("yes", "no")'
                )
            raw = {**raw, "target": target["name"], "target_classes": classes}
        return raw

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, schedule: str | None) -> str | None:
        return check_schedule(schedule)

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.notify.retrain_deadline and daily_time(self.schedule) is None:
            raise ValueError(
                f"notify.retrain_deadline {self.notify.retrain_deadline!r} needs a daily `schedule` "
                f"(one minute and hour, every day: '0 2 * * *'); schedule is {self.schedule!r}"
            )
        if self.target_classes is not None:
            if self.task != "classification":
                raise ValueError("target.classes is for classification only")
            classes = self.target_classes
            if len(classes) < 2 or len({str(c) for c in classes}) != len(classes):
                raise ValueError(f"target.classes needs two or more distinct classes (got {classes})")
        finite_ok = set(self.features.numeric) | ({self.target} if self.task == "regression" else set())
        stray = sorted(set(self.validation.allow_non_finite) - finite_ok)
        if stray:
            raise ValueError(
                f"validation.allow_non_finite names columns that are not numeric features "
                f"(or a regression target): {stray}"
            )
        est_task = ESTIMATORS[self.estimator.class_]["task"] if self.estimator.class_ else self.task
        if est_task != self.task:
            raise ValueError(f"estimator {self.estimator.class_} is for {est_task}, task is {self.task}")
        metric_task = METRICS[self.gates.primary_metric]["task"]
        if metric_task != self.task:
            raise ValueError(f"gates.primary_metric {self.gates.primary_metric} is a {metric_task} metric")
        if self.target in self.features.all:
            raise ValueError(f"target {self.target!r} is also listed as a feature")
        known = set(self.features.all)
        for section, names in (
            ("validation.ranges", self.validation.ranges),
            ("validation.categories", self.validation.categories),
        ):
            stray = sorted(set(names) - known)
            if stray:
                raise ValueError(f"{section} names columns that are not features: {stray}")
        stray = sorted(set(self.drift.ignore_features) - known)
        if stray:
            raise ValueError(f"drift.ignore_features names columns that are not features: {stray}")
        stray = sorted(set(self.validation.ranges) - set(self.features.numeric))
        if stray:
            raise ValueError(f"validation.ranges given for non-numeric features: {stray}")
        return self

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.gates.primary_metric]["higher_is_better"]

    @property
    def registered_model_name(self) -> str:
        return self.name

    def spec_hash(self) -> str:
        """Hash of what defines the model; how it is watched, rolled out and alerted is left out,
        so tuning a drift threshold does not retrain anything."""
        defining = self.model_dump(mode="json", by_alias=True, exclude=set(OPERATIONAL_SECTIONS))
        canonical = json.dumps(defining, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class LoadedSpec:
    path: Path
    spec: ModelSpec


def _field_path(loc: Iterable[Any]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


MAX_SPEC_BYTES = 256 * 1024
MAX_YAML_DEPTH = 20
# libyaml's parser when PyYAML was built with it (about 10x faster; the DAG processor reads every
# spec on each parse); the constructor is the same safe one either way.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _YamlShapeError(yaml.YAMLError):
    def __init__(self, problem: str, mark: Any):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


def _check_yaml_shape(text: str) -> None:
    """Refuse aliases (``*name``: a few lines can expand to billions of nodes, and hashing the
    spec would hang) and nesting deeper than MAX_YAML_DEPTH, from the event stream, before
    anything is built."""
    depth = 0
    for event in yaml.parse(text, Loader=YAML_LOADER):
        if isinstance(event, yaml.AliasEvent):
            raise _YamlShapeError("YAML aliases (*name) are not allowed in a spec", event.start_mark)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise _YamlShapeError(f"nested more than {MAX_YAML_DEPTH} levels deep", event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def problem_kind(err: Any) -> str:
    """A pydantic error's machine-readable kind: the ``SpecProblemError`` kind a validator raised,
    else pydantic's own error type (``missing``, ``extra_forbidden``, ``value_error``...)."""
    cause = (err.get("ctx") or {}).get("error")
    return str(cause.problem_kind) if isinstance(cause, SpecProblemError) else str(err["type"])


def load_spec(path: Path | str, settings: FactorySettings) -> ModelSpec:
    """Parse one spec file; raise SpecError naming the file, field and reason. ``settings``: the
    installation's limits the spec is checked against (FACTORY_MAX_N_JOBS, FACTORY_URI_VARIABLES)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(path, [("", f"file is {size} bytes; a spec may be at most {MAX_SPEC_BYTES}")])
        data = path.read_bytes()
    except OSError as exc:
        unreadable = [ErrorKind.SPEC_UNREADABLE]
        raise SpecError(path, [("", f"cannot read file: {exc.strerror}")], unreadable) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        unreadable = [ErrorKind.SPEC_UNREADABLE]
        raise SpecError(path, [("", f"not UTF-8 text (byte {exc.start})")], unreadable) from None
    try:
        _check_yaml_shape(text)
        raw = yaml.load(text, Loader=YAML_LOADER)  # the safe constructor, C or Python parser
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        malformed = [ErrorKind.SPEC_MALFORMED_YAML]
        raise SpecError(path, [("", f"malformed YAML: {where}{problem}")], malformed) from exc
    if not isinstance(raw, dict):
        raise SpecError(path, [("", "top level must be a mapping of fields")])
    try:
        spec = ModelSpec.model_validate(raw, context={"settings": settings})
    except ValidationError as exc:
        problems, kinds = [], []
        for err in exc.errors():
            reason = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                reason = "unknown field"
            problems.append((_field_path(err["loc"]), reason))
            kinds.append(problem_kind(err))
        raise SpecError(path, problems, kinds) from exc
    if spec.name != path.stem:
        mismatch = [ErrorKind.SPEC_NAME_MISMATCH]
        raise SpecError(path, [("name", f"must match the file name {path.stem!r}")], mismatch)
    return spec


def load_specs(specs_dir: Path | str, settings: FactorySettings) -> tuple[list[LoadedSpec], list[SpecError]]:
    """Every ``*.yaml`` in a folder: the good ones and the errors, so one bad spec stops no other."""
    good: list[LoadedSpec] = []
    bad: list[SpecError] = []
    for path in sorted(Path(specs_dir).glob("*.yaml")):
        try:
            good.append(LoadedSpec(path, load_spec(path, settings)))
        except SpecError as exc:
            bad.append(exc)
    return good, bad
