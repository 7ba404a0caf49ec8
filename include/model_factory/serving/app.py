"""The gateway's FastAPI app: a :class:`Gateway` (the rules) behind one router per protocol.

The routes are listed in ``serving/routers.py``; background work (registry refresh, log writer,
retention) runs inside the app's lifespan.
"""

from __future__ import annotations

import inspect
from contextlib import asynccontextmanager

from fastapi import FastAPI
from model_factory.serving.auth import ApiKey, ApiKeyGuard
from model_factory.serving.gateway import Gateway
from model_factory.serving.lane import PREDICT_LANE, PredictLane
from model_factory.serving.mlflow_protocol import mlflow_router
from model_factory.serving.oip_protocol import oip_router
from model_factory.serving.routers import Predictions, RequestRoute, native_router
from model_factory.serving.settings import GatewaySettings
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Receive, Scope, Send


class GatewayApp(FastAPI):
    """FastAPI, with a request for a :class:`RequestRoute` (predict) handed to that route first.

    Starlette's error and exception middleware, FastAPI's exit stack and the router's walk cost
    more server CPU than predicting one row. The route object, its path pattern, the API key
    check and the rendering of an HTTPException are the app's own (the registered handler), so
    both ways answer alike; anything else (other paths, a root_path, a refused key) takes the
    full stack, which answers it as before."""

    direct_routes: tuple[RequestRoute, ...] = ()
    api_key: ApiKey | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            for route in self.direct_routes:
                match = route.path_regex.match(scope["path"])
                if match is None or scope["method"] not in route.methods:
                    continue
                if self.api_key is not None and not self.api_key.allows(scope):
                    break
                scope["app"] = self
                scope["path_params"] = {
                    name: route.param_convertors[name].convert(value)
                    for name, value in match.groupdict().items()
                }
                await self._direct(route, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _direct(self, route: RequestRoute, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await route.app(scope, receive, send)
        except HTTPException as exc:  # rendered by the handler ExceptionMiddleware would use
            response = self.exception_handlers[HTTPException](Request(scope, receive), exc)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, receive, send)


def create_app(settings: GatewaySettings) -> FastAPI:
    """The gateway app for ``settings``."""
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(gateway.start)
        try:  # the lane, in the lifespan state: where the server's protocol finds it (server.py)
            yield {PREDICT_LANE: app.state.predict_lane}
        finally:
            gateway.stop()

    app = GatewayApp(
        title="model-factory gateway",
        lifespan=lifespan,
        description="Serves each model's champion (and canary) from the MLflow registry.",
    )
    app.state.gateway, app.state.settings, app.state.watcher = gateway, gateway.settings, gateway.watcher
    app.state.prediction_log, app.state.metrics = gateway.prediction_log, gateway.metrics
    predictions = Predictions(gateway)
    app.include_router(native_router(gateway, predictions))
    app.include_router(mlflow_router(gateway))
    app.include_router(oip_router(gateway))
    # Starlette tries routes in order and FastAPI put its docs routes first: predict goes first
    app.router.routes.sort(key=lambda route: not isinstance(route, RequestRoute))
    app.direct_routes = tuple(route for route in app.router.routes if isinstance(route, RequestRoute))
    if gateway.settings.api_key is not None:
        app.api_key = ApiKey(gateway.settings.api_key)
        app.add_middleware(ApiKeyGuard, key=app.api_key)
    predict = next(route for route in app.direct_routes if route.path == "/v1/models/{model}/predict")
    app.state.predict_lane = PredictLane(predict, predictions, app.api_key)
    return app
