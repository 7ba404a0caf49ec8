"""The canary DAG's conf actions ``shadow`` / ``shadow_stop`` go through ``ops_action`` (the task
is a thin wrapper): a share from the conf, the version required, who and why recorded."""

from __future__ import annotations

import pytest
from model_factory.contracts import Attribution
from model_factory.io import tag_schema
from model_factory.io.registry_state import read_serving_state
from model_factory.io.tracking import connect
from model_factory.pipeline.registry import PromotionError
from model_factory.rollout.ops import OpsRequest, ops_action
from model_factory.settings import FactorySettings

from tests.unit.pipeline.test_registry import two_versions  # noqa: F401 - fixture


def test_conf_actions_start_and_stop_a_shadow(two_versions: FactorySettings) -> None:  # noqa: F811
    settings = two_versions
    with pytest.raises(PromotionError, match="shadow needs the version"):
        ops_action(OpsRequest("churn", "shadow", Attribution("ana via airflow", "compare")), settings)
    compare = OpsRequest("churn", "shadow", Attribution("ana via airflow", "compare"), version=2, share=0.25)
    started = ops_action(compare, settings)
    assert (started["action"], started["version"], started["details"]["share"]) == (
        "shadow_started",
        "2",
        0.25,
    )
    state = read_serving_state("churn", settings)
    assert (state.champion, state.shadow, state.shadow_share, state.canary) == ("1", "2", 0.25, None)
    tags = connect(settings).get_model_version("churn", "2").tags
    assert tags["factory.shadow_started.by"] == "ana via airflow"
    all_of_it = OpsRequest("churn", "shadow", Attribution("ana via airflow", "all of it"), version="2")
    default = ops_action(all_of_it, settings)
    assert default["details"]["share"] == 1.0  # no share in the conf: every request

    stop = OpsRequest("churn", "shadow_stop", Attribution("bob via airflow", "seen enough"))
    stopped = ops_action(stop, settings)
    assert stopped["action"] == "shadow_stopped" and stopped["details"]["final_share"] == 1.0
    state = read_serving_state("churn", settings)
    assert (state.shadow, state.shadow_share) == (None, 0.0)
    assert state.tags[tag_schema.SHADOW_STATUS] == "stopped"
