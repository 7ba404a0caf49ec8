"""Promotion and rollback for ops: only blessed versions, one-step rollback, who/why recorded."""

from __future__ import annotations

import json

import pytest
from model_factory.cli.main import main
from model_factory.contracts import Attribution
from model_factory.io.tracking import connect
from model_factory.pipeline.registry import PromotionError, current_alias_version, promote, rollback
from model_factory.settings import FactorySettings

from tests.unit.pipeline.test_training_evaluation import DAY, _retrain, _validated, spec_for


@pytest.fixture
def two_versions(factory_home):
    """v1 blessed champion, v2 blessed challenger (same spec, the next day's data)."""
    settings = FactorySettings.from_env()
    spec = spec_for("churn", **{"gates.max_regression": 0.5, "gates.too_good_jump": None})
    _retrain(spec, settings, DAY, [_validated(settings, "churn", DAY)])
    later = DAY.replace(day=DAY.day + 1)
    _, _, registered = _retrain(spec, settings, later, [_validated(settings, "churn", later)])
    assert registered["alias"] == "challenger"
    return settings


def test_promote_moves_champion_and_keeps_previous(two_versions):
    settings = two_versions
    result = promote("churn", "2", settings, Attribution("alice", "canary looked good"))
    client = connect(settings)
    assert result == {"model": "churn", "champion": "2", "previous_champion": "1", "changed": True}
    assert current_alias_version(client, "churn", "champion") == "2"
    assert current_alias_version(client, "churn", "previous_champion") == "1"
    assert current_alias_version(client, "churn", "challenger") is None
    tags = client.get_model_version("churn", "2").tags
    assert tags["factory.promoted.by"] == "alice"
    assert tags["factory.promoted.reason"] == "canary looked good"

    back = rollback("churn", settings, Attribution("bob", "live AUC dropped"))
    assert back == {"model": "churn", "champion": "1", "demoted": "2"}
    assert current_alias_version(client, "churn", "champion") == "1"
    assert current_alias_version(client, "churn", "previous_champion") is None
    assert client.get_model_version("churn", "2").tags["factory.rolled_back.by"] == "bob"


def test_rollback_without_previous_champion_is_refused(two_versions):
    with pytest.raises(PromotionError, match="no previous_champion"):
        rollback("churn", two_versions, Attribution("bob", "x"))


def test_only_blessed_versions_can_be_promoted(factory_home):
    settings = FactorySettings.from_env()
    spec = spec_for("demand", **{"gates.threshold": 0.5})
    _retrain(spec, settings, DAY, [_validated(settings, "demand", DAY)])
    with pytest.raises(PromotionError, match=r"v1 is rejected .*only blessed"):
        promote("demand", "1", settings, Attribution("alice", "try"))
    with pytest.raises(PromotionError, match="no version '7'"):
        promote("demand", "7", settings, Attribution("alice", "try"))


def test_cli_promote_and_rollback(two_versions, capsys):
    assert main(["promote", "churn", "2", "--reason", "ok", "--actor", "ops", "--json"]) == 0
    promoted = json.loads(capsys.readouterr().out)
    assert (promoted["action"], promoted["details"]["champion"]) == ("promoted", "2")
    assert promoted["actor"] == "ops via cli"
    assert main(["rollback", "churn", "--reason", "bad", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["details"]["champion"] == "1"
    assert main(["rollback", "churn", "--reason", "again"]) == 1
    assert "refused: model 'churn' has no previous_champion" in capsys.readouterr().err
    assert main(["promote", "churn", "2", "--reason", "once more", "--actor", "ops"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("churn v2 ") and "by ops via cli: once more" in line and line.count("\n") == 1


def test_cli_canary_abort_pin_unpin_record_who_and_why(two_versions, capsys):
    from model_factory.serving.predlog import decisions
    from model_factory.serving.settings import prediction_db_uri

    started = ["canary", "churn", "2", "--reason", "try it", "--actor", "ana", "--share", "0.2", "--json"]
    assert main(started) == 0
    started = json.loads(capsys.readouterr().out)
    assert (started["action"], started["details"]["share"]) == ("canary_started", 0.2)
    assert main(["show", "churn", "--offline", "--json"]) == 0
    canary = json.loads(capsys.readouterr().out)["canary"]
    assert (canary["version"], canary["share"]) == ("2", 0.2)
    assert main(["abort", "churn", "--reason", "maintenance window", "--actor", "ana", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "canary_aborted"
    assert main(["pin", "churn", "2", "--reason", "incident 42", "--actor", "bo"]) == 0
    assert main(["canary", "churn", "2", "--reason", "x"]) == 1
    assert "pinned" in capsys.readouterr().err
    assert main(["unpin", "churn", "--reason", "incident closed", "--actor", "bo"]) == 0
    assert main(["promote", "churn", "--reason", "no canary, no version"]) == 1
    assert "say which version" in capsys.readouterr().err
    recorded = decisions(prediction_db_uri(two_versions), "churn")
    assert [d["action"] for d in recorded] == ["canary_started", "canary_aborted", "pinned", "unpinned"]
    assert recorded[0]["actor"] == "ana via cli" and recorded[2]["reason"] == "incident 42"
