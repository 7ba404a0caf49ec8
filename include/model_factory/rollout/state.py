"""The canary's state machine in the registry: start, ramp, promote, roll back, abort, pin.

Every operation reads the registry state (:mod:`model_factory.io.registry_state`), checks the
transition is allowed (the message says why when not), writes the registered model's canary tags
in an order a gateway reading in between can live with, and records who/what/when/why as version
tags (``registry.record_decision``). A repeated call (a retried task) changes nothing and says so
(``changed: False``). Each returns the recorded decision as a dict, for the prediction DB
(``serving.predlog.write_decision``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from model_factory.contracts import Attribution
from model_factory.io import tag_schema, tracking
from model_factory.io.registry_state import CANARY, CHALLENGER, ServingState, serving_state
from model_factory.pipeline import registry
from model_factory.pipeline.registry import PromotionError
from model_factory.settings import FactorySettings

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

SHARE_TAG, VERSION_TAG = tag_schema.CANARY_SHARE, tag_schema.CANARY_VERSION
STARTED_TAG, UPDATED_TAG = tag_schema.CANARY_STARTED_AT, tag_schema.CANARY_UPDATED_AT
STAGE_TAG, STATUS_TAG = tag_schema.CANARY_STAGE, tag_schema.CANARY_STATUS
PINNED_TAG = tag_schema.PINNED_VERSION


def _check_share(share: float) -> float:
    share = float(share)
    if not (math.isfinite(share) and 0.0 < share <= 1.0):
        raise PromotionError(f"canary share must be in (0, 1], got {share}")
    return share


def now_stamp() -> str:
    """Now as ISO UTC to the microsecond: stage starts are compared with predictions' ``created_at``."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def client_and_state(model: str, settings: FactorySettings) -> tuple[MlflowClient, ServingState]:
    """The registry client and ``model``'s serving state read through it, where every transition
    (canary, pin, shadow) starts; an unregistered model is refused."""
    from mlflow.exceptions import MlflowException

    client = tracking.connect(settings)
    try:
        return client, serving_state(client, model)
    except MlflowException as exc:
        raise PromotionError(f"model {model!r} is not registered") from exc


def _running(state: ServingState, version: str | None) -> str:
    if state.canary is None:
        raise PromotionError(f"model {state.model!r} has no canary running")
    if version is not None and str(version) != state.canary:
        raise PromotionError(f"model {state.model!r}: the running canary is v{state.canary}, not v{version}")
    return state.canary


def unchanged(
    model: str, version: str, action: str, attribution: Attribution, details: dict | None, at: str | None
) -> dict:
    """The answer to a repeated call (a retried task): nothing changed, nothing recorded again."""
    return {
        "model": model,
        "version": str(version),
        "action": action,
        "actor": attribution.actor,
        "reason": attribution.reason,
        "at": at or now_stamp(),
        "changed": False,
        "details": dict(details or {}),
    }


def _end_canary(client: MlflowClient, model: str, status: str) -> None:
    """Share to 0 first (the gateway stops routing), then drop the alias."""
    from mlflow.exceptions import MlflowException

    client.set_registered_model_tag(model, SHARE_TAG, "0")
    client.set_registered_model_tag(model, STATUS_TAG, status)
    client.set_registered_model_tag(model, UPDATED_TAG, now_stamp())
    with contextlib.suppress(MlflowException):  # already gone: a retried task
        client.delete_registered_model_alias(model, CANARY)


def start_canary(
    model: str, version: str, share: float, settings: FactorySettings, attribution: Attribution
) -> dict:
    """Make a blessed ``version`` the canary at ``share`` of the traffic.

    Idempotent for the same version (a retried task): the running canary is left as it is.
    Refused when the model is pinned, the version is the champion, or another canary runs.
    """
    version, share = str(version), _check_share(share)
    client, state = client_and_state(model, settings)
    if state.canary == version:
        return unchanged(
            model,
            version,
            "canary_started",
            attribution,
            {"share": state.share, "stage": state.stage},
            at=state.started_at,
        )
    if state.pinned:
        raise PromotionError(
            f"model {model!r} is pinned to v{state.pinned}; unpin it before starting a canary"
        )
    if state.canary is not None:
        raise PromotionError(
            f"model {model!r} already has canary v{state.canary} running; "
            "promote, roll back or abort it first"
        )
    if state.champion is None:
        raise PromotionError(f"model {model!r} has no champion to compare a canary with")
    if state.champion == version:
        raise PromotionError(f"{model} v{version} is already the champion")
    registry.require_blessed(client, model, version, "served")

    started = now_stamp()
    # Order matters for a gateway reading in between: the share applies only once alias and
    # version tag agree, and it is written last.
    client.set_registered_model_tag(model, SHARE_TAG, "0")
    for key, value in (
        (VERSION_TAG, version),
        (STARTED_TAG, started),
        (STAGE_TAG, "1"),
        (STATUS_TAG, "running"),
        (UPDATED_TAG, started),
    ):
        client.set_registered_model_tag(model, key, value)
    client.set_registered_model_alias(model, CANARY, version)
    client.set_registered_model_tag(model, SHARE_TAG, f"{share:.4f}")
    details = {"share": share, "stage": 1, "champion": state.champion, "started_at": started}
    decision = registry.record_decision(client, model, version, "canary_started", attribution, details)
    # "at" is the start written to the registry, so a retried call answers the same time.
    return {**decision, "at": started, "changed": True}


def set_canary_share(
    model: str,
    share: float,
    settings: FactorySettings,
    attribution: Attribution,
    version: str | None = None,
) -> dict:
    """Ramp the running canary to ``share`` (stage + 1). ``version`` guards against ramping
    a canary other than the one analysed."""
    share = _check_share(share)
    client, state = client_and_state(model, settings)
    canary = _running(state, version)
    if abs(state.share - share) < 1e-9:
        return unchanged(
            model,
            canary,
            "canary_ramped",
            attribution,
            {"share": share, "stage": state.stage},
            at=now_stamp(),
        )
    stage = state.stage + 1
    client.set_registered_model_tag(model, SHARE_TAG, f"{share:.4f}")
    client.set_registered_model_tag(model, STAGE_TAG, str(stage))
    client.set_registered_model_tag(model, UPDATED_TAG, now_stamp())
    details = {"share": share, "previous_share": state.share, "stage": stage}
    decision = registry.record_decision(client, model, canary, "canary_ramped", attribution, details)
    return {**decision, "changed": True}


def promote_canary(
    model: str,
    settings: FactorySettings,
    attribution: Attribution,
    version: str | None = None,
    details: dict | None = None,
) -> dict:
    """Canary becomes champion through ``registry.promote`` (old champion: ``previous_champion``);
    the canary alias and share are cleared, a ``challenger`` alias on it removed.

    A retry after success (``version`` given, already champion, no canary) is a no-op.
    """
    client, state = client_and_state(model, settings)
    if state.canary is None and version is not None and state.champion == str(version):
        return unchanged(model, str(version), "canary_promoted", attribution, details or {}, at=now_stamp())
    canary = _running(state, version)
    promoted = registry.promote(model, canary, settings, attribution)
    _end_canary(client, model, "promoted")
    if registry.current_alias_version(client, model, CHALLENGER) == canary:
        client.delete_registered_model_alias(model, CHALLENGER)
    info = {
        **(details or {}),
        "previous_champion": promoted["previous_champion"],
        "final_share": state.share,
        "stage": state.stage,
    }
    decision = registry.record_decision(client, model, canary, "canary_promoted", attribution, info)
    return {
        **decision,
        "changed": True,
        "champion": canary,
        "previous_champion": promoted["previous_champion"],
    }


def _stop(
    status: str,
    model: str,
    settings: FactorySettings,
    attribution: Attribution,
    version: str | None,
    details: dict | None,
    drop_challenger: bool,
) -> dict:
    """End the canary with ``status`` (``rolled_back``, ``aborted``), recorded as ``canary_<status>``."""
    action = f"canary_{status}"
    version = None if version is None else str(version)
    client, state = client_and_state(model, settings)
    done = state.canary is None and state.status == status and state.tags.get(VERSION_TAG) == version
    if version is not None and done:
        return unchanged(model, str(version), action, attribution, details or {}, at=now_stamp())
    canary = _running(state, version)
    _end_canary(client, model, status)
    if drop_challenger and registry.current_alias_version(client, model, CHALLENGER) == canary:
        client.delete_registered_model_alias(model, CHALLENGER)
    info = {**(details or {}), "final_share": state.share, "stage": state.stage, "champion": state.champion}
    decision = registry.record_decision(client, model, canary, action, attribution, info)
    return {**decision, "changed": True, "champion": state.champion}


def rollback_canary(
    model: str,
    settings: FactorySettings,
    attribution: Attribution,
    version: str | None = None,
    details: dict | None = None,
) -> dict:
    """The canary lost (analysis, guardrail or load failure): alias removed, share 0, and its
    ``challenger`` alias dropped so it is not retried. The champion is untouched."""
    return _stop("rolled_back", model, settings, attribution, version, details, drop_challenger=True)


def abort_canary(
    model: str,
    settings: FactorySettings,
    attribution: Attribution,
    version: str | None = None,
    details: dict | None = None,
) -> dict:
    """Stop the canary without a verdict (ops): alias removed, share 0; a ``challenger`` alias stays."""
    return _stop("aborted", model, settings, attribution, version, details, drop_challenger=False)


def pin_version(model: str, version: str, settings: FactorySettings, attribution: Attribution) -> dict:
    """Serve exactly ``version``: champion set (old one kept as ``previous_champion``), any canary
    aborted, and no new canary starts until :func:`unpin_version`."""
    version = str(version)
    client, state = client_and_state(model, settings)
    registry.require_blessed(client, model, version, "served")
    aborted = None
    if state.canary is not None:
        why_abort = replace(attribution, reason=f"pinned to v{version}: {attribution.reason}")
        aborted = abort_canary(model, settings, why_abort)["version"]
    promoted = registry.promote(model, version, settings, attribution)
    client.set_registered_model_tag(model, PINNED_TAG, version)
    details = {
        "previous_champion": promoted["previous_champion"] if promoted["changed"] else None,
        "aborted_canary": aborted,
    }
    decision = registry.record_decision(client, model, version, "pinned", attribution, details)
    return {**decision, "changed": True, "champion": version}


def unpin_version(model: str, settings: FactorySettings, attribution: Attribution) -> dict:
    """Allow canaries again; the champion stays where it is."""
    client, state = client_and_state(model, settings)
    if state.pinned is None:
        raise PromotionError(f"model {model!r} is not pinned")
    client.delete_registered_model_tag(model, PINNED_TAG)
    decision = registry.record_decision(client, model, state.pinned, "unpinned", attribution)
    return {**decision, "changed": True}
