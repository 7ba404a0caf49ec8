"""The predict lane: ``POST /v1/models/{model}/predict`` answered by the gateway's HTTP protocol
itself, without uvicorn's ASGI cycle (a scope, message dicts, a task and the receive/send
coroutines per request cost more server CPU than HTTP parsing and the prediction together:
bench/results/gw15_floors.json).

This module holds what the protocol (``serving/server.py``) asks the app: whether a request whose
headers are in may take the lane, and its answer once its body is. The rules are the app's own:
the route's path pattern, the API key, :class:`~model_factory.serving.routers.Predictions` (the
body's rules, the prediction, the refusals as the route renders them). A request the lane does not
take, or hands back (a batch, which goes to a worker thread), is answered by the ASGI app, so
anything unusual is answered the one way it always was.
"""

from __future__ import annotations

from typing import Any

from model_factory.serving.auth import ApiKey
from model_factory.serving.requests import GatewayError, PredictCall, body_too_slow
from model_factory.serving.routers import Predictions, RequestRoute
from starlette.responses import Response

PREDICT_LANE = "model_factory.predict_lane"
"""Key of the lane in the app's lifespan state, where the server's protocol finds it."""


class PredictLane:
    """The predict route's requests that the HTTP protocol may answer itself: a known model with
    a champion on the compiled path, the API key given (when one is set). Everything else (other
    paths, a refused key, an unknown or loading model) takes the ASGI app, which answers it."""

    def __init__(self, route: RequestRoute, predictions: Predictions, api_key: ApiKey | None) -> None:
        self.path_regex = route.path_regex
        self.convert = route.param_convertors["model"].convert
        self.predictions = predictions
        self.gateway = predictions.gateway
        self.api_key = api_key
        self.max_body_bytes = self.gateway.settings.max_body_bytes
        self.body_timeout_s = self.gateway.settings.body_timeout_s

    def model_for(self, scope: dict[str, Any]) -> str | None:
        """The model a request (``type``, ``path``, ``headers`` of its scope) predicts with, if
        the lane takes it."""
        match = self.path_regex.match(scope["path"])
        if match is None or (self.api_key is not None and not self.api_key.allows(scope)):
            return None
        model = self.convert(match["model"])
        route = self.gateway.watcher.routes.get(model)
        if route is None or route.champion_version is None or not route.compiled:
            return None
        return model

    def answer(self, model: str, body: bytes) -> Response | None:
        """The answer to a request the lane took, or None to hand it to the app (a batch)."""
        try:
            route = self.gateway.servable(model)
        except GatewayError:  # a refresh took the model away meanwhile: the app says why
            return None
        answer = self.predictions.answer_now(model, route, body)
        return None if isinstance(answer, PredictCall) else answer

    def too_slow(self, model: str) -> Response:
        """The 408 for a body not all received ``body_timeout_s`` after the headers."""
        return self.predictions.refused(model, body_too_slow(self.body_timeout_s))
