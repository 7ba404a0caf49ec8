"""Canary rollouts, by their old address: the names callers import, from the modules that own them.

- :mod:`model_factory.io.registry_state`: what the registry says should serve (aliases, share);
- :mod:`model_factory.io.tag_schema`: the tag names;
- :mod:`model_factory.rollout.state`: the state machine (start, ramp, promote, roll back, pin);
- :mod:`model_factory.rollout.outcomes`: live outcomes per arm from the prediction log;
- :mod:`model_factory.rollout.statistics`: each arm's metric with its standard error;
- :mod:`model_factory.rollout.analysis`: the verdict under the spec's canary policy;
- :mod:`model_factory.rollout.ops`: ops requests (CLI, the canary DAG's conf actions).
"""

from __future__ import annotations

from model_factory.io.registry_state import ServingState, read_serving_state, serving_state
from model_factory.rollout.analysis import (
    ArmSummary,
    CanaryAnalysis,
    CanaryVerdict,
    StageVerdict,
    analyse_canary,
    analyse_running_canary,
    next_share,
)
from model_factory.rollout.ops import OPS_ACTIONS, OpsRequest, ops_action
from model_factory.rollout.outcomes import ArmData, arm_outcomes
from model_factory.rollout.state import (
    PINNED_TAG,
    SHARE_TAG,
    STAGE_TAG,
    STARTED_TAG,
    STATUS_TAG,
    UPDATED_TAG,
    VERSION_TAG,
    abort_canary,
    pin_version,
    promote_canary,
    rollback_canary,
    set_canary_share,
    start_canary,
    unpin_version,
)
from model_factory.rollout.statistics import ANALYTIC, BOOTSTRAPPED, auc_delong, metric_with_se

__all__ = [
    "ANALYTIC",
    "BOOTSTRAPPED",
    "OPS_ACTIONS",
    "PINNED_TAG",
    "SHARE_TAG",
    "STAGE_TAG",
    "STARTED_TAG",
    "STATUS_TAG",
    "UPDATED_TAG",
    "VERSION_TAG",
    "ArmData",
    "ArmSummary",
    "CanaryAnalysis",
    "CanaryVerdict",
    "OpsRequest",
    "ServingState",
    "StageVerdict",
    "abort_canary",
    "analyse_canary",
    "analyse_running_canary",
    "arm_outcomes",
    "auc_delong",
    "metric_with_se",
    "next_share",
    "ops_action",
    "pin_version",
    "promote_canary",
    "read_serving_state",
    "rollback_canary",
    "serving_state",
    "set_canary_share",
    "start_canary",
    "unpin_version",
]
