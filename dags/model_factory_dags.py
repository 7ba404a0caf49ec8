"""The DAG factory: one ``<model>__retrain`` DAG per spec in include/models.

Thin wiring only: every task calls one core-library function with URIs and small dicts.
Heavy imports (pandas, scikit-learn, MLflow, Great Expectations) happen inside the tasks;
parsing this file costs a YAML read and a pydantic check per spec.
"""

from __future__ import annotations

import logging
import sys
import warnings
from datetime import datetime, timedelta
from pathlib import Path

# The core library lives in include/; this keeps `airflow standalone` working without PYTHONPATH.
_INCLUDE = Path(__file__).resolve().parents[1] / "include"
if str(_INCLUDE) not in sys.path:
    sys.path.insert(0, str(_INCLUDE))

from airflow.sdk import DAG, dag, get_current_context, task  # noqa: E402
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException  # noqa: E402
from model_factory.config import FactorySettings  # noqa: E402
from model_factory.spec import LoadedSpec, SpecError, load_specs  # noqa: E402

log = logging.getLogger(__name__)


def _run_ds() -> str:
    """The batch date of this run: ``conf.ds`` if given, else the run's logical date."""
    from model_factory.batches import check_ds

    context = get_current_context()
    conf = context["dag_run"].conf or {}
    if conf.get("ds"):
        try:
            return check_ds(str(conf["ds"]))
        except ValueError as exc:
            raise AirflowFailException(f"bad trigger conf: {exc}") from exc
    logical = context.get("logical_date") or context["dag_run"].run_after
    return logical.strftime("%Y-%m-%d")


def _s3_options(conn_id: str | None):
    """Endpoint and credentials from an Airflow connection; None means boto3's environment."""
    if not conn_id:
        return None
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException
    from model_factory.storage import S3Options

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException as exc:
        raise AirflowFailException(
            f"source.aws_conn_id {conn_id!r} names no Airflow connection: create it "
            "(login/password = access key/secret, extra {\"endpoint_url\": ...}) or remove the field"
        ) from exc
    extra = conn.extra_dejson
    return S3Options(
        endpoint_url=extra.get("endpoint_url") or (conn.host or None),
        access_key_id=conn.login or None,
        secret_access_key=conn.password or None,
        region_name=extra.get("region_name"),
    )


def build_retrain_dag(loaded: LoadedSpec) -> DAG:
    spec = loaded.spec

    @dag(
        dag_id=f"{spec.name}__retrain",
        description=spec.description,
        schedule=spec.schedule,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["model-factory", "retrain", spec.task, *(f"{k}:{v}" for k, v in spec.tags.items())],
        default_args={
            "owner": spec.owner,
            "retries": spec.retries,
            "retry_delay": timedelta(seconds=30),
            "retry_exponential_backoff": True,
        },
        doc_md=f"**{spec.name}** ({spec.task}), owned by `{spec.owner}`.\n\n{spec.description}\n\n"
        f"Spec: `{loaded.path.name}`. Trigger with conf `{{\"ds\": \"YYYY-MM-DD\"}}` to (re)run "
        "one batch date; add `\"force_retrain\": true` to train again on unchanged data.",
    )
    def retrain():
        @task
        def ingest() -> dict:
            from model_factory.batches import MissingBatchError, ingest_batch

            settings = FactorySettings.from_env()
            try:
                manifest = ingest_batch(
                    spec, _run_ds(), settings.store_uri, _s3_options(spec.source.aws_conn_id)
                )
            except MissingBatchError as exc:
                if spec.source.on_missing == "skip":
                    raise AirflowSkipException(f"{exc} (source.on_missing: skip)") from exc
                raise AirflowFailException(str(exc)) from exc
            log.info("ingested %s -> %s (%s rows, sha256 %s%s)", manifest["source_uri"],
                     manifest["raw_uri"], manifest["rows"], manifest["sha256"][:12],
                     ", already ingested" if manifest["already_ingested"] else "")  # fmt: skip
            return manifest

        @task
        def validate(ingested: dict) -> dict:
            from model_factory.validation import validate_batch

            settings = FactorySettings.from_env()
            outcome = validate_batch(spec, ingested, settings.store_uri, loaded.path.parent)
            if outcome["status"] == "quarantined":
                reasons = "\n  - ".join(outcome["reasons"])
                raise AirflowFailException(
                    f"batch {ingested['source_uri']} failed validation and was quarantined at "
                    f"{outcome['quarantine_uri']}; nothing was trained on it. Why:\n  - {reasons}"
                )
            log.info("validated %s rows -> %s", outcome["rows"], outcome["validated_uri"])
            return outcome

        @task
        def train(validated: dict) -> dict:
            from model_factory.batches import recent_validated_batches
            from model_factory.training import train_model

            settings = FactorySettings.from_env()
            context = get_current_context()
            ds = validated["ds"]
            uris = recent_validated_batches(
                settings.store_uri, spec.name, ds, spec.training.window_batches
            )
            trained = train_model(
                spec,
                ds,
                uris,
                settings,
                context={
                    "airflow.dag_id": context["dag"].dag_id,
                    "airflow.run_id": context["run_id"],
                    "batch.sha256": validated["sha256"],
                },
                force=bool((context["dag_run"].conf or {}).get("force_retrain")),
            )
            log.info("%s run %s on %d batches", "reused" if trained["reused"] else "trained",
                     trained["run_id"], len(uris))  # fmt: skip
            return trained

        @task
        def evaluate(trained: dict) -> dict:
            from model_factory.evaluation import evaluate_candidate

            decision = evaluate_candidate(spec, trained, FactorySettings.from_env())
            log.info("decision: %s: %s", decision["status"], decision["reason"])
            return {k: decision[k] for k in ("run_id", "model_uri", "status", "reason", "metric",
                                             "candidate", "champion", "champion_version")}  # fmt: skip

        @task
        def register(evaluated: dict) -> dict:
            from model_factory.registry import register_version

            result = register_version(spec, evaluated, FactorySettings.from_env())
            log.info("registered %s v%s (%s), alias: %s", result["model"], result["version"],
                     result["status"], result["alias"])  # fmt: skip
            return result

        register(evaluate(train(validate(ingest()))))

    return retrain()


def build_invalid_spec_dag(error: SpecError) -> DAG:
    """A visible stand-in for a spec that does not parse: the UI shows why; a run fails saying it."""
    stem = Path(error.path).stem

    @dag(
        dag_id=f"invalid_spec__{stem}",
        description=f"Spec {Path(error.path).name} is invalid: fix it; see the DAG docs",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["model-factory", "invalid-spec"],
        default_args={"owner": "model-factory", "retries": 0},
        doc_md=f"```\n{error}\n```",
    )
    def invalid_spec():
        @task
        def explain() -> None:
            raise AirflowFailException(str(error))

        explain()

    return invalid_spec()


def build_all(specs_dir: Path | None = None) -> dict[str, DAG]:
    """Every good spec becomes a DAG; a bad one a warning and an ``invalid_spec__`` DAG naming
    file, field and reason, so one typo never hides the other models' DAGs."""
    good, bad = load_specs(specs_dir or FactorySettings.from_env().specs_dir)
    dags = [build_retrain_dag(loaded) for loaded in good]
    for error in bad:
        log.error("%s", error)
        warnings.warn(str(error), stacklevel=1)
        dags.append(build_invalid_spec_dag(error))
    return {built.dag_id: built for built in dags}


globals().update(build_all())
