"""The factory's sensors: no worker slot is held while they wait (reschedule mode, or deferred to the
triggerer: the canary stages)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from model_factory.airflow.common import run_ds
from model_factory.airflow.triggers import CanaryOutcomesTrigger
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

if TYPE_CHECKING:
    from model_factory.io.registry_state import ServingState

log = logging.getLogger("model_factory.airflow")


class NewBatchSensor(BaseSensorOperator):
    """Done when the production batch of the run's date exists and was not checked yet
    (conf ``force`` re-checks)."""

    def __init__(self, *, spec: ModelSpec, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = spec

    def poke(self, context) -> PokeReturnValue:
        from model_factory.io import storage
        from model_factory.monitoring.watch import already_checked, watched_uri

        ds = run_ds()
        uri = watched_uri(self.spec, ds)
        force = bool((context["dag_run"].conf or {}).get("force"))
        if not storage.exists(uri):
            log.info("waiting for %s", uri)
            return PokeReturnValue(is_done=False)
        if already_checked(self.spec, ds, FactorySettings.from_env()) and not force:
            log.info('%s was already checked (conf {"force": true} re-checks it)', uri)
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value={"ds": ds, "uri": uri})


class CanaryStageSensor(BaseSensorOperator):
    """Waits until the running canary's stage can be judged (enough labelled outcomes in both
    arms, a guardrail broken, or the stage's maximum duration over), then hands on the analysis.
    Skips when the canary this run started is no longer running (promoted or stopped).

    Deferrable (the default): between judgements it waits on the triggerer, in
    :class:`~model_factory.airflow.triggers.CanaryOutcomesTrigger`, which counts the stage's
    labelled outcomes every second and resumes the sensor as soon as there are enough, and at the
    latest after ``poke_interval`` (guardrails, the deadline). No worker slot is held, and the
    stage is judged within about a second of its last needed outcome instead of up to a
    ``poke_interval`` later. ``deferrable=False``: a reschedule-mode sensor poking every
    ``poke_interval`` (a deployment without a triggerer)."""

    def __init__(self, *, spec: ModelSpec, stage: int, deferrable: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.stage = stage
        self.deferrable = deferrable

    def judge(self, context) -> tuple[dict, ServingState]:
        """The stage's analysis now (``decision`` ``wait`` while it cannot be judged) and the
        serving state it was judged on; skips when this run's canary is no longer running."""
        from model_factory.rollout.canary import analyse_running_canary, read_serving_state

        started = context["ti"].xcom_pull(task_ids="start")
        settings = FactorySettings.from_env()
        state = read_serving_state(self.spec.registered_model_name, settings)
        if state.canary != started["version"]:
            raise AirflowSkipException(
                f"canary v{started['version']} is no longer running (champion v{state.champion}): "
                f"stage {self.stage} has nothing to judge"
            )
        began_at = state.updated_at or state.started_at
        if began_at is None:
            raise ValueError(
                f"{self.spec.name}: canary v{state.canary} has no start time in its serving state"
            )
        began = datetime.fromisoformat(began_at)
        if began.tzinfo is None:
            began = began.replace(tzinfo=UTC)
        overdue = datetime.now(UTC) > began + timedelta(minutes=self.spec.canary.max_stage_minutes)
        result = analyse_running_canary(self.spec, settings, deadline_passed=overdue).to_dict()
        log.info(
            "stage %d (share %.0f%%): %s\n  - %s",
            self.stage,
            state.share * 100,
            result["decision"],
            "\n  - ".join(result["reasons"]),
        )
        return result, state

    def poke(self, context) -> PokeReturnValue:
        result, _ = self.judge(context)
        if result["decision"] == "wait":
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=result)

    def execute(self, context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        give_up_at = datetime.now(UTC) + timedelta(seconds=self.timeout)
        return self.execute_complete(context, give_up_at=give_up_at.isoformat())

    def execute_complete(self, context, give_up_at: str, event: dict | None = None) -> dict:
        """Judge the stage (first, and each time the trigger fires); defer again while it waits."""
        if event:
            log.info("resumed by the trigger (%s): labelled outcomes %s", event["why"], event["counts"])
        result, state = self.judge(context)
        if result["decision"] != "wait":
            return result
        now, deadline = datetime.now(UTC), datetime.fromisoformat(give_up_at)
        if now >= deadline:
            raise AirflowSensorTimeout(f"stage {self.stage} not judged by {give_up_at} (the sensor timeout)")
        # Resumed on a count that the analysis still finds short (feedback it cannot read as an
        # outcome, one class only): only wake_at can resume it, or it would come straight back.
        counted_enough = bool(event and event.get("why") == "samples")
        started_at = state.started_at or state.updated_at or "1970-01-01T00:00:00+00:00"
        trigger = CanaryOutcomesTrigger(
            model=self.spec.registered_model_name,
            versions={"canary": state.canary or "", "champion": state.champion or ""},
            since=started_at,
            stage_since=state.updated_at or started_at,
            min_samples=self.spec.canary.min_samples,
            wake_at=(now + timedelta(seconds=self.poke_interval)).isoformat(),
            counting=not counted_enough,
        )
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            kwargs={"give_up_at": give_up_at},
            timeout=deadline - now,
        )
