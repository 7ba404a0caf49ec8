"""The factory's sensors: no worker slot is held while they wait (reschedule mode, or deferred to the
triggerer: the canary stages)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from model_factory.airflow.common import run_ds
from model_factory.airflow.triggers import (
    OUTCOME_POLL_SECONDS,
    SETTLE_SECONDS,
    CanaryOutcomesTrigger,
    aware_utc,
)
from model_factory.settings import FactorySettings
from model_factory.spec import ModelSpec

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

if TYPE_CHECKING:
    from model_factory.io.registry_state import ServingState
    from model_factory.rollout.outcomes import LabelledCounts

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
    Skips when the canary this run started is no longer running (promoted or stopped).

    Deferrable (the default): when its first judgement says wait, it counts the stage's labelled
    outcomes every second in the worker for one ``poke_interval`` (a stage that fills within it is
    judged about a second after its last needed outcome, with no deferral), judges again, and if it
    must still wait stays ``SETTLE_SECONDS`` more when the missing outcomes are due within them
    (:meth:`soon`; also after each resume), else defers to the triggerer: there
    :class:`~model_factory.airflow.triggers.CanaryOutcomesTrigger` counts them every second, holding
    no worker slot, and resumes the sensor as soon as there are enough, and at the latest after
    another ``poke_interval`` (guardrails, the deadline), never sooner than ``SETTLE_SECONDS``
    after the deferral (an Airflow race, see there). ``deferrable=False``: a reschedule-mode
    sensor poking every ``poke_interval`` (a deployment without a triggerer)."""

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
        return self.execute_complete(context, give_up_at=give_up_at.isoformat(), first=True)

    def execute_complete(
        self, context, give_up_at: str, event: dict | None = None, first: bool = False
    ) -> dict:
        """Judge the stage (first, and each time the trigger fires); defer again while it waits.
        ``first``: before deferring, count in the worker for one ``poke_interval``."""
        if event:
            log.info("resumed by the trigger (%s): labelled outcomes %s", event["why"], event["counts"])
        result, state = self.judge(context)
        # A count that the analysis still finds short (feedback it cannot read as an outcome, one
        # class only) must not resume it again at once: then only poke_interval does.
        counted_enough = bool(event and event.get("why") == "samples")
        deadline = datetime.fromisoformat(give_up_at)
        # In the worker: one poke_interval before the first deferral, then SETTLE_SECONDS more
        # whenever the missing outcomes should arrive within them (a deferral would cost that).
        for window in ([self.poke_interval] if first else []) + [None]:
            if result["decision"] != "wait" or counted_enough:
                break
            seconds = window if window is not None else SETTLE_SECONDS if self.soon(state) else 0.0
            if seconds:
                counted_enough = self.count_in_worker(state, min(deadline, self._in(seconds)))
                result, state = self.judge(context)
        if result["decision"] != "wait":
            return result
        now = datetime.now(UTC)
        if now >= deadline:
            raise AirflowSensorTimeout(f"stage {self.stage} not judged by {give_up_at} (the sensor timeout)")
        trigger = CanaryOutcomesTrigger(
            model=self.spec.registered_model_name,
            versions=self._versions(state),
            since=self._since(state),
            stage_since=self._stage_since(state),
            min_samples=self.spec.canary.min_samples,
            wake_at=self._in(max(self.poke_interval, SETTLE_SECONDS)).isoformat(),
            not_before=self._in(SETTLE_SECONDS).isoformat(),
            counting=not counted_enough,
        )
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            kwargs={"give_up_at": give_up_at},
            timeout=deadline - now,
        )

    def soon(self, state: ServingState) -> bool:
        """Should the stage's missing outcomes arrive within ``SETTLE_SECONDS``, at the rates seen
        since the canary and its stage began? (No: cannot tell.)"""
        try:
            counts = self.count(state, self.prediction_db())
        except Exception:  # judged on the triggerer's schedule instead
            return False
        now = datetime.now(UTC)
        ages = [
            (now - aware_utc(moment)).total_seconds()
            for moment in (self._since(state), self._stage_since(state))
        ]
        eta = counts.seconds_to(self.spec.canary.min_samples, *ages)
        log.info("labelled outcomes %s: enough in about %.0f s at the rates so far", counts, eta)
        return eta <= SETTLE_SECONDS

    def count_in_worker(self, state: ServingState, until: datetime) -> bool:
        """Count the stage's labelled outcomes every second until there are enough (True) or
        ``until`` (False); a prediction DB that cannot be read counts as not enough."""
        db = self.prediction_db()
        while datetime.now(UTC) < until:
            time.sleep(OUTCOME_POLL_SECONDS)
            try:
                counts = self.count(state, db)
            except Exception as exc:  # judged again at `until`, which says why
                log.warning("canary outcomes not counted (%s: %s)", type(exc).__name__, exc)
                continue
            if counts.enough(self.spec.canary.min_samples):
                log.info("enough labelled outcomes counted in the worker: %s", counts)
                return True
        return False

    @staticmethod
    def prediction_db() -> str:
        from model_factory.serving.settings import prediction_db_uri

        return prediction_db_uri(FactorySettings.from_env())

    def count(self, state: ServingState, db: str) -> LabelledCounts:
        """The stage's labelled outcomes now in ``db`` (what the trigger counts on the triggerer)."""
        from model_factory.rollout.outcomes import labelled_counts

        return labelled_counts(
            db, state.model, self._since(state), self._stage_since(state), self._versions(state)
        )

    @staticmethod
    def _in(seconds: float) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=seconds)

    @staticmethod
    def _since(state: ServingState) -> str:
        return state.started_at or state.updated_at or "1970-01-01T00:00:00+00:00"

    @classmethod
    def _stage_since(cls, state: ServingState) -> str:
        return state.updated_at or cls._since(state)

    @staticmethod
    def _versions(state: ServingState) -> dict[str, str]:
        return {"canary": state.canary or "", "champion": state.champion or ""}
