"""The DAG factory: per spec in include/models, ``<model>__retrain``, ``<model>__drift_watch``
and ``<model>__canary``.

The watch DAG emits the ``<model>__drift`` Asset event on drift; the retrain DAG runs on its
nightly cron OR that asset. A retrain that registers a blessed challenger emits
``<model>__challenger``, which starts the canary rollout.

Thin wiring only: every task calls one core-library function with URIs and small dicts.
Heavy imports (pandas, scikit-learn, MLflow, Great Expectations) happen inside the tasks;
parsing this file costs a YAML read and a pydantic check per spec.
"""

from __future__ import annotations

import logging
import warnings
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import (
    DAG,
    Asset,
    AssetOrTimeSchedule,
    BaseSensorOperator,
    CronTriggerTimetable,
    PokeReturnValue,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from model_factory.settings import FactorySettings
from model_factory.spec import LoadedSpec, ModelSpec, SpecError, load_specs

log = logging.getLogger(__name__)


def drift_asset(spec: ModelSpec) -> Asset:
    return Asset(name=f"{spec.name}__drift", uri=f"x-model-factory://{spec.name}/drift")


def challenger_asset(spec: ModelSpec) -> Asset:
    return Asset(name=f"{spec.name}__challenger", uri=f"x-model-factory://{spec.name}/challenger")


def _triggering_extras() -> list[dict]:
    """The ``extra`` of each asset event that triggered this run, oldest first."""
    events = get_current_context().get("triggering_asset_events") or {}
    extras = [dict(event.extra or {}) for evs in events.values() for event in evs]
    return sorted(extras, key=lambda extra: str(extra.get("ds", "")))


def _run_ds() -> str:
    """The batch date of this run: ``conf.ds`` if given, else the date an asset event names
    (a drift-fired retrain trains on the drifted batch), else the run's logical date."""
    from model_factory.io.batches import check_ds

    context = get_current_context()
    conf = context["dag_run"].conf or {}
    event_ds = [extra["ds"] for extra in _triggering_extras() if extra.get("ds")]
    ds = conf.get("ds") or (event_ds[-1] if event_ds else None)
    if ds:
        try:
            return check_ds(str(ds))
        except ValueError as exc:
            raise AirflowFailException(f"bad trigger conf or asset event: {exc}") from exc
    logical = context.get("logical_date") or context["dag_run"].run_after
    return logical.strftime("%Y-%m-%d")


def _alert(spec: ModelSpec, kind: str, subject: str, body: str, details: dict | None = None) -> dict:
    """Alert the model's owner: log + alerts file always; e-mail and webhook through the
    Airflow connections the spec's ``notify`` section names."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException
    from model_factory.monitoring.alerts import Alert, SmtpTarget, deliver

    smtp, webhook_url = None, None
    try:
        if spec.notify.smtp_conn_id and spec.notify.email:
            conn = Connection.get(spec.notify.smtp_conn_id)
            extra = conn.extra_dejson
            smtp = SmtpTarget(
                host=conn.host or "localhost",
                port=conn.port or 25,
                sender=extra.get("from_email", f"model-factory@{conn.host or 'localhost'}"),
                recipients=list(spec.notify.email),
                login=conn.login or None,
                password=conn.password or None,
                starttls=bool(extra.get("starttls", False)),
            )
        if spec.notify.webhook_conn_id:
            conn = Connection.get(spec.notify.webhook_conn_id)
            webhook_url = conn.extra_dejson.get("url") or conn.get_uri()
    except AirflowNotFoundException as exc:
        log.error("notify connection missing for %s: %s (alert goes to the log/file only)", spec.name, exc)
    alert = Alert(model=spec.name, owner=spec.owner, kind=kind, subject=subject, body=body,
                  details=details or {})  # fmt: skip
    return deliver(alert, FactorySettings.from_env().home, smtp=smtp, webhook_url=webhook_url)


def _retrain_schedule(spec: ModelSpec):
    if not spec.drift.enabled:
        return spec.schedule
    if spec.schedule is None:
        return [drift_asset(spec)]
    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(spec.schedule, timezone="UTC"), assets=[drift_asset(spec)]
    )


def _s3_options(conn_id: str | None):
    """Endpoint and credentials from an Airflow connection; None means boto3's environment."""
    if not conn_id:
        return None
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException
    from model_factory.io.storage import S3Options

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


def _common_dag_args(spec: ModelSpec, kind: str) -> dict:
    """What every factory DAG of a model shares: owner, retries with backoff, tags, no catchup."""
    return {
        "start_date": datetime(2026, 1, 1),
        "catchup": False,
        "tags": ["model-factory", kind, spec.task, *(f"{k}:{v}" for k, v in spec.tags.items())],
        "default_args": {
            "owner": spec.owner,
            "retries": spec.retries,
            "retry_delay": timedelta(seconds=30),
            "retry_exponential_backoff": 2.0,  # a multiplier in Airflow 3.3 (True would mean 1.0: constant)
        },
    }


def build_retrain_dag(loaded: LoadedSpec) -> DAG:
    spec = loaded.spec

    @dag(
        dag_id=f"{spec.name}__retrain",
        description=spec.description,
        schedule=_retrain_schedule(spec),
        max_active_runs=1,
        **_common_dag_args(spec, "retrain"),
        doc_md=f"**{spec.name}** ({spec.task}), owned by `{spec.owner}`.\n\n{spec.description}\n\n"
        f"Spec: `{loaded.path.name}`. Trigger with conf `{{\"ds\": \"YYYY-MM-DD\"}}` to (re)run "
        "one batch date; add `\"force_retrain\": true` to train again on unchanged data. "
        f"Also runs when `{spec.name}__drift_watch` emits the `{spec.name}__drift` asset.",
    )
    def retrain():
        @task
        def ingest() -> dict:
            from model_factory.io.batches import MissingBatchError, ingest_batch

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
            from model_factory.pipeline.validation import validate_batch

            settings = FactorySettings.from_env()
            outcome = validate_batch(spec, ingested, settings.store_uri, loaded.path.parent)
            if outcome["status"] == "quarantined":
                reasons = "\n  - ".join(outcome["reasons"])
                _alert(spec, "quarantine", f"{spec.name}: batch {ingested['ds']} quarantined",
                       f"{ingested['source_uri']} failed validation; kept at "
                       f"{outcome['quarantine_uri']}.\n  - {reasons}", outcome)  # fmt: skip
                raise AirflowFailException(
                    f"batch {ingested['source_uri']} failed validation and was quarantined at "
                    f"{outcome['quarantine_uri']}; nothing was trained on it. Why:\n  - {reasons}"
                )
            log.info("validated %s rows -> %s", outcome["rows"], outcome["validated_uri"])
            return outcome

        @task
        def train(validated: dict) -> dict:
            from model_factory.io.batches import recent_validated_batches
            from model_factory.pipeline.training import train_model

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
            from model_factory.pipeline.evaluation import evaluate_candidate

            decision = evaluate_candidate(spec, trained, FactorySettings.from_env())
            log.info("decision: %s: %s", decision["status"], decision["reason"])
            return {k: decision[k] for k in ("run_id", "model_uri", "status", "reason", "metric",
                                             "candidate", "champion", "champion_version")}  # fmt: skip

        @task
        def register(evaluated: dict) -> dict:
            from model_factory.pipeline.registry import register_version

            result = register_version(spec, evaluated, FactorySettings.from_env())
            log.info("registered %s v%s (%s), alias: %s", result["model"], result["version"],
                     result["status"], result["alias"])  # fmt: skip
            return result

        @task(outlets=[challenger_asset(spec)])
        def announce_challenger(registered: dict) -> dict:
            """Emit ``<model>__challenger`` (which starts the canary) only for a new challenger."""
            if registered["alias"] != "challenger":
                raise AirflowSkipException(
                    f"v{registered['version']} is {registered['status']} with alias "
                    f"{registered['alias']}: no canary to start"
                )
            extra = {"version": registered["version"], "ds": _run_ds(), "reason": registered["reason"]}
            get_current_context()["outlet_events"][challenger_asset(spec)].extra = extra
            return extra

        announce_challenger(register(evaluate(train(validate(ingest())))))

    return retrain()


class NewBatchSensor(BaseSensorOperator):
    """Done when the production batch of the run's date exists and was not checked yet
    (conf ``force`` re-checks). Reschedule mode: no worker slot is held while waiting."""

    def __init__(self, *, spec: ModelSpec, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = spec

    def poke(self, context) -> PokeReturnValue:
        from model_factory.io import storage
        from model_factory.monitoring.watch import already_checked, watched_uri

        ds = _run_ds()
        uri = watched_uri(self.spec, ds)
        force = bool((context["dag_run"].conf or {}).get("force"))
        if not storage.exists(uri):
            log.info("waiting for %s", uri)
            return PokeReturnValue(is_done=False)
        if already_checked(self.spec, ds, FactorySettings.from_env()) and not force:
            log.info("%s was already checked (conf {\"force\": true} re-checks it)", uri)
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value={"ds": ds, "uri": uri})


def build_drift_watch_dag(loaded: LoadedSpec) -> DAG:
    spec = loaded.spec
    retrain_id = f"{spec.name}__retrain"

    @dag(
        dag_id=f"{spec.name}__drift_watch",
        description=f"Watch {spec.name}'s production data against its champion's baseline",
        schedule=spec.drift.schedule,
        # A scheduled run may wait most of an hour for its batch; an ops trigger must not queue
        # behind it. Same-date double checks are stopped by the sensor's "already checked".
        max_active_runs=3,
        **_common_dag_args(spec, "drift"),
        doc_md="Waits for the production batch of the run's date "
        f"(`{spec.drift.data_uri or spec.source.uri}`), "
        f"checks it against the champion's training baseline (PSI, KS, chi-square, input contract, "
        f"live metric when labelled) and, on drift, emits `{spec.name}__drift`, which runs "
        f"`{retrain_id}`. Conf `{{\"ds\": \"YYYY-MM-DD\", \"force\": true}}` re-checks a date.",
    )
    def drift_watch():
        wait_for_batch = NewBatchSensor(
            task_id="wait_for_batch",
            spec=spec,
            poke_interval=spec.drift.sensor_poke_seconds,
            timeout=spec.drift.sensor_timeout_minutes * 60,
            mode="reschedule",
            soft_fail=True,
        )

        @task
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
                    spec, found["ds"], FactorySettings.from_env(),
                    context={"airflow.dag_id": context["dag"].dag_id, "airflow.run_id": context["run_id"]},
                )  # fmt: skip
            except (NoBaselineError, MissingBatchError) as exc:
                raise AirflowSkipException(str(exc)) from exc
            log.info("drift check of %s: %s\n  - %s\nreport: %s (JSON %s)", found["uri"],
                     checked["status"], "\n  - ".join(checked["reasons"]) or "no finding",
                     checked["report_uri"], checked["report_json_uri"])  # fmt: skip
            if checked["status"] in ALERT_STATUSES:
                _alert(
                    spec,
                    checked["status"],
                    f"{spec.name}: {checked['status']} on {checked['ds']}",
                    ALERT_HEADLINES[checked["status"]] + "\n  - " + "\n  - ".join(checked["reasons"])
                    + f"\nReport: {checked['report_uri']}",
                    checked,
                )
            return checked

        @task(outlets=[drift_asset(spec)])
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

        fire_retrain(check(wait_for_batch.output))

    return drift_watch()


def _actor() -> str:
    """Who asked: the conf's ``actor``, else the user who triggered the run, else this run."""
    context = get_current_context()
    run = context["dag_run"]
    where = f"{context['dag'].dag_id}/{context['run_id']}"
    user = (run.conf or {}).get("actor") or getattr(run, "triggering_user_name", None)
    return f"{user} via {where}" if user else f"airflow:{where}"


def _record_decision(decision: dict) -> dict:
    """Every rollout decision goes to the registry (done by the canary functions), the prediction
    DB's decisions table and the task log."""
    from model_factory.serving.predlog import write_decision
    from model_factory.serving.settings import prediction_db_uri

    if decision.get("changed", True):  # a retried task changed nothing: nothing to record again
        write_decision(prediction_db_uri(FactorySettings.from_env()), decision)
    log.info("%s v%s %s by %s: %s", decision["model"], decision.get("version"), decision["action"],
             decision.get("actor"), decision.get("reason"))  # fmt: skip
    return decision


class CanaryStageSensor(BaseSensorOperator):
    """Waits until the running canary's stage can be judged (enough labelled outcomes in both
    arms, a guardrail broken, or the stage's maximum duration over), then hands on the analysis.
    Skips when the canary this run started is no longer running (promoted or stopped)."""

    def __init__(self, *, spec: ModelSpec, stage: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.stage = stage

    def poke(self, context) -> PokeReturnValue:
        from datetime import UTC

        from model_factory.rollout.canary import analyse_running_canary, read_serving_state

        started = context["ti"].xcom_pull(task_ids="start")
        settings = FactorySettings.from_env()
        state = read_serving_state(self.spec.registered_model_name, settings)
        if state.canary != started["version"]:
            raise AirflowSkipException(
                f"canary v{started['version']} is no longer running (champion v{state.champion}): "
                f"stage {self.stage} has nothing to judge"
            )
        began = datetime.fromisoformat(state.updated_at or state.started_at)
        if began.tzinfo is None:
            began = began.replace(tzinfo=UTC)
        overdue = datetime.now(UTC) > began + timedelta(minutes=self.spec.canary.max_stage_minutes)
        result = analyse_running_canary(self.spec, settings, deadline_passed=overdue)
        log.info("stage %d (share %.0f%%): %s\n  - %s", self.stage, state.share * 100, result["decision"],
                 "\n  - ".join(result["reasons"]))  # fmt: skip
        if result["decision"] == "wait":
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=result)


def build_canary_dag(loaded: LoadedSpec) -> DAG:
    spec = loaded.spec
    name = spec.registered_model_name
    ramp = list(spec.canary.ramp)

    @dag(
        dag_id=f"{spec.name}__canary",
        description=f"Roll a blessed {spec.name} challenger out on live traffic: ramp, promote or roll back",
        schedule=[challenger_asset(spec)],
        # Ops' manual controls (conf action) must not queue behind a canary that is waiting.
        max_active_runs=3,
        **_common_dag_args(spec, "canary"),
        doc_md=f"Started by `{spec.name}__challenger` (a retrain registered a blessed challenger): the "
        f"challenger becomes alias `canary` at {ramp[0]:.0%} of the gateway's traffic, then each stage "
        f"({' -> '.join(f'{s:.0%}' for s in ramp)}) waits for {spec.canary.min_samples} labelled "
        "outcomes per arm and is judged on the live primary metric (one-sided test) and the error-rate "
        "and p95-latency guardrails: ramp, promote (old champion kept as `previous_champion`) or roll "
        "back.\n\nManual control, with who and why recorded: trigger with conf "
        '`{"action": "promote|rollback|abort|pin|unpin", "version": "N", "reason": "...", "actor": "..."}`;'
        ' `{"version": "N"}` starts a canary of a given blessed version.',
    )
    def canary():
        @task
        def manual_action() -> dict:
            """Ops' conf ``action``: promote now, roll back, abort, pin or unpin (who/why recorded)."""
            from model_factory.pipeline.registry import PromotionError
            from model_factory.rollout.canary import OPS_ACTIONS, ops_action

            conf = get_current_context()["dag_run"].conf or {}
            action = conf.get("action")
            if not action:
                raise AirflowSkipException("no conf action: this run rolls a challenger out")
            if action not in OPS_ACTIONS:
                raise AirflowFailException(f"conf action {action!r} unknown; use one of {OPS_ACTIONS}")
            try:
                decision = ops_action(name, action, FactorySettings.from_env(), _actor(),
                                      conf.get("reason", ""), conf.get("version"))  # fmt: skip
            except PromotionError as exc:
                raise AirflowFailException(f"{action} refused: {exc}") from exc
            return _record_decision(decision)

        @task
        def start() -> dict:
            """The challenger becomes the canary at the ramp's first share."""
            from model_factory.io.tracking import connect
            from model_factory.pipeline.registry import CHALLENGER, PromotionError, current_alias_version
            from model_factory.rollout import canary as rollout

            conf = get_current_context()["dag_run"].conf or {}
            if conf.get("action"):
                raise AirflowSkipException(f"manual action {conf['action']!r}: no rollout in this run")
            if not spec.canary.enabled:
                raise AirflowSkipException(f"canary.enabled is false in {loaded.path.name}")
            settings = FactorySettings.from_env()
            events = [extra["version"] for extra in _triggering_extras() if extra.get("version")]
            version = conf.get("version") or (events[-1] if events else None)
            version = version or current_alias_version(connect(settings), name, CHALLENGER)
            if version is None:
                raise AirflowSkipException(f"{name} has no challenger to roll out")
            running = rollout.read_serving_state(name, settings).canary
            if running is not None and running != str(version):
                raise AirflowSkipException(
                    f"canary v{running} is still running: v{version} stays challenger; start it after "
                    f"v{running} concludes (trigger with conf {{\"version\": \"{version}\"}})"
                )
            reason = conf.get("reason") or f"blessed challenger v{version}: canary at {ramp[0]:.0%}"
            try:
                decision = rollout.start_canary(name, str(version), ramp[0], settings, _actor(), reason)
            except PromotionError as exc:
                raise AirflowFailException(f"cannot start the canary: {exc}") from exc
            _record_decision(decision)
            return {"version": str(version), "share": ramp[0]}

        def act(stage: int):
            @task(task_id=f"stage_{stage}_act")
            def stage_act(result: dict) -> dict:
                """Carry out the stage's verdict: ramp, promote or roll back."""
                from model_factory.rollout import canary as rollout

                settings, actor = FactorySettings.from_env(), _actor()
                why = "; ".join(result["reasons"][:4])
                version = result["canary_version"]
                if result["decision"] == "continue":
                    share = result["next_share"]
                    decision = rollout.set_canary_share(
                        name, share, settings, actor, f"stage {stage} healthy: {why}", version=version
                    )
                elif result["decision"] == "promote":
                    decision = rollout.promote_canary(
                        name, settings, actor, f"canary passed the last stage: {why}", version=version,
                        details={"analysis": result},
                    )  # fmt: skip
                else:
                    decision = rollout.rollback_canary(
                        name, settings, actor, f"canary failed stage {stage}: {why}", version=version,
                        details={"analysis": result},
                    )  # fmt: skip
                    _alert(spec, "canary", f"{name}: canary v{version} rolled back",
                           "\n  - ".join([f"stage {stage}, champion v{result['champion_version']} kept",
                                          *result["reasons"]]), result)  # fmt: skip
                return _record_decision(decision)

            return stage_act

        started = start()
        previous = started
        for stage in range(1, len(ramp) + 1):
            wait = CanaryStageSensor(
                task_id=f"stage_{stage}_wait",
                spec=spec,
                stage=stage,
                poke_interval=spec.canary.poke_seconds,
                timeout=spec.canary.max_stage_minutes * 60 + 600,
                mode="reschedule",
            )
            previous >> wait
            previous = act(stage)(wait.output)
        manual_action()

    return canary()


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
    dags += [build_drift_watch_dag(loaded) for loaded in good if loaded.spec.drift.enabled]
    dags += [build_canary_dag(loaded) for loaded in good if loaded.spec.canary.enabled]
    for error in bad:
        log.error("%s", error)
        warnings.warn(str(error), stacklevel=1)
        dags.append(build_invalid_spec_dag(error))
    return {built.dag_id: built for built in dags}


globals().update(build_all())
