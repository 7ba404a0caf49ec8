"""The factory's building blocks: one TaskFlow task (or task group) per step.

Call them inside a ``with DAG(...)`` (or ``@dag``) body; each returns the XComArg of its step,
so a template reads like the pipeline it runs::

    with DAG(...):
        announce_challenger(loaded, register(loaded, evaluate(loaded, train(loaded, validate(
            loaded, ingest(loaded))))))

or simply ``retrain_steps(loaded)``. Every task is a few lines around one core-library call
that takes URIs and small dicts and returns them; heavy imports stay inside the tasks.

Over 500 lines on purpose: the catalogue of building blocks templates compose, one short function
per task, read in one place by template authors.
"""

# No `from __future__ import annotations` here: Airflow evaluates each @task's return annotation
# (to infer multiple_outputs) at every parse; a real `dict` takes ~1 us, a string ~12 us.

import logging
from collections.abc import Mapping
from typing import Any

from model_factory.airflow import review
from model_factory.airflow.common import (
    alert,
    announce_task,
    challenger_asset,
    code_dir,
    common_dag_args,
    conf,
    drift_asset,
    run_ds,
    s3_options,
    spec_doc,
    spread_cron,
    trigger_params,
    triggering_extras,
)
from model_factory.airflow.lineage import (
    add_run_lineage,
    batches_asset,
    dataset_name,
    model_namespace,
    run_model_name,
    version_name,
    versions_asset,
)
from model_factory.airflow.notify import retrain_deadline_alert, version_event
from model_factory.airflow.sensors import CanaryStageSensor, NewBatchSensor
from model_factory.contracts import (
    Attribution,
    IngestedBatch,
    RegisteredVersion,
    TrainedModel,
    ValidatedBatch,
)
from model_factory.settings import FactorySettings
from model_factory.spec import LoadedSpec, ModelSpec

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, XComArg, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

log = logging.getLogger("model_factory.airflow")

EVALUATED_KEYS = (
    "run_id",
    "model_uri",
    "status",
    "reason",
    "metric",
    "candidate",
    "champion",
    "champion_version",
)


def _load_fit(fit: str | None, loaded: LoadedSpec):
    """A factory fit function named ``module:function`` (factory code only), bound to the spec's
    code folder when it takes one."""
    if fit is None:
        return None
    import functools
    import importlib
    import inspect

    module, _, name = fit.partition(":")
    function = getattr(importlib.import_module(module), name)
    if "code_dir" in inspect.signature(function).parameters:
        function = functools.partial(function, code_dir=code_dir(loaded))
    return function


# ---- retrain steps ---------------------------------------------------------------------------


def ingest(loaded: LoadedSpec, *, task_id: str = "ingest") -> XComArg:
    """Copy the run date's batch from the spec's source into the store (skip when missing)."""
    spec = loaded.spec

    @task(multiple_outputs=True, task_id=task_id)
    def ingest_step() -> IngestedBatch:
        from model_factory.errors import PermanentError
        from model_factory.io.batches import MissingBatchError, ingest_batch

        settings = FactorySettings.from_env()
        try:
            manifest = ingest_batch(spec, run_ds(), settings, s3_options(spec.source.aws_conn_id))
        except MissingBatchError as exc:
            if spec.source.on_missing == "skip":
                raise AirflowSkipException(f"{exc} (source.on_missing: skip)") from exc
            raise AirflowFailException(str(exc)) from exc
        except PermanentError as exc:  # a source URI the factory refuses: no retry fixes it
            raise AirflowFailException(str(exc)) from exc
        log.info(
            "ingested %s -> %s (%s rows, sha256 %s%s)",
            manifest["source_uri"],
            manifest["raw_uri"],
            manifest["rows"],
            manifest["sha256"][:12],
            ", already ingested" if manifest["already_ingested"] else "",
        )
        return manifest

    return ingest_step()


def _quarantined(
    spec: ModelSpec, ingested: Mapping[str, Any], outcome: Mapping[str, Any]
) -> AirflowFailException:
    reasons = "\n  - ".join(outcome["reasons"])
    alert(
        spec,
        "quarantine",
        f"{spec.name}: batch {ingested['ds']} quarantined",
        f"{ingested['source_uri']} failed validation; kept at {outcome['quarantine_uri']}.\n  - {reasons}",
        dict(outcome),
    )
    return AirflowFailException(
        f"batch {ingested['source_uri']} failed validation and was quarantined at "
        f"{outcome['quarantine_uri']}; nothing was trained on it. Why:\n  - {reasons}"
    )


def validate(loaded: LoadedSpec, ingested: XComArg) -> XComArg:
    """Great Expectations on the batch; a failing batch is quarantined (with why) and the run fails."""
    spec = loaded.spec

    @task(multiple_outputs=True)
    def validate(ingested: IngestedBatch) -> ValidatedBatch:
        from model_factory.pipeline.validation import validate_batch

        settings = FactorySettings.from_env()
        outcome = validate_batch(spec, ingested, settings, loaded.path.parent)
        if outcome["status"] == "quarantined":
            raise _quarantined(spec, ingested, outcome)
        log.info("validated %s rows -> %s", outcome["rows"], outcome["validated_uri"])
        return outcome

    return validate(ingested)  # type: ignore[arg-type]


def train(loaded: LoadedSpec, validated: XComArg, *, fit: str | None = None) -> XComArg:
    """Fit on the validated window and log one MLflow run with lineage, signature and baseline.

    ``fit`` (``module:function`` in the factory) replaces the plain fit: tuning, own code."""
    spec = loaded.spec

    @task(multiple_outputs=True, inlets=[batches_asset(spec)])
    def train(validated: ValidatedBatch) -> TrainedModel:
        from model_factory.errors import PermanentError
        from model_factory.io.batches import recent_validated_batches
        from model_factory.pipeline.training import train_model

        settings = FactorySettings.from_env()
        context = get_current_context()
        ds = validated["ds"]
        uris = recent_validated_batches(settings.store_uri, spec.name, ds, spec.training.window_batches)
        try:
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
                force=bool(conf().get("force_retrain")),
                fit=_load_fit(fit, loaded),
            )
        except Exception as exc:
            from model_factory.pipeline.custom_code import CustomCodeError

            # no retry fixes the data scientist's code, a bad label or an untrusted model type
            if isinstance(exc, CustomCodeError | PermanentError):
                raise AirflowFailException(str(exc)) from exc
            raise
        log.info(
            "%s run %s on %d batches",
            "reused" if trained["reused"] else "trained",
            trained["run_id"],
            len(uris),
        )
        add_run_lineage(
            context,
            [dataset_name(uri) for uri in uris],
            [(model_namespace(settings.tracking_uri), run_model_name(trained["run_id"]))],
        )
        return trained

    return train(validated)  # type: ignore[arg-type]


def evaluate(loaded: LoadedSpec, trained: XComArg) -> XComArg:
    """Candidate vs champion on the same holdout; the gates bless, reject or hold for review."""
    spec = loaded.spec

    @task(multiple_outputs=True)
    def evaluate(trained: TrainedModel) -> dict:
        from model_factory.pipeline.evaluation import evaluate_candidate

        # (the safe loader imports the code folder's classes for a custom_training model)
        decision = evaluate_candidate(spec, trained, FactorySettings.from_env())
        log.info("decision: %s: %s", decision["status"], decision["reason"])
        return {k: decision[k] for k in EVALUATED_KEYS}

    return evaluate(trained)  # type: ignore[arg-type]


def register(loaded: LoadedSpec, evaluated: XComArg) -> XComArg:
    """A registry version with the decision; a blessed one becomes ``challenger``."""
    spec = loaded.spec

    @task(multiple_outputs=True, outlets=[versions_asset(spec)])
    def register(evaluated: dict) -> RegisteredVersion:
        from model_factory.pipeline.registry import register_version

        settings, context = FactorySettings.from_env(), get_current_context()
        result = register_version(spec, evaluated, settings)
        log.info(
            "registered %s v%s (%s), alias: %s",
            result["model"],
            result["version"],
            result["status"],
            result["alias"],
        )
        namespace = model_namespace(settings.tracking_uri)
        add_run_lineage(
            context,
            [(namespace, run_model_name(evaluated["run_id"]))],
            [(namespace, version_name(result["model"], result["version"]))],
        )
        context["outlet_events"][versions_asset(spec)].extra = {
            "version": str(result["version"]),
            "status": result["status"],
            "run_id": evaluated["run_id"],
        }
        return result

    return register(evaluated)  # type: ignore[arg-type]


def announce_challenger(loaded: LoadedSpec, registered: XComArg) -> XComArg:
    """Emit ``<model>__challenger`` (which starts the canary) only for a new challenger."""

    def not_new(registered: dict) -> str | None:
        if registered["alias"] == "challenger":
            return None
        version, status, alias = registered["version"], registered["status"], registered["alias"]
        return f"v{version} is {status} with alias {alias}: no canary to start"

    return announce_task("announce_challenger", challenger_asset(loaded.spec), registered, not_new)


def retrain_steps(loaded: LoadedSpec, *, fit: str | None = None) -> XComArg:
    """ingest -> validate -> train -> evaluate -> register -> model_card -> announce_challenger;
    the data budget beside evaluate/register; announce_held starts a held version's review."""
    trained = train(loaded, validate(loaded, ingest(loaded)), fit=fit)
    registered = register(loaded, evaluate(loaded, trained))
    review.data_budget(loaded, trained)
    review.announce_held(loaded, registered)
    announced = announce_challenger(loaded, registered)
    review.model_card(loaded, registered) >> announced  # the checklist gates the canary
    return announced


def retrain_schedule(spec: ModelSpec):
    """The nightly cron (spread inside its hour: :func:`spread_cron`) OR the drift asset (when
    the drift watch is on)."""
    cron = spread_cron(spec.schedule, spec.name)
    if not spec.drift.enabled:
        return cron
    if cron is None:
        return [drift_asset(spec)]
    timetable = CronTriggerTimetable(cron, timezone="UTC")
    return AssetOrTimeSchedule(timetable=timetable, assets=[drift_asset(spec)])


def retrain_dag(loaded: LoadedSpec, *, fit: str | None = None, doc: str = "") -> DAG:
    """``<model>__retrain``: the retrain steps on the nightly cron or the drift asset."""
    spec = loaded.spec
    with DAG(
        dag_id=f"{spec.name}__retrain",
        params=trigger_params("retrain"),
        description=spec.description,
        schedule=retrain_schedule(spec),
        max_active_runs=1,
        deadline=retrain_deadline_alert(spec, spread_cron(spec.schedule, spec.name)),  # None: no deadline
        **common_dag_args(spec, "retrain"),
        doc_md=spec_doc(
            loaded,
            f'{doc}Trigger with conf `{{"ds": "YYYY-MM-DD"}}` to (re)run one '
            'batch date; add `"force_retrain": true` to train again on unchanged data. '
            f"Also runs when `{spec.name}__drift_watch` emits the `{spec.name}__drift` "
            "asset.",
        ),
    ) as built:
        retrain_steps(loaded, fit=fit)
    return built


# ---- drift watch -----------------------------------------------------------------------------


def drift_check(loaded: LoadedSpec, found: XComArg) -> XComArg:
    """Check the found batch against the champion's baseline and alert on an alerting status
    (skip when there is no baseline or no batch)."""
    spec = loaded.spec

    @task(multiple_outputs=True)
    def check(found: dict) -> dict:
        from model_factory.io.batches import MissingBatchError
        from model_factory.monitoring.watch import (
            ALERT_HEADLINES,
            ALERT_STATUSES,
            NoBaselineError,
            check_batch,
        )

        context = get_current_context()
        try:
            checked = check_batch(
                spec,
                found["ds"],
                FactorySettings.from_env(),
                context={"airflow.dag_id": context["dag"].dag_id, "airflow.run_id": context["run_id"]},
            )
        except (NoBaselineError, MissingBatchError) as exc:
            raise AirflowSkipException(str(exc)) from exc
        log.info(
            "drift check of %s: %s\n  - %s\nreport: %s (JSON %s)",
            found["uri"],
            checked["status"],
            "\n  - ".join(checked["reasons"]) or "no finding",
            checked["report_uri"],
            checked["report_json_uri"],
        )
        if checked["status"] in ALERT_STATUSES:
            alert(
                spec,
                checked["status"],
                f"{spec.name}: {checked['status']} on {checked['ds']}",
                ALERT_HEADLINES[checked["status"]]
                + "\n  - "
                + "\n  - ".join(checked["reasons"])
                + f"\nReport: {checked['report_uri']}",
                checked,
            )
        return checked

    return check(found)  # type: ignore[arg-type]


def fire_retrain(loaded: LoadedSpec, checked: XComArg) -> XComArg:
    """Emit ``<model>__drift`` (which starts ``<model>__retrain``) unless the retrain gate holds."""
    spec = loaded.spec
    retrain_id = f"{spec.name}__retrain"

    @task(multiple_outputs=True, outlets=[drift_asset(spec)])
    def fire_retrain(checked: dict) -> dict:
        """Emit the drift asset (so the scheduler starts the retrain) unless gated."""
        from model_factory.monitoring.watch import record_retrain_trigger, retrain_gate

        context = get_current_context()
        settings = FactorySettings.from_env()
        active = context["ti"].get_dr_count(dag_id=retrain_id, states=["queued", "running"])
        fire, why = retrain_gate(spec, checked, settings, active_retrains=active)
        if not fire:
            log.info("no retrain fired: %s", why)
            raise AirflowSkipException(f"no retrain fired: {why}")
        record_retrain_trigger(spec, checked, settings)
        extra = {
            "ds": checked["ds"],
            "status": checked["status"],
            "reason": why,
            "report_uri": checked["report_uri"],
            "champion_version": checked["champion_version"],
        }
        context["outlet_events"][drift_asset(spec)].extra = extra
        log.info("fired %s via asset %s__drift: %s", retrain_id, spec.name, why)
        return extra

    return fire_retrain(checked)  # type: ignore[arg-type]


def drift_watch_dag(loaded: LoadedSpec) -> DAG:
    """``<model>__drift_watch``: wait for the day's production batch, check it against the
    champion's baseline, alert, and fire the retrain through the drift asset."""
    spec = loaded.spec
    with DAG(
        dag_id=f"{spec.name}__drift_watch",
        params=trigger_params("drift_watch"),
        description=f"Watch {spec.name}'s production data against its champion's baseline",
        schedule=spread_cron(spec.drift.schedule, spec.name),
        # A scheduled run may wait most of an hour for its batch; an ops trigger must not queue
        # behind it. Same-date double checks are stopped by the sensor's "already checked".
        max_active_runs=3,
        **common_dag_args(spec, "drift"),
        doc_md="Waits for the production batch of the run's date "
        f"(`{spec.drift.data_uri or spec.source.uri}`), "
        f"checks it against the champion's training baseline (PSI, KS, chi-square, input contract, "
        f"live metric when labelled) and, on drift, emits `{spec.name}__drift`, which runs "
        f'`{spec.name}__retrain`. Conf `{{"ds": "YYYY-MM-DD", "force": true}}` re-checks a date.',
    ) as built:
        wait_for_batch = NewBatchSensor(
            task_id="wait_for_batch",
            spec=spec,
            poke_interval=spec.drift.sensor_poke_seconds,
            timeout=spec.drift.sensor_timeout_minutes * 60,
            mode="reschedule",
            soft_fail=True,
        )
        fire_retrain(loaded, drift_check(loaded, wait_for_batch.output))
    return built


# ---- canary ----------------------------------------------------------------------------------


def actor() -> str:
    """Who asked: the conf's ``actor``, else the user who triggered the run, else this run."""
    context = get_current_context()
    run = context["dag_run"]
    where = f"{context['dag'].dag_id}/{context['run_id']}"
    user = (run.conf or {}).get("actor") or getattr(run, "triggering_user_name", None)
    return f"{user} via {where}" if user else f"airflow:{where}"


def record_decision(spec: ModelSpec, decision: dict) -> dict:
    """Every rollout decision goes to the registry (done by the canary functions), the prediction
    DB's decisions table and the task log; a promoted or rolled-back version is also an event
    to the owner's channels (:func:`version_event`)."""
    from model_factory.serving.predlog import write_decision
    from model_factory.serving.settings import prediction_db_uri

    if decision.get("changed", True):  # a retried task changed nothing: nothing to record again
        write_decision(prediction_db_uri(FactorySettings.from_env()), decision)
        version_event(spec, decision, get_current_context())
    log.info(
        "%s v%s %s by %s: %s",
        decision["model"],
        decision.get("version"),
        decision["action"],
        decision.get("actor"),
        decision.get("reason"),
    )
    return decision


def canary_manual_action(loaded: LoadedSpec) -> XComArg:
    """Ops' conf ``action``: promote now, roll back, abort, pin, unpin, or start/stop a shadow
    (``version``, ``share``) (who/why recorded)."""
    name = loaded.spec.registered_model_name

    @task(multiple_outputs=True)
    def manual_action() -> dict:
        from model_factory.errors import UnattributedError
        from model_factory.pipeline.registry import PromotionError
        from model_factory.rollout.canary import OPS_ACTIONS, OpsRequest, ops_action

        given = conf()
        action = given.get("action")
        if not action:
            raise AirflowSkipException("no conf action: this run rolls a challenger out")
        if action not in OPS_ACTIONS:
            raise AirflowFailException(f"conf action {action!r} unknown; use one of {OPS_ACTIONS}")
        try:
            attribution = Attribution(actor(), given.get("reason", ""))
            request = OpsRequest(name, action, attribution, given.get("version"), given.get("share"))
            decision = ops_action(request, FactorySettings.from_env())
        except (PromotionError, UnattributedError) as exc:
            raise AirflowFailException(f"{action} refused: {exc}") from exc
        return record_decision(loaded.spec, decision)

    return manual_action()


def canary_start(loaded: LoadedSpec) -> XComArg:
    """The challenger becomes the canary at the ramp's first share."""
    spec, name, first = loaded.spec, loaded.spec.registered_model_name, loaded.spec.canary.ramp[0]

    @task(multiple_outputs=True)
    def start() -> dict:
        from model_factory.errors import UnattributedError
        from model_factory.io.tracking import connect
        from model_factory.pipeline.registry import CHALLENGER, PromotionError, current_alias_version
        from model_factory.rollout import canary as rollout

        given = conf()
        if given.get("action"):
            raise AirflowSkipException(f"manual action {given['action']!r}: no rollout in this run")
        if not spec.canary.enabled:
            raise AirflowSkipException(f"canary.enabled is false in {loaded.path.name}")
        settings = FactorySettings.from_env()
        events = [extra["version"] for extra in triggering_extras() if extra.get("version")]
        version = given.get("version") or (events[-1] if events else None)
        version = version or current_alias_version(connect(settings), name, CHALLENGER)
        if version is None:
            raise AirflowSkipException(f"{name} has no challenger to roll out")
        running = rollout.read_serving_state(name, settings).canary
        if running is not None and running != str(version):
            raise AirflowSkipException(
                f"canary v{running} is still running: v{version} stays challenger; start it after "
                f'v{running} concludes (trigger with conf {{"version": "{version}"}})'
            )
        reason = given.get("reason") or f"blessed challenger v{version}: canary at {first:.0%}"
        try:
            attribution = Attribution(actor(), reason)
            decision = rollout.start_canary(name, str(version), first, settings, attribution)
        except (PromotionError, UnattributedError) as exc:
            raise AirflowFailException(f"cannot start the canary: {exc}") from exc
        record_decision(spec, decision)
        return {"version": str(version), "share": first}

    return start()


def canary_stage(loaded: LoadedSpec, stage: int, upstream: Any) -> XComArg:
    """One stage: a sensor deferred to the triggerer until it can be judged (it counts the stage's
    outcomes every second, and the full analysis runs at least every ``poke_seconds``), then ramp,
    promote or roll back."""
    spec, name = loaded.spec, loaded.spec.registered_model_name
    wait = CanaryStageSensor(
        task_id=f"stage_{stage}_wait",
        spec=spec,
        stage=stage,
        poke_interval=spec.canary.poke_seconds,
        timeout=spec.canary.max_stage_minutes * 60 + 600,
        mode="reschedule",
    )
    upstream >> wait

    @task(multiple_outputs=True, task_id=f"stage_{stage}_act")
    def stage_act(result: dict) -> dict:
        """Carry out the stage's verdict: ramp, promote or roll back."""
        from model_factory.rollout import canary as rollout

        settings, who = FactorySettings.from_env(), actor()
        why = "; ".join(result["reasons"][:4])
        version = result["canary_version"]
        if result["decision"] == "continue":
            healthy = Attribution(who, f"stage {stage} healthy: {why}")
            decision = rollout.set_canary_share(
                name, result["next_share"], settings, healthy, version=version
            )
        elif result["decision"] == "promote":
            passed = Attribution(who, f"canary passed the last stage: {why}")
            decision = rollout.promote_canary(
                name, settings, passed, version=version, details={"analysis": result}
            )
        else:
            failed = Attribution(who, f"canary failed stage {stage}: {why}")
            decision = rollout.rollback_canary(
                name, settings, failed, version=version, details={"analysis": result}
            )
            alert(
                spec,
                "canary",
                f"{name}: canary v{version} rolled back",
                "\n  - ".join(
                    [f"stage {stage}, champion v{result['champion_version']} kept", *result["reasons"]]
                ),
                result,
            )
        return record_decision(spec, decision)

    return stage_act(wait.output)  # type: ignore[arg-type]


def canary_dag(loaded: LoadedSpec) -> DAG:
    """``<model>__canary``: started by ``<model>__challenger``; ramp stages, promote or roll back."""
    spec = loaded.spec
    ramp = list(spec.canary.ramp)
    with DAG(
        dag_id=f"{spec.name}__canary",
        params=trigger_params("canary"),
        description=f"Roll a blessed {spec.name} challenger out on live traffic: ramp, promote or roll back",
        schedule=[challenger_asset(spec)],
        # Ops' manual controls (conf action) must not queue behind a canary that is waiting.
        max_active_runs=3,
        **common_dag_args(spec, "canary"),
        doc_md=f"Started by `{spec.name}__challenger` (a retrain registered a blessed challenger): the "
        f"challenger becomes alias `canary` at {ramp[0]:.0%} of the gateway's traffic, then each stage "
        f"({' -> '.join(f'{s:.0%}' for s in ramp)}) waits for {spec.canary.min_samples} labelled "
        "outcomes per arm and is judged on the live primary metric (one-sided test) and the error-rate "
        "and p95-latency guardrails: ramp, promote (old champion kept as `previous_champion`) or roll "
        "back.\n\nManual control, with who and why recorded: trigger with conf "
        '`{"action": "promote|rollback|abort|pin|unpin", "version": "N", "reason": "...", "actor": "..."}`;'
        ' `{"version": "N"}` starts a canary of a given blessed version.',
    ) as built:
        previous = canary_start(loaded)
        for stage in range(1, len(ramp) + 1):
            previous = canary_stage(loaded, stage, previous)
        canary_manual_action(loaded)
    return built


# ---- batch scoring ---------------------------------------------------------------------------


def scoring_champion(loaded: LoadedSpec) -> XComArg:
    """The version holding ``champion`` (skips the run, saying so, when there is none yet)."""
    spec = loaded.spec

    @task(multiple_outputs=True, task_id="champion")
    def champion() -> dict:
        from model_factory.pipeline.scoring import NoChampionError
        from model_factory.pipeline.scoring import champion as find

        try:
            held = find(spec, FactorySettings.from_env())
        except NoChampionError as exc:
            raise AirflowSkipException(f"nothing scored: {exc}") from exc
        log.info("scoring with %s v%s (run %s)", spec.name, held["version"], held["run_id"])
        return held

    return champion()


def scoring_ingest(loaded: LoadedSpec) -> XComArg:
    """The batch to score (``template_params.data_uri``) copied into the store."""
    from model_factory.pipeline.scoring import scoring_uri

    spec = loaded.spec
    source = spec.source.model_copy(update={"uri": scoring_uri(spec, FactorySettings.from_env())})
    return ingest(LoadedSpec(loaded.path, spec.model_copy(update={"source": source})))


def check_input(loaded: LoadedSpec, ingested: XComArg, held: XComArg) -> XComArg:
    """The batch against the champion's input contract; quarantined (and the run fails) if not."""
    spec = loaded.spec

    @task(multiple_outputs=True)
    def check_input(ingested: IngestedBatch, held: dict) -> Mapping[str, Any]:
        from model_factory.pipeline.scoring import check_input as check

        outcome = check(spec, ingested, held, FactorySettings.from_env().store_uri)
        if outcome["status"] == "quarantined":
            raise _quarantined(spec, ingested, outcome)
        return outcome

    return check_input(ingested, held)  # type: ignore[arg-type]


def score(loaded: LoadedSpec, ingested: XComArg, held: XComArg, checked: XComArg) -> XComArg:
    """Predictions with row ids and the version to the store (one file per date)."""
    spec = loaded.spec

    @task(multiple_outputs=True)
    def score(ingested: IngestedBatch, held: dict, checked: dict) -> dict:
        from model_factory.io.model_loading import ModelRefusedError
        from model_factory.pipeline.scoring import score_batch

        try:
            scored = score_batch(spec, ingested, held, FactorySettings.from_env(), code_dir(loaded))
        except ModelRefusedError as exc:  # no retry makes an untrusted model trusted
            raise AirflowFailException(f"the champion cannot be loaded: {exc}") from exc
        log.info(
            "scored %s rows with v%s -> %s; output PSI vs the champion's holdout: %s",
            scored["rows"],
            scored["model_version"],
            scored["predictions_uri"],
            scored["output_psi"],
        )
        if scored["output_drift"]:
            alert(
                spec,
                "output_drift",
                f"{spec.name}: predictions drifted on {scored['ds']}",
                f"output PSI {scored['output_psi']:.3f} > max_output_psi {scored['max_output_psi']} "
                f"(v{scored['model_version']} on {scored['rows']} rows vs its holdout)",
                scored,
            )
        return scored

    return score(ingested, held, checked)  # type: ignore[arg-type]


def scoring_dag(loaded: LoadedSpec, schedule: str | None) -> DAG:
    """``<model>__score``: champion -> ingest -> check input -> score (+ output drift)."""
    spec = loaded.spec
    with DAG(
        dag_id=f"{spec.name}__score",
        description=f"Score the day's batch with {spec.name}'s champion",
        schedule=schedule,
        max_active_runs=1,
        **common_dag_args(spec, "score"),
        doc_md=spec_doc(
            loaded,
            "Scores the run date's batch with the version holding `champion`, "
            "after checking it against that version's input contract (quarantined if "
            "not). Predictions go to `predictions/<model>/<ds>/predictions.parquet` "
            "(a re-run replaces the date's file). No champion yet: the run skips.",
        ),
    ) as built:
        held = scoring_champion(loaded)
        ingested = scoring_ingest(loaded)
        held >> ingested
        score(loaded, ingested, held, check_input(loaded, ingested, held))
    return built
