"""The health check's latest figures (realized and estimated metric, label coverage, output drift per
model and version) as gauges on the gateway's ``/metrics``.

Read from the ``model_health`` table the ``<model>__health`` DAG writes, on a scrape, at most once
per ``ttl_s`` (the figures change daily); never on the predict path. A table that cannot be read
costs only these gauges and is counted in ``factory_gateway_health_read_errors``.
"""

from __future__ import annotations

import logging
import threading
import time

from model_factory.monitoring.health_history import Gauge, latest_gauges
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


class HealthGauges:
    def __init__(self, engine: Engine, ttl_s: float = 60.0) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._gauges: list[Gauge] = []
        self.read_errors = 0

    def gauges(self) -> list[Gauge]:
        with self._lock:
            now = time.monotonic()
            if self._read_at is None or now - self._read_at >= self.ttl_s:
                self._read_at = now
                try:
                    self._gauges = latest_gauges(self.engine)
                except Exception as exc:  # a down DB costs these gauges only, said in the counter
                    self.read_errors += 1
                    log.warning("health gauges not read: %s", str(exc).splitlines()[0][:200])
            errors = ("factory_gateway_health_read_errors",
                      "Failed reads of the model_health table for /metrics, since start.", {},
                      float(self.read_errors))  # fmt: skip
            return [*self._gauges, errors]
