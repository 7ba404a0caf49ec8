"""Ops requests (CLI, the canary DAG's conf actions): one entry point over the state machine."""

from __future__ import annotations

from dataclasses import dataclass

from model_factory.contracts import Attribution
from model_factory.io.registry_state import read_serving_state
from model_factory.pipeline import registry
from model_factory.pipeline.registry import PromotionError
from model_factory.rollout.shadow import start_shadow, stop_shadow
from model_factory.rollout.state import (
    abort_canary,
    pin_version,
    promote_canary,
    rollback_canary,
    unpin_version,
)
from model_factory.settings import FactorySettings

OPS_ACTIONS = ("promote", "rollback", "abort", "pin", "unpin", "shadow", "shadow_stop")


@dataclass(frozen=True)
class OpsRequest:
    """One ops request as the CLI or the canary DAG's conf states it: the ``action`` on ``model``,
    the ``version`` and shadow ``share`` it names (where the action takes them), who asked and why."""

    model: str
    action: str
    attribution: Attribution
    version: str | None = None
    share: float | None = None


def ops_action(request: OpsRequest, settings: FactorySettings) -> dict:
    """Carry out an ops request and return the recorded decision.

    ``promote``: the running canary (or, with no canary, ``version``) becomes champion;
    ``rollback``: the running canary is rolled back, else the champion goes back to
    ``previous_champion``; ``abort``: the canary stops without a verdict; ``pin``/``unpin``;
    ``shadow``: ``version`` is scored beside the champion on ``share`` of its requests (default
    all), never answering; ``shadow_stop`` ends it.
    Raises PromotionError (the message says why) for a request that cannot be carried out.
    """
    model, action, attribution = request.model, request.action, request.attribution
    if action not in OPS_ACTIONS:
        raise PromotionError(f"unknown action {action!r}; use one of {', '.join(OPS_ACTIONS)}")
    version = str(request.version) if request.version is not None else None
    if action == "shadow":
        if version is None:
            raise PromotionError("shadow needs the version to score beside the champion")
        return start_shadow(model, version, request.share, settings, attribution)
    if action == "shadow_stop":
        return stop_shadow(model, settings, attribution)
    state = read_serving_state(model, settings)
    if action == "promote" and state.canary and version in (None, state.canary):
        return promote_canary(model, settings, attribution)
    if action == "promote":
        if version is None:
            raise PromotionError(f"model {model!r} has no canary running: say which version to promote")
        done = registry.promote(model, version, settings, attribution)
        return {
            "model": model,
            "version": version,
            "action": "promoted",
            "actor": attribution.actor,
            "reason": attribution.reason,
            "details": done,
            "changed": done["changed"],
        }
    if action == "rollback" and state.canary:
        return rollback_canary(model, settings, attribution)
    if action == "rollback":
        done = registry.rollback(model, settings, attribution)
        return {
            "model": model,
            "version": done["champion"],
            "action": "rolled_back",
            "actor": attribution.actor,
            "reason": attribution.reason,
            "details": done,
            "changed": True,
        }
    if action == "abort":
        return abort_canary(model, settings, attribution)
    if action == "pin":
        if version is None:
            raise PromotionError("pin needs the version to serve")
        return pin_version(model, version, settings, attribution)
    return unpin_version(model, settings, attribution)
