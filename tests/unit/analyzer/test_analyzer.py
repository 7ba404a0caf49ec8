"""The Analyzer on a generated history with planted problems; events, store and hooks; bad input."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import fields
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from model_factory.analyzer import hooks as ev_hooks
from model_factory.analyzer.classify import exception_kind, spec_problem_kind
from model_factory.analyzer.events import Event
from model_factory.analyzer.hooks import cli_command, note_error, record_spec_errors, tracked
from model_factory.analyzer.report import analyze, format_report
from model_factory.analyzer.rules import ET, SOP, WATCH, Thresholds
from model_factory.analyzer.store import EVENTS, AnalyzerSettings, EventStore, record
from model_factory.cli.main import main
from model_factory.errors import LabelError
from model_factory.pipeline.registry import PromotionError
from model_factory.settings import FactorySettings
from model_factory.spec import SpecError, load_specs
from model_factory_dev.event_history import PLANTED, generate_history

from tests.conftest import event_store


@pytest.fixture(scope="module")
def history():
    return generate_history(seed=7)


@pytest.fixture(scope="module")
def report(history):
    return analyze(history.events)


@pytest.fixture
def store(tmp_path) -> EventStore:
    return EventStore(
        AnalyzerSettings(db_uri=f"sqlite:///{tmp_path / 'events.db'}", salt_path=tmp_path / "salt")
    )


def the_event(**expected: object) -> Event:
    """The one event the factory's store holds, checked to have the ``expected`` fields."""
    (event,) = event_store().events()
    assert {name: getattr(event, name) for name in expected} == expected
    return event


# --- the generated history -------------------------------------------------------------------


def test_every_planted_problem_is_found_with_its_class_and_stage(history, report) -> None:
    found = {f["error_kind"]: f for f in report["findings"]}
    for kind, planted in PLANTED.items():
        assert kind in found, f"planted {kind!r} not found"
        assert found[kind]["class"] == planted.verdict, (kind, found[kind]["why"])
        assert found[kind]["stage"] == planted.stage, kind
    verdicts = Counter(planted.verdict for planted in PLANTED.values())
    assert report["summary"][SOP] == verdicts[SOP] == 3
    assert report["summary"][ET] == verdicts[ET] == 4
    # nothing but the planted problems is judged: the rare mistakes stay below min_users
    assert set(found) == set(PLANTED)
    assert report["left_out"]["rare_error_kinds"] > 10


def test_findings_carry_shares_examples_and_a_suggested_action(report) -> None:
    found = {f["error_kind"]: f for f in report["findings"]}
    sop = found["trigger: bad conf"]
    assert (
        sop["shares"]["Expert"] > 0.5
        and sop["shares"]["Intermediate"] > 0.65
        and sop["shares"]["Beginner"] > 0.8
    )
    assert "model-factory trigger" in sop["suggested_action"]
    et = found["spec: unknown estimator param"]
    assert et["shares"]["Beginner"] >= 2 * et["shares"]["Expert"]
    assert "README 'For data scientists: add a model'" in et["suggested_action"]
    assert len(et["examples"]) == 3 and all(e["message"] for e in et["examples"])
    assert found["gate: too good to be true (held)"]["suggested_action"] == ""  # watch: no verdict, no action


def test_users_are_segmented_by_skill(history, report) -> None:
    seg = report["segmentation"]
    assert seg["ok"] and seg["k"] == 3 and len(seg["features"]) == 4
    agreement = sum(history.skills[user] == label for user, label in seg["segments"].items()) / len(
        history.skills
    )
    assert agreement >= 0.85
    assert sum(seg["sizes"].values()) == len(history.skills) == 34
    assert seg["stability"]["stable"] and seg["stability"]["min_ari"] >= 0.9
    c = seg["centroids"]
    assert (
        c["Beginner"]["completed_actions"]
        < c["Intermediate"]["completed_actions"]
        < c["Expert"]["completed_actions"]
    )
    assert (
        c["Beginner"]["time_to_green_min"]
        > c["Intermediate"]["time_to_green_min"]
        > c["Expert"]["time_to_green_min"]
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_planted_problems_hold_on_other_histories(seed: int) -> None:
    history = generate_history(seed=seed)
    found = {f["error_kind"]: f["class"] for f in analyze(history.events, seeds=(0, 1, 2))["findings"]}
    assert found == history.planted


def test_thresholds_moved_ten_points(history, report) -> None:
    """Recorded behaviour (seed 7): -10 makes the 'too good' distractor SoP; +10 drops a planted SoP
    whose Experts' share is 60%; the ET verdicts do not depend on the SoP thresholds."""
    moves = report["sensitivity"]
    assert moves["-10"]["thresholds"] == {"Expert": 0.4, "Intermediate": 0.55, "Beginner": 0.7}
    assert moves["-10"]["changed"] == {"gate: too good to be true (held)": {"from": WATCH, "to": SOP}}
    assert moves["+10"]["changed"] == {"validation: unseen category": {"from": SOP, "to": WATCH}}
    for move in ("-10", "+10"):
        assert all(change["from"] != ET and change["to"] != ET for change in moves[move]["changed"].values())
    text = format_report(report)
    assert "-10 points (40%/55%/70%): gate: too good to be true (held): watch -> SoP" in text


def test_thresholds_are_parameters(history) -> None:
    strict = analyze(history.events, Thresholds(expert=0.7, intermediate=0.85, beginner=0.95), seeds=(0,))
    assert strict["summary"][SOP] == 1  # only the trigger conf date trips all Beginners
    assert strict["thresholds"]["SoP"] == {"Expert": 0.7, "Intermediate": 0.85, "Beginner": 0.95}


# --- bad input -------------------------------------------------------------------------------


def test_no_events_says_so() -> None:
    report = analyze([])
    assert report["status"] == "no_events" and report["findings"] == []
    assert "no events recorded yet" in format_report(report)


def test_one_user_is_not_segmented_and_says_why() -> None:
    at = datetime(2026, 9, 1)
    events = [
        Event(
            user="solo",
            action="cli.validate",
            stage="training",
            at=at + timedelta(minutes=i),
            outcome="error" if i % 2 else "ok",
            error_kind="spec: unknown estimator param" if i % 2 else None,
        )
        for i in range(6)
    ]
    report = analyze(events)
    assert report["users"] == 1 and not report["segmentation"]["ok"]
    assert "one user" in report["segmentation"]["reason"] and "at least 6" in report["segmentation"]["reason"]
    assert "sensitivity" not in report
    assert any("one user" in m for m in report["messages"])


def test_few_users_keep_their_findings_unclassified() -> None:
    at = datetime(2026, 9, 1)
    events = [
        Event(
            user=f"u{n}",
            action="cli.trigger",
            at=at,
            outcome="error",
            error_kind="trigger: bad conf",
            stage="training",
        )
        for n in range(4)
    ]
    report = analyze(events)
    assert report["findings"][0]["class"] == "unclassified"
    assert "4 users" in report["findings"][0]["why"]


def test_unknown_stages_are_counted_and_named(store) -> None:
    at = datetime(2026, 9, 1)
    store.add(
        [
            Event(user="a", action="cli.templates", stage="somewhere", at=at),
            Event(user="a", action="cli.validate", stage="training", at=at),
        ]
    )
    events = store.events()
    assert [e.stage for e in events] == ["unknown", "training"]
    report = analyze(events)
    assert report["events"]["unknown_stage"] == {"count": 1, "actions": {"cli.templates": 1}}
    assert any("no known lifecycle stage" in m for m in report["messages"])


# --- the store -------------------------------------------------------------------------------


def test_store_round_trip_and_dedup_by_origin(store) -> None:
    every_field = {
        "user": "ana",
        "action": "batch.quarantined",
        "stage": "data",
        "outcome": "error",
        "at": datetime(2026, 9, 1, 12),
        "source": "store",
        "model": "churn",
        "error_kind": "validation: column missing",
        "message": "column 'tenure' is missing",
        "duration_s": 2.5,
        "details": {"ds": "2026-09-01"},
        "origin": "store:quarantine:x:0",
    }
    assert set(every_field) == {f.name for f in fields(Event)}, "a new Event field must round-trip too"
    event = Event(**every_field)
    assert store.add([event, event]) == 1
    assert store.add([event]) == 0
    (back,) = store.events()
    assert back.to_dict() == event.to_dict()
    assert store.origins("store:") == {"store:quarantine:x:0"}


def test_pseudonymised_user_ids_never_reach_the_db(tmp_path) -> None:
    settings = AnalyzerSettings(
        db_uri=f"sqlite:///{tmp_path / 'e.db'}", pseudonymize=True, salt_path=tmp_path / "s"
    )
    store = EventStore(settings)
    store.add(
        [
            Event(user="ana@example.com", action="cli.validate"),
            Event(user="ana@example.com", action="cli.trigger"),
        ]
    )
    with store.engine.connect() as conn:
        users = list(conn.execute(sa.select(EVENTS.c.user)).scalars())
    assert users[0] == users[1] and users[0].startswith("u-") and len(users[0]) == 14
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o600
    other = EventStore(
        AnalyzerSettings(
            db_uri=f"sqlite:///{tmp_path / 'f.db'}", pseudonymize=True, salt_path=tmp_path / "other-salt"
        )
    )
    other.add([Event(user="ana@example.com", action="cli.validate")])
    assert other.events()[0].user != users[0]  # another installation's salt: another pseudonym


def test_opt_out_records_nothing(monkeypatch, factory_home) -> None:
    monkeypatch.setenv("FACTORY_ANALYZER", "off")
    assert (
        record(Event(user="ana", action="cli.validate"), AnalyzerSettings.of(FactorySettings.from_env())) == 0
    )
    with tracked("cli.trigger", model="churn"):
        pass
    monkeypatch.delenv("FACTORY_ANALYZER")
    assert event_store().count() == 0
    assert (
        record(Event(user="ana", action="cli.validate"), AnalyzerSettings.of(FactorySettings.from_env())) == 1
    )


# --- error kinds and hooks ----------------------------------------------------------------------


def test_kinds_come_from_the_error_not_its_words() -> None:
    """Issue 19: a reworded message keeps its kind; the kind is the error's own or its type's."""
    a = exception_kind(PromotionError("model 'churn' has no canary running"), "promote")
    b = exception_kind(PromotionError("churn: nothing to promote, start a canary first"), "promote")
    assert a == b == ("ops: promote refused by a rollout rule", "deployment")
    assert exception_kind(LabelError("whatever the words"))[0] == "validation: unseen class label"
    assert exception_kind(ConnectionRefusedError("[Errno 111] Connection refused")) == (
        "platform: service unreachable",
        None,
    )
    assert exception_kind(RuntimeError("column 'x' is missing"))[0] == "error: RuntimeError"  # no regex


def test_usage_errors_are_a_kind_per_command_from_clicks_exception(factory_home) -> None:
    import click

    assert exception_kind(click.NoSuchOption("--reasn"), "promote") == (
        "cli: promote usage error: no such option",
        "deployment",
    )
    assert exception_kind(click.NoSuchOption("--other", message="reworded"), "promote")[0] == (
        "cli: promote usage error: no such option"
    )
    assert main(["promote", "churn", "--reasn", "x"]) == 2
    event = the_event(error_kind="cli: promote usage error: no such option")
    assert event.details["exit_code"] == 2


def test_spec_problems_map_to_the_stage_of_their_field() -> None:
    assert spec_problem_kind("estimator", "spec: unknown estimator param") == (
        "spec: unknown estimator param",
        "training",
    )
    assert spec_problem_kind("validation.ranges.age.min", "float_parsing") == (
        "spec: validation.ranges.*.min: wrong type",
        "data",
    )
    assert spec_problem_kind("features.numeric", "list_type")[1] == "features"
    ramp = ("spec: canary.ramp: invalid value", "deployment")
    assert spec_problem_kind("canary.ramp", "value_error") == ramp
    assert spec_problem_kind("", "spec: malformed YAML") == ("spec: malformed YAML", "unknown")
    unknown = ("spec: unknown field in features", "features")
    assert spec_problem_kind("features.extra", "extra_forbidden") == unknown


def _bad_spec(folder, name: str = "churn") -> SpecError:
    (folder / f"{name}.yaml").write_text(
        f"name: {name}\nowner: team-x\ndescription: d\ntask: classification\n"
        "source: {uri: 'file:///x/{ds}.csv'}\ntarget: y\nfeatures: {numeric: [a], categorical: [b]}\n"
        "estimator: {class: LogisticRegression, params: {Cc: 1}}\n"
        "gates: {primary_metric: roc_auc, threshold: 0.6}\n"
    )
    _, bad = load_specs(folder, FactorySettings.from_env())
    return bad[0]


def test_rewording_a_spec_problem_keeps_its_kind(tmp_path, factory_home, monkeypatch) -> None:
    """Issue 19: the Analyzer reads SpecError's kinds, so a reworded reason counts the same."""
    error = _bad_spec(tmp_path)
    assert error.kinds == ["spec: unknown estimator param"]
    reworded = SpecError(error.path, [("estimator", "Cc? no such knob on LogisticRegression")], error.kinds)
    ev_hooks._seen_spec_errors.clear()
    monkeypatch.setenv("FACTORY_ACTOR", "ana")
    for spec_error in (error, reworded):
        with pytest.raises(SystemExit), cli_command(["validate", str(tmp_path / "churn.yaml")]):
            note_error(spec_error)
            raise SystemExit(1)
    first, second = event_store().events()
    assert first.message != second.message
    assert (
        (first.error_kind, first.stage)
        == (second.error_kind, second.stage)
        == (
            "spec: unknown estimator param",
            "training",
        )
    )


def test_parse_time_spec_errors_name_the_git_author_once(tmp_path, factory_home) -> None:
    repo = tmp_path / "specs"
    repo.mkdir()
    error = _bad_spec(repo)
    git = ["git", "-C", str(repo), "-c", "user.name=Dee", "-c", "user.email=dee@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "churn.yaml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "add churn"], check=True)
    ev_hooks._seen_spec_errors.clear()
    assert record_spec_errors([error], FactorySettings.from_env()) == 1
    assert (
        record_spec_errors([error], FactorySettings.from_env()) == 0
    )  # the DAG processor parses again: recorded once
    ev_hooks._seen_spec_errors.clear()
    assert (
        record_spec_errors([error], FactorySettings.from_env()) == 0
    )  # another process: the origin is already stored
    event = the_event(
        user="dee@example.com",
        action="spec.parse",
        stage="training",
        error_kind="spec: unknown estimator param",
    )
    assert event.details["user_from"] == "git" and event.model == "churn"


def test_spec_errors_outside_git_fall_back_to_the_spec_owner(tmp_path, factory_home) -> None:
    ev_hooks._seen_spec_errors.clear()
    record_spec_errors([_bad_spec(tmp_path)], FactorySettings.from_env())
    event = the_event(user="team-x")
    assert event.details["user_from"] == "spec owner"


def test_cli_command_records_outcome_time_and_every_spec_problem(tmp_path, factory_home, monkeypatch) -> None:
    monkeypatch.setenv("FACTORY_ACTOR", "ana via cli")
    error = _bad_spec(tmp_path)
    with pytest.raises(SystemExit), cli_command(["validate", str(tmp_path / "churn.yaml")]):
        note_error(error)  # what the CLI's error handler does
        print(f"FAIL  {error}", file=sys.stderr)
        raise SystemExit(1)
    with cli_command(["promote", "churn", "--reason", "x"]) as action:
        try:
            raise PromotionError("model 'churn' has no canary running")
        except PromotionError:
            note_error()  # the exception being handled
        action.exit_code = 1
    with cli_command(["status"]):
        pass
    for argv in (["analyze"], ["promote", "--help"], []):
        with cli_command(argv) as nothing:
            assert nothing is None
    events = event_store().events()
    assert [(e.action, e.outcome, e.model, e.user) for e in events] == [
        ("cli.validate", "error", "churn", "ana"),
        ("cli.promote", "error", "churn", "ana"),
        ("cli.status", "ok", None, "ana"),
    ]
    assert events[0].error_kind == "spec: unknown estimator param" and events[0].stage == "training"
    assert events[1].error_kind == "ops: promote refused by a rollout rule"
    assert events[1].details["exit_code"] == 1
    assert all(e.duration_s is not None and e.duration_s >= 0 for e in events)


def test_tracked_decorator_records_exceptions(factory_home) -> None:
    @tracked("cli.trigger", model="churn", user="bo")
    def trigger() -> None:
        raise ConnectionRefusedError("Airflow at http://127.0.0.1:1 is not answering")

    with pytest.raises(ConnectionRefusedError):
        trigger()
    the_event(outcome="error", error_kind="platform: service unreachable", stage="training", user="bo")


def test_a_broken_database_never_breaks_the_command(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FACTORY_PREDICTION_DB_URI", "postgresql+psycopg2://nobody@127.0.0.1:1/none")
    with tracked("cli.status"):
        result = "done"
    assert result == "done"
    assert record(Event(user="a", action="cli.status"), AnalyzerSettings.of(FactorySettings.from_env())) == 0
