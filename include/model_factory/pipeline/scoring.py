"""Batch scoring with the champion (template ``batch_scoring``).

The day's batch is checked against the champion's input contract first (a failing batch is
quarantined, as in retrain), scored by the version holding ``champion``, and written as Parquet
with row ids and the version to ``predictions/<model>/<ds>/predictions.parquet`` (one file per
date: a re-run replaces it). The predictions' distribution is compared with the champion's own
predictions on its holdout (PSI): an output-drift figure, alerted beyond the spec's limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_factory.io import attestation, tag_schema
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

if TYPE_CHECKING:  # pandas, numpy and the store load inside the tasks, not while DAGs parse
    import numpy as np
    import pandas as pd
    from model_factory.contracts import IngestedBatch, QuarantinedBatch


class NoChampionError(LookupError):
    """Nothing to score with yet."""


class ScoringParams(BaseModel):
    """``template_params`` of ``batch_scoring``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_uri: str | None = Field(
        default=None, description="Batches to score ({ds} filled); default: drift.data_uri or source.uri"
    )
    schedule: str | None = Field(default="0 4 * * *", description="When <model>__score runs")
    id_column: str | None = Field(default=None, description="Row ids; default: the row number")
    max_output_psi: float = Field(default=0.2, gt=0.0, description="Output drift beyond this alerts")

    @field_validator("data_uri")
    @classmethod
    def _uri(cls, uri: str | None, info: ValidationInfo) -> str | None:
        from model_factory.spec import check_batch_uri, settings_of

        return None if uri is None else check_batch_uri(uri, settings_of(info))


def params_of(spec: ModelSpec, settings: FactorySettings) -> ScoringParams:
    return ScoringParams.model_validate(spec.template_params, context={"settings": settings})


def scoring_uri(spec: ModelSpec, settings: FactorySettings) -> str:
    return params_of(spec, settings).data_uri or spec.drift.data_uri or spec.source.uri


def predictions_uri(store_uri: str, model: str, ds: str) -> str:
    from model_factory.io import storage

    return storage.join(store_uri, "predictions", model, ds, "predictions.parquet")


def champion(spec: ModelSpec, settings: FactorySettings) -> dict[str, Any]:
    """The version holding ``champion``: version, run id, model URI, holdout URI, contract."""
    from model_factory.io import tracking
    from model_factory.pipeline.champion_baseline import NoBaselineError, champion_baseline

    try:
        found = champion_baseline(spec, settings)
    except NoBaselineError as exc:
        raise NoChampionError(str(exc)) from exc
    run = tracking.connect(settings).get_run(found.run_id)
    return {
        "version": found.version,
        "run_id": found.run_id,
        "model_uri": f"models:/{spec.registered_model_name}/{found.version}",
        "holdout_uri": run.data.tags.get(tag_schema.HOLDOUT_URI),
        "code_module": run.data.tags.get(tag_schema.CODE_MODULE),
    }


def contract_of(run_id: str) -> dict | None:
    """The input contract logged with a version's run (None for versions trained before it)."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from model_factory.pipeline.training import CONTRACT_ARTIFACT

    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{CONTRACT_ARTIFACT}")
    except (MlflowException, OSError):
        return None


def check_input(
    spec: ModelSpec, ingested: IngestedBatch, held: dict, store_uri: str
) -> QuarantinedBatch | dict:
    """The batch against the champion's input contract; a failure quarantines it."""
    from model_factory.io import storage
    from model_factory.io.batches import read_ingested
    from model_factory.pipeline.contract import check_contract
    from model_factory.pipeline.validation import ValidationOutcome, quarantine_batch

    try:
        df = read_ingested(ingested)
        missing = [c for c in spec.features.all if c not in df.columns]
        reasons = [f"missing feature columns: {missing}"] if missing else []
        contract = contract_of(held["run_id"])
        notes: list[str] = []
        if not reasons and contract:
            # The contract's own split: a schema break is a data-quality failure (quarantine);
            # values beyond training's mean +- k sigma are reported, as the drift watch does.
            reasons = check_contract(df, _kind(contract, "schema"))
            notes = check_contract(df, _kind(contract, "bounds"))
    except ValueError as exc:
        reasons, notes = [f"unreadable batch: {exc}"], []
    if reasons:
        outcome = ValidationOutcome(
            False,
            reasons,
            {"success": False, "checked": "input contract", "champion_version": held["version"]},
        )
        with storage.local_file(ingested["raw_uri"]) as raw:  # the exact bytes go to quarantine
            return quarantine_batch(spec.name, ingested["ds"], ingested, raw, outcome, store_uri)
    return {"status": "valid", "ds": ingested["ds"], "rows": len(df), "reasons": [], "bounds": notes}


def _kind(contract: dict, kind: str) -> dict:
    return {
        **contract,
        "expectations": [e for e in contract["expectations"] if e.get("meta", {}).get("kind") == kind],
    }


def _predict(model: Any, X: pd.DataFrame, spec: ModelSpec) -> tuple[np.ndarray, pd.DataFrame]:
    """Predictions and, for a classifier, one probability column per class."""
    import numpy as np
    import pandas as pd

    if spec.task == "classification":
        proba = model.predict_proba(X)
        classes = list(model.classes_)
        frame = pd.DataFrame(proba, columns=[f"proba_{c}" for c in classes], index=X.index)
        return np.asarray(classes)[proba.argmax(axis=1)], frame
    return np.asarray(model.predict(X)), pd.DataFrame(index=X.index)


def _score_values(pred: np.ndarray, proba: pd.DataFrame, spec: ModelSpec) -> np.ndarray:
    """What output drift compares: P(last class) for binary, the prediction otherwise."""
    if spec.task == "classification" and proba.shape[1] == 2:
        return proba.iloc[:, 1].to_numpy()
    return pred


def output_psi(reference: np.ndarray, current: np.ndarray, categorical: bool) -> float:
    """PSI of the current predictions against the reference ones (10 quantile bins, or classes)."""
    import numpy as np
    import pandas as pd
    from model_factory.pipeline.two_sample import psi

    if categorical:
        labels = sorted(set(map(str, reference)) | set(map(str, current)))
        ref = pd.Series(reference).astype(str).value_counts().reindex(labels, fill_value=0).to_numpy()
        cur = pd.Series(current).astype(str).value_counts().reindex(labels, fill_value=0).to_numpy()
    else:
        edges = np.unique(np.quantile(reference.astype(float), np.linspace(0, 1, 11)[1:-1]))
        ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
        cur = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    return float(psi(ref / max(ref.sum(), 1), cur / max(cur.sum(), 1)))


def score_batch(
    spec: ModelSpec,
    ingested: IngestedBatch,
    held: dict,
    settings: FactorySettings,
    code_dir: Path | None = None,
) -> dict:
    """Score the ingested batch with the champion (loaded by the factory's safe loader: blessed,
    skops, trusted types only); write predictions; compute output drift."""
    import numpy as np
    import pandas as pd
    from model_factory.io import storage, tracking
    from model_factory.io.batches import read_ingested, write_parquet
    from model_factory.pipeline.features import prepare_features

    params = params_of(spec, settings)
    df = read_ingested(ingested)
    from model_factory.io.model_loading import load_registered

    model = load_registered(
        tracking.connect(settings),
        spec.registered_model_name,
        held["version"],
        code_dir=code_dir or settings.specs_dir / "code",
        key=attestation.signing_key(settings),
    ).estimator
    pred, proba = _predict(model, prepare_features(df, spec), spec)
    ids = df[params.id_column] if params.id_column else pd.Series(np.arange(len(df)), name="row_id")
    out = pd.DataFrame({"row_id": ids.to_numpy(), "prediction": pred})
    out = pd.concat([out, proba.reset_index(drop=True)], axis=1)
    out["model_version"] = held["version"]
    out["ds"] = ingested["ds"]
    uri = predictions_uri(settings.store_uri, spec.name, ingested["ds"])
    write_parquet(out, uri)

    categorical = spec.task == "classification" and proba.shape[1] != 2
    figure = None
    if held.get("holdout_uri") and storage.exists(held["holdout_uri"]):
        with storage.local_file(held["holdout_uri"]) as path:
            holdout = pd.read_parquet(path)
        ref_pred, ref_proba = _predict(model, prepare_features(holdout, spec), spec)
        figure = output_psi(
            _score_values(ref_pred, ref_proba, spec), _score_values(pred, proba, spec), categorical
        )
    return {
        "ds": ingested["ds"],
        "rows": len(out),
        "predictions_uri": uri,
        "model_version": held["version"],
        "output_psi": figure,
        "max_output_psi": params.max_output_psi,
        "output_drift": bool(figure is not None and figure > params.max_output_psi),
    }
