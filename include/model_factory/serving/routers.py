"""The gateway's own HTTP protocol: thin FastAPI routes over :class:`Gateway`.

POST /v1/models/{model}/predict   {"request_id"?, "entity_id"?, "features": {..} | "instances": [..]}
POST /v1/feedback                 {"request_id", "outcome"}
GET  /v1/models, /v1/models/{model}   what serves: versions, arms, share, load errors
GET  /health                      ok | degraded (with reasons) | unavailable (503)
GET  /health/live, /health/ready  probes: status only (public when an API key is set)
GET  /metrics                     Prometheus text format
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from model_factory.serving.gateway import Gateway
from model_factory.serving.logwrite import one_shot
from model_factory.serving.metrics import CONTENT_TYPE
from model_factory.serving.requests import (
    FeedbackRequest,
    GatewayError,
    PredictCall,
    PredictRequest,
    json_object,
    json_object_of,
    parse_feedback,
    parse_predict,
    read_body,
)
from model_factory.serving.watcher import Route
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

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


def request_body(model: type[BaseModel]) -> dict:
    """OpenAPI description of a JSON body the handler parses itself (clear 4xx, size limit)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


class RequestRoute(APIRoute):
    """A route whose endpoint takes ``request`` (and the path parameters, as strings) and returns
    its Response. FastAPI documents it from the signature and ``openapi_extra`` as any route, but
    it is called directly: no dependency solver, exit stacks or per-route exception wrapper (they
    cost more per request than predicting one row). An HTTPException it raises reaches the app's
    ExceptionMiddleware, rendered as every route's is."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await endpoint(request=Request(scope, receive), **scope["path_params"])
            await response(scope, receive, send)

        self.app = app


_JSON = one_shot(json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")))
"""JSONResponse's encoding (its ``json.dumps`` arguments), with one encoder made once."""


class _JSONAnswer(Response):
    """A 200 of JSON bytes with the headers Response would give it (content-length, then
    content-type), set directly: Response's rendering and header building are generic."""

    media_type = "application/json"

    def __init__(self, body: bytes) -> None:
        self.status_code, self.background, self.body = 200, None, body
        self.raw_headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]


def json_response(content: Any) -> Response:
    """JSONResponse's answer from one encoder made once (JSONResponse builds one per response)."""
    return _JSONAnswer(_JSON(content).encode("utf-8"))


def http_error(error: GatewayError) -> HTTPException:
    return HTTPException(error.status, error.detail, headers=error.headers)


def error_response(error: GatewayError) -> Response:
    """A refusal as the app's HTTPException handler renders it: ``{"detail": ...}``."""
    return JSONResponse({"detail": error.detail}, status_code=error.status, headers=error.headers)


class Predictions:
    """The rules of ``POST /v1/models/{model}/predict`` after the body is read, once for both ways
    a request reaches them: the ASGI route below, and the HTTP protocol's predict lane
    (``serving/lane.py``), which reads the body itself."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.max_instances = gateway.settings.max_instances

    def answer_now(self, model: str, route: Route, body: bytes) -> Response | PredictCall:
        """The answer when it needs no worker thread (one row of a compiled model, or a
        refusal), else the checked call to predict in one. One row on the compiled path takes
        microseconds: a hop to the thread pool (and back) would cost more than the prediction.
        The answer is plain JSON types already: no generic encoder walk."""
        try:
            call = parse_predict(json_object_of(body), self.max_instances)
            if route.compiled and call.single:
                return json_response(self.gateway.predict(route, call))
        except GatewayError as error:
            return self.refused(model, error)
        return call

    def refused(self, model: str, error: GatewayError) -> Response:
        self.gateway.reject(model, error)
        return error_response(error)


def native_router(gateway: Gateway, predictions: Predictions | None = None) -> APIRouter:
    """The /v1 routes, /health and /metrics."""
    router = APIRouter()
    settings = gateway.settings
    predictions = predictions or Predictions(gateway)

    async def predict(model: str, request: Request) -> Response:
        try:
            route = gateway.servable(model)
            body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        except GatewayError as error:
            return predictions.refused(model, error)
        answer = predictions.answer_now(model, route, body)
        if not isinstance(answer, PredictCall):
            return answer
        try:  # pipelines and batches: in a worker thread
            return json_response(await run_in_threadpool(gateway.predict, route, answer))
        except GatewayError as error:
            return predictions.refused(model, error)

    router.add_api_route(
        "/v1/models/{model}/predict",
        predict,
        methods=["POST"],
        route_class_override=RequestRoute,
        openapi_extra=request_body(PredictRequest),
        responses=ERROR_RESPONSES,
    )

    @router.post("/v1/feedback", openapi_extra=request_body(FeedbackRequest), responses=ERROR_RESPONSES)
    async def feedback(request: Request):
        try:
            call = parse_feedback(
                await json_object(request, settings.max_body_bytes, settings.body_timeout_s)
            )
            return await run_in_threadpool(gateway.feedback, call)
        except GatewayError as error:
            raise http_error(error) from None

    @router.get("/v1/models")
    def list_models():
        return gateway.models()

    @router.get("/v1/models/{model}")
    def model_status(model: str):
        try:
            return gateway.model_status(model)
        except GatewayError as error:
            gateway.reject(model, error)
            raise http_error(error) from None

    @router.get("/health")
    def health():
        status, payload = gateway.health()
        return JSONResponse(payload, status_code=status)

    @router.get("/health/live")
    def live():
        """Liveness: the process answers. Public when an API key is set."""
        return {"status": "alive"}

    @router.get("/health/ready")
    def ready():
        """Readiness: ok/degraded serve (200), unavailable does not (503); no details (public)."""
        status, payload = gateway.health()
        return JSONResponse({"status": payload["status"]}, status_code=status)

    @router.get("/metrics")
    def prometheus():
        return PlainTextResponse(gateway.metrics_text(), media_type=CONTENT_TYPE)

    return router
