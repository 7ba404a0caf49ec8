"""The gateway's FastAPI app: a :class:`Gateway` (the rules) behind one router per protocol.

The routes are listed in ``serving/routers.py``; background work (registry refresh, log writer,
retention) runs inside the app's lifespan.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from model_factory.serving.auth import ApiKeyGuard
from model_factory.serving.gateway import Gateway
from model_factory.serving.mlflow_protocol import mlflow_router
from model_factory.serving.oip_protocol import oip_router
from model_factory.serving.routers import RequestRoute, native_router
from model_factory.serving.settings import GatewaySettings
from starlette.concurrency import run_in_threadpool


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway app for ``settings`` (default: from the environment)."""
    gateway = Gateway(settings or GatewaySettings.from_env())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(gateway.start)
        try:
            yield
        finally:
            gateway.stop()

    app = FastAPI(
        title="model-factory gateway",
        lifespan=lifespan,
        description="Serves each model's champion (and canary) from the MLflow registry.",
    )
    app.state.gateway, app.state.settings, app.state.watcher = gateway, gateway.settings, gateway.watcher
    app.state.prediction_log, app.state.metrics = gateway.prediction_log, gateway.metrics
    app.include_router(native_router(gateway))
    app.include_router(mlflow_router(gateway))
    app.include_router(oip_router(gateway))
    # Starlette tries routes in order and FastAPI put its docs routes first: predict goes first
    app.router.routes.sort(key=lambda route: not isinstance(route, RequestRoute))
    if gateway.settings.api_key is not None:
        app.add_middleware(ApiKeyGuard, key=gateway.settings.api_key)
    return app
