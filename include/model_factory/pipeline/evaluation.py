"""Evaluate: candidate vs current champion on the same holdout, then the gates decide.

Like TFX's evaluator, the output is an explicit blessing: ``blessed``, ``rejected`` or
``held_for_review`` with the reason, written to the run as an artifact and tags. Only
``blessed`` versions may get a serving alias (see ``registry``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from model_factory.io import storage, tracking
from model_factory.io.batches import parse_batch
from model_factory.pipeline.training import prepare_features, target_values
from model_factory.settings import FactorySettings
from model_factory.spec import METRICS, GatesSpec, ModelSpec

Status = Literal["blessed", "rejected", "held_for_review"]
PERFECT = {"roc_auc": 0.999, "accuracy": 0.999, "f1": 0.999, "r2": 0.999, "rmse": 0.0, "mae": 0.0,
           "log_loss": 0.0}  # fmt: skip


@dataclass(frozen=True)
class Decision:
    status: Status
    reason: str
    metric: str
    candidate: float
    champion: float | None = None
    champion_version: str | None = None
    relative_change: float | None = None


def compute_metrics(model: Any, holdout: pd.DataFrame, spec: ModelSpec) -> dict[str, float]:
    """Holdout metrics for the spec's task."""
    from sklearn import metrics

    X, y = prepare_features(holdout, spec), target_values(holdout, spec)
    if spec.task == "regression":
        pred = model.predict(X)
        return {
            "rmse": float(np.sqrt(metrics.mean_squared_error(y, pred))),
            "mae": float(metrics.mean_absolute_error(y, pred)),
            "r2": float(metrics.r2_score(y, pred)),
        }
    proba = model.predict_proba(X)
    classes = list(model.classes_)
    pred = np.asarray(classes)[proba.argmax(axis=1)]
    binary = len(classes) == 2
    out = {
        "accuracy": float(metrics.accuracy_score(y, pred)),
        "f1": float(metrics.f1_score(y, pred, average="binary" if binary else "macro")),
        "log_loss": float(metrics.log_loss(y, proba, labels=classes)),
    }
    if y.nunique() < 2:
        out["roc_auc"] = float("nan")
    elif binary:
        out["roc_auc"] = float(metrics.roc_auc_score(y, proba[:, 1]))
    else:
        out["roc_auc"] = float(metrics.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    return out


def decide(
    gates: GatesSpec,
    candidate: float,
    champion: float | None,
    champion_version: str | None = None,
) -> Decision:
    """Apply the gates to one primary-metric value, against the champion's on the same rows."""
    metric = gates.primary_metric
    higher = METRICS[metric]["higher_is_better"]
    word = "at least" if higher else "at most"
    base = {"metric": metric, "candidate": candidate, "champion": champion,
            "champion_version": champion_version}  # fmt: skip

    if np.isnan(candidate):
        return Decision("rejected", f"{metric} could not be computed on the holdout", **base)
    meets_bar = candidate >= gates.threshold if higher else candidate <= gates.threshold
    if not meets_bar:
        return Decision(
            "rejected", f"{metric} {candidate:.4f} misses the bar: must be {word} {gates.threshold}", **base
        )
    perfect = candidate >= PERFECT[metric] if higher else candidate <= PERFECT[metric]
    if perfect:
        return Decision(
            "held_for_review",
            f"{metric} {candidate:.4f} is a perfect score on the holdout: check for target leakage",
            **base,
        )
    if champion is None or np.isnan(champion):
        return Decision("blessed", f"{metric} {candidate:.4f} meets the bar; no champion yet", **base)

    gain = (candidate - champion) if higher else (champion - candidate)
    relative = gain / abs(champion) if champion else gain
    base["relative_change"] = relative
    vs = f"champion v{champion_version}" if champion_version else "the champion"
    if relative < -gates.max_regression:
        return Decision(
            "rejected",
            f"{metric} {candidate:.4f} is {-relative:.1%} worse than {vs} ({champion:.4f}) on the "
            f"same holdout; allowed regression is {gates.max_regression:.1%}",
            **base,
        )
    if gates.too_good_jump is not None and relative > gates.too_good_jump:
        return Decision(
            "held_for_review",
            f"{metric} {candidate:.4f} is {relative:.1%} better than {vs} ({champion:.4f}): above "
            f"the {gates.too_good_jump:.0%} 'too good to be true' limit, held for review",
            **base,
        )
    return Decision(
        "blessed",
        f"{metric} {candidate:.4f} vs {vs} {champion:.4f} ({relative:+.1%}) on the same holdout",
        **base,
    )


def evaluate_candidate(
    spec: ModelSpec,
    trained: dict,
    settings: FactorySettings,
    s3: storage.S3Options | None = None,
) -> dict:
    """Score the candidate and the champion on the candidate's holdout; log and return the decision."""
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    client = tracking.connect(settings)
    holdout_uri = trained["holdout_uri"]
    holdout = parse_batch(storage.read_bytes(holdout_uri, s3), "parquet", holdout_uri)
    candidate_metrics = compute_metrics(mlflow.sklearn.load_model(trained["model_uri"]), holdout, spec)

    champion_metrics, champion_version = None, None
    try:
        champion = client.get_model_version_by_alias(spec.registered_model_name, "champion")
    except MlflowException:
        champion = None
    if champion is not None:
        champion_version = str(champion.version)
        champion_model = mlflow.sklearn.load_model(f"models:/{spec.registered_model_name}@champion")
        champion_metrics = compute_metrics(champion_model, holdout, spec)

    metric = spec.gates.primary_metric
    decision = decide(
        spec.gates,
        candidate_metrics[metric],
        champion_metrics[metric] if champion_metrics else None,
        champion_version,
    )
    run_id = trained["run_id"]
    for name, value in candidate_metrics.items():
        client.log_metric(run_id, f"holdout_{name}", value)
    for name, value in (champion_metrics or {}).items():
        client.log_metric(run_id, f"champion_holdout_{name}", value)
    record = {
        **asdict(decision),
        "candidate_metrics": candidate_metrics,
        "champion_metrics": champion_metrics,
        "holdout_uri": trained["holdout_uri"],
        "holdout_rows": len(holdout),
        "gates": spec.gates.model_dump(),
    }
    client.log_dict(run_id, record, "decision.json")
    client.set_tag(run_id, "factory.decision", decision.status)
    client.set_tag(run_id, "factory.decision_reason", decision.reason)
    return {"run_id": run_id, "model_uri": trained["model_uri"], **record}
