"""Serving gateway driven by the MLflow registry: champion + canary by alias, sticky routing,
signature-checked inputs, a SQL prediction log, health and Prometheus metrics.

Run it with ``python -m model_factory.serving --host 127.0.0.1 --port 8000``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model_factory.serving.settings import GatewaySettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["GatewaySettings", "create_app"]


def create_app(settings: GatewaySettings) -> FastAPI:
    from model_factory.serving.app import create_app as _create_app

    return _create_app(settings)
