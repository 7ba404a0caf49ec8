"""The serving gateway: FastAPI app over the registry watcher, the router and the prediction log.

POST /v1/models/{model}/predict   {"request_id"?, "entity_id"?, "features": {..} | "instances": [..]}
POST /v1/feedback                 {"request_id", "outcome"}
GET  /v1/models, /v1/models/{model}   what serves: versions, arms, share, load errors
GET  /health                      ok | degraded (with reasons) | unavailable (503)
GET  /metrics                     Prometheus text format
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from model_factory.serving import predlog
from model_factory.serving.metrics import CONTENT_TYPE, Metrics
from model_factory.serving.models import LoadedVersion, check_outcome
from model_factory.serving.routing import CANARY_ARM, CHAMPION_ARM
from model_factory.serving.settings import ENV, GatewaySettings, redact
from model_factory.serving.watcher import RegistryWatcher, Route, limit_threads
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
GATEWAY_ACTOR = "gateway"
UNKNOWN_MODEL_LABEL = "_unknown"
RETENTION_INTERVAL_S = 3600.0

Scalar = str | int | float | bool | None


class PredictRequest(BaseModel):
    """One prediction (``features``) or a batch (``instances``); the feature names and types are
    the model's signature (GET /v1/models/{model}). ``null`` means missing."""

    model_config = ConfigDict(extra="forbid")
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9._:\-]{1,128}$")
    entity_id: str | None = Field(None, max_length=256, description="sticky routing key")
    features: dict[str, Scalar] | None = None
    instances: list[dict[str, Scalar]] | None = Field(None, min_length=1)


class FeedbackRequest(BaseModel):
    """The true outcome of a served prediction: a class of the model (classification) or a
    finite number (regression). Recorded once per request id."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(pattern=r"^[A-Za-z0-9._:\-]{1,128}$")
    outcome: str | int | float | bool


def _request_body(model: type[BaseModel]) -> dict:
    """OpenAPI description of a JSON body the handler parses itself (clear 4xx, size limit)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text}
    for code, text in (
        (400, "malformed JSON"),
        (401, "missing or wrong X-API-Key"),
        (404, "unknown model or request id"),
        (409, "feedback already recorded"),
        (413, "body or batch too large"),
        (422, "input does not fit the model's signature or task"),
        (503, "the model has nothing to serve yet (no champion, held for review, refused)"),
    )
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _json_body(request: Request, limit: int) -> Any:
    """The request body parsed as JSON, refused early when larger than ``limit`` bytes."""
    too_large = f"request body is larger than the {limit} byte limit ({ENV['max_body_bytes']})"
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise HTTPException(413, too_large)
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, too_large)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise HTTPException(400, "empty request body: send a JSON object")
    try:
        parsed = json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise HTTPException(
            400, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"malformed JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise HTTPException(400, "malformed JSON: nested too deeply") from None
    try:  # a lone surrogate ("\ud800") is valid JSON but no text: it cannot be logged or hashed
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPException(
            400, "malformed JSON: a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)"
        ) from None
    except RecursionError:
        raise HTTPException(400, "malformed JSON: nested too deeply") from None
    return parsed


def _identifier(body: dict, name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise HTTPException(422, {"error": f"{name} is required", "field": name})
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise HTTPException(422, {"error": f"{name} must be a string", "field": name})
    value = str(value)
    if name == "request_id" and not REQUEST_ID.match(value):
        raise HTTPException(
            422, {"error": "request_id must be 1-128 characters of letters, digits, . _ : -", "field": name}
        )
    if len(value) > 256:
        raise HTTPException(422, {"error": f"{name} is longer than 256 characters", "field": name})
    return value


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway app. Background work (registry refresh, log writer, retention) runs inside its
    lifespan."""
    settings = settings or GatewaySettings.from_env()
    metrics = Metrics()
    prediction_log = predlog.PredictionLog(settings.db_uri)
    salt = (settings.hash_salt or secrets.token_hex(16)).encode()
    limit_threads(settings.threads)

    def digest(text: str) -> str:
        """Salted (keyed) hash: groups equal values without storing them or a guessable hash."""
        return hmac.new(salt, text.encode(), hashlib.sha256).hexdigest()

    def load_failed(model: str, version: str, arm: str, message: str) -> None:
        predlog.write_decision(
            prediction_log.engine,
            {
                "model": model,
                "version": version,
                "action": "load_failed",
                "actor": GATEWAY_ACTOR,
                "reason": message,
                "details": {"arm": arm},
            },
        )

    watcher = RegistryWatcher(settings, on_load_failure=load_failed)
    retention = threading.Event()

    def purge_old_rows() -> None:
        """The retention policy: hourly, rows older than ``retention_days`` are deleted."""
        while True:
            try:
                gone = predlog.purge(prediction_log.engine, settings.retention_days)
                if any(gone.values()):
                    log.info("retention (%s days): deleted %s", settings.retention_days, gone)
            except Exception as exc:  # the DB is down: try again next hour
                log.warning("retention purge failed: %s", redact(_error_text(exc)))
            if retention.wait(RETENTION_INTERVAL_S):
                return

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        prediction_log.start()
        await run_in_threadpool(watcher.refresh)
        watcher.start()
        retention.clear()
        purger = threading.Thread(target=purge_old_rows, name="retention", daemon=True)
        purger.start()
        try:
            yield
        finally:
            retention.set()
            watcher.stop()
            prediction_log.close()

    app = FastAPI(
        title="model-factory gateway",
        lifespan=lifespan,
        description="Serves each model's champion (and canary) from the MLflow registry.",
    )
    app.state.settings, app.state.watcher = settings, watcher
    app.state.prediction_log, app.state.metrics = prediction_log, metrics

    async def require_key(request: Request) -> None:  # async: no thread-pool hop per request
        if settings.api_key is None:
            return
        given = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise HTTPException(
                401, "missing or wrong X-API-Key header", headers={"WWW-Authenticate": "API-Key"}
            )

    def label(model: str) -> str:
        """Metric label for a model name: known models only, so callers cannot grow the series."""
        return model if model in watcher.routes else UNKNOWN_MODEL_LABEL

    def route_for(model: str) -> Route:
        route = watcher.routes.get(model)
        if route is None:
            known = ", ".join(sorted(watcher.routes)) or "none"
            metrics.reject(label(model), 404)
            raise HTTPException(404, f"unknown model {model[:128]!r}; served models: {known}")
        return route

    def servable(route: Route) -> Route:
        if route.champion is None:
            metrics.reject(route.model, 503)
            raise HTTPException(
                503,
                f"model {route.model!r} has nothing to serve yet: {'; '.join(route.errors)}",
                headers={"Retry-After": str(int(settings.refresh_s))},
            )
        return route

    def serve(route: Route, body: dict) -> dict:
        """Validate, route, predict and log one request (in a worker thread, or on the event loop
        for one row of a compiled model)."""
        started = time.perf_counter()
        model = route.model
        request_id = _identifier(body, "request_id") or uuid.uuid4().hex
        entity_id = _identifier(body, "entity_id")
        extra = sorted(set(body) - {"request_id", "entity_id", "features", "instances"})
        if extra:
            allowed = ["request_id", "entity_id", "features", "instances"]
            raise HTTPException(
                422, {"error": "unknown top-level fields", "extra": extra[:20], "allowed": allowed}
            )
        if ("features" in body) == ("instances" in body):
            raise HTTPException(
                422,
                {"error": "send exactly one of 'features' (an object) or 'instances' (a list of objects)"},
            )
        single = "features" in body
        instances = [body["features"]] if single else body["instances"]
        if not isinstance(instances, list) or not instances:
            raise HTTPException(422, {"error": "'instances' must be a non-empty list of objects"})
        if len(instances) > settings.max_instances:
            raise HTTPException(
                413,
                f"{len(instances)} instances; the limit is {settings.max_instances} ({ENV['max_instances']})",
            )
        arm, chosen = route.pick(entity_id or request_id)
        problems = {}
        for i, instance in enumerate(instances):
            found = chosen.check(instance)
            if found:
                problems["features" if single else f"instances[{i}]"] = found
        if problems:
            error = f"input does not match the signature of {model} v{chosen.version}"
            raise HTTPException(422, {"error": error, "problems": problems, "expected": chosen.input_names})
        ids = [request_id] if single else [f"{request_id}:{i}" for i in range(len(instances))]
        inputs = [predlog.dumps(instance) for instance in instances]
        logged_entity = entity_id if settings.log_entity_ids or entity_id is None else digest(entity_id)

        def rows(version: LoadedVersion, arm: str, status: str, outputs, latency: float, error):
            return _rows(ids, logged_entity, version, arm, status, outputs, inputs, latency, error)

        try:
            outputs, latency = _predict(chosen, instances)
        except Exception as exc:
            error = _error_text(exc)
            if arm != CANARY_ARM:
                if _is_input_error(exc):
                    raise HTTPException(
                        422, {"error": f"{model} v{chosen.version} cannot score this input", "detail": error}
                    ) from exc
                metrics.observe(model, chosen.version, arm, "error", time.perf_counter() - started)
                prediction_log.log(rows(chosen, arm, "error", None, 0.0, error))
                raise HTTPException(500, f"{model} v{chosen.version} failed to predict: {error}") from exc
            canary_version, champion = chosen, route.champion
            try:
                outputs, latency = _predict(champion, instances)
            except Exception as exc2:
                # Both versions refuse it: the input is at fault, not the canary (a caller must not
                # be able to push a canary into rollback), so nothing counts as a canary error.
                raise HTTPException(
                    422,
                    {"error": f"neither {model} v{canary_version.version} (canary) nor "
                              f"v{champion.version} (champion) can score this input",
                     "detail": _error_text(exc2)},
                ) from exc2  # fmt: skip
            log.warning("canary %s v%s failed, served the champion: %s", model, canary_version.version, error)
            metrics.observe(model, canary_version.version, CANARY_ARM, "error", time.perf_counter() - started)
            prediction_log.log(rows(canary_version, CANARY_ARM, "error", None, 0.0, error))
            arm, chosen = CHAMPION_ARM, champion
        prediction_log.log(rows(chosen, arm, "ok", outputs, latency, None))
        metrics.observe(model, chosen.version, arm, "ok", time.perf_counter() - started)
        head = {"model": model, "version": chosen.version, "arm": arm, "request_id": request_id}
        shown = [_public(o) for o in outputs]
        if single:
            return {**head, **shown[0]}
        return {**head, "predictions": [{"request_id": rid, **o} for rid, o in zip(ids, shown, strict=True)]}

    def _rows(ids, entity_id, chosen: LoadedVersion, arm, status, outputs, inputs, latency, error):
        now = predlog.utcnow()
        rows = []
        for i, (rid, features) in enumerate(zip(ids, inputs, strict=True)):
            output = outputs[i] if outputs else None
            rows.append(
                {
                    "request_id": rid,
                    "entity_id": entity_id,
                    "model": chosen.model,
                    "version": chosen.version,
                    "arm": arm,
                    "status": status,
                    "error": error,
                    "latency_ms": latency,
                    "prediction": predlog.dumps(output) if output else None,
                    "score": output["score"] if output else None,
                    "inputs": features if settings.log_inputs else None,
                    "inputs_hash": digest(features),
                    "created_at": now,
                }
            )
        return rows

    @app.post(
        "/v1/models/{model}/predict",
        dependencies=[Depends(require_key)],
        openapi_extra=_request_body(PredictRequest),
        responses=ERROR_RESPONSES,
    )
    async def predict(model: str, request: Request):
        route = route_for(model)
        try:
            servable(route)
            body = await _json_body(request, settings.max_body_bytes)
            if not isinstance(body, dict):
                raise HTTPException(
                    422, {"error": f"the body must be a JSON object, got {type(body).__name__}"}
                )
            # One row on the compiled path takes microseconds: a hop to the thread pool (and back)
            # would cost more than the prediction. Pipelines and batches go to threads. The answer
            # is plain JSON types already: JSONResponse skips FastAPI's generic encoder walk.
            if route.compiled and "features" in body:
                return JSONResponse(serve(route, body))
            return JSONResponse(await run_in_threadpool(serve, route, body))
        except HTTPException as exc:
            if exc.status_code < 500 and exc.status_code != 503:
                metrics.reject(model, exc.status_code)
            raise

    def version_for(model: str, version: str) -> LoadedVersion | None:
        """The served version (or, when it no longer serves, the model's champion: same task)."""
        route = watcher.routes.get(model)
        for loaded in (route.champion, route.canary) if route else ():
            if loaded is not None and loaded.version == version:
                return loaded
        return watcher.loaded(model, version) or (route.champion if route else None)

    @app.post(
        "/v1/feedback",
        dependencies=[Depends(require_key)],
        openapi_extra=_request_body(FeedbackRequest),
        responses=ERROR_RESPONSES,
    )
    async def feedback(request: Request):
        body = await _json_body(request, settings.max_body_bytes)
        if not isinstance(body, dict):
            raise HTTPException(422, {"error": f"the body must be a JSON object, got {type(body).__name__}"})
        request_id = _identifier(body, "request_id", required=True)
        if "outcome" not in body:
            raise HTTPException(422, {"error": "outcome is required", "field": "outcome"})
        outcome = body["outcome"]
        if not isinstance(outcome, str | int | float | bool):
            raise HTTPException(
                422, {"error": "outcome must be a number, string or boolean", "field": "outcome"}
            )
        extra = sorted(set(body) - {"request_id", "outcome"})
        if extra:
            raise HTTPException(422, {"error": "unknown fields", "extra": extra[:20]})

        def record() -> dict:
            served = prediction_log.served(request_id, wait_s=3 * prediction_log.flush_interval_s)
            if served is None:
                raise HTTPException(404, f"no prediction with request_id {request_id!r}")
            model, version = served
            loaded = version_for(model, version)
            value, problem = check_outcome(loaded, outcome)
            if problem:
                raise HTTPException(
                    422, {"error": f"outcome for {model} v{version}: {problem}", "field": "outcome"}
                )
            result = prediction_log.record_feedback(request_id, value)
            if result == "conflict":
                raise HTTPException(
                    409,
                    {"error": f"feedback for request_id {request_id!r} is already recorded; "
                              "it cannot be changed", "field": "request_id"},
                )  # fmt: skip
            return {"request_id": request_id, "recorded": True, "unchanged": result == "unchanged"}

        return await run_in_threadpool(record)

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    def list_models():
        return {"models": [route.status() for _, route in sorted(watcher.routes.items())]}

    @app.get("/v1/models/{model}", dependencies=[Depends(require_key)])
    def model_status(model: str):
        return route_for(model).status()

    @app.get("/health")
    def health():
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
        if prediction_log.overflowed:
            reasons.append(f"prediction log queue was full: {prediction_log.overflowed} predictions unlogged")
        serving = {
            name: {
                "servable": r.champion is not None,
                "champion": r.champion.version if r.champion else None,
                "canary": r.canary.version if r.canary else None,
                "share": r.share,
                **({} if r.champion else {"why": "; ".join(r.errors)}),
            }
            for name, r in sorted(watcher.routes.items())
        }
        servable = any(r.champion for r in watcher.routes.values())
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
            "last_registry_refresh": watcher.last_success,
        }
        return JSONResponse(payload, status_code=503 if status == "unavailable" else 200)

    @app.get("/metrics")
    def prometheus():
        gauges: list[tuple[str, str, dict[str, str], float]] = [
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
                "factory_gateway_prediction_log_overflowed",
                "Predictions not logged because the write queue was full, since start.",
                {},
                float(prediction_log.overflowed),
            ),
        ]
        for name, route in sorted(watcher.routes.items()):
            for arm, loaded in ((CHAMPION_ARM, route.champion), (CANARY_ARM, route.canary)):
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
                    "factory_gateway_load_errors",
                    "Versions the gateway could not load.",
                    {"model": name},
                    float(len(route.errors)),
                )
            )
        return PlainTextResponse(metrics.render(gauges), media_type=CONTENT_TYPE)

    return app


def _error_text(exc: BaseException) -> str:
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


def _public(output: dict) -> dict:
    """What the caller sees: the prediction (label or value) and class probabilities if any."""
    if "label" in output:
        return {"prediction": output["label"], "probabilities": output["probabilities"]}
    return {"prediction": output["value"]}
