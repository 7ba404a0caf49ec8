"""MLflow's scoring protocol over the gateway: what ``mlflow models serve`` answers, so a caller
written for it (``mlflow.pyfunc.scoring_server.client.ScoringServerClient``, SageMaker-style
``/invocations`` callers) switches without new code.

POST /invocations, /models/{model}/invocations   JSON with one of ``dataframe_split``
     (``{"columns", "data", "index"?}``), ``dataframe_records``, ``instances`` or ``inputs``
     (a list of objects or an object of columns); answers ``{"predictions": [...]}`` plus the
     gateway's ``request_ids`` (one per row, for feedback). ``/invocations`` serves the one model
     a gateway serves (``FACTORY_GATEWAY_MODELS``); with several, use the per-model path.
GET  /ping, /models/{model}/ping   200 when the model serves; /version   the MLflow version.

The same :class:`Gateway` routes (canary included), checks, predicts and logs. Errors are
MLflow's: ``{"error_code": "BAD_REQUEST", "message": ...}`` with 400 (415 for a content type
other than JSON), never a 500 for the caller's input.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from model_factory.serving.gateway import Gateway
from model_factory.serving.requests import GatewayError, checked_call, json_object
from starlette.concurrency import run_in_threadpool

INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    404: "RESOURCE_DOES_NOT_EXIST",
    408: "BAD_REQUEST",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    422: "BAD_REQUEST",
    503: "TEMPORARILY_UNAVAILABLE",
}


def mlflow_error(error: GatewayError) -> JSONResponse:
    """MLflow's error body; the gateway's 422 (input does not fit) is MLflow's 400."""
    status = 400 if error.status == 422 else error.status
    body = {"error_code": ERROR_CODES.get(status, "INTERNAL_ERROR"), "message": error.message}
    return JSONResponse(body, status_code=status, headers=error.headers)


def records(body: dict) -> list[Any]:
    """The rows of an MLflow scoring request as feature objects, or a 400 naming the format."""
    given = [key for key in INPUT_KEYS if key in body]
    extra = sorted(set(body) - set(INPUT_KEYS) - {"params"})
    if len(given) != 1 or extra:
        raise GatewayError(
            400,
            f"send exactly one of {', '.join(INPUT_KEYS)}"
            + (f"; unknown keys {extra[:20]}" if extra else f"; got {given or 'none'}"),
        )
    if body.get("params"):
        raise GatewayError(400, "params are not supported: the factory's models take none")
    key = given[0]
    value = body[key]
    if key == "dataframe_split":
        return _split(value)
    if isinstance(value, dict):  # columnar: {"age": [..], "plan": [..]}
        return _columns(key, value)
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        raise GatewayError(
            400,
            f"{key} must be a list of objects naming the features ({{'age': 41, ...}}) or an object of "
            "columns; a list of bare values does not say which feature is which",
        )
    return value


def _split(value: Any) -> list[dict]:
    if not isinstance(value, dict) or not isinstance(value.get("columns"), list) or "data" not in value:
        raise GatewayError(400, "dataframe_split must be an object with 'columns' (a list) and 'data'")
    columns, data = value["columns"], value["data"]
    if not all(isinstance(c, str) for c in columns):
        raise GatewayError(400, "dataframe_split.columns must be strings (the feature names)")
    if not isinstance(data, list) or not all(
        isinstance(row, list) and len(row) == len(columns) for row in data
    ):
        raise GatewayError(400, f"dataframe_split.data must be a list of rows of {len(columns)} values")
    return [dict(zip(columns, row, strict=True)) for row in data]


def _columns(key: str, value: dict) -> list[dict]:
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if not value or len(lengths) != 1 or -1 in lengths:
        raise GatewayError(400, f"{key} as an object must map each feature to a list, all of one length")
    names = list(value)
    return [dict(zip(names, row, strict=True)) for row in zip(*value.values(), strict=True)]


def mlflow_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(tags=["MLflow scoring protocol"])
    settings = gateway.settings

    def only_model() -> str:
        served = sorted(gateway.watcher.routes)
        if len(served) != 1:
            raise GatewayError(
                404,
                f"this gateway serves {len(served)} models ({', '.join(served) or 'none'}): "
                "use /models/{model}/invocations",
            )
        return served[0]

    async def invoke(model: str, request: Request) -> Response:
        try:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type != "application/json":
                raise GatewayError(415, f"content type {content_type or 'none'!r}: send application/json")
            route = gateway.servable(model)
            body = await json_object(
                request, settings.max_body_bytes, settings.body_timeout_s, nan_is_null=True
            )
            call = checked_call(records(body), False, settings.max_instances)
            answer = await run_in_threadpool(gateway.predict, route, call)
        except GatewayError as error:
            gateway.reject(model, error)
            return mlflow_error(error)
        rows = answer["predictions"]
        return JSONResponse(
            {
                "predictions": [row["prediction"] for row in rows],
                "request_ids": [row["request_id"] for row in rows],
            }
        )

    @router.post("/invocations")
    async def invocations(request: Request):
        try:
            model = only_model()
        except GatewayError as error:
            return mlflow_error(error)
        return await invoke(model, request)

    @router.post("/models/{model}/invocations")
    async def model_invocations(model: str, request: Request):
        return await invoke(model, request)

    def ping_model(model: str) -> Response:
        try:
            gateway.servable(model)
        except GatewayError as error:
            return mlflow_error(error)
        return Response("\n", media_type="application/json")

    @router.get("/ping")
    def ping():
        try:
            return ping_model(only_model())
        except GatewayError as error:
            return mlflow_error(error)

    @router.get("/models/{model}/ping")
    def model_ping(model: str):
        return ping_model(model)

    @router.get("/version")
    def mlflow_version():
        try:
            return Response(version("mlflow"), media_type="application/json")
        except PackageNotFoundError:  # pragma: no cover - mlflow is a dependency
            return Response("unknown", media_type="application/json")

    return router
