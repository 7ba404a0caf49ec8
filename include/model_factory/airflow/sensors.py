"""The factory's sensors (reschedule mode: no worker slot is held while they wait)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from model_factory.airflow.common import run_ds
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSkipException

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

        ds, settings = run_ds(), FactorySettings.from_env()
        uri = watched_uri(self.spec, ds, settings)
        force = bool((context["dag_run"].conf or {}).get("force"))
        if not storage.exists(uri):
            log.info("waiting for %s", uri)
            return PokeReturnValue(is_done=False)
        if already_checked(self.spec, ds, settings) and not force:
            log.info('%s was already checked (conf {"force": true} re-checks it)', uri)
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value={"ds": ds, "uri": uri})


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
        if result["decision"] == "wait":
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=result)
