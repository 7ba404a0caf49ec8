"""Traffic and delayed feedback for the gateway, and synthetic outcomes for the canary analysis.

:func:`simulate_traffic` sends real HTTP requests (one caller = one entity id, so routing is
sticky) and, after ``feedback_delay_s``, the true outcome of each served request: what the
demo does to drive a canary with live outcomes.

:func:`synthetic_arm` / :func:`decision_rates` generate labelled outcomes of a known quality
to measure how often :func:`canary.analyse_canary` rolls back (power and false alarms).
"""

from __future__ import annotations

import heapq
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from model_factory.rollout.analysis import analyse_canary
from model_factory.rollout.outcomes import ArmData
from model_factory.spec import CanarySpec

if TYPE_CHECKING:
    import httpx

POSITIVE_RATE = 0.3
"""Share of positives in a synthetic classification arm."""

# --- HTTP traffic ---------------------------------------------------------------------------------


def _records(rows: pd.DataFrame, columns: list[str]) -> list[dict]:
    """JSON-ready feature dicts: numpy scalars to Python, NaN to null."""
    import json

    return json.loads(rows[columns].to_json(orient="records", date_format="iso"))


class _TrafficRun:
    """What one :func:`simulate_traffic` call's request threads and its feedback thread share:
    a client per thread, the counts, and the outcomes waiting for their feedback time."""

    def __init__(
        self, base_url: str, headers: dict[str, str], timeout_s: float, feedback_delay_s: float
    ) -> None:
        self.base_url, self.headers, self.timeout_s = base_url, headers, timeout_s
        self.feedback_delay_s = feedback_delay_s
        # One client (one connection) per calling thread, never a pool shared by threads: httpcore's
        # sync pool (1.0.9) can close a connection it has already handed to a waiting thread when
        # another thread makes room at max_connections (encode/httpcore#1110); the request then fails
        # with ReadError and the gateway sees the caller reset the connection. That was the
        # "dropped connection under load" of issue 18 finding 8, a bug of the caller, not the server.
        self.clients: list[httpx.Client] = []
        self.clients_lock = threading.Lock()
        self.per_thread = threading.local()

        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.by_version: Counter = Counter()
        self.errors: Counter = Counter()
        self.pending: list[tuple[float, int, str, Any]] = []  # (due, seq, request_id, outcome)
        self.wake = threading.Condition(self.lock)
        self.sent_feedback: Counter = Counter()
        self.producing_done = threading.Event()

    def thread_client(self) -> httpx.Client:
        import httpx

        client = getattr(self.per_thread, "client", None)
        if client is None:
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            client = httpx.Client(
                base_url=self.base_url, headers=self.headers, timeout=self.timeout_s, limits=limits
            )
            self.per_thread.client = client
            with self.clients_lock:
                self.clients.append(client)
        return client

    def predict(self, model: str, body: dict[str, Any]) -> dict | None:
        """POST one prediction and count its arm and version; None once its error is counted."""
        import httpx

        try:
            response = self.thread_client().post(f"/v1/models/{model}/predict", json=body)
        except httpx.HTTPError as exc:
            with self.lock:
                self.errors[type(exc).__name__] += 1
            return None
        if response.status_code != 200:
            with self.lock:
                self.errors[str(response.status_code)] += 1
            return None
        answer = response.json()
        with self.lock:
            self.counts[answer["arm"]] += 1
            self.by_version[f"{answer['arm']}:v{answer['version']}"] += 1
        return answer

    def feedback_later(self, seq: int, request_id: str, outcome: Any) -> None:
        with self.wake:
            heapq.heappush(self.pending, (time.monotonic() + self.feedback_delay_s, seq, request_id, outcome))
            self.wake.notify()

    def feedback_loop(self) -> None:
        while True:
            with self.wake:
                while not self.pending and not self.producing_done.is_set():
                    self.wake.wait(0.5)
                if not self.pending:
                    return
                due, _, request_id, outcome = self.pending[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self.wake.wait(min(delay, 0.5))
                    continue
                heapq.heappop(self.pending)
            key = _send_feedback(self.thread_client(), request_id, outcome)
            with self.lock:
                self.sent_feedback[key] += 1

    def send_all(self, one: Callable[[int], None], requests: int, concurrency: int) -> float:
        """``one(i)`` for every request on ``concurrency`` threads while the feedback thread sends
        the outcomes as they fall due, until the last is sent; the seconds it took."""
        started = time.perf_counter()
        sender = threading.Thread(target=self.feedback_loop, name="simulated-feedback", daemon=True)
        sender.start()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(one, range(requests)))
        self.producing_done.set()
        with self.wake:
            self.wake.notify_all()
        sender.join()
        return time.perf_counter() - started

    def close(self) -> None:
        for each in self.clients:
            each.close()


def _champion_inputs(client: httpx.Client, base_url: str, model: str) -> list[str]:
    """The champion's signature inputs, from ``GET /v1/models/{model}``."""
    status = client.get(f"/v1/models/{model}")
    if status.status_code != 200:
        raise RuntimeError(
            f"gateway {base_url}: GET /v1/models/{model} -> {status.status_code} {status.text[:300]}"
        )
    return [f["name"] for f in status.json()["champion"]["inputs"]]


def simulate_traffic(
    base_url: str,
    model: str,
    rows: pd.DataFrame,
    *,
    requests: int,
    feedback_delay_s: float = 0.0,
    label_fn: Callable[[dict, dict], Any] | None = None,
    label_column: str | None = None,
    entity_column: str | None = None,
    feature_columns: list[str] | None = None,
    feedback_share: float = 1.0,
    concurrency: int = 8,
    api_key: str | None = None,
    timeout_s: float = 30.0,
    seed: int = 0,
) -> dict:
    """Send ``requests`` predictions for ``model`` drawn from ``rows``, then their outcomes.

    Each request carries the row's ``entity_column`` value as ``entity_id`` (sticky routing);
    the outcome is ``label_fn(row, response)`` or the row's ``label_column`` (the true label of
    the generated data), sent ``feedback_delay_s`` after the prediction for a random
    ``feedback_share`` of requests. Features default to the champion's signature inputs (read
    from ``GET /v1/models/{model}``). Returns counts per arm and version, errors by status code
    and feedback counts.
    """
    if requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests}")
    if label_fn is None and label_column is None:
        raise ValueError("pass label_fn or label_column: feedback needs the true outcome")
    if label_column is not None and label_column not in rows.columns:
        raise ValueError(f"label column {label_column!r} is not in the rows ({list(rows.columns)})")
    headers = {"X-API-Key": api_key} if api_key else {}
    base_url = base_url.rstrip("/")
    traffic = _TrafficRun(base_url, headers, timeout_s, feedback_delay_s)
    try:
        client = traffic.thread_client()
        if feature_columns is None:
            feature_columns = _champion_inputs(client, base_url, model)
        missing = sorted(set(feature_columns) - set(rows.columns))
        if missing:
            raise ValueError(f"rows lack the model's features {missing}")
        features = _records(rows, feature_columns)
        originals = rows.to_dict("records")
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(rows), size=requests)
        give_feedback = rng.random(requests) < feedback_share
        run = uuid.uuid4().hex[:8]

        def one(i: int) -> None:
            row_index = int(picks[i])
            body: dict[str, Any] = {"request_id": f"sim-{run}-{i}", "features": features[row_index]}
            if entity_column is not None:
                body["entity_id"] = str(originals[row_index][entity_column])
            answer = traffic.predict(model, body)
            if answer is None or not give_feedback[i]:
                return
            row = originals[row_index]
            outcome = label_fn(row, answer) if label_fn else row[label_column]
            outcome = outcome.item() if isinstance(outcome, np.generic) else outcome
            traffic.feedback_later(i, answer["request_id"], outcome)

        elapsed = traffic.send_all(one, requests, concurrency)
    finally:
        traffic.close()
    return {
        "model": model,
        "requests": requests,
        "ok": sum(traffic.counts.values()),
        "by_arm": dict(traffic.counts),
        "by_version": dict(traffic.by_version),
        "errors": dict(traffic.errors),
        "feedback_sent": traffic.sent_feedback.get("sent", 0),
        "feedback_failed": {k: v for k, v in traffic.sent_feedback.items() if k != "sent"},
        "seconds": round(elapsed, 3),
    }


def _send_feedback(client, request_id: str, outcome: Any, attempts: int = 3) -> str:
    """POST one outcome; transport errors (a connection lost on the way) are retried:
    feedback is idempotent, the gateway keeps the last outcome per request id."""
    import httpx

    for attempt in range(1, attempts + 1):
        try:
            answer = client.post("/v1/feedback", json={"request_id": request_id, "outcome": outcome})
        except httpx.TransportError as exc:
            if attempt == attempts:
                return f"failed_{type(exc).__name__}"
            time.sleep(0.05 * attempt)
            continue
        return "sent" if answer.status_code == 200 else f"failed_{answer.status_code}"
    return "failed"


# --- synthetic outcomes of known quality -------------------------------------------------------------


def synthetic_arm(
    arm: str,
    n: int,
    *,
    task: str,
    quality: float,
    seed: int,
    latency_ms: float = 5.0,
    errors: int = 0,
) -> ArmData:
    """``n`` labelled predictions of known quality.

    Classification: a share ``POSITIVE_RATE`` of positives, binormal scores (positives N(d, 1),
    negatives N(0, 1)) so that the true ROC AUC is ``quality`` (d = sqrt(2) * Phi^-1(quality));
    label = score > the midpoint.
    Regression: outcome ~ N(100, 20), prediction = outcome + N(0, quality): true RMSE ``quality``.
    """
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    if task == "classification":
        y = (rng.random(n) < POSITIVE_RATE).astype(float)
        d = math.sqrt(2) * norm.ppf(quality)
        latent = rng.normal(0.0, 1.0, n) + d * y
        scores = 1.0 / (1.0 + np.exp(-(latent - d / 2)))
        predictions = (scores > 0.5).astype(float)
    else:
        y = rng.normal(100.0, 20.0, n)
        scores = y + rng.normal(0.0, quality, n)
        predictions = scores
    latencies = rng.lognormal(math.log(latency_ms), 0.3, n + errors)
    return ArmData(
        arm=arm,
        versions=["synthetic"],
        requests=n + errors,
        errors=errors,
        latencies_ms=latencies,
        scores=scores,
        predictions=predictions,
        outcomes=y,
    )


def decision_rates(
    *,
    task: str,
    metric: str,
    champion_quality: float,
    canary_quality: float,
    n: int,
    seeds: int = 500,
    **policy: Any,
) -> dict[str, float]:
    """Share of each decision over ``seeds`` independent runs with ``n`` labelled outcomes per arm,
    under the canary policy ``CanarySpec(**policy)`` (``min_samples``, ``alpha``, ...)."""
    canary_policy = CanarySpec(**policy)
    counts: Counter = Counter()
    for seed in range(seeds):
        champion = synthetic_arm("champion", n, task=task, quality=champion_quality, seed=2 * seed)
        candidate = synthetic_arm("canary", n, task=task, quality=canary_quality, seed=2 * seed + 1)
        result = analyse_canary(champion, candidate, canary_policy, task=task, metric=metric)
        counts[result.decision] += 1
    return {decision: counts[decision] / seeds for decision in ("promote", "continue", "rollback", "wait")}


class TrafficLoop:
    """Live traffic in a background thread, ``batch`` requests at a time, until stopped: what the
    demo and the end-to-end tests run while a canary DAG waits for outcomes."""

    def __init__(
        self, base_url: str, model: str, rows: pd.DataFrame, *, batch: int = 200, **simulate_kwargs: Any
    ) -> None:
        self.base_url, self.model, self.rows, self.batch = base_url, model, rows, batch
        self.kwargs = simulate_kwargs
        # Requests per second at most (None: as fast as the gateway answers). The demo keeps it low
        # while nothing needs outcomes, and lifts it while a canary waits for them.
        self.rate: float | None = None
        self.stop_event = threading.Event()
        self.sent = 0
        self.by_arm: Counter = Counter()
        self.by_version: Counter = Counter()
        self.errors: Counter = Counter()
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, name=f"traffic-{model}", daemon=True)

    def _run(self) -> None:
        seed = 0
        while not self.stop_event.is_set():
            seed += 1
            started = time.monotonic()
            try:
                out = simulate_traffic(
                    self.base_url, self.model, self.rows, requests=self.batch, seed=seed, **self.kwargs
                )
            except Exception as exc:  # the gateway restarting, say: keep going, keep the reason
                self.failures.append(f"{type(exc).__name__}: {exc}")
                self.stop_event.wait(1.0)
                continue
            self.sent += out["requests"]
            self.by_arm.update(out["by_arm"])
            self.by_version.update(out["by_version"])
            self.errors.update(out["errors"])
            rate = self.rate
            if rate:
                self.stop_event.wait(max(0.0, out["requests"] / rate - (time.monotonic() - started)))

    def start(self) -> TrafficLoop:
        self.thread.start()
        return self

    def stop(self, timeout_s: float = 120.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout=timeout_s)

    def __enter__(self) -> TrafficLoop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
