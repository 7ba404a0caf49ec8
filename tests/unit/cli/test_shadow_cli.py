"""``model-factory shadow start|stop|show`` and the shadow line of ``show MODEL``."""

from __future__ import annotations

import json

import pytest
from model_factory.cli.main import main
from model_factory.serving import predlog
from model_factory.settings import FactorySettings

from tests.unit.pipeline.test_registry import two_versions  # noqa: F401 - fixture


def _log_pairs(settings: FactorySettings, agree: int, disagree: int, failed: int) -> None:
    """Pairs as the gateway logs them (its own tests cover the gateway writing them)."""
    engine = predlog.engine_for(settings.prediction_db)
    predlog.ensure_schema(engine)
    now = predlog.utcnow()
    rows = []
    for i in range(agree + disagree + failed):
        champion = {"label": 1, "score": 0.8, "probabilities": {"0": 0.2, "1": 0.8}}
        shadow = {"label": 1 if i < agree else 0, "score": 0.7 if i < agree else 0.4}
        ok = i < agree + disagree
        rows.append(
            {
                "request_id": f"r{i}",
                "model": "churn",
                "version": "2",
                "champion_version": "1",
                "status": "ok" if ok else "error",
                "error": None if ok else "RuntimeError: boom",
                "latency_ms": 2.0 if ok else None,
                "prediction": json.dumps(shadow) if ok else None,
                "score": shadow["score"] if ok else None,
                "champion_latency_ms": 1.0,
                "champion_prediction": json.dumps(champion),
                "champion_score": 0.8,
                "created_at": now,
            }
        )
    with engine.begin() as conn:
        conn.execute(predlog.SHADOW_PREDICTIONS.insert(), rows)


def test_start_show_and_stop_a_shadow(
    two_versions: FactorySettings,  # noqa: F811 - the fixture imported above
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = two_versions
    assert main(["shadow", "show", "churn"]) == 0
    assert "churn has no shadow" in capsys.readouterr().out

    assert (
        main(["shadow", "start", "churn", "2", "--share", "0.5", "--reason", "compare", "--actor", "ana"])
        == 0
    )
    assert (
        "churn v2 shadow_started by ana via cli: compare (champion 1, share 0.5)" in capsys.readouterr().out
    )
    decisions = predlog.decisions(settings.prediction_db, "churn")
    assert [(d["action"], d["version"]) for d in decisions] == [("shadow_started", "2")]

    _log_pairs(settings, agree=3, disagree=1, failed=1)
    assert main(["shadow", "show", "churn", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["version"], shown["status"], shown["share"]) == ("2", "running", 0.5)
    assert (shown["requests"], shown["errors"], shown["agreement"]) == (5, 1, 0.75)
    assert shown["shadow_latency_ms"] == {"p50": 2.0, "p95": 2.0}

    assert main(["show", "churn", "--offline"]) == 0
    detail = capsys.readouterr().out
    assert "shadow running at 50%" in detail and "agreement 75.0%" in detail
    assert "shadow_started by ana via cli" in detail  # in the rollout history too

    assert main(["shadow", "stop", "churn", "--reason", "seen enough", "--actor", "ana"]) == 0
    assert "churn v2 shadow_stopped by ana via cli: seen enough" in capsys.readouterr().out
    assert main(["shadow", "stop", "churn", "--reason", "retried"]) == 0
    assert "already so: nothing changed" in capsys.readouterr().out
    assert main(["shadow", "show", "churn"]) == 0
    assert "stopped since" in capsys.readouterr().out  # the last comparison stays readable


def test_a_shadow_request_that_cannot_be_done_is_refused_saying_why(
    two_versions: FactorySettings,  # noqa: F811 - the fixture imported above
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["shadow", "start", "churn", "1", "--reason", "x"]) == 1
    assert "refused: churn v1 is the champion" in capsys.readouterr().err
    assert main(["shadow", "start", "churn", "2", "--share", "2", "--reason", "x"]) == 1
    assert "share must be in (0, 1]" in capsys.readouterr().err
    assert main(["shadow", "start", "churn", "9", "--reason", "x"]) == 1
    assert "churn" in capsys.readouterr().err
    assert main(["shadow", "stop", "churn", "--reason", "x"]) == 1
    assert "no shadow running" in capsys.readouterr().err
    assert main(["shadow", "start", "nope", "2", "--reason", "x"]) == 1
    assert "nope" in capsys.readouterr().err
