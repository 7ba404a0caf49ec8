"""Canary rollouts: registry operations and the live comparison that decides them.

The registry is the single source of truth for serving. Alias ``champion`` and, during a rollout,
alias ``canary``; the canary's traffic share and progress are tags on the registered model:

    factory.canary.version     the version the share applies to (must equal the canary alias)
    factory.canary.share       "0.10": fraction of callers routed to the canary
    factory.canary.started_at  ISO time (UTC) the canary started: the analysis counts from here
    factory.canary.updated_at  ISO time (UTC) of the last start/ramp/stop: a stage counts from here
    factory.canary.stage       1 at start, +1 at every share change
    factory.canary.status      running | promoted | rolled_back | aborted

Both times are to the microsecond, like the prediction log's ``created_at``: a stage judges only
the outcomes of requests served after it began, even those in the same second (older tags to
the second still parse).

The gateway (``model_factory.serving``) re-reads these; every operation below records
who/what/when/why as version tags and returns the decision as a dict (see
``registry.record_decision``) for the prediction DB (``serving.predlog.write_decision``).

The analysis half is pure functions over the prediction DB: :func:`arm_outcomes` reads
per-arm labelled outcomes, errors and latencies; :func:`analyse_canary` decides.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from model_factory.io import tracking
from model_factory.pipeline import registry
from model_factory.pipeline.registry import CANARY, CHALLENGER, CHAMPION, PromotionError
from model_factory.settings import FactorySettings

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
    from model_factory.spec import ModelSpec
    from sqlalchemy.engine import Engine

TAG = "factory.canary."
SHARE_TAG, VERSION_TAG, STARTED_TAG = TAG + "share", TAG + "version", TAG + "started_at"
STAGE_TAG, STATUS_TAG, UPDATED_TAG = TAG + "stage", TAG + "status", TAG + "updated_at"
PINNED_TAG = "factory.pinned.version"

Decision = Literal["wait", "continue", "promote", "rollback"]
"""``continue``: healthy, ramp to the next share; ``promote``: healthy at the last stage."""


# --- registry state ------------------------------------------------------------------------


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


def _parse_share(text: str | None) -> float:
    try:
        share = float(text) if text is not None else 0.0
    except ValueError:
        return 0.0
    return min(max(share, 0.0), 1.0) if math.isfinite(share) else 0.0


def serving_state(client: MlflowClient, model: str) -> ServingState:
    """Aliases and canary tags of ``model`` from one ``get_registered_model`` call.

    Raises MlflowException when the model is not registered.
    """
    registered = client.get_registered_model(model)
    aliases = {alias: str(version) for alias, version in (registered.aliases or {}).items()}
    tags = dict(registered.tags or {})
    canary = aliases.get(CANARY)
    share = _parse_share(tags.get(SHARE_TAG)) if canary and tags.get(VERSION_TAG) == canary else 0.0
    try:
        stage = int(tags.get(STAGE_TAG, "0"))
    except ValueError:
        stage = 0
    return ServingState(
        model=model,
        champion=aliases.get(CHAMPION),
        canary=canary,
        share=share,
        started_at=tags.get(STARTED_TAG) if canary else None,
        stage=stage if canary else 0,
        status=tags.get(STATUS_TAG),
        updated_at=tags.get(UPDATED_TAG),
        pinned=tags.get(PINNED_TAG),
        tags=tags,
    )


def read_serving_state(model: str, settings: FactorySettings) -> ServingState:
    return serving_state(tracking.connect(settings), model)


def _check_share(share: float) -> float:
    share = float(share)
    if not (math.isfinite(share) and 0.0 < share <= 1.0):
        raise PromotionError(f"canary share must be in (0, 1], got {share}")
    return share


def _now() -> str:
    """Now as ISO UTC to the microsecond: stage starts are compared with predictions' ``created_at``."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _state(client: MlflowClient, model: str) -> ServingState:
    from mlflow.exceptions import MlflowException

    try:
        return serving_state(client, model)
    except MlflowException as exc:
        raise PromotionError(f"model {model!r} is not registered") from exc


def _running(state: ServingState, version: str | None) -> str:
    if state.canary is None:
        raise PromotionError(f"model {state.model!r} has no canary running")
    if version is not None and str(version) != state.canary:
        raise PromotionError(f"model {state.model!r}: the running canary is v{state.canary}, not v{version}")
    return state.canary


def _unchanged(
    model: str, version: str, action: str, actor: str, reason: str, details: dict | None, at: str | None
) -> dict:
    """The answer to a repeated call (a retried task): nothing changed, nothing recorded again."""
    return {
        "model": model,
        "version": str(version),
        "action": action,
        "actor": actor,
        "reason": reason,
        "at": at or _now(),
        "changed": False,
        "details": dict(details or {}),
    }


def _end_canary(client: MlflowClient, model: str, status: str) -> None:
    """Share to 0 first (the gateway stops routing), then drop the alias."""
    from mlflow.exceptions import MlflowException

    client.set_registered_model_tag(model, SHARE_TAG, "0")
    client.set_registered_model_tag(model, STATUS_TAG, status)
    client.set_registered_model_tag(model, UPDATED_TAG, _now())
    with contextlib.suppress(MlflowException):  # already gone: a retried task
        client.delete_registered_model_alias(model, CANARY)


def start_canary(
    model: str, version: str, share: float, settings: FactorySettings, actor: str, reason: str
) -> dict:
    """Make a blessed ``version`` the canary at ``share`` of the traffic.

    Idempotent for the same version (a retried task): the running canary is left as it is.
    Refused when the model is pinned, the version is the champion, or another canary runs.
    """
    version, share = str(version), _check_share(share)
    client = tracking.connect(settings)
    state = _state(client, model)
    if state.canary == version:
        return _unchanged(
            model,
            version,
            "canary_started",
            actor,
            reason,
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

    started = _now()
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
    decision = registry.record_decision(client, model, version, "canary_started", actor, reason, details)
    # "at" is the start written to the registry, so a retried call answers the same time.
    return {**decision, "at": started, "changed": True}


def set_canary_share(
    model: str,
    share: float,
    settings: FactorySettings,
    actor: str,
    reason: str,
    version: str | None = None,
) -> dict:
    """Ramp the running canary to ``share`` (stage + 1). ``version`` guards against ramping
    a canary other than the one analysed."""
    share = _check_share(share)
    client = tracking.connect(settings)
    state = _state(client, model)
    canary = _running(state, version)
    if abs(state.share - share) < 1e-9:
        return _unchanged(
            model, canary, "canary_ramped", actor, reason, {"share": share, "stage": state.stage}, at=_now()
        )
    stage = state.stage + 1
    client.set_registered_model_tag(model, SHARE_TAG, f"{share:.4f}")
    client.set_registered_model_tag(model, STAGE_TAG, str(stage))
    client.set_registered_model_tag(model, UPDATED_TAG, _now())
    details = {"share": share, "previous_share": state.share, "stage": stage}
    decision = registry.record_decision(client, model, canary, "canary_ramped", actor, reason, details)
    return {**decision, "changed": True}


def promote_canary(
    model: str,
    settings: FactorySettings,
    actor: str,
    reason: str,
    version: str | None = None,
    details: dict | None = None,
) -> dict:
    """Canary becomes champion through ``registry.promote`` (old champion: ``previous_champion``);
    the canary alias and share are cleared, a ``challenger`` alias on it removed.

    A retry after success (``version`` given, already champion, no canary) is a no-op.
    """
    client = tracking.connect(settings)
    state = _state(client, model)
    if state.canary is None and version is not None and state.champion == str(version):
        return _unchanged(model, str(version), "canary_promoted", actor, reason, details or {}, at=_now())
    canary = _running(state, version)
    promoted = registry.promote(model, canary, settings, actor, reason)
    _end_canary(client, model, "promoted")
    if registry.current_alias_version(client, model, CHALLENGER) == canary:
        client.delete_registered_model_alias(model, CHALLENGER)
    info = {
        **(details or {}),
        "previous_champion": promoted["previous_champion"],
        "final_share": state.share,
        "stage": state.stage,
    }
    decision = registry.record_decision(client, model, canary, "canary_promoted", actor, reason, info)
    return {
        **decision,
        "changed": True,
        "champion": canary,
        "previous_champion": promoted["previous_champion"],
    }


def _stop(
    action: str,
    status: str,
    model: str,
    settings: FactorySettings,
    actor: str,
    reason: str,
    version: str | None,
    details: dict | None,
    drop_challenger: bool,
) -> dict:
    version = None if version is None else str(version)
    client = tracking.connect(settings)
    state = _state(client, model)
    done = state.canary is None and state.status == status and state.tags.get(VERSION_TAG) == version
    if version is not None and done:
        return _unchanged(model, str(version), action, actor, reason, details or {}, at=_now())
    canary = _running(state, version)
    _end_canary(client, model, status)
    if drop_challenger and registry.current_alias_version(client, model, CHALLENGER) == canary:
        client.delete_registered_model_alias(model, CHALLENGER)
    info = {**(details or {}), "final_share": state.share, "stage": state.stage, "champion": state.champion}
    decision = registry.record_decision(client, model, canary, action, actor, reason, info)
    return {**decision, "changed": True, "champion": state.champion}


def rollback_canary(
    model: str,
    settings: FactorySettings,
    actor: str,
    reason: str,
    version: str | None = None,
    details: dict | None = None,
) -> dict:
    """The canary lost (analysis, guardrail or load failure): alias removed, share 0, and its
    ``challenger`` alias dropped so it is not retried. The champion is untouched."""
    return _stop(
        "canary_rolled_back",
        "rolled_back",
        model,
        settings,
        actor,
        reason,
        version,
        details,
        drop_challenger=True,
    )


def abort_canary(
    model: str,
    settings: FactorySettings,
    actor: str,
    reason: str,
    version: str | None = None,
    details: dict | None = None,
) -> dict:
    """Stop the canary without a verdict (ops): alias removed, share 0; a ``challenger`` alias stays."""
    return _stop(
        "canary_aborted", "aborted", model, settings, actor, reason, version, details, drop_challenger=False
    )


def pin_version(model: str, version: str, settings: FactorySettings, actor: str, reason: str) -> dict:
    """Serve exactly ``version``: champion set (old one kept as ``previous_champion``), any canary
    aborted, and no new canary starts until :func:`unpin_version`."""
    version = str(version)
    client = tracking.connect(settings)
    state = _state(client, model)
    registry.require_blessed(client, model, version, "served")
    aborted = None
    if state.canary is not None:
        aborted = abort_canary(model, settings, actor, f"pinned to v{version}: {reason}")["version"]
    promoted = registry.promote(model, version, settings, actor, reason)
    client.set_registered_model_tag(model, PINNED_TAG, version)
    details = {
        "previous_champion": promoted["previous_champion"] if promoted["changed"] else None,
        "aborted_canary": aborted,
    }
    decision = registry.record_decision(client, model, version, "pinned", actor, reason, details)
    return {**decision, "changed": True, "champion": version}


def unpin_version(model: str, settings: FactorySettings, actor: str, reason: str) -> dict:
    """Allow canaries again; the champion stays where it is."""
    client = tracking.connect(settings)
    state = _state(client, model)
    if state.pinned is None:
        raise PromotionError(f"model {model!r} is not pinned")
    client.delete_registered_model_tag(model, PINNED_TAG)
    decision = registry.record_decision(client, model, state.pinned, "unpinned", actor, reason)
    return {**decision, "changed": True}


# --- live outcomes per arm -------------------------------------------------------------------


@dataclass
class ArmData:
    """One arm's live data since the canary started.

    ``scores``/``predictions``/``outcomes`` are aligned and hold only labelled predictions;
    ``score`` is P(positive class) for binary classification, the predicted value for regression.
    """

    arm: str
    versions: list[str] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    latencies_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    predictions: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    outcomes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    load_errors: list[str] = field(default_factory=list)
    probabilities: list[dict[str, float]] = field(default_factory=list)
    """Per labelled row, the class probabilities the arm served (classification; {} if none)."""
    invalid_outcomes: int = 0
    """Feedback rows that could not be read as an outcome (left out of every metric)."""

    @property
    def labelled(self) -> int:
        return len(self.outcomes)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p95_latency_ms(self) -> float | None:
        return float(np.percentile(self.latencies_ms, 95)) if len(self.latencies_ms) else None


def _naive_utc(moment: datetime | str) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def arm_outcomes(
    db: str | Engine,
    model: str,
    since: datetime | str,
    *,
    until: datetime | str | None = None,
    versions: dict[str, str] | None = None,
) -> dict[str, ArmData]:
    """Per arm (``champion``, ``canary``): requests, errors, latencies and labelled outcomes.

    ``since`` is the canary's ``started_at`` (ISO string or datetime; naive means UTC).
    ``versions`` ({"canary": "3", ...}) keeps only that arm's rows of that version, so rows of an
    earlier canary never count. Canary load failures logged by the gateway since ``since``
    come back in ``load_errors``.
    """
    import json

    import sqlalchemy as sa
    from model_factory.serving import predlog

    engine = predlog.engine_for(db)
    predlog.ensure_schema(engine)
    p, f, d = predlog.PREDICTIONS, predlog.FEEDBACK, predlog.DECISIONS
    start = _naive_utc(since)
    where = [p.c.model == model, p.c.created_at >= start]
    if until is not None:
        where.append(p.c.created_at < _naive_utc(until))
    query = (
        sa.select(p.c.arm, p.c.version, p.c.status, p.c.latency_ms, p.c.prediction, p.c.score, f.c.outcome)
        .select_from(p.outerjoin(f, f.c.request_id == p.c.request_id))
        .where(*where)
        .order_by(p.c.id)
    )
    arms = {arm: ArmData(arm) for arm in ("champion", "canary")}
    rows: dict[str, dict[str, list]] = {
        arm: {"lat": [], "score": [], "pred": [], "out": [], "proba": []} for arm in arms
    }
    versions = versions or {}
    with engine.connect() as conn:
        for arm, version, status, latency, prediction, score, outcome in conn.execute(query):
            if arm not in arms or (arm in versions and str(version) != str(versions[arm])):
                continue
            data, acc = arms[arm], rows[arm]
            if version not in data.versions:
                data.versions.append(version)
            data.requests += 1
            if status != "ok":
                data.errors += 1
                continue
            acc["lat"].append(latency)
            if outcome is not None:
                try:
                    truth = json.loads(outcome)
                    served = json.loads(prediction) if prediction else {}
                except ValueError:
                    truth, served = None, {}
                if not isinstance(truth, str | int | float) or not isinstance(served, dict):
                    data.invalid_outcomes += 1
                    continue
                acc["score"].append(np.nan if score is None else score)
                acc["pred"].append(_scalar(served.get("label", score)))
                acc["out"].append(_scalar(truth))
                probabilities = served.get("probabilities")
                acc["proba"].append(probabilities if isinstance(probabilities, dict) else {})
        failures = sa.select(d.c.version, d.c.reason).where(
            d.c.model == model, d.c.action == "load_failed", d.c.at >= start
        )
        for version, reason in conn.execute(failures):
            if version == versions.get("canary", version):
                arms["canary"].load_errors.append(f"v{version}: {reason}")
    for arm, data in arms.items():
        acc = rows[arm]
        data.latencies_ms = np.asarray(acc["lat"], dtype=float)
        data.scores = np.asarray(acc["score"], dtype=float)
        data.predictions = _array(acc["pred"])
        data.outcomes = _array(acc["out"])
        data.probabilities = acc["proba"]
    return arms


def _scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else value


def _class_key(value: Any) -> str:
    """How a class is named in a served prediction's ``probabilities`` (``str(class)``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _probability_matrix(arm: ArmData) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(class names, n x k served probabilities, n true class names) of an arm's labelled rows;
    rows without probabilities are left out."""
    keep = [i for i, p in enumerate(arm.probabilities) if p]
    classes = sorted({k for i in keep for k in arm.probabilities[i]})
    rows = [[float(arm.probabilities[i].get(c, 0.0)) for c in classes] for i in keep]
    matrix = np.asarray(rows, dtype=float)
    truth = np.asarray([_class_key(arm.outcomes[i]) for i in keep], dtype=object)
    return classes, matrix.reshape(len(keep), len(classes)), truth


def _array(values: list) -> np.ndarray:
    if all(isinstance(v, float) for v in values):
        return np.asarray(values, dtype=float)
    return np.asarray([str(v) for v in values], dtype=object)


# --- the metric per arm, with its standard error ------------------------------------------------

ANALYTIC = ("roc_auc", "accuracy", "log_loss", "rmse", "mae")
BOOTSTRAPPED = ("f1", "r2")


def _midranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, method="average")


def auc_delong(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """ROC AUC and its DeLong standard error (DeLong et al. 1988; Sun & Xu 2014 midranks)."""
    y = np.asarray(y, dtype=float)
    pos, neg = score[y == 1], score[y == 0]
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        return float("nan"), float("nan")
    all_ranks = _midranks(np.concatenate([pos, neg]))
    pos_ranks, neg_ranks = _midranks(pos), _midranks(neg)
    auc = (all_ranks[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (all_ranks[:m] - pos_ranks) / n  # per positive: share of negatives ranked below
    v01 = 1.0 - (all_ranks[m:] - neg_ranks) / m  # per negative: share of positives ranked above
    var = v10.var(ddof=1) / m + v01.var(ddof=1) / n
    return float(auc), float(math.sqrt(max(var, 0.0)))


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    n = len(values)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")


def metric_with_se(metric: str, arm: ArmData, task: str, seed: int = 0) -> tuple[float, float]:
    """Point estimate and standard error of ``metric`` on the arm's labelled outcomes.

    Normal approximations: DeLong for roc_auc, binomial for accuracy, CLT of per-row losses for
    log_loss/mae, delta method for rmse; f1 and r2 by a seeded bootstrap (500 resamples).
    """
    y, pred, score = arm.outcomes, arm.predictions, arm.scores
    if len(y) < 2:
        return float("nan"), float("nan")
    if task == "regression":
        err = score - y.astype(float)
        if metric == "rmse":
            mse, se_mse = _mean_se(err**2)
            rmse = math.sqrt(mse)
            return rmse, (se_mse / (2 * rmse) if rmse > 0 else 0.0)
        if metric == "mae":
            return _mean_se(np.abs(err))
    else:
        if metric == "accuracy":
            hits = _same(pred, y)
            n, k = len(hits), hits.sum()
            p, p_adj = k / n, (k + 1) / (n + 2)  # Agresti-Coull-style: no zero SE at 0 or 1
            return float(p), math.sqrt(p_adj * (1 - p_adj) / (n + 2))
        has_proba = bool(arm.probabilities) and all(arm.probabilities)
        if metric == "roc_auc" and not has_proba:
            labels = set(np.unique(y.astype(str)))
            if not labels <= {"0", "1", "0.0", "1.0"}:
                raise ValueError(f"live roc_auc needs binary 0/1 outcomes, got classes {sorted(labels)}")
            return auc_delong(y.astype(float), score)
        if metric == "roc_auc":
            classes, matrix, truth = _probability_matrix(arm)
            unknown = sorted(set(truth) - set(classes))
            if unknown:
                raise ValueError(f"outcomes {unknown[:5]} are not classes the model predicts {classes[:20]}")
            if len(classes) == 2:  # binary, whatever the class names: DeLong on P(second class)
                return auc_delong((truth == classes[1]).astype(float), matrix[:, 1])
            return _bootstrap_auc(truth, matrix, classes, seed)
        if metric == "log_loss" and has_proba:
            # Probability the arm gave the true class: binary and multiclass, any class names.
            classes, matrix, truth = _probability_matrix(arm)
            index = {c: j for j, c in enumerate(classes)}
            p_true = np.asarray([matrix[i, index[t]] if t in index else 0.0 for i, t in enumerate(truth)])
            return _mean_se(-np.log(np.clip(p_true, 1e-15, 1.0)))
        if metric == "log_loss":
            yy = y.astype(float)
            p = np.clip(score, 1e-15, 1 - 1e-15)
            return _mean_se(-(yy * np.log(p) + (1 - yy) * np.log(1 - p)))
    if metric in BOOTSTRAPPED:
        return _bootstrap(metric, pred, y, score, task, seed)
    raise ValueError(f"metric {metric!r} is not supported for live {task} analysis")


def _same(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    if pred.dtype == object or y.dtype == object:
        return np.asarray([str(a) == str(b) for a, b in zip(pred, y, strict=True)])
    return pred == y


def _bootstrap_auc(
    truth: np.ndarray, matrix: np.ndarray, classes: list[str], seed: int, resamples: int = 300
) -> tuple[float, float]:
    """Macro one-vs-rest ROC AUC (as the holdout evaluation computes it) with a bootstrap SE."""
    from sklearn import metrics

    def value(idx: np.ndarray) -> float:
        y = truth[idx]
        if len(set(y)) < len(classes):
            return float("nan")  # a resample missing a class: OvR AUC undefined
        proba = matrix[idx] / np.clip(matrix[idx].sum(axis=1, keepdims=True), 1e-15, None)
        return float(metrics.roc_auc_score(y, proba, multi_class="ovr", labels=classes))

    n = len(truth)
    point = value(np.arange(n))
    if not math.isfinite(point):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = np.array([value(rng.integers(0, n, n)) for _ in range(resamples)])
    return point, float(np.nanstd(draws, ddof=1))


def _bootstrap(metric: str, pred, y, score, task: str, seed: int, resamples: int = 500):
    from sklearn import metrics

    def value(idx: np.ndarray) -> float:
        if metric == "r2":
            return float(metrics.r2_score(y[idx].astype(float), score[idx]))
        truth, guess = y[idx].astype(str), pred[idx].astype(str)
        return float(metrics.f1_score(truth, guess, average="macro", zero_division=0))

    n = len(y)
    rng = np.random.default_rng(seed)
    point = value(np.arange(n))
    draws = np.array([value(rng.integers(0, n, n)) for _ in range(resamples)])
    return point, float(np.nanstd(draws, ddof=1))


# --- the decision -------------------------------------------------------------------------------


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def _normal_ppf(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def analyse_canary(
    champion_arm: ArmData,
    canary_arm: ArmData,
    *,
    task: Literal["classification", "regression"],
    metric: str,
    higher_is_better: bool | None = None,
    min_samples: int = 200,
    max_relative_drop: float = 0.02,
    alpha: float = 0.05,
    error_rate_guardrail: float = 0.02,
    p95_latency_guardrail_ms: float = 250.0,
    min_requests: int = 50,
    ci_level: float = 0.95,
    final_stage: bool = True,
) -> dict:
    """Compare the canary with the champion on live outcomes; decide.

    - ``rollback``: the canary failed to load, broke a guardrail (error rate or p95 latency above
      the limit, judged once it has ``min_requests`` requests), or the one-sided test says it is
      worse than the champion by more than ``max_relative_drop`` (relative change of the metric in
      its good direction): H0 "drop <= max_relative_drop" rejected at level ``alpha``.
    - ``wait``: fewer than ``min_samples`` labelled outcomes in an arm (guardrails still apply).
    - ``continue`` (``final_stage=False``) / ``promote`` (``final_stage=True``): enough samples,
      guardrails pass and no significant drop: ramp to the next share, or promote at the last one.

    "No significant drop" is not proof of no drop: ``detectable_drop`` in the result is the true
    relative drop this sample size catches 80% of the time; choose ``min_samples`` with it (see
    ``simulator.decision_rates``). The test is the normal approximation of the relative difference
    (delta method over the two independent arms' standard errors, see :func:`metric_with_se`).
    """
    from model_factory.spec import METRICS

    if higher_is_better is None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; pass higher_is_better")
        higher_is_better = METRICS[metric]["higher_is_better"]
    if metric not in ANALYTIC + BOOTSTRAPPED:
        raise ValueError(f"metric {metric!r} is not supported for live {task} analysis")
    sign = 1.0 if higher_is_better else -1.0
    z_ci = _normal_ppf(0.5 + ci_level / 2)
    arms = {"champion": champion_arm, "canary": canary_arm}
    summary: dict[str, dict] = {}
    for name, arm in arms.items():
        summary[name] = {
            "versions": list(arm.versions),
            "requests": arm.requests,
            "errors": arm.errors,
            "error_rate": round(arm.error_rate, 6),
            "p95_latency_ms": arm.p95_latency_ms,
            "labelled": arm.labelled,
            "invalid_outcomes": arm.invalid_outcomes,
        }
    result: dict[str, Any] = {
        "metric": metric,
        "task": task,
        "higher_is_better": higher_is_better,
        "arms": summary,
        "min_samples": min_samples,
        "max_relative_drop": max_relative_drop,
        "alpha": alpha,
        "guardrails": {
            "error_rate": error_rate_guardrail,
            "p95_latency_ms": p95_latency_guardrail_ms,
            "min_requests": min_requests,
        },
        "final_stage": final_stage,
        "relative_change": None,
        "relative_change_upper": None,
        "p_value": None,
        "detectable_drop": None,
        "reasons": [],
    }
    reasons: list[str] = result["reasons"]

    def done(decision: Decision) -> dict:
        result["decision"] = decision
        return result

    if canary_arm.load_errors:
        reasons.append("canary failed to load in the gateway: " + "; ".join(canary_arm.load_errors[:3]))
        return done("rollback")
    if canary_arm.requests >= min_requests:
        if canary_arm.error_rate > error_rate_guardrail:
            reasons.append(
                f"canary error rate {canary_arm.error_rate:.2%} ({canary_arm.errors}/{canary_arm.requests}) "
                f"is above the {error_rate_guardrail:.2%} guardrail "
                f"(champion {champion_arm.error_rate:.2%})"
            )
        p95 = canary_arm.p95_latency_ms
        if p95 is not None and p95 > p95_latency_guardrail_ms:
            reasons.append(
                f"canary p95 latency {p95:.1f} ms is above the {p95_latency_guardrail_ms:.0f} ms guardrail "
                f"(champion {champion_arm.p95_latency_ms or float('nan'):.1f} ms)"
            )
        if reasons:
            return done("rollback")

    short = [
        f"{name} has {arm.labelled}/{min_samples} labelled outcomes"
        for name, arm in arms.items()
        if arm.labelled < min_samples
    ]
    if short:
        reasons.append("not enough samples: " + ", ".join(short))
        return done("wait")

    values = {}
    for name, arm in arms.items():
        try:
            value, se = metric_with_se(metric, arm, task)
        except Exception as exc:  # outcomes the metric cannot use: decide, never raise
            reasons.append(
                f"the stage cannot be judged: live {metric} on the {name} arm failed "
                f"({type(exc).__name__}: {str(exc)[:300]}); rolled back, nothing is promoted "
                "without evidence"
            )
            return done("rollback")
        values[name] = (value, se)
        ci = [value - z_ci * se, value + z_ci * se] if math.isfinite(se) else [None, None]
        summary[name].update({"value": value, "se": se, "ci": ci, "ci_level": ci_level})
    (champ, se_h), (cand, se_c) = values["champion"], values["canary"]
    if not all(math.isfinite(v) for v in (champ, se_h, cand, se_c)):
        reasons.append(f"{metric} could not be estimated on both arms (one class only?)")
        return done("wait")

    # Oriented relative change: > 0 means the canary is better.
    base = abs(champ) if champ != 0 else 1.0
    rel = sign * (cand - champ) / base
    se_rel = math.sqrt(se_c**2 + (cand / base) ** 2 * se_h**2) / base
    z_alpha = _normal_ppf(1 - alpha)
    upper = rel + z_alpha * se_rel
    p_value = (
        _normal_cdf((rel + max_relative_drop) / se_rel) if se_rel > 0 else float(rel < -max_relative_drop)
    )
    detectable = max_relative_drop + (z_alpha + _normal_ppf(0.8)) * se_rel
    result.update(
        {
            "relative_change": rel,
            "relative_change_se": se_rel,
            "relative_change_upper": upper,
            "p_value": p_value,
            "detectable_drop": detectable,
        }
    )
    vs = f"canary {metric} {cand:.4f} ± {z_ci * se_c:.4f} vs champion {champ:.4f} ± {z_ci * se_h:.4f}"
    if p_value < alpha:
        reasons.append(
            f"{vs}: {-rel:.1%} worse, significantly more than the allowed {max_relative_drop:.1%} "
            f"(one-sided p={p_value:.3g} < {alpha}; upper bound of the change {upper:+.1%})"
        )
        return done("rollback")
    reasons.append(
        f"{vs} ({rel:+.1%}): no significant drop beyond the allowed {max_relative_drop:.1%} "
        f"(one-sided p={p_value:.3g} >= {alpha}; drops of {detectable:.1%} or more would be caught "
        f"80% of the time at this sample size); guardrails pass"
    )
    return done("promote" if final_stage else "continue")


# --- one call per sensor poke -------------------------------------------------------------------


def next_share(ramp: list[float], current: float) -> float | None:
    """The ramp's next share after ``current``; None at (or beyond) the last step."""
    return next((share for share in ramp if share > current + 1e-9), None)


def analyse_running_canary(
    spec: ModelSpec,
    settings: FactorySettings,
    db: str | Engine | None = None,
    *,
    deadline_passed: bool = False,
) -> dict:
    """Analyse the model's running canary with its spec's ``canary`` settings; what a DAG's sensor
    and branch call.

    Outcomes count from the canary's start (all stages: more power), but a stage is only judged
    once the canary has ``min_samples`` labelled outcomes since that stage began (its share was
    set). ``final_stage`` is the last share of ``ramp``. With ``deadline_passed`` (the stage's
    maximum duration is over) a ``wait`` becomes ``rollback``: no promotion without evidence.
    The result is :func:`analyse_canary`'s plus the registry state and ``next_share``.
    """
    from model_factory.serving.settings import prediction_db_uri

    rollout = spec.canary
    model = spec.registered_model_name
    state = read_serving_state(model, settings)
    if state.canary is None:
        raise PromotionError(f"model {model!r} has no canary running")
    db = db if db is not None else prediction_db_uri(settings)
    versions = {"canary": state.canary, "champion": state.champion or ""}
    final = next_share(list(rollout.ramp), state.share) is None
    try:
        result = _analyse_stage(spec, state, db, versions, final)
    except Exception as exc:  # the prediction DB is down, say: judge again, decide at the deadline
        why = f"the stage cannot be judged now ({type(exc).__name__}: {str(exc)[:300]})"
        result = {"decision": "wait", "metric": spec.gates.primary_metric, "task": spec.task,
                  "arms": {}, "reasons": [why]}  # fmt: skip
    if result["decision"] == "wait" and deadline_passed:
        result["reasons"].insert(
            0,
            f"the stage's maximum duration ({rollout.max_stage_minutes} min) is over without a verdict "
            "(not enough labelled outcomes, or the stage could not be judged): rolled back, nothing "
            "is promoted without evidence",
        )
        result["decision"] = "rollback"
    result.update(
        {
            "model": model,
            "canary_version": state.canary,
            "champion_version": state.champion,
            "share": state.share,
            "stage": state.stage,
            "started_at": state.started_at,
            "next_share": next_share(list(rollout.ramp), state.share),
        }
    )
    result.setdefault("stage_labelled", None)
    return result


def _analyse_stage(spec: ModelSpec, state: ServingState, db, versions: dict[str, str], final: bool) -> dict:
    rollout, model = spec.canary, spec.registered_model_name
    arms = arm_outcomes(db, model, state.started_at or state.updated_at or "1970-01-01", versions=versions)
    result = analyse_canary(
        arms["champion"],
        arms["canary"],
        task=spec.task,
        metric=spec.gates.primary_metric,
        higher_is_better=spec.higher_is_better,
        min_samples=rollout.min_samples,
        max_relative_drop=rollout.max_relative_drop,
        alpha=rollout.alpha,
        error_rate_guardrail=rollout.max_error_rate,
        p95_latency_guardrail_ms=rollout.max_p95_latency_ms,
        final_stage=final,
    )
    stage_labelled = arms["canary"].labelled
    if (
        result["decision"] in ("continue", "promote")
        and state.updated_at
        and state.updated_at != state.started_at
    ):
        stage_labelled = arm_outcomes(db, model, state.updated_at, versions=versions)["canary"].labelled
        if stage_labelled < rollout.min_samples:
            result["reasons"].insert(
                0,
                f"stage {state.stage} (share {state.share:.0%}): the canary has {stage_labelled}/"
                f"{rollout.min_samples} labelled outcomes since the stage began",
            )
            result["decision"] = "wait"
    result["stage_labelled"] = stage_labelled
    return result


# --- ops: one entry point for the CLI and the canary DAG's conf actions ----------------------

OPS_ACTIONS = ("promote", "rollback", "abort", "pin", "unpin")


def ops_action(
    model: str,
    action: str,
    settings: FactorySettings,
    actor: str,
    reason: str,
    version: str | None = None,
) -> dict:
    """Carry out an ops request and return the recorded decision.

    ``promote``: the running canary (or, with no canary, ``version``) becomes champion;
    ``rollback``: the running canary is rolled back, else the champion goes back to
    ``previous_champion``; ``abort``: the canary stops without a verdict; ``pin``/``unpin``.
    Raises PromotionError (the message says why) for a request that cannot be carried out.
    """
    if action not in OPS_ACTIONS:
        raise PromotionError(f"unknown action {action!r}; use one of {', '.join(OPS_ACTIONS)}")
    if not reason or not reason.strip():
        raise PromotionError(f"{action} needs a reason: it is recorded with who and when")
    version = str(version) if version is not None else None
    state = read_serving_state(model, settings)
    if action == "promote" and state.canary and version in (None, state.canary):
        return promote_canary(model, settings, actor, reason)
    if action == "promote":
        if version is None:
            raise PromotionError(f"model {model!r} has no canary running: say which version to promote")
        done = registry.promote(model, version, settings, actor, reason)
        return {"model": model, "version": version, "action": "promoted", "actor": actor,
                "reason": reason, "details": done, "changed": done["changed"]}  # fmt: skip
    if action == "rollback" and state.canary:
        return rollback_canary(model, settings, actor, reason)
    if action == "rollback":
        done = registry.rollback(model, settings, actor, reason)
        return {"model": model, "version": done["champion"], "action": "rolled_back", "actor": actor,
                "reason": reason, "details": done, "changed": True}  # fmt: skip
    if action == "abort":
        return abort_canary(model, settings, actor, reason)
    if action == "pin":
        if version is None:
            raise PromotionError("pin needs the version to serve")
        return pin_version(model, version, settings, actor, reason)
    return unpin_version(model, settings, actor, reason)
