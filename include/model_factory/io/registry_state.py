"""What the registry says should serve: aliases, the canary's traffic share, a pin.

The registry is the single source of truth for serving. Alias ``champion`` serves; during a
rollout alias ``canary`` takes a share of the callers, recorded with the canary's progress as
tags on the registered model (names in :mod:`model_factory.io.tag_schema`):

    factory.canary.version     the version the share applies to (must equal the canary alias)
    factory.canary.share       "0.10": fraction of callers routed to the canary
    factory.canary.started_at  ISO time (UTC) the canary started: the analysis counts from here
    factory.canary.updated_at  ISO time (UTC) of the last start/ramp/stop: a stage counts from here
    factory.canary.stage       1 at start, +1 at every share change
    factory.canary.status      running | promoted | rolled_back | aborted

A shadow (alias ``shadow``) is scored beside the champion on a share of its requests, off the
response path; callers only ever get the champion's answer:

    factory.shadow.version     the version the shadow share applies to (must equal the alias)
    factory.shadow.share       "0.50": fraction of the champion's requests also sent to the shadow
    factory.shadow.started_at  ISO time (UTC) the shadow started: the comparison counts from here
    factory.shadow.status      running | stopped

The gateway reads this module; the rollout writes the tags. Neither imports the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from model_factory.io import tag_schema, tracking

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
    from model_factory.settings import FactorySettings

CHAMPION, CHALLENGER, CANARY, SHADOW = "champion", "challenger", "canary", "shadow"
PREVIOUS_CHAMPION = "previous_champion"


@dataclass(frozen=True)
class ServingState:
    """What the registry says should serve, read in one call."""

    model: str
    champion: str | None
    canary: str | None
    share: float
    """Effective share: 0 unless the canary alias is set and ``factory.canary.version`` names it."""
    started_at: str | None = None
    stage: int = 0
    status: str | None = None
    updated_at: str | None = None
    """Last start/ramp/stop: a stage's own outcomes are those since then."""
    pinned: str | None = None
    tags: dict[str, str] = field(default_factory=dict, repr=False)
    shadow: str | None = None
    shadow_share: float = 0.0
    """Effective shadow share: 0 unless the shadow alias is set and ``factory.shadow.version`` names it."""
    shadow_started_at: str | None = None


def parse_share(text: str | None) -> float:
    """A share tag as a fraction in [0, 1]; anything unreadable is 0 (no traffic)."""
    try:
        share = float(text) if text is not None else 0.0
    except ValueError:
        return 0.0
    return min(max(share, 0.0), 1.0) if math.isfinite(share) else 0.0


def serving_state(client: MlflowClient, model: str) -> ServingState:
    """Aliases, canary and shadow tags of ``model`` from one ``get_registered_model`` call.

    Raises MlflowException when the model is not registered.
    """
    return serving_state_of(client.get_registered_model(model))


def serving_state_of(registered) -> ServingState:
    """The serving state held by one ``RegisteredModel`` (from a get or a registry search)."""
    model = registered.name
    aliases = {alias: str(version) for alias, version in (registered.aliases or {}).items()}
    tags = dict(registered.tags or {})
    canary = aliases.get(CANARY)
    applies = canary is not None and tags.get(tag_schema.CANARY_VERSION) == canary
    share = parse_share(tags.get(tag_schema.CANARY_SHARE)) if applies else 0.0
    shadow = aliases.get(SHADOW)
    shadow_applies = shadow is not None and tags.get(tag_schema.SHADOW_VERSION) == shadow
    try:
        stage = int(tags.get(tag_schema.CANARY_STAGE, "0"))
    except ValueError:
        stage = 0
    return ServingState(
        model=model,
        champion=aliases.get(CHAMPION),
        canary=canary,
        share=share,
        started_at=tags.get(tag_schema.CANARY_STARTED_AT) if canary else None,
        stage=stage if canary else 0,
        status=tags.get(tag_schema.CANARY_STATUS),
        updated_at=tags.get(tag_schema.CANARY_UPDATED_AT),
        pinned=tags.get(tag_schema.PINNED_VERSION),
        tags=tags,
        shadow=shadow,
        shadow_share=parse_share(tags.get(tag_schema.SHADOW_SHARE)) if shadow_applies else 0.0,
        shadow_started_at=tags.get(tag_schema.SHADOW_STARTED_AT) if shadow else None,
    )


def read_serving_state(model: str, settings: FactorySettings) -> ServingState:
    return serving_state(tracking.connect(settings), model)


def current_alias_version(client: MlflowClient, model: str, alias: str) -> str | None:
    """The version ``alias`` points to, or None when it is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None
