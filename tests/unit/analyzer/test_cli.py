"""`model-factory analyze` and the events the real CLI records as people use it."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from functools import partial

import pytest
from model_factory.analyzer.events import Event
from model_factory.analyzer.store import EventStore
from model_factory.cli.main import main
from model_factory_dev import event_history
from model_factory_dev.event_history import write_history
from model_factory_dev.stack import free_port

from tests.conftest import REPO


@pytest.fixture
def unreachable_airflow(monkeypatch) -> str:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("FACTORY_AIRFLOW_URL", url)
    return url


def test_analyze_with_no_events_says_so(factory_home, capsys) -> None:
    assert main(["analyze", "--no-collect"]) == 0
    assert "no events recorded yet" in capsys.readouterr().out
    assert EventStore().count() == 0  # analyze itself is the platform team's, not recorded


def test_the_demo_ends_with_the_findings_on_its_own_events(factory_home) -> None:
    from model_factory.analyzer.events import Event
    from model_factory.analyzer.report import demo_findings

    assert "no events recorded yet" in demo_findings()
    EventStore().add([Event(user="admin", action="dag_run.retrain", stage="training", source="airflow")])
    text = demo_findings()
    assert (
        "1 events (0 errors) from 1 user," in text
        and "no segmentation: the events come from one user" in text
    )


def test_analyze_finds_every_planted_challenge_in_the_generated_history(factory_home, capsys) -> None:
    history = write_history(EventStore())
    assert main(["analyze", "--json", "--no-collect"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {f["error_kind"]: f["class"] for f in report["findings"]} == history.planted
    assert report["segmentation"]["sizes"] and sum(report["segmentation"]["sizes"].values()) == 34
    lower = ["--expert", "40", "--intermediate", "55", "--beginner", "70"]
    assert main(["analyze", "--no-collect", *lower]) == 0
    text = capsys.readouterr().out
    assert "4 Simplicity-of-Platform and 4 Education-&-Training challenges" in text


def test_the_cli_records_what_people_do_and_analyze_reads_it(
    factory_home, tmp_path, monkeypatch, capsys, unreachable_airflow
) -> None:
    """A demo-like session: two people validate specs (one broken), trigger runs, try a promotion."""
    specs = tmp_path / "specs"
    shutil.copytree(REPO / "include" / "models", specs)
    monkeypatch.setenv("FACTORY_SPECS_DIR", str(specs))
    churn = (specs / "churn.yaml").read_text()
    (specs / "churn.yaml").write_text(churn.replace("params: {C: 1.0, max_iter: 1000}", "params: {c: 1.0}"))
    monkeypatch.setenv("FACTORY_ACTOR", "ana")
    assert main(["validate", str(specs / "churn.yaml")]) == 1
    (specs / "churn.yaml").write_text(churn)
    assert main(["validate", str(specs / "churn.yaml")]) == 0
    assert main(["trigger", "churn", "--date", "2026-01-05"]) == 3  # Airflow is not running
    monkeypatch.setenv("FACTORY_ACTOR", "bo")
    assert main(["trigger", "churn", "--date", "05/01/2026"]) == 1
    assert main(["promote", "--help"]) == 0  # help is not an action
    capsys.readouterr()

    events = EventStore().events()
    assert [(e.user, e.action, e.outcome) for e in events] == [
        ("ana", "cli.validate", "error"),
        ("ana", "cli.validate", "ok"),
        ("ana", "cli.trigger", "error"),
        ("bo", "cli.trigger", "error"),
    ]
    assert events[0].error_kind == "spec: unknown estimator param" and events[0].model == "churn"
    assert events[2].error_kind == "platform: service unreachable"
    assert all(e.stage == "training" and e.duration_s is not None for e in events)

    assert main(["analyze", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events"]["total"] == 4 and report["users"] == 2
    assert "2 users" in report["segmentation"]["reason"]
    airflow = next(s for s in report["sources"] if s["source"] == "airflow")
    assert not airflow["ok"] and unreachable_airflow in airflow["message"]
    assert any(unreachable_airflow in lack for lack in report["lacks"])
    assert main(["analyze"]) == 0
    text = capsys.readouterr().out
    assert "lacking: Airflow API at" in text and "no segmentation" in text


# --- the README's own sequence after `make demo` (issue 18 finding 12) ---------------------------

DEMO_NOW = datetime(2026, 11, 20, 12, 0)
DEMO_BATCH = DEMO_NOW - timedelta(minutes=475_000)  # the demo's batch dates: months before its runs


def _demo_like_events() -> list[Event]:
    """What `make demo` leaves: the demo driver and the login name acting (a run's first attempt
    dated at a months-old batch: ~475,000 minutes to green), outcomes pinned on a spec's owner and
    on its git author."""
    out = [
        Event(
            user="demo",
            action=("cli.status", "cli.runs", "cli.show")[i % 3],
            stage="deployment",
            at=DEMO_NOW + timedelta(minutes=i),
            duration_s=1.0,
        )
        for i in range(60)
    ]
    for model in ("churn", "demand", "segment"):
        retrain = partial(
            Event, user="demo", action="dag_run.retrain", stage="training", source="airflow", model=model
        )
        out += [
            retrain(outcome="error", at=DEMO_BATCH, error_kind="task train failed", duration_s=30),
            retrain(at=DEMO_NOW, duration_s=60),
        ]
    trigger = partial(Event, user="root", action="cli.trigger", stage="training", model="churn")
    out += [
        trigger(outcome="error", at=DEMO_BATCH, error_kind="platform: service unreachable"),
        trigger(at=DEMO_NOW),
    ]
    for n, model in enumerate(("churn", "churn_tuned", "churn_custom")):
        by_owner = partial(
            Event, user="growth-data-science", model=model, details={"user_from": "spec owner"}
        )
        out += [
            by_owner(
                action="batch.quarantined",
                stage="data",
                outcome="error",
                at=DEMO_BATCH + timedelta(days=n),
                source="store",
                error_kind="validation: column missing",
            ),
            by_owner(action="gate.blessed", stage="training", at=DEMO_NOW, source="registry"),
        ]
    out.append(
        Event(
            user="maintainers@users.noreply.example",
            action="spec.parse",
            stage="training",
            outcome="error",
            at=DEMO_BATCH,
            source="dag_parse",
            model="churn",
            error_kind="spec: unknown estimator param",
            details={"user_from": "git"},
        )
    )
    return out


def test_the_readme_sequence_after_the_demo_finds_the_planted_challenges(factory_home, capsys) -> None:
    """`python -m model_factory_dev.event_history && model-factory analyze` on a store the demo
    used: the odd identities are flagged, not a segment; the planted challenges keep their class."""
    EventStore().add(_demo_like_events())
    assert event_history.main([]) == 0
    assert main(["analyze", "--json", "--no-collect"]) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    history = event_history.generate_history()
    assert {f["error_kind"]: f["class"] for f in report["findings"]} == history.planted
    assert report["summary"]["SoP"] == 3 and report["summary"]["ET"] == 4
    assert set(report["excluded_users"]) == {"demo", "root"}
    assert set(report["not_segmented"]) == {"growth-data-science", "maintainers@users.noreply.example"}
    segments = report["segmentation"]["segments"]
    assert set(segments) == set(history.skills)  # no odd identity in any segment
    beginners = [user for user, skill in history.skills.items() if skill == "Beginner"]
    assert sum(segments[user] == "Beginner" for user in beginners) >= 10  # not merged into Intermediate
    assert report["segmentation"]["sizes"]["Beginner"] <= 13
