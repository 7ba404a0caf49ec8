"""BentoML peer: ``bentoml serve peer_bentoml:Churn`` (BentoML 1.4 service API), the factory's
pipeline behind one ``@bentoml.api``; POST /predict {"features": {...}}. Workers: PEER_WORKERS."""

from __future__ import annotations

import os

import bentoml
from peer_model import PeerModel


@bentoml.service(
    workers=int(os.environ.get("PEER_WORKERS", "1")),
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},  # no access log, as the gateway runs
)
class Churn:
    def __init__(self) -> None:
        self.model = PeerModel()

    @bentoml.api
    def predict(self, features: dict) -> dict:
        return self.model.predict_one(features)
