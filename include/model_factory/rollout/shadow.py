"""Shadow traffic: a challenger scored beside the champion on live requests, never answering.

``start_shadow`` sets the registry alias ``shadow`` and its share (tags in
:mod:`model_factory.io.tag_schema`); the gateway then scores that share of the champion's requests
with the shadow too, after the caller has the champion's answer, and logs each pair in the
prediction log's ``shadow_predictions`` table. ``compare_shadow`` turns those pairs into what
ops read before (or instead of) a canary: how often the two agree, how far the outputs move, and
how fast each is. A shadow never changes an answer, so it needs no ramp and no verdict.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa
from model_factory.contracts import Attribution
from model_factory.io import tag_schema, tracking
from model_factory.io.registry_state import SHADOW, parse_share
from model_factory.pipeline import registry
from model_factory.pipeline.registry import PromotionError
from model_factory.rollout.state import client_and_state, now_stamp, unchanged
from model_factory.serving import predlog
from model_factory.serving.settings import prediction_db_uri
from model_factory.settings import FactorySettings

DEFAULT_SHARE = 1.0
"""A shadow answers nobody: by default it sees every request (costs gateway CPU, no risk)."""
MAX_ROWS = 100_000
"""The comparison reads at most the latest this many pairs."""


def _check_share(share: float) -> float:
    share = float(share)
    if not (math.isfinite(share) and 0.0 < share <= 1.0):
        raise PromotionError(f"shadow share must be in (0, 1], got {share}")
    return share


def start_shadow(
    model: str, version: str, share: float | None, settings: FactorySettings, attribution: Attribution
) -> dict:
    """Score a blessed ``version`` beside the champion on ``share`` of its requests (default all).

    The same version again changes only the share (nothing when equal: a retried task). Another
    running shadow is replaced (one shadow per model). Refused for the champion itself, the
    running canary, or a version that is not blessed.
    """
    version = str(version)
    share = _check_share(DEFAULT_SHARE if share is None else share)
    client, state = client_and_state(model, settings)
    if state.champion is None:
        raise PromotionError(f"model {model!r} has no champion to compare a shadow with")
    if state.champion == version:
        raise PromotionError(f"{model} v{version} is the champion: a shadow must be another version")
    if state.canary == version:
        raise PromotionError(f"{model} v{version} is the running canary: it already gets live traffic")
    registry.require_blessed(client, model, version, "shadowed")
    running = state.shadow == version and state.tags.get(tag_schema.SHADOW_STATUS) == "running"
    if running and abs(state.shadow_share - share) < 1e-9:
        details = {"share": share, "champion": state.champion}
        return unchanged(model, version, "shadow_started", attribution, details, at=state.shadow_started_at)
    started = state.shadow_started_at if running else now_stamp()
    # The share applies only once alias and version tag agree; it is written last.
    client.set_registered_model_tag(model, tag_schema.SHADOW_SHARE, "0")
    client.set_registered_model_tag(model, tag_schema.SHADOW_VERSION, version)
    client.set_registered_model_tag(model, tag_schema.SHADOW_STARTED_AT, started)
    client.set_registered_model_tag(model, tag_schema.SHADOW_STATUS, "running")
    client.set_registered_model_alias(model, SHADOW, version)
    client.set_registered_model_tag(model, tag_schema.SHADOW_SHARE, f"{share:.4f}")
    details = {"share": share, "champion": state.champion, "started_at": started}
    if state.shadow and state.shadow != version:
        details["replaced_shadow"] = state.shadow
    decision = registry.record_decision(client, model, version, "shadow_started", attribution, details)
    return {**decision, "at": started, "changed": True}


def stop_shadow(model: str, settings: FactorySettings, attribution: Attribution) -> dict:
    """Share to 0 (the gateway stops scoring it), then the alias goes. No shadow: nothing changes."""
    from mlflow.exceptions import MlflowException

    client, state = client_and_state(model, settings)
    if state.shadow is None:
        last = state.tags.get(tag_schema.SHADOW_VERSION)
        if last and state.tags.get(tag_schema.SHADOW_STATUS) == "stopped":  # a retried stop
            return unchanged(model, last, "shadow_stopped", attribution, {}, at=None)
        raise PromotionError(f"model {model!r} has no shadow running")
    client.set_registered_model_tag(model, tag_schema.SHADOW_SHARE, "0")
    client.set_registered_model_tag(model, tag_schema.SHADOW_STATUS, "stopped")
    with contextlib.suppress(MlflowException):  # already gone: a retried call
        client.delete_registered_model_alias(model, SHADOW)
    details = {
        "final_share": state.shadow_share,
        "champion": state.champion,
        "started_at": state.shadow_started_at,
    }
    decision = registry.record_decision(client, model, state.shadow, "shadow_stopped", attribution, details)
    return {**decision, "changed": True}


# --- the comparison ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ShadowPair:
    """One scored instance: the champion's answer and the shadow's (None when the shadow failed)."""

    champion: dict
    shadow: dict | None
    champion_latency_ms: float | None
    shadow_latency_ms: float | None
    error: str | None = None


@dataclass
class ShadowComparison:
    """How a shadow compares with the champion on the same live requests."""

    model: str
    version: str | None
    champion_versions: list[str] = field(default_factory=list)
    requests: int = 0
    """Pairs logged (instances the shadow was asked to score)."""
    scored: int = 0
    errors: int = 0
    kind: str | None = None
    """``classification`` (labels) or ``regression`` (values); None before any pair."""
    agreement: float | None = None
    """Classification: share of instances where the shadow's label equals the champion's."""
    mean_abs_diff: float | None = None
    """Mean |shadow - champion| of the score (P(positive) or the regression value)."""
    max_abs_diff: float | None = None
    mean_shift: float | None = None
    """Output drift: mean shadow score minus mean champion score (signed)."""
    champion_latency_ms: dict[str, float | None] = field(default_factory=dict)
    """p50 and p95 of the champion's model time on these requests."""
    shadow_latency_ms: dict[str, float | None] = field(default_factory=dict)
    last_errors: list[str] = field(default_factory=list)
    since: str | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def as_dict(self) -> dict:
        return {**asdict(self), "error_rate": self.error_rate}

    def summary(self) -> str:
        """One line, e.g. ``shadow v2 vs champion v1: 500 requests, agreement 97.2%, ...``."""
        if not self.requests:
            return f"shadow v{self.version}: no request scored yet"
        champion = ",".join(f"v{v}" for v in self.champion_versions) or "-"
        parts = [f"shadow v{self.version} vs champion {champion}: {self.requests} requests"]
        if self.agreement is not None:
            parts.append(f"agreement {self.agreement:.1%}")
        if self.mean_abs_diff is not None:
            parts.append(f"mean |diff| {self.mean_abs_diff:.4g}")
        if self.mean_shift is not None:
            parts.append(f"mean shift {self.mean_shift:+.4g}")
        latency = [
            f"{who} p50 {lat['p50']:.2f} ms / p95 {lat['p95']:.2f} ms"
            for who, lat in (("champion", self.champion_latency_ms), ("shadow", self.shadow_latency_ms))
            if lat.get("p50") is not None
        ]
        parts += latency
        parts.append(f"errors {self.errors}")
        return ", ".join(parts)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    array = np.asarray(values, dtype=float)
    return {"p50": float(np.percentile(array, 50)), "p95": float(np.percentile(array, 95))}


def _score(output: dict) -> float | None:
    value = output.get("score", output.get("value"))
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def compare_shadow(
    pairs: Iterable[ShadowPair],
    model: str = "",
    version: str | None = None,
    champion_versions: list[str] | None = None,
) -> ShadowComparison:
    """Agreement (labels), output difference and drift (scores) and latency of both, over ``pairs``.

    A classifier's output is ``{"label", "score"?}`` (score: P(positive) of a binary one); a
    regressor's ``{"value"}``. Failed shadow calls count as errors, not as disagreements.
    """
    result = ShadowComparison(model=model, version=version, champion_versions=list(champion_versions or []))
    agree: list[bool] = []
    champion_scores: list[float] = []
    shadow_scores: list[float] = []
    champion_lat: list[float] = []
    shadow_lat: list[float] = []
    for pair in pairs:
        result.requests += 1
        if pair.champion_latency_ms is not None:
            champion_lat.append(pair.champion_latency_ms)
        if pair.shadow is None:
            result.errors += 1
            if pair.error and len(result.last_errors) < 5 and pair.error not in result.last_errors:
                result.last_errors.append(pair.error)
            continue
        result.scored += 1
        if pair.shadow_latency_ms is not None:
            shadow_lat.append(pair.shadow_latency_ms)
        if "label" in pair.champion:
            result.kind = "classification"
            agree.append(pair.shadow.get("label") == pair.champion["label"])
        elif result.kind is None:
            result.kind = "regression"
        a, b = _score(pair.champion), _score(pair.shadow)
        if a is not None and b is not None:
            champion_scores.append(a)
            shadow_scores.append(b)
    if agree:
        result.agreement = sum(agree) / len(agree)
    if champion_scores:
        diff = np.asarray(shadow_scores) - np.asarray(champion_scores)
        result.mean_abs_diff = float(np.mean(np.abs(diff)))
        result.max_abs_diff = float(np.max(np.abs(diff)))
        result.mean_shift = float(np.mean(diff))
    result.champion_latency_ms = _percentiles(champion_lat)
    result.shadow_latency_ms = _percentiles(shadow_lat)
    return result


def _load(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def shadow_pairs(
    db, model: str, version: str | None = None, since: datetime | str | None = None, limit: int = MAX_ROWS
) -> tuple[list[ShadowPair], list[str]]:
    """The latest logged pairs of ``model`` (of shadow ``version``, since ``since``), oldest first,
    and the champion versions they were compared with."""
    engine = predlog.engine_for(db)
    predlog.ensure_schema(engine)
    t = predlog.SHADOW_PREDICTIONS
    query = sa.select(t).where(t.c.model == model)
    if version is not None:
        query = query.where(t.c.version == str(version))
    if since is not None:
        moment = datetime.fromisoformat(since) if isinstance(since, str) else since
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        query = query.where(t.c.created_at >= moment)
    query = query.order_by(t.c.id.desc()).limit(limit)
    pairs, champions = [], []
    with engine.connect() as conn:
        for row in reversed(list(conn.execute(query))):
            if row.champion_version not in champions:
                champions.append(row.champion_version)
            pairs.append(
                ShadowPair(
                    champion=_load(row.champion_prediction) or {},
                    shadow=_load(row.prediction) if row.status == "ok" else None,
                    champion_latency_ms=row.champion_latency_ms,
                    shadow_latency_ms=row.latency_ms,
                    error=row.error,
                )
            )
    return pairs, champions


def shadow_comparison(
    settings: FactorySettings, model: str, tags: dict[str, str] | None = None
) -> dict | None:
    """The shadow's comparison since it started (the running one, or the last one once stopped),
    as a dict for ``show`` and the view; None when the model never had a shadow. ``tags``: the
    registered model's tags when the caller already read them."""
    if tags is None:
        tags = dict(tracking.connect(settings).get_registered_model(model).tags or {})
    version = tags.get(tag_schema.SHADOW_VERSION)
    if not version:
        return None
    since = tags.get(tag_schema.SHADOW_STARTED_AT)
    uri = prediction_db_uri(settings)
    pairs: list[ShadowPair] = []
    champions: list[str] = []
    if not (uri.startswith("sqlite:///") and not os.path.exists(uri.removeprefix("sqlite:///"))):
        pairs, champions = shadow_pairs(uri, model, version, since)
    result = compare_shadow(pairs, model, version, champions)
    result.since = since
    status = tags.get(tag_schema.SHADOW_STATUS)
    share = parse_share(tags.get(tag_schema.SHADOW_SHARE)) if status == "running" else 0.0
    return {**result.as_dict(), "status": status, "share": share, "summary": result.summary()}
