"""The gateway as a service object: predict, feedback, health and metrics over the registry
watcher, the router and the prediction log. No HTTP here: the routers (``serving/routers.py``
and the protocol routers) turn requests into calls and :class:`GatewayError` into answers.

Over 500 lines on purpose: the gateway is one service object (predict, feedback, shadow scoring,
health, metrics) over one shared state (routes, model store, logs); the routers stay thin.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from model_factory.serving import predlog
from model_factory.serving.health_gauges import Gauge, HealthGauges
from model_factory.serving.ids import KeyedHash, RequestIds
from model_factory.serving.metrics import Metrics
from model_factory.serving.model_store import LoadRefusedError, ModelStore, StoreStats
from model_factory.serving.models import LoadedVersion, check_outcome
from model_factory.serving.requests import FeedbackCall, GatewayError, PredictCall
from model_factory.serving.routing import CANARY_ARM, CHAMPION_ARM, SHADOW_ARM
from model_factory.serving.settings import GatewaySettings, redact
from model_factory.serving.watcher import RegistryWatcher, Route, limit_threads

log = logging.getLogger(__name__)
GATEWAY_ACTOR = "gateway"
UNKNOWN_MODEL_LABEL = "_unknown"
RETENTION_INTERVAL_S = 3600.0
SHADOW_MAX_PENDING = 256
"""Shadow requests waiting for the shadow thread; beyond it new ones are skipped (and counted)."""


class Gateway:
    """What every protocol serves: one set of rules for routing, checking, predicting, logging."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.prediction_log = predlog.PredictionLog(settings.db_uri)
        self.shadow_log = predlog.PredictionLog(settings.db_uri, table=predlog.SHADOW_PREDICTIONS)
        self.shadow = ShadowScorer(self)
        self.health_gauges = HealthGauges(self.prediction_log.engine)
        self._keyed_hash = KeyedHash((settings.hash_salt or secrets.token_hex(16)).encode())
        self._request_ids = RequestIds()
        limit_threads(settings.threads)
        self.watcher = RegistryWatcher(settings, on_load_failure=self._load_failed)
        self.store = self.watcher.store
        self._retention = threading.Event()
        self.feedback_refused = 0
        """Feedback answered 503 because the prediction log would not take the write."""
        self.feedback_error: tuple[float, str] | None = None
        """(when, why) of the last refused feedback; cleared by the next recorded one."""

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """First registry refresh (blocking), then the background threads."""
        self.prediction_log.start()
        self.shadow_log.start()
        self.watcher.refresh()
        self.watcher.start()
        self._retention.clear()
        threading.Thread(target=self._purge_old_rows, name="retention", daemon=True).start()

    def stop(self) -> None:
        self._retention.set()
        self.watcher.stop()
        self.shadow.stop()
        self.prediction_log.close()
        self.shadow_log.close()

    def _purge_old_rows(self) -> None:
        """The retention policy: hourly, rows older than ``retention_days`` are deleted."""
        days = self.settings.retention_days
        while True:
            try:
                gone = predlog.purge(self.prediction_log.engine, days)
                if any(gone.values()):
                    log.info("retention (%s days): deleted %s", days, gone)
            except Exception as exc:  # the DB is down: try again next hour
                log.warning("retention purge failed: %s", redact(error_text(exc)))
            if self._retention.wait(RETENTION_INTERVAL_S):
                return

    def _load_failed(self, model: str, version: str, arm: str, message: str) -> None:
        # A shadow's failure has its own action: the canary analysis reads "load_failed" as the
        # canary's, and a shadow must never weigh on a rollout.
        action = "shadow_load_failed" if arm == SHADOW_ARM else "load_failed"
        predlog.write_decision(
            self.prediction_log.engine,
            {
                "model": model,
                "version": version,
                "action": action,
                "actor": GATEWAY_ACTOR,
                "reason": message,
                "details": {"arm": arm},
            },
        )

    def digest(self, text: str) -> str:
        """Salted (keyed) hash: groups equal values without storing them or a guessable hash."""
        return self._keyed_hash.hex(text)  # HMAC-SHA256 under the salt

    # --- routes --------------------------------------------------------------------------------

    def label(self, model: str) -> str:
        """Metric label for a model name: known models only, so callers cannot grow the series."""
        return model if model in self.watcher.routes else UNKNOWN_MODEL_LABEL

    def route(self, model: str) -> Route:
        """The model's route, or 404 naming the served models."""
        route = self.watcher.routes.get(model)
        if route is None:
            known = ", ".join(sorted(self.watcher.routes)) or "none"
            raise GatewayError(404, f"unknown model {model[:128]!r}; served models: {known}")
        return route

    def servable(self, model: str) -> Route:
        """The model's route when it has a champion to serve, else 404/503 saying why."""
        route = self.route(model)
        if route.champion_version is None:
            self.metrics.reject(route.model, 503)
            raise GatewayError(
                503,
                f"model {route.model!r} has nothing to serve yet: {'; '.join(route.errors)}",
                headers={"Retry-After": str(int(self.settings.refresh_s))},
            )
        return route

    def reject(self, model: str, error: GatewayError) -> None:
        """Count a refused request (a 4xx; 5xx and 503 are counted where they happen)."""
        if error.status < 500 and error.status != 503:
            self.metrics.reject(self.label(model), error.status)

    def models(self) -> dict:
        return {"models": [route.status() for _, route in sorted(self.watcher.routes.items())]}

    def model_status(self, model: str) -> dict:
        return self.route(model).status()

    # --- predict -------------------------------------------------------------------------------

    def predict(self, route: Route, call: PredictCall) -> dict:
        """Route, check, predict and log one request; the gateway's own answer shape (one row:
        ``prediction`` at the top; a batch: ``predictions``). Runs in a worker thread, or on the
        event loop for one row of a compiled model."""
        started = time.perf_counter()
        # The request id is the gateway's own, random and unique per prediction: feedback names
        # exactly one prediction of one model, and no caller can claim another caller's (a
        # caller's own id is kept beside it as client_request_id, never used as a key).
        request_id = self._request_ids.next()
        key = call.entity_id or call.client_request_id or request_id
        held = _Held(self.store)
        try:
            arm, chosen = self._lease_arm(route, key, held)
            return self._predict_with(route, call, request_id, key, arm, chosen, held, started)
        finally:
            held.release()

    def _lease_arm(self, route: Route, key: str, held: _Held) -> tuple[str, LoadedVersion]:
        """The caller's arm and its version, leased (loaded on first use) until the request ends.
        A canary that cannot be loaded sends its callers to the champion; a champion that cannot
        be loaded (or fit the memory budget) answers 503 saying why."""
        arm, version = route.pick(key)
        if arm == CANARY_ARM:
            try:
                return arm, held.lease(route.model, version, arm)
            except LoadRefusedError as refused:
                log.info("canary of %s not served: %s", route.model, refused.reason)
                arm, version = CHAMPION_ARM, route.champion_version or version
        return arm, self._lease(route, version, arm, held)

    def _lease(self, route: Route, version: str, arm: str, held: _Held) -> LoadedVersion:
        try:
            return held.lease(route.model, version, arm)
        except LoadRefusedError as refused:
            self.metrics.reject(route.model, 503)
            raise GatewayError(
                503,
                f"model {route.model!r} cannot serve now: {refused.reason}",
                headers={"Retry-After": str(max(1, int(refused.retry_after_s)))},
            ) from refused

    def loaded_champion(self, route: Route) -> LoadedVersion:
        """The route's champion, loaded if needed (for its signature), or 503 saying why."""
        assert route.champion_version is not None
        held = _Held(self.store)
        try:
            return self._lease(route, route.champion_version, CHAMPION_ARM, held)
        finally:
            held.release()

    def _predict_with(
        self,
        route: Route,
        call: PredictCall,
        request_id: str,
        key: str,
        arm: str,
        chosen: LoadedVersion,
        held: _Held,
        started: float,
    ) -> dict:
        model, instances, single = route.model, call.instances, call.single
        if single:
            found = chosen.check(instances[0])
            problems = {"features": found} if found else {}
        else:
            checked = ((i, chosen.check(instance)) for i, instance in enumerate(instances))
            problems = {f"instances[{i}]": found for i, found in checked if found}
        if problems:
            error = f"input does not match the signature of {model} v{chosen.version}"
            raise GatewayError(422, {"error": error, "problems": problems, "expected": chosen.input_names})
        ids = [request_id] if single else [f"{request_id}:{i}" for i in range(len(instances))]
        rows = _LogRows(self, ids, instances, call)
        try:
            outputs, latency = _predict(chosen, instances)
        except Exception as exc:
            if arm != CANARY_ARM:
                self._champion_failed(route, chosen, exc, rows, started)
            arm, chosen, outputs, latency = self._fall_back(route, chosen, exc, rows, started, held)
        self.prediction_log.log_values(rows.build(chosen, arm, "ok", outputs, latency, None))
        self.metrics.observe(model, chosen.version, arm, "ok", time.perf_counter() - started)
        if arm == CHAMPION_ARM and route.shadow_version is not None:
            self.shadow.submit(route, key, chosen, ids, instances, outputs, latency)
        answer: dict[str, Any] = {
            "model": model,
            "version": chosen.version,
            "arm": arm,
            "request_id": request_id,
        }
        if call.client_request_id is not None:
            answer["client_request_id"] = call.client_request_id
        if single:
            answer.update(public(outputs[0]))
            return answer
        shown = zip(ids, outputs, strict=True)
        answer["predictions"] = [{"request_id": rid, **public(output)} for rid, output in shown]
        return answer

    def _champion_failed(self, route: Route, chosen: LoadedVersion, exc: Exception, rows, started) -> None:
        error = error_text(exc)
        if _is_input_error(exc):
            raise GatewayError(
                422, {"error": f"{route.model} v{chosen.version} cannot score this input", "detail": error}
            ) from exc
        arm = CHAMPION_ARM
        self.metrics.observe(route.model, chosen.version, arm, "error", time.perf_counter() - started)
        self.prediction_log.log_values(rows.build(chosen, arm, "error", None, 0.0, error))
        raise GatewayError(500, f"{route.model} v{chosen.version} failed to predict: {error}") from exc

    def _fall_back(
        self, route: Route, canary_version: LoadedVersion, exc: Exception, rows, started, held: _Held
    ):
        """The canary failed: the champion answers; the canary's failure is logged as its error."""
        assert route.champion_version is not None
        champion = self._lease(route, route.champion_version, CHAMPION_ARM, held)
        try:
            outputs, latency = _predict(champion, rows.instances)
        except Exception as exc2:
            # Both versions refuse it: the input is at fault, not the canary (a caller must not
            # be able to push a canary into rollback), so nothing counts as a canary error.
            raise GatewayError(
                422,
                {
                    "error": f"neither {route.model} v{canary_version.version} (canary) nor "
                    f"v{champion.version} (champion) can score this input",
                    "detail": error_text(exc2),
                },
            ) from exc2
        error = error_text(exc)
        log.warning(
            "canary %s v%s failed, served the champion: %s", route.model, canary_version.version, error
        )
        elapsed = time.perf_counter() - started
        self.metrics.observe(route.model, canary_version.version, CANARY_ARM, "error", elapsed)
        self.prediction_log.log_values(rows.build(canary_version, CANARY_ARM, "error", None, 0.0, error))
        return CHAMPION_ARM, champion, outputs, latency

    # --- feedback ------------------------------------------------------------------------------

    def version_for(self, model: str, version: str) -> LoadedVersion | None:
        """The served version if resident (else the model's champion, same task, loaded if need
        be); None when neither can be had now."""
        resident = self.store.peek(model, version)
        if resident is not None:
            return resident
        route = self.watcher.routes.get(model)
        for candidate in (version, route.champion_version if route else None):
            if candidate is not None:
                try:
                    return self.store.get(model, candidate, CHAMPION_ARM)
                except LoadRefusedError:
                    continue
        return None

    def feedback(self, call: FeedbackCall) -> dict:
        """Record the outcome of one served prediction, once (blocking: run it in a thread)."""
        request_id = call.request_id
        served = self.prediction_log.served(request_id, wait_s=3 * self.prediction_log.flush_interval_s)
        if served is None:
            raise GatewayError(
                404,
                f"no prediction with request_id {request_id!r} (send the request_id the gateway "
                "answered, not your own id: that one is echoed as client_request_id)",
            )
        model, version = served
        value, problem = check_outcome(self.version_for(model, version), call.outcome)
        if problem:
            raise GatewayError(
                422, {"error": f"outcome for {model} v{version}: {problem}", "field": "outcome"}
            )
        try:
            result = self.prediction_log.record_feedback(
                request_id, value, wait_s=self.settings.feedback_wait_s
            )
        except predlog.LogUnavailableError as exc:
            self.feedback_refused += 1
            self.feedback_error = (time.time(), str(exc))
            raise GatewayError(
                503,
                {
                    "error": f"feedback not recorded: the prediction log did not accept a write within "
                    f"{self.settings.feedback_wait_s:g} s ({redact(str(exc))}); send it again later",
                    "field": "request_id",
                },
                headers={"Retry-After": "5"},
            ) from exc
        self.feedback_error = None
        if result == "conflict":
            raise GatewayError(
                409,
                {
                    "error": f"feedback for request_id {request_id!r} is already recorded; "
                    "it cannot be changed",
                    "field": "request_id",
                },
            )
        return {"request_id": request_id, "recorded": True, "unchanged": result == "unchanged"}

    # --- health and metrics --------------------------------------------------------------------

    def health(self) -> tuple[int, dict]:
        """(HTTP status, payload): ok | degraded (with reasons) | unavailable (503)."""
        watcher, prediction_log = self.watcher, self.prediction_log
        reasons = []
        if watcher.registry_error:
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(watcher.registry_error_since or 0))
            reasons.append(
                f"registry unreachable since {since} ({watcher.registry_error}); "
                "serving the versions already loaded"
            )
        for name, route in sorted(watcher.routes.items()):
            reasons += [f"{name}: {error}" for error in route.errors]
        if prediction_log.last_error:
            reasons.append(
                f"prediction log cannot write ({prediction_log.last_error}); "
                f"{prediction_log.backlog} batches waiting"
            )
        if self.feedback_error:
            when, why = self.feedback_error
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
            reasons.append(
                f"feedback refused (503) since {at}: the prediction log did not take the write ({why}); "
                f"{self.feedback_refused} refused since start"
            )
        if prediction_log.overflowed:
            reasons.append(f"prediction log queue was full: {prediction_log.overflowed} predictions unlogged")
        store = self.store
        failed = store.failures()
        for (name, version), why in sorted(failed.items()):
            known = watcher.routes.get(name)
            if known is not None and not any(f"v{version} " in error for error in known.errors):
                reasons.append(f"{name}: v{version} failed to load on first use: {why}")

        def servable_route(r: Route) -> bool:
            return r.champion_version is not None and (r.model, r.champion_version) not in failed

        serving = {
            name: {
                "servable": servable_route(r),
                "champion": r.champion_version,
                "canary": r.canary_version,
                "share": r.share,
                "shadow": r.shadow_version,
                "shadow_share": r.shadow_share,
                # cold-load latency of each resident version (registry to ready); absent: not loaded
                "load_seconds": {
                    arm: round(v.load_seconds, 3)
                    for arm, v in (
                        (CHAMPION_ARM, r.resident(r.champion_version)),
                        (CANARY_ARM, r.resident(r.canary_version)),
                    )
                    if v is not None
                },
                **({} if r.champion_version else {"why": "; ".join(r.errors)}),
            }
            for name, r in sorted(watcher.routes.items())
        }
        servable = any(servable_route(r) for r in watcher.routes.values())
        # Unavailable (503): champions exist in the registry but none could be loaded. Models
        # still waiting for their first champion make the gateway degraded, not down.
        expected = any(r.state is not None and r.state.champion for r in watcher.routes.values())
        status = "degraded" if reasons else "ok"
        if not servable and (expected or watcher.registry_error):
            status = "unavailable"
            reasons.append("no model is loaded")
        elif not servable:
            status = "degraded"
            reasons.append("no registered model has a champion yet: nothing to serve")
        payload = {
            "status": status,
            "reasons": [redact(reason) for reason in reasons],
            "models": serving,
            # loaded on first use within the budget: what is resident, evicted, and what a cold
            # load (registry to ready) costs a request
            "memory": store.stats().describe(),
            "last_registry_refresh": watcher.last_success,
        }
        return (503 if status == "unavailable" else 200), payload

    def metrics_text(self) -> str:
        """Prometheus text: request counters and latencies plus gauges of the gateway's state."""
        watcher, prediction_log = self.watcher, self.prediction_log
        gauges: list[Gauge] = [
            (
                "factory_gateway_registry_up",
                "1 when the last registry refresh succeeded.",
                {},
                0.0 if watcher.registry_error else 1.0,
            ),
            (
                "factory_gateway_prediction_log_backlog",
                "Prediction-log batches waiting to be written.",
                {},
                float(prediction_log.backlog),
            ),
            (
                "factory_gateway_prediction_log_write_errors",
                "Failed prediction-log writes since start.",
                {},
                float(prediction_log.write_errors),
            ),
            (
                "factory_gateway_feedback_refused",
                "Feedback answered 503 because the prediction log did not take the write, since start.",
                {},
                float(self.feedback_refused),
            ),
            (
                "factory_gateway_shadow_scored",
                "Shadow requests scored beside the champion, since start.",
                {},
                float(self.shadow.scored),
            ),
            (
                "factory_gateway_shadow_errors",
                "Failed shadow requests (callers never see them), since start.",
                {},
                float(self.shadow.errors),
            ),
            (
                "factory_gateway_shadow_skipped",
                "Shadow requests skipped because the shadow thread was behind, since start.",
                {},
                float(self.shadow.skipped),
            ),
            (
                "factory_gateway_prediction_log_overflowed",
                "Predictions not logged because the write queue was full, since start.",
                {},
                float(prediction_log.overflowed),
            ),
        ]
        gauges += memory_gauges(self.store.stats())
        gauges += route_gauges(watcher.routes)
        return self.metrics.render(gauges + self.health_gauges.gauges())


def memory_gauges(stats: StoreStats) -> list[Gauge]:
    """The model store's gauges: its budget, what is loaded, and its loads, evictions and refusals."""
    return [
        (
            "factory_gateway_memory_budget_bytes",
            "Memory budget for loaded versions (per process).",
            {},
            float(stats.budget_bytes),
        ),
        (
            "factory_gateway_resident_bytes",
            "Estimated memory of the loaded versions.",
            {},
            float(stats.resident_bytes),
        ),
        (
            "factory_gateway_loaded_versions",
            "Versions loaded in this process now.",
            {},
            float(stats.loaded_versions),
        ),
        (
            "factory_gateway_model_loads",
            "Versions loaded on demand (cold loads), since start.",
            {},
            float(stats.loads),
        ),
        (
            "factory_gateway_model_evictions",
            "Versions evicted to stay in budget, since start.",
            {},
            float(stats.evictions),
        ),
        (
            "factory_gateway_model_refused",
            "Loads refused (failed, or over budget), since start.",
            {},
            float(stats.refused),
        ),
    ]


def route_gauges(routes: dict[str, Route]) -> list[Gauge]:
    """Per model: the versions loaded for each arm, the canary and shadow shares, the load errors."""
    gauges: list[Gauge] = []
    for name, route in sorted(routes.items()):
        for arm, version in ((CHAMPION_ARM, route.champion_version), (CANARY_ARM, route.canary_version)):
            loaded = route.resident(version)
            if loaded:
                gauges.append(
                    (
                        "factory_gateway_model_loaded",
                        "A loaded version serving an arm.",
                        {"model": name, "arm": arm, "version": loaded.version},
                        1.0,
                    )
                )
        gauges.append(
            (
                "factory_gateway_canary_share",
                "Share of callers routed to the canary.",
                {"model": name},
                route.share,
            )
        )
        gauges.append(
            (
                "factory_gateway_shadow_share",
                "Share of champion requests the shadow scores.",
                {"model": name},
                route.shadow_share,
            )
        )
        gauges.append(
            (
                "factory_gateway_load_errors",
                "Versions the gateway could not load.",
                {"model": name},
                float(len(route.errors)),
            )
        )
    return gauges


@dataclass(frozen=True)
class ChampionAnswer:
    """What the champion answered a request with: what its shadow is compared against."""

    champion: LoadedVersion
    ids: list[str]
    instances: list[dict]
    outputs: list[dict]
    latency: float


class ShadowScorer:
    """Scores a shadow version beside the champion, on one background thread, after the caller's
    answer is built: the caller never waits for it, and nothing it does (an error, a signature
    mismatch, a slow model) reaches the answer. Each instance becomes one ``shadow_predictions``
    row holding both outputs and both latencies."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.pending = 0
        self.scored = 0
        self.errors = 0
        self.skipped = 0

    def submit(
        self,
        route,
        key: str,
        champion: LoadedVersion,
        ids: list[str],
        instances: list[dict],
        outputs: list[dict],
        latency: float,
    ) -> None:
        """Queue the shadow's scoring of a request the champion answered; never raises."""
        try:
            shadow = route.shadow_for(key)
            if shadow is None:
                return
            with self._lock:
                if self.pending >= SHADOW_MAX_PENDING:
                    self.skipped += 1
                    return
                self.pending += 1
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
                pool = self._pool
            answered = ChampionAnswer(champion, ids, instances, outputs, latency)
            pool.submit(self._score, route.model, shadow, answered)
        except Exception:  # a shadow must never cost the caller its answer
            with self._lock:
                self.errors += 1
            log.exception("shadow scoring of %s not queued", route.model)

    def _score(self, model: str, version: str, answered: ChampionAnswer) -> None:
        """Load the shadow through the model store (first use: here, off the caller's path), hold
        it while scoring."""
        try:
            with self.gateway.store.lease(model, version, SHADOW_ARM) as shadow:
                self._score_with(shadow, answered)
        except LoadRefusedError as refused:
            with self._lock:
                self.errors += 1
                self.pending -= 1
            log.info("shadow %s v%s not scored: %s", model, version, refused.reason)

    def _score_with(self, shadow: LoadedVersion, answered: ChampionAnswer) -> None:
        try:
            error, shadow_outputs, latency = None, None, None
            problems = [found for instance in answered.instances if (found := shadow.check(instance))]
            if problems:
                error = f"input does not match the signature of the shadow v{shadow.version}: {problems[0]}"
            else:
                try:
                    shadow_outputs, latency = _predict(shadow, answered.instances)
                except Exception as exc:
                    error = error_text(exc)
            now = predlog.utcnow()
            rows = [
                {
                    "request_id": rid,
                    "model": shadow.model,
                    "version": shadow.version,
                    "champion_version": answered.champion.version,
                    "status": "error" if error else "ok",
                    "error": error,
                    "latency_ms": latency,
                    "prediction": None if shadow_outputs is None else predlog.dumps(shadow_outputs[i]),
                    "score": None if shadow_outputs is None else shadow_outputs[i].get("score"),
                    "champion_latency_ms": answered.latency,
                    "champion_prediction": predlog.dumps(answered.outputs[i]),
                    "champion_score": answered.outputs[i].get("score"),
                    "created_at": now,
                }
                for i, rid in enumerate(answered.ids)
            ]
            self.gateway.shadow_log.log(rows)
            with self._lock:
                if error:
                    self.errors += 1
                else:
                    self.scored += 1
            if error:
                log.info(
                    "shadow %s v%s failed (the caller got the champion's answer): %s",
                    shadow.model,
                    shadow.version,
                    error,
                )
        except Exception:
            with self._lock:
                self.errors += 1
            log.exception("shadow scoring of %s v%s failed", shadow.model, shadow.version)
        finally:
            with self._lock:
                self.pending -= 1

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued shadow request is scored and logged (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.pending == 0 and self.gateway.shadow_log.flush(max(deadline - time.monotonic(), 0.1))

    def stop(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class _Held:
    """The versions one request leases (its arm's, then the champion's if a canary fails),
    released when it ends: a list, not an ExitStack of context managers (one per request)."""

    __slots__ = ("leased", "store")

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self.leased: list[tuple[str, str, LoadedVersion]] = []

    def lease(self, model: str, version: str, arm: str) -> LoadedVersion:
        loaded = self.store.acquire(model, version, arm)
        self.leased.append((model, version, loaded))
        return loaded

    def release(self) -> None:
        for model, version, loaded in self.leased:
            self.store.release(model, version, loaded)
        self.leased.clear()


class _LogRows:
    """The prediction-log rows of one request (one per instance), built once the outcome is known:
    tuples of the values of :data:`COLUMNS`, the ``predictions`` table's order
    (``predlog.SERVED_COLUMNS``)."""

    COLUMNS = (
        "request_id",
        "entity_id",
        "model",
        "version",
        "arm",
        "status",
        "error",
        "latency_ms",
        "prediction",
        "score",
        "inputs",
        "inputs_hash",
        "created_at",
        "client_request_id",
    )

    def __init__(self, gateway: Gateway, ids: list[str], instances: list[Any], call: PredictCall) -> None:
        self.gateway, self.ids, self.instances, self.call = gateway, ids, instances, call
        self._inputs: list[str] | None = None  # the features as JSON: made at the first build

    def build(
        self, chosen: LoadedVersion, arm: str, status: str, outputs, latency: float, error
    ) -> list[tuple]:
        gateway, call = self.gateway, self.call
        settings, digest = gateway.settings, gateway.digest
        entity_id, client_id = call.entity_id, call.client_request_id
        if self._inputs is None:
            self._inputs = [predlog.dumps(instance) for instance in self.instances]
        if entity_id is not None and not settings.log_entity_ids:
            entity_id = digest(entity_id)
        log_inputs, now = settings.log_inputs, predlog.utcnow()
        model, version, batch = chosen.model, chosen.version, not call.single
        rows = []
        for i, (rid, features) in enumerate(zip(self.ids, self._inputs, strict=True)):
            output = outputs[i] if outputs else None
            rows.append(
                (
                    rid,
                    entity_id,
                    model,
                    version,
                    arm,
                    status,
                    error,
                    latency,
                    predlog.dumps(output) if output else None,
                    output["score"] if output else None,
                    features if log_inputs else None,
                    digest(features),
                    now,
                    # a batch: the caller's id per row, as the gateway's ("<id>:<i>")
                    f"{client_id}:{i}" if batch and client_id is not None else client_id,
                )
            )
        return rows


def error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


def _predict(chosen: LoadedVersion, instances: list[dict]) -> tuple[list[dict], float]:
    started = time.perf_counter()
    outputs = chosen.predict(instances)
    return outputs, (time.perf_counter() - started) * 1000.0


def _is_input_error(exc: BaseException) -> bool:
    """scikit-learn refusing the values (overflow to infinity in a scaler, say): the input's fault."""
    text = str(exc)
    return isinstance(exc, ValueError) and ("Input X contains" in text or "too large for dtype" in text)


def public(output: dict) -> dict:
    """What the caller sees: the prediction (label or value) and class probabilities if any."""
    if "label" in output:
        return {"prediction": output["label"], "probabilities": output["probabilities"]}
    return {"prediction": output["value"]}
