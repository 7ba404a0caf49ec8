"""Where a version's model card is kept: its run's ``model_card.html`` artifact. Apart from
``card.py`` so the fleet view can look for cards without importing pandas."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from model_factory.io import tracking
from model_factory.settings import FactorySettings

CARD_ARTIFACT = "model_card.html"


def card_uri(artifact_uri: str) -> str:
    """Where the card of a run with this artifact root is (or will be) logged."""
    return f"{artifact_uri.rstrip('/')}/{CARD_ARTIFACT}"


def has_card(client: Any, run_id: str) -> bool:
    """Did the run log ``model_card.html``?"""
    return any(a.path == CARD_ARTIFACT for a in client.list_artifacts(run_id))


def read_card(settings: FactorySettings, model: str, version: str) -> str | None:
    """The HTML of a version's model card, or None when it has none."""
    client = tracking.connect(settings)
    run_id = client.get_model_version(model, version).run_id
    if not run_id or not has_card(client, run_id):
        return None
    with tempfile.TemporaryDirectory() as scratch:
        return Path(client.download_artifacts(run_id, CARD_ARTIFACT, scratch)).read_text()
