"""The health check's latest figures (realized and estimated metric, label coverage, output drift per
model and version) as gauges on the gateway's ``/metrics``.

Read from the ``model_health`` table the ``<model>__health`` DAG writes, on a scrape, at most once
per ``ttl_s`` (the figures change daily); never on the predict path. A table that cannot be read
costs only these gauges and is counted in ``factory_gateway_health_read_errors``. The table is read
by name with plain SQL (as monitoring reads the prediction log), so serving does not import the
monitoring code; its columns are those of ``model_factory.monitoring.health_history``.
"""

from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

Gauge = tuple[str, str, dict[str, str], float]
GAUGES = (
    (
        "realized",
        "factory_model_realized_metric",
        "Realized primary metric on matured outcomes (newest day that has one).",
    ),
    (
        "estimated",
        "factory_model_estimated_metric",
        "Estimated primary metric before outcomes (newest day that has one).",
    ),
    (
        "label_coverage",
        "factory_model_label_coverage",
        "Share of matured predictions with an outcome (newest day that has one).",
    ),
    (
        "output_drift_ks",
        "factory_model_output_drift_ks",
        "KS of served scores vs the holdout's (newest day that has one).",
    ),
)


def read_health_gauges(engine: Engine) -> list[Gauge]:
    """Per model and version, each figure of the newest day that has it (outcomes arrive late:
    the realized metric is usually of an older day than the estimate)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("model_health"):
            return []
        columns = ", ".join(column for column, _, _ in GAUGES)
        query = f"SELECT model, version, metric, {columns} FROM model_health ORDER BY day"
        rows = conn.execute(sa.text(query))
        newest: dict[tuple[str, str, str], float] = {}
        metric_of: dict[tuple[str, str], str] = {}
        for row in rows:
            metric_of[(row.model, row.version)] = row.metric
            for column, _, _ in GAUGES:
                value = getattr(row, column)
                if value is not None:
                    newest[(row.model, row.version, column)] = float(value)
    gauges: list[Gauge] = []
    for (model, version, column), value in sorted(newest.items()):
        name, help_text = next((n, h) for c, n, h in GAUGES if c == column)
        labels = {"model": model, "version": version, "metric": metric_of[(model, version)]}
        gauges.append((name, help_text, labels, value))
    return gauges


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
                    self._gauges = read_health_gauges(self.engine)
                except Exception as exc:  # a down DB costs these gauges only, said in the counter
                    self.read_errors += 1
                    log.warning("health gauges not read: %s", str(exc).splitlines()[0][:200])
            errors: tuple[str, str, dict[str, str], float] = (
                "factory_gateway_health_read_errors",
                "Failed reads of the model_health table for /metrics, since start.",
                {},
                float(self.read_errors),
            )
            return [*self._gauges, errors]
