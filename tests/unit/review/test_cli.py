"""model-factory approve / reject / held / card / reproduce / override-checklist (no Airflow up)."""

from __future__ import annotations

import json
import socket

from model_factory.cli.main import main
from model_factory.io.tracking import connect
from model_factory.settings import FactorySettings

from tests.unit.review.test_registry import retrain, spec_for


def test_review_commands_without_airflow(factory_home, monkeypatch, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("FACTORY_AIRFLOW_URL", f"http://127.0.0.1:{port}")  # nothing listens
    monkeypatch.setenv("FACTORY_ANALYZER", "off")
    settings = FactorySettings.from_env()
    held = retrain(spec_for(gates={"too_good_score": 0.5, "min_holdout_rows": 10}), settings)
    assert held["status"] == "held_for_review"
    version = held["version"]

    assert main(["held", "churn", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["version"] == version
    assert main(["card", "churn", version]) == 0
    out = capsys.readouterr().out
    assert f"/factory/models/churn/versions/{version}/card) (artifact `file://" in out
    assert "fail gates_passed: held_for_review" in out

    assert main(["approve", "churn", "99", "--reason", "x"]) == 1
    assert "has no version '99'" in capsys.readouterr().err
    assert (
        main(
            ["approve", "churn", version, "--reason", "no leakage: checked the features", "--actor", "alice"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"churn v{version} approved by alice via cli" in out and "alias champion" in out
    assert main(["reject", "churn", version, "--reason", "late"]) == 1
    assert "was already approved by alice via cli" in capsys.readouterr().err
    tags = connect(settings).get_model_version("churn", version).tags
    assert tags["factory.review.by"] == "alice via cli" and tags["factory.checklist.gates_passed"] == "pass"

    assert main(["reproduce", "churn", version, "--allow-code-drift"]) == 0
    assert f"churn v{version} reproduced" in capsys.readouterr().out
    assert main(["override-checklist", "churn", version, "--reason", "accepted", "--actor", "bob"]) == 0
    tags = connect(settings).get_model_version("churn", version).tags
    assert tags["factory.checklist_override.by"] == "bob via cli"
