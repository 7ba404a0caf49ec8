"""The champion's baseline profile and input contract, read from its MLflow run.

Training logs both with every version; scoring (input check, output drift) and monitoring (drift
watch, health) compare fresh data with the champion's copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model_factory.io import tag_schema, tracking
from model_factory.pipeline.training import BASELINE_ARTIFACT, CONTRACT_ARTIFACT
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec


@dataclass(frozen=True)
class ChampionBaseline:
    version: str
    run_id: str
    baseline: dict[str, Any]
    contract: dict[str, Any] | None
    holdout_metric: float | None
    evidence_rows: int | None = None  # rows behind holdout_metric (None: recorded before the tag)


class NoBaselineError(LookupError):
    """Nothing to compare with: no champion yet, or a champion logged without a baseline."""


def champion_baseline(spec: ModelSpec, settings: FactorySettings) -> ChampionBaseline:
    """The champion's stored baseline profile and input contract (read from its MLflow run)."""
    # mlflow inside: the drift watch's sensor imports the watch module, and importing mlflow.artifacts
    # took 2.8 s here (python -X importtime, busy machine), for nothing: the sensor only looks for a file.
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    client = tracking.connect(settings)
    name = spec.registered_model_name
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except MlflowException as exc:
        raise NoBaselineError(
            f"model {name!r} has no champion yet: nothing to compare fresh data with "
            "(the first blessed retrain creates one)"
        ) from exc
    version, run_id = str(champion.version), tracking.version_run_id(champion)
    try:
        baseline = mlflow.artifacts.load_dict(f"runs:/{run_id}/{BASELINE_ARTIFACT}")
    except (MlflowException, OSError) as exc:
        raise NoBaselineError(
            f"champion {name} v{version} (run {run_id}) has no baseline profile at "
            f"{BASELINE_ARTIFACT}: it was trained before baselines were logged. Retrain "
            f'(trigger {name}__retrain with conf {{"force_retrain": true}}) to create one'
        ) from exc
    try:
        contract = mlflow.artifacts.load_dict(f"runs:/{run_id}/{CONTRACT_ARTIFACT}")
    except (MlflowException, OSError):
        contract = None
    metric_tag = champion.tags.get(tag_schema.holdout_metric(spec.gates.primary_metric))
    return ChampionBaseline(
        version=version,
        run_id=run_id,
        baseline=baseline,
        contract=contract,
        holdout_metric=float(metric_tag) if metric_tag else None,
        evidence_rows=_evidence_rows(client.get_run(run_id).data.tags.get(tag_schema.DECISION_EVIDENCE_ROWS)),
    )


def _evidence_rows(tag: str | None) -> int | None:
    return int(tag) if tag and tag.isdigit() and int(tag) > 0 else None
