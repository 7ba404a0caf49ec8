"""The canary's verdict: compare the arms' live outcomes under the spec's policy, decide.

:func:`analyse_canary` is the pure comparison of two arms under a :class:`CanarySpec`;
:func:`analyse_running_canary` is what a DAG's sensor calls once per poke: registry state,
outcomes since the canary (and the stage) began, the deadline. Both return typed results;
``to_dict()`` gives the JSON a task hands on (XCom) and the audit trail records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from model_factory.io.registry_state import ServingState, read_serving_state
from model_factory.pipeline.registry import PromotionError
from model_factory.rollout.outcomes import ArmData, arm_outcomes
from model_factory.rollout.statistics import (
    ANALYTIC,
    BOOTSTRAPPED,
    metric_with_se,
    normal_ppf,
    relative_change_test,
)
from model_factory.serving.settings import prediction_db_uri
from model_factory.settings import FactorySettings
from model_factory.spec import METRICS, CanarySpec

if TYPE_CHECKING:
    from model_factory.spec import ModelSpec
    from sqlalchemy.engine import Engine

CanaryVerdict = Literal["wait", "continue", "promote", "rollback"]
"""``continue``: healthy, ramp to the next share; ``promote``: healthy at the last stage."""

MIN_GUARDRAIL_REQUESTS = 50
"""Requests the canary must have served before a guardrail (error rate, p95) can judge it."""


@dataclass
class ArmSummary:
    """One arm as the analysis saw it; ``value``/``se``/``ci`` once its metric was estimated."""

    versions: list[str]
    requests: int
    errors: int
    error_rate: float
    p95_latency_ms: float | None
    labelled: int
    invalid_outcomes: int
    value: float | None = None
    se: float | None = None
    ci: list[float | None] | None = None
    ci_level: float | None = None

    @classmethod
    def of(cls, arm: ArmData) -> ArmSummary:
        return cls(
            list(arm.versions),
            arm.requests,
            arm.errors,
            round(arm.error_rate, 6),
            arm.p95_latency_ms,
            arm.labelled,
            arm.invalid_outcomes,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            k: getattr(self, k)
            for k in (
                "versions",
                "requests",
                "errors",
                "error_rate",
                "p95_latency_ms",
                "labelled",
                "invalid_outcomes",
            )
        }
        if self.value is not None:
            out.update({"value": self.value, "se": self.se, "ci": self.ci, "ci_level": self.ci_level})
        return out


@dataclass
class CanaryAnalysis:
    """The comparison of the two arms under one policy, with the verdict and its reasons."""

    decision: CanaryVerdict
    metric: str
    task: str
    higher_is_better: bool
    arms: dict[str, ArmSummary]
    policy: CanarySpec
    final_stage: bool
    reasons: list[str] = field(default_factory=list)
    min_requests: int = MIN_GUARDRAIL_REQUESTS
    relative_change: float | None = None
    """Oriented relative change of the metric: > 0 means the canary is better."""
    relative_change_se: float | None = None
    relative_change_upper: float | None = None
    p_value: float | None = None
    detectable_drop: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metric": self.metric,
            "task": self.task,
            "higher_is_better": self.higher_is_better,
            "arms": {name: arm.to_dict() for name, arm in self.arms.items()},
            "min_samples": self.policy.min_samples,
            "max_relative_drop": self.policy.max_relative_drop,
            "alpha": self.policy.alpha,
            "guardrails": {
                "error_rate": self.policy.max_error_rate,
                "p95_latency_ms": self.policy.max_p95_latency_ms,
                "min_requests": self.min_requests,
            },
            "final_stage": self.final_stage,
            "relative_change": self.relative_change,
            "relative_change_upper": self.relative_change_upper,
            "p_value": self.p_value,
            "detectable_drop": self.detectable_drop,
            "reasons": list(self.reasons),
            "decision": self.decision,
        }
        if self.relative_change_se is not None:
            out["relative_change_se"] = self.relative_change_se
        return out


def _guardrail_breaches(
    champion: ArmData, canary: ArmData, policy: CanarySpec, min_requests: int
) -> list[str]:
    """Why the canary must roll back whatever its metric: it failed to load, or (once it has
    ``min_requests`` requests) its error rate or p95 latency is above the policy's limit."""
    if canary.load_errors:
        return ["canary failed to load in the gateway: " + "; ".join(canary.load_errors[:3])]
    if canary.requests < min_requests:
        return []
    reasons = []
    if canary.error_rate > policy.max_error_rate:
        reasons.append(
            f"canary error rate {canary.error_rate:.2%} ({canary.errors}/{canary.requests}) "
            f"is above the {policy.max_error_rate:.2%} guardrail (champion {champion.error_rate:.2%})"
        )
    p95 = canary.p95_latency_ms
    if p95 is not None and p95 > policy.max_p95_latency_ms:
        reasons.append(
            f"canary p95 latency {p95:.1f} ms is above the {policy.max_p95_latency_ms:.0f} ms guardrail "
            f"(champion {champion.p95_latency_ms or float('nan'):.1f} ms)"
        )
    return reasons


def analyse_canary(
    champion_arm: ArmData,
    canary_arm: ArmData,
    policy: CanarySpec,
    *,
    task: Literal["classification", "regression"],
    metric: str,
    higher_is_better: bool | None = None,
    final_stage: bool = True,
    ci_level: float = 0.95,
    min_requests: int = MIN_GUARDRAIL_REQUESTS,
) -> CanaryAnalysis:
    """Compare the canary with the champion on live outcomes under ``policy``; decide.

    - ``rollback``: the canary failed to load, broke a guardrail (error rate or p95 latency above
      the policy's limit, judged once it has ``min_requests`` requests), or the one-sided test
      says it is worse than the champion by more than ``policy.max_relative_drop`` (relative
      change of the metric in its good direction): H0 "drop <= max_relative_drop" rejected at
      level ``policy.alpha``.
    - ``wait``: fewer than ``policy.min_samples`` labelled outcomes in an arm (guardrails apply).
    - ``continue`` (``final_stage=False``) / ``promote`` (``final_stage=True``): enough samples,
      guardrails pass and no significant drop: ramp to the next share, or promote at the last one.

    "No significant drop" is not proof of no drop: ``detectable_drop`` is the true relative drop
    this sample size catches 80% of the time; choose ``min_samples`` with it (see
    ``simulator.decision_rates``). The test is the normal approximation of the relative difference
    (:func:`statistics.relative_change_test` over each arm's :func:`metric_with_se`).

    Over 80 lines on purpose: the policy's checks in the order they decide, each ending in ``done``
    on one result; the code is under 80 lines, the rest is this statement of the policy.
    """
    if higher_is_better is None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; pass higher_is_better")
        higher_is_better = bool(METRICS[metric]["higher_is_better"])
    if metric not in ANALYTIC + BOOTSTRAPPED:
        raise ValueError(f"metric {metric!r} is not supported for live {task} analysis")
    arms = {"champion": champion_arm, "canary": canary_arm}
    result = CanaryAnalysis(
        "wait",
        metric,
        task,
        higher_is_better,
        {name: ArmSummary.of(arm) for name, arm in arms.items()},
        policy,
        final_stage,
        min_requests=min_requests,
    )

    def done(decision: CanaryVerdict, *reasons: str) -> CanaryAnalysis:
        result.decision = decision
        result.reasons.extend(reasons)
        return result

    breaches = _guardrail_breaches(champion_arm, canary_arm, policy, min_requests)
    if breaches:
        return done("rollback", *breaches)
    short = [
        f"{name} has {arm.labelled}/{policy.min_samples} labelled outcomes"
        for name, arm in arms.items()
        if arm.labelled < policy.min_samples
    ]
    if short:
        return done("wait", "not enough samples: " + ", ".join(short))

    z_ci = normal_ppf(0.5 + ci_level / 2)
    values = {}
    for name, arm in arms.items():
        try:
            value, se = metric_with_se(metric, arm, task)
        except Exception as exc:  # outcomes the metric cannot use: decide, never raise
            return done(
                "rollback",
                f"the stage cannot be judged: live {metric} on the {name} arm failed "
                f"({type(exc).__name__}: {str(exc)[:300]}); rolled back, nothing is promoted "
                "without evidence",
            )
        values[name] = (value, se)
        summary = result.arms[name]
        summary.value, summary.se, summary.ci_level = value, se, ci_level
        summary.ci = [value - z_ci * se, value + z_ci * se] if math.isfinite(se) else [None, None]
    (champ, se_h), (cand, se_c) = values["champion"], values["canary"]
    if not all(math.isfinite(v) for v in (champ, se_h, cand, se_c)):
        return done("wait", f"{metric} could not be estimated on both arms (one class only?)")

    change = relative_change_test(
        values["champion"],
        values["canary"],
        higher_is_better=higher_is_better,
        max_relative_drop=policy.max_relative_drop,
        alpha=policy.alpha,
    )
    result.relative_change, result.relative_change_se = change.value, change.se
    result.relative_change_upper, result.p_value = change.upper, change.p_value
    result.detectable_drop = change.detectable_drop
    rel, upper, p_value = change.value, change.upper, change.p_value
    drop, alpha = policy.max_relative_drop, policy.alpha
    vs = f"canary {metric} {cand:.4f} ± {z_ci * se_c:.4f} vs champion {champ:.4f} ± {z_ci * se_h:.4f}"
    if p_value < alpha:
        return done(
            "rollback",
            f"{vs}: {-rel:.1%} worse, significantly more than the allowed {drop:.1%} "
            f"(one-sided p={p_value:.3g} < {alpha}; upper bound of the change {upper:+.1%})",
        )
    return done(
        "promote" if final_stage else "continue",
        f"{vs} ({rel:+.1%}): no significant drop beyond the allowed {drop:.1%} "
        f"(one-sided p={p_value:.3g} >= {alpha}; drops of {change.detectable_drop:.1%} or more would "
        "be caught 80% of the time at this sample size); guardrails pass",
    )


# --- one call per sensor poke -------------------------------------------------------------------


@dataclass
class StageVerdict:
    """The rollout decision for the running canary's current stage: what the DAG acts on."""

    decision: CanaryVerdict
    reasons: list[str]
    model: str
    canary_version: str
    champion_version: str | None
    share: float
    stage: int
    started_at: str | None
    next_share: float | None
    metric: str
    task: str
    analysis: CanaryAnalysis | None = None
    """None when the stage could not be judged at all (the prediction DB is down, say)."""
    stage_labelled: int | None = None
    """The canary's labelled outcomes since the current stage began."""

    def to_dict(self) -> dict[str, Any]:
        """The analysis' dict with this stage's decision, reasons and registry state on top."""
        base = (
            self.analysis.to_dict()
            if self.analysis
            else {"metric": self.metric, "task": self.task, "arms": {}}
        )
        return {
            **base,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "model": self.model,
            "canary_version": self.canary_version,
            "champion_version": self.champion_version,
            "share": self.share,
            "stage": self.stage,
            "started_at": self.started_at,
            "next_share": self.next_share,
            "stage_labelled": self.stage_labelled,
        }


def next_share(ramp: list[float], current: float) -> float | None:
    """The ramp's next share after ``current``; None at (or beyond) the last step."""
    return next((share for share in ramp if share > current + 1e-9), None)


def analyse_running_canary(
    spec: ModelSpec,
    settings: FactorySettings,
    db: str | Engine | None = None,
    *,
    deadline_passed: bool = False,
) -> StageVerdict:
    """Analyse the model's running canary under its spec's ``canary`` policy; what a DAG's sensor
    and branch call.

    Outcomes count from the canary's start (all stages: more power), but a stage is only judged
    once the canary has ``min_samples`` labelled outcomes since that stage began (its share was
    set). ``final_stage`` is the last share of ``ramp``. With ``deadline_passed`` (the stage's
    maximum duration is over) a ``wait`` becomes ``rollback``: no promotion without evidence.
    """
    policy = spec.canary
    model = spec.registered_model_name
    state = read_serving_state(model, settings)
    if state.canary is None:
        raise PromotionError(f"model {model!r} has no canary running")
    db = db if db is not None else prediction_db_uri(settings)
    upcoming = next_share(list(policy.ramp), state.share)
    verdict = StageVerdict(
        "wait",
        [],
        model,
        state.canary,
        state.champion,
        state.share,
        state.stage,
        state.started_at,
        upcoming,
        spec.gates.primary_metric,
        spec.task,
    )
    try:
        _judge_stage(verdict, spec, state, db, final=upcoming is None)
    except Exception as exc:  # the prediction DB is down, say: judge again, decide at the deadline
        verdict.decision, verdict.analysis, verdict.stage_labelled = "wait", None, None
        verdict.reasons = [f"the stage cannot be judged now ({type(exc).__name__}: {str(exc)[:300]})"]
    if verdict.decision == "wait" and deadline_passed:
        verdict.reasons.insert(
            0,
            f"the stage's maximum duration ({policy.max_stage_minutes} min) is over without a verdict "
            "(not enough labelled outcomes, or the stage could not be judged): rolled back, nothing "
            "is promoted without evidence",
        )
        verdict.decision = "rollback"
    return verdict


def _judge_stage(verdict: StageVerdict, spec: ModelSpec, state: ServingState, db, final: bool) -> None:
    policy, model = spec.canary, spec.registered_model_name
    versions = {"canary": state.canary or "", "champion": state.champion or ""}
    arms = arm_outcomes(db, model, state.started_at or state.updated_at or "1970-01-01", versions=versions)
    analysis = analyse_canary(
        arms["champion"],
        arms["canary"],
        policy,
        task=spec.task,
        metric=spec.gates.primary_metric,
        higher_is_better=spec.higher_is_better,
        final_stage=final,
    )
    verdict.analysis, verdict.decision, verdict.reasons = analysis, analysis.decision, list(analysis.reasons)
    verdict.stage_labelled = arms["canary"].labelled
    new_stage = state.updated_at and state.updated_at != state.started_at
    if analysis.decision in ("continue", "promote") and new_stage and state.updated_at:
        since_stage = arm_outcomes(db, model, state.updated_at, versions=versions)
        verdict.stage_labelled = since_stage["canary"].labelled
        if verdict.stage_labelled < policy.min_samples:
            verdict.reasons.insert(
                0,
                f"stage {state.stage} (share {state.share:.0%}): the canary has {verdict.stage_labelled}/"
                f"{policy.min_samples} labelled outcomes since the stage began",
            )
            verdict.decision = "wait"
