"""Prometheus text exposition (format 0.0.4), written by hand: counters and a latency histogram."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import defaultdict

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    value = float(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value == int(value) else repr(value)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str, str], int] = defaultdict(int)
        self.rejected: dict[tuple[str, str], int] = defaultdict(int)
        self.buckets: dict[tuple[str, str, str], list[int]] = {}
        self.sums: dict[tuple[str, str, str], float] = defaultdict(float)

    def observe(self, model: str, version: str, arm: str, status: str, seconds: float) -> None:
        """One served (``ok``) or failed (``error``) prediction request on an arm."""
        key = (model, version, arm)
        with self._lock:
            self.requests[(*key, status)] += 1
            if status != "ok":
                return
            counts = self.buckets.get(key)
            if counts is None:
                counts = self.buckets[key] = [0] * (len(BUCKETS_S) + 1)
            counts[bisect_left(BUCKETS_S, seconds)] += 1  # the first bound >= seconds, else +Inf
            self.sums[key] += seconds

    def reject(self, model: str, code: int) -> None:
        """A request refused before any model ran (4xx)."""
        with self._lock:
            self.rejected[(model, str(code))] += 1

    def render(self, gauges: list[tuple[str, str, dict[str, str], float]]) -> str:
        """The exposition text; ``gauges`` are (name, help, labels, value) from the gateway state."""
        lines: list[str] = []
        with self._lock:
            lines += [
                "# HELP factory_gateway_requests_total Prediction requests per model, version, arm, status.",
                "# TYPE factory_gateway_requests_total counter",
            ]
            for (model, version, arm, status), n in sorted(self.requests.items()):
                labels = _labels(model=model, version=version, arm=arm, status=status)
                lines.append(f"factory_gateway_requests_total{labels} {n}")
            lines += [
                "# HELP factory_gateway_errors_total Prediction requests that failed in the model.",
                "# TYPE factory_gateway_errors_total counter",
            ]
            for (model, version, arm, status), n in sorted(self.requests.items()):
                if status != "ok":
                    lines.append(
                        f"factory_gateway_errors_total{_labels(model=model, version=version, arm=arm)} {n}"
                    )
            lines += [
                "# HELP factory_gateway_rejected_total Requests refused before any model ran, by code.",
                "# TYPE factory_gateway_rejected_total counter",
            ]
            for (model, code), n in sorted(self.rejected.items()):
                lines.append(f"factory_gateway_rejected_total{_labels(model=model, code=code)} {n}")
            name = "factory_gateway_request_duration_seconds"
            lines += [
                f"# HELP {name} Time to validate and predict one request, by model, version, arm.",
                f"# TYPE {name} histogram",
            ]
            for (model, version, arm), counts in sorted(self.buckets.items()):
                cumulative = 0
                for bound, count in zip((*BUCKETS_S, float("inf")), counts, strict=True):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else _number(bound)
                    lines.append(
                        f"{name}_bucket{_labels(model=model, version=version, arm=arm, le=le)} {cumulative}"
                    )
                base = _labels(model=model, version=version, arm=arm)
                lines.append(f"{name}_sum{base} {self.sums[(model, version, arm)]!r}")
                lines.append(f"{name}_count{base} {cumulative}")
        seen: set[str] = set()
        for gauge, help_text, gauge_labels, value in sorted(gauges, key=lambda g: g[0]):
            if gauge not in seen:
                lines += [f"# HELP {gauge} {help_text}", f"# TYPE {gauge} gauge"]
                seen.add(gauge)
            lines.append(f"{gauge}{_labels(**gauge_labels) if gauge_labels else ''} {_number(value)}")
        return "\n".join(lines) + "\n"
