"""The factory's triggers: run by Airflow's triggerer while a deferred sensor waits.

A trigger is re-created in the triggerer from :meth:`serialize`'s class path and keyword arguments
(also after a triggerer restart, or on another triggerer), so everything it needs is in those
arguments, times are absolute, and nothing it knows lives only in memory. It imports the
factory's own package and its settings, never a DAG file, a spec or a model's training code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from model_factory.settings import FactorySettings

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from model_factory.rollout.outcomes import LabelledCounts

log = logging.getLogger("model_factory.airflow")

OUTCOME_POLL_SECONDS = 1.0
"""How often :class:`CanaryOutcomesTrigger` counts a stage's labelled outcomes (one ``COUNT``)."""
SETTLE_SECONDS = 10.0
"""A deferred sensor is resumed no sooner than this after it deferred. Airflow 3.3 resumes a
deferred task under the same try number; when the scheduler reads the executor's "success" of the
process that deferred only after the resume has queued the task again, that stale event takes the
new attempt out of the executor's running set and the scheduler fails the task ("finished with
state success, but the task instance's state attribute is queued"). Measured in the demo: the event
came 5.6 s after the deferral at load 5, the trigger fired after 4 s, and the stage waited for a
retry (bench/results/demo6_first_run.json)."""


def aware_utc(moment: str) -> datetime:
    """An ISO time as an aware datetime (a naive one is taken as UTC)."""
    parsed = datetime.fromisoformat(moment)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class CanaryOutcomesTrigger(BaseTrigger):
    """Fires when a canary stage has ``min_samples`` labelled outcomes per arm (and the canary's
    since the stage began), or at ``wake_at``, whichever comes first; never before ``not_before``
    (:data:`SETTLE_SECONDS` after the deferral).

    It only counts (:func:`model_factory.rollout.outcomes.labelled_counts`, every ``poll_seconds``
    in a thread, off the triggerer's event loop); the sensor it resumes judges the stage with the
    full analysis. ``wake_at`` (the sensor's ``poke_interval`` from the defer) keeps what a count
    cannot see judged as often as a reschedule-mode sensor would: a broken guardrail, the stage's
    maximum duration, a canary ended elsewhere. With ``counting=False`` it only waits for ``wake_at``
    (the sensor's answer when a count said "enough" and the analysis still could not judge: the
    count would resume it at once, again and again). A prediction DB that cannot be read is logged and
    counted as not ready: the sensor judges it at ``wake_at``. The DB is the triggerer's
    ``FACTORY_PREDICTION_DB_URI`` (or FACTORY_HOME's SQLite), like the workers': no URL, and so
    no password, is stored with the trigger.
    """

    def __init__(
        self,
        *,
        model: str,
        versions: dict[str, str],
        since: str,
        stage_since: str,
        min_samples: int,
        wake_at: str,
        not_before: str | None = None,
        poll_seconds: float = OUTCOME_POLL_SECONDS,
        counting: bool = True,
    ) -> None:
        super().__init__()
        self.model, self.versions = model, dict(versions)
        self.since, self.stage_since = since, stage_since
        self.min_samples, self.wake_at, self.poll_seconds = int(min_samples), wake_at, float(poll_seconds)
        self.not_before = not_before
        self.counting = bool(counting)
        self._db: str | None = None  # resolved in the triggerer, on the first count

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "model": self.model,
                "versions": self.versions,
                "since": self.since,
                "stage_since": self.stage_since,
                "min_samples": self.min_samples,
                "wake_at": self.wake_at,
                "not_before": self.not_before,
                "poll_seconds": self.poll_seconds,
                "counting": self.counting,
            },
        )

    def count(self) -> LabelledCounts | None:
        """The stage's labelled outcomes now (None: the prediction DB could not be read)."""
        from model_factory.rollout.outcomes import labelled_counts
        from model_factory.serving.settings import prediction_db_uri

        try:
            self._db = self._db or prediction_db_uri(FactorySettings.from_env())
            return labelled_counts(self._db, self.model, self.since, self.stage_since, self.versions)
        except Exception as exc:  # judged by the sensor at wake_at, which says why
            log.warning("%s: canary outcomes not counted (%s: %s)", self.model, type(exc).__name__, exc)
            return None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        wake_at = aware_utc(self.wake_at)
        if self.not_before:  # see SETTLE_SECONDS (in the past after a restart: no wait)
            await asyncio.sleep(max(0.0, (aware_utc(self.not_before) - datetime.now(UTC)).total_seconds()))
        while True:
            counts = await asyncio.to_thread(self.count) if self.counting else None
            seen = asdict(counts) if counts else None
            if counts is not None and counts.enough(self.min_samples):
                yield TriggerEvent({"why": "samples", "counts": seen})
                return
            left = (wake_at - datetime.now(UTC)).total_seconds()
            if left <= 0:
                yield TriggerEvent({"why": "poke_interval", "counts": seen})
                return
            await asyncio.sleep(min(self.poll_seconds, left) if self.counting else left)
