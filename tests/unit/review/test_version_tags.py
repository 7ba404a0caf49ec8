"""A registered version carries a handful of readable tags: no passing item's reason, no JSON blob."""

from __future__ import annotations

import json
from pathlib import Path

from model_factory.contracts import Attribution
from model_factory.io import tag_schema
from model_factory.io.tracking import connect
from model_factory.pipeline.registry import decision_artifact, record_decision
from model_factory.rollout.fleet import _version_row
from model_factory.settings import FactorySettings

from tests.unit.review.test_registry import retrain, spec_for

REGISTERED_BEFORE = 25
"""factory.* tags on a freshly registered and carded churn version before this change (measured)."""


def _artifact(client, run_id: str, path: str, home) -> dict:
    return json.loads(Path(client.download_artifacts(run_id, path, str(home))).read_text())


def test_a_registered_version_has_fewer_tags_and_every_reader_still_finds_its_own(factory_home):
    settings = FactorySettings.from_env()
    spec = spec_for()
    registered = retrain(spec, settings)
    client = connect(settings)
    version = registered["version"]
    tags = {
        k: v for k, v in client.get_model_version("churn", version).tags.items() if k.startswith("factory.")
    }
    items = spec.review.checklist
    assert len(tags) == REGISTERED_BEFORE - len(items) == 18, sorted(tags)
    # every item's result is still a tag (fleet/console, require_checklist, approval read them) ...
    assert all(tags[tag_schema.checklist_item(i)] == "pass" for i in items)
    assert tags[tag_schema.CHECKLIST] == "passed"
    # ... and a passing item's reason is on the card's data, not a tag
    assert not any(k.endswith(".reason") for k in tags)
    card_data = _artifact(client, registered["run_id"], "review/card.json", factory_home)
    assert {i["item"]: bool(i["reason"]) for i in card_data["checklist"]} == dict.fromkeys(items, True)
    row = _version_row(client.get_model_version("churn", version), "roc_auc", {})
    assert row["checklist_items"] == dict.fromkeys(items, "pass") and row["checklist"] == "passed"

    # a decision with a structured detail (the canary's analysis) leaves no JSON blob in the tags
    analysis = {"p_value": 0.4, "metric": {"champion": 0.81, "canary": 0.82}}
    decision = record_decision(
        client,
        "churn",
        version,
        "canary_promoted",
        Attribution("airflow", "live AUC holds"),
        {"analysis": analysis, "final_share": 0.5},
    )
    after = client.get_model_version("churn", version).tags
    blobs = [k for k, v in after.items() if k.startswith("factory.") and v.lstrip().startswith(("{", "["))]
    assert blobs == []
    assert after["factory.canary_promoted.final_share"] == "0.5"
    assert {k for k in after if k.startswith("factory.canary_promoted.")} == {
        f"factory.canary_promoted.{k}" for k in ("by", "at", "reason", "final_share")
    }
    logged = _artifact(client, registered["run_id"], decision_artifact("canary_promoted"), factory_home)
    assert logged["details"]["analysis"] == analysis and logged["at"] == decision["at"]
