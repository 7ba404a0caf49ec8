"""Hyperparameter search inside training (template ``tuned_retrain``).

Random search with scikit-learn's own pieces (``ParameterSampler`` + ``cross_validate``), in a
loop the factory drives rather than ``RandomizedSearchCV``: that loop is what lets every trial
be a nested MLflow run as it finishes and the budget be minutes as well as trials (sklearn's
searchers only stop by count and report at the end). Cross-validation sees only the training
part; the holdout stays untouched for the gates. The best parameters are refit on the whole
training part and go through the same gates as any version.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from model_factory.io import tag_schema
from model_factory.spec import ESTIMATORS, ModelSpec
from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from model_factory.pipeline.training import Fitted

# The primary metric as a scikit-learn scorer name (higher is better for all of them).
SCORERS = {
    ("roc_auc", True): "roc_auc",
    ("roc_auc", False): "roc_auc_ovr",
    ("f1", True): "f1",
    ("f1", False): "f1_macro",
    ("accuracy", True): "accuracy",
    ("accuracy", False): "accuracy",
    ("log_loss", True): "neg_log_loss",
    ("log_loss", False): "neg_log_loss",
    ("rmse", True): "neg_root_mean_squared_error",
    ("mae", True): "neg_mean_absolute_error",
    ("r2", True): "r2",
}


class Distribution(BaseModel):
    """One parameter's search space: ``values: [...]``, or ``low``/``high`` (``log``, ``int``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    values: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    int_: bool = Field(default=False, alias="int")

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        if self.values is not None:
            if not self.values:
                raise ValueError("values must not be empty")
            if self.low is not None or self.high is not None:
                raise ValueError("give either values or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give values: [...] or both low and high")
        if not math.isfinite(self.low) or not math.isfinite(self.high) or self.low >= self.high:
            raise ValueError(f"low must be below high (got {self.low} .. {self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    def sampler(self) -> Any:
        from scipy import stats

        if self.values is not None:
            return list(self.values)
        low, high = self.low, self.high
        if low is None or high is None:  # _one_kind requires both without values
            raise ValueError("give values: [...] or both low and high")
        if self.int_:
            return stats.randint(int(low), int(high) + 1)  # log is ignored for ints
        if self.log:
            return stats.loguniform(low, high)
        return stats.uniform(low, high - low)


class TuningParams(BaseModel):
    """``template_params`` of ``tuned_retrain``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    search: dict[str, Distribution] = Field(description="Estimator parameter -> its search space")
    trials: int = Field(default=20, ge=1, le=1000, description="At most this many trials")
    max_minutes: float = Field(default=10.0, gt=0, le=24 * 60, description="Stop starting trials after")
    cv_folds: int = Field(default=3, ge=2, le=20)

    @model_validator(mode="after")
    def _some_search(self) -> TuningParams:
        if not self.search:
            raise ValueError("search is empty: give at least one estimator parameter to search")
        return self


def check_search(spec: ModelSpec, params: TuningParams | None = None) -> list[tuple[str, str]]:
    """Search parameters the spec's estimator does not take (field, reason)."""
    if spec.estimator.class_ is None:
        return [
            (
                "estimator.factory",
                "tuned_retrain searches an allow-listed estimator's params; use estimator.class",
            )
        ]
    allowed = ESTIMATORS[spec.estimator.class_]["params"]
    search = params.search if params else (spec.template_params.get("search") or {})
    return [
        (
            f"template_params.search.{name}",
            f"{spec.estimator.class_} has no parameter {name!r}; allowed: {sorted(allowed)}",
        )
        for name in search
        if name not in allowed
    ]


def scorer_name(spec: ModelSpec, n_classes: int) -> str:
    return SCORERS[(spec.gates.primary_metric, spec.task == "regression" or n_classes <= 2)]


def _splitter(spec: ModelSpec, folds: int) -> Any:
    from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit

    if spec.split.strategy == "time":
        return TimeSeriesSplit(n_splits=folds)  # rows arrive in time order from split_holdout
    if spec.task == "classification":
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=spec.split.seed)
    return KFold(n_splits=folds, shuffle=True, random_state=spec.split.seed)


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones (MLflow params, JSON)."""
    return value.item() if hasattr(value, "item") else value


def fit_tuned(spec: ModelSpec, X_train, y_train) -> Fitted:
    """Random search over ``template_params.search`` within the trial and minute budgets; each
    trial a nested MLflow run; the best refit on the whole training part."""
    import mlflow
    import numpy as np
    from model_factory.pipeline.training import Fitted, build_pipeline
    from sklearn.model_selection import ParameterSampler, cross_validate

    params = TuningParams.model_validate(spec.template_params)
    n_classes = int(y_train.nunique()) if spec.task == "classification" else 0
    scoring = scorer_name(spec, n_classes)
    space = {f"model__{name}": dist.sampler() for name, dist in params.search.items()}
    candidates = ParameterSampler(space, n_iter=params.trials, random_state=spec.split.seed)
    deadline = time.monotonic() + params.max_minutes * 60
    training_run = mlflow.active_run()
    if training_run is None:
        raise RuntimeError("fit_tuned runs inside the training's MLflow run (train_model starts it)")
    experiment = training_run.info.experiment_id  # trials nest under the training run
    best: tuple[float, dict[str, Any]] | None = None
    done, stopped = 0, "trials"
    for number, candidate in enumerate(candidates):
        if number > 0 and time.monotonic() >= deadline:  # the first trial always runs
            stopped = "minutes"
            break
        chosen = {key.removeprefix("model__"): _plain(value) for key, value in candidate.items()}
        pipeline = build_pipeline(spec).set_params(**candidate)
        started = time.perf_counter()
        with mlflow.start_run(
            run_name=f"trial-{number}",
            nested=True,
            experiment_id=experiment,
            tags={tag_schema.TRIAL: str(number), tag_schema.MODEL: spec.name},
        ):
            mlflow.log_params({f"estimator.{k}": v for k, v in chosen.items()})
            try:
                scores = cross_validate(
                    pipeline,
                    X_train,
                    y_train,
                    cv=_splitter(spec, params.cv_folds),
                    scoring=scoring,
                    error_score="raise",
                )["test_score"]
            except ValueError as exc:  # a bad combination (e.g. solver/penalty): a failed trial
                mlflow.set_tag(tag_schema.TRIAL_ERROR, str(exc)[:500])
                done += 1
                continue
            mean = float(np.mean(scores))
            mlflow.log_metrics(
                {
                    f"cv_{scoring}_mean": mean,
                    f"cv_{scoring}_std": float(np.std(scores)),
                    "trial_seconds": time.perf_counter() - started,
                }
            )
        done += 1
        if best is None or mean > best[0]:
            best = (mean, chosen)
    if best is None:
        raise ValueError(
            f"tuning of {spec.name}: none of the {done} trials could be scored "
            "(see the trial runs' factory.trial_error tags)"
        )
    score, chosen = best
    pipeline = build_pipeline(spec).set_params(**{f"model__{k}": v for k, v in chosen.items()})
    pipeline.fit(X_train, y_train)
    return Fitted(
        model=pipeline,
        params={
            **{f"best.{k}": v for k, v in chosen.items()},
            "tuning.trials_run": done,
            "tuning.stopped_by": stopped,
            "tuning.scoring": scoring,
        },
        tags={tag_schema.TUNING_BEST_CV: f"{score:.6f}", tag_schema.TUNING_TRIALS: str(done)},
    )
