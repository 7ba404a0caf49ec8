"""The Open Inference Protocol (KServe V2, Triton, MLServer) over the gateway, JSON encoding.

GET  /v2/health/live, /v2/health/ready, /v2                    server liveness, readiness, metadata
GET  /v2/models/{model}, /v2/models/{model}/ready               model metadata (inputs from the
                                                                signature), readiness
POST /v2/models/{model}/infer    one input tensor per feature (``name`` = feature, ``shape``
                                 ``[n]`` or ``[n, 1]``, ``data`` flat); outputs ``predict`` (the
                                 label or value per row) and ``request_id`` (the gateway's id per
                                 row, for feedback)

The same :class:`Gateway` routes (canary included), checks, predicts and logs. Errors are the
protocol's ``{"error": "..."}`` with 400 (404 for an unknown model, 503 for one with nothing to
serve), never a 500 for the caller's input. Tensor data in the binary extension
(``Inference-Header-Content-Length``) is refused with a 400 saying to send JSON
(tritonclient: ``binary_data=False``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from model_factory.serving.gateway import Gateway
from model_factory.serving.models import LoadedVersion
from model_factory.serving.requests import GatewayError, checked_call, json_object
from starlette.concurrency import run_in_threadpool

DATATYPES = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
}
NUMERIC = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
OUTPUTS = ("predict", "request_id")


def oip_error(error: GatewayError) -> JSONResponse:
    status = error.status if error.status in (401, 404, 408, 413, 503) else 400
    return JSONResponse({"error": error.message}, status_code=status, headers=error.headers)


def _gateway_version() -> str:
    try:
        return version("model-factory")
    except PackageNotFoundError:
        return "0"


def _flat(data: Any, shape: Any, name: str) -> list:
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise GatewayError(400, f"input {name!r}: shape must be a list of sizes, e.g. [n] or [n, 1]")
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise GatewayError(400, f"input {name!r}: shape {shape}: one feature per input, [n] or [n, 1]")
    flat = data
    if isinstance(data, list) and data and all(isinstance(d, list) for d in data):
        flat = [x for row in data for x in row]
    if not isinstance(flat, list) or len(flat) != shape[0]:
        raise GatewayError(400, f"input {name!r}: data must hold {shape[0]} values (shape {shape})")
    return flat


def _value(datatype: str, value: Any, name: str) -> Any:
    if value is None:
        return None
    if datatype == "BYTES":
        if not isinstance(value, str):
            raise GatewayError(400, f"input {name!r}: BYTES data must be strings, got {type(value).__name__}")
        return value
    if datatype == "BOOL":
        if not isinstance(value, bool):
            raise GatewayError(400, f"input {name!r}: BOOL data must be true/false, got {value!r}"[:300])
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GatewayError(400, f"input {name!r}: {datatype} data must be numbers, got {value!r}"[:300])
    return value


def rows_of(body: dict) -> tuple[list[dict], list[str] | None]:
    """The infer request's tensors as one feature object per row; the outputs asked for."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise GatewayError(400, "'inputs' must be a non-empty list of tensors {name, shape, datatype, data}")
    columns: dict[str, list] = {}
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise GatewayError(400, f"inputs[{i}] must be an object with a string 'name'")
        name, datatype = tensor["name"], tensor.get("datatype")
        if datatype not in NUMERIC | {"BYTES", "BOOL"}:
            raise GatewayError(400, f"input {name!r}: unknown datatype {datatype!r}")
        if "data" not in tensor:
            raise GatewayError(400, f"input {name!r} has no 'data' (binary tensor data: send JSON)")
        if name in columns:
            raise GatewayError(400, f"input {name!r} given twice")
        columns[name] = [_value(datatype, v, name) for v in _flat(tensor["data"], tensor.get("shape"), name)]
    if len({len(values) for values in columns.values()}) != 1:
        raise GatewayError(400, "every input must hold the same number of rows")
    asked = body.get("outputs")
    wanted = None
    if asked is not None:
        if not isinstance(asked, list) or not all(isinstance(o, dict) and "name" in o for o in asked):
            raise GatewayError(400, "'outputs' must be a list of {name}")
        wanted = [o["name"] for o in asked]
        unknown = sorted(set(wanted) - set(OUTPUTS))
        if unknown:
            raise GatewayError(400, f"unknown outputs {unknown}; this model has {list(OUTPUTS)}")
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)], wanted


def _output_tensor(name: str, values: list, loaded: LoadedVersion | None) -> dict:
    if name == "request_id" or (loaded is not None and _predict_datatype(loaded) == "BYTES"):
        datatype = "BYTES"
        values = [str(v) for v in values]
    elif all(isinstance(v, bool) for v in values):
        datatype = "BOOL"
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        datatype = "INT64"
    else:
        datatype = "FP64"
    return {"name": name, "shape": [len(values)], "datatype": datatype, "data": values}


def _predict_datatype(loaded: LoadedVersion) -> str:
    if loaded.classes is None:
        return "FP64"
    return "BYTES" if any(isinstance(c, str) for c in loaded.classes) else "INT64"


def metadata(gateway: Gateway, model: str) -> dict:
    route = gateway.servable(model)
    champion = gateway.loaded_champion(route)
    return {
        "name": model,
        "versions": [v for v in (route.champion_version, route.canary_version) if v is not None],
        "platform": "sklearn",
        "inputs": [
            {"name": f.name, "datatype": DATATYPES.get(f.type, "BYTES"), "shape": [-1]}
            for f in champion.inputs
        ],
        "outputs": [
            {
                "name": "predict",
                "datatype": _predict_datatype(champion),
                "shape": [-1],
            },
            {"name": "request_id", "datatype": "BYTES", "shape": [-1]},
        ],
    }


def oip_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(tags=["Open Inference Protocol v2"])
    settings = gateway.settings

    @router.get("/v2/health/live")
    def live():
        return {"live": True}

    @router.get("/v2/health/ready")
    def ready():
        servable = any(r.champion_version for r in gateway.watcher.routes.values())
        return JSONResponse({"ready": servable}, status_code=200 if servable else 503)

    @router.get("/v2")
    def server_metadata():
        return {"name": "model-factory gateway", "version": _gateway_version(), "extensions": []}

    @router.get("/v2/models/{model}")
    def model_metadata(model: str):
        try:
            return metadata(gateway, model)
        except GatewayError as error:
            return oip_error(error)

    @router.get("/v2/models/{model}/ready")
    def model_ready(model: str):
        try:
            gateway.servable(model)
        except GatewayError as error:
            return oip_error(error)
        return {"name": model, "ready": True}

    @router.post("/v2/models/{model}/infer")
    async def infer(model: str, request: Request):
        try:
            if "inference-header-content-length" in request.headers:
                raise GatewayError(
                    400, "binary tensor data is not supported: send JSON (tritonclient: binary_data=False)"
                )
            route = gateway.servable(model)
            body = await json_object(request, settings.max_body_bytes, settings.body_timeout_s)
            rows, wanted = rows_of(body)
            call = checked_call(rows, False, settings.max_instances)
            answer = await run_in_threadpool(gateway.predict, route, call)
        except GatewayError as error:
            gateway.reject(model, error)
            return oip_error(error)
        served = answer["predictions"]
        loaded = gateway.version_for(model, answer["version"])
        values = {
            "predict": [p["prediction"] for p in served],
            "request_id": [p["request_id"] for p in served],
        }
        reply: dict[str, Any] = {
            "model_name": model,
            "model_version": answer["version"],
            "outputs": [_output_tensor(name, values[name], loaded) for name in (wanted or OUTPUTS)],
        }
        if isinstance(body.get("id"), str):
            reply["id"] = body["id"]
        return JSONResponse(reply)

    return router
