"""Realistic event histories for the Analyzer: a few dozen simulated data scientists of different
skill acting on the demo models for some weeks, with planted problems whose class is known.

Each user pursues goals one after another (get a spec accepted, get a retrain green, get a rollout
action through); attempts fail and are retried after a delay that depends on skill. Experts reach
more goals, use more of the platform, fail less and fix faster. Planted problems are given to an
exact number of users of each skill (so the shares are known), with the kinds and messages
the factory produces (SpecError problems, quarantine reasons, refusals, task failures):

- SoP (the platform is too complex; most people at every level trip on it):
  bad trigger conf date, template_params search space, hand-written category sets;
- ET (beginners need docs): unknown estimator params, a missing column, features written as a
  string, promoting without a running canary.

Distractors: "too good to be true" held versions seen by many at every level but just short of the
SoP rule (SoP only once the thresholds drop 10 points), rare mistakes of one or two users, and
events of a command with no lifecycle stage.

    python -m model_factory_dev.event_history [--seed N] [--weeks W]   # write into the factory's DB
"""

from __future__ import annotations

import argparse
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from model_factory.analyzer.classify import kind_stage
from model_factory.analyzer.events import Event
from model_factory.analyzer.hooks import spec_error_events
from model_factory.analyzer.store import EventStore
from model_factory.errors import ErrorKind

from model_factory_dev.demo_data import MODELS

SKILLS = {"Beginner": 12, "Intermediate": 12, "Expert": 10}
START = datetime(2026, 8, 3, 8, 0)
FAIL_P = {"Beginner": 0.35, "Intermediate": 0.18, "Expert": 0.06}
"""Chance of an ordinary (user-specific) failed attempt before each success."""
FIX_MEDIAN_MIN = {"Beginner": 300.0, "Intermediate": 75.0, "Expert": 12.0}
GOALS = {"Beginner": (6, 11), "Intermediate": (14, 22), "Expert": (30, 42)}
OPS_BY_SKILL = {
    "Beginner": ("promote",),
    "Intermediate": ("promote", "rollback", "status"),
    "Expert": ("promote", "rollback", "canary", "pin", "unpin", "abort", "status"),
}

RARE_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf")

MakeEvents = Callable[[str, str, datetime], list[Event]]


def _spec_error(field_path: str, reason: str, kind: str | None) -> MakeEvents:
    """A spec problem as ``SpecError`` carries it: field, reason and machine-readable kind."""

    def make(user: str, model: str, at: datetime) -> list[Event]:
        events = spec_error_events(
            f"include/models/{model}.yaml",
            [(field_path, reason, kind)],
            source="cli",
            user=user,
            action="cli.validate",
        )
        for event in events:
            event.at, event.duration_s = at, 1.4
        return events

    return make


def _run_failure(task_id: str, message: str, kind: str, stage: str = "data") -> MakeEvents:
    def make(user: str, model: str, at: datetime) -> list[Event]:
        implied = kind_stage(kind)
        details = {"dag_id": f"{model}__retrain", "run_id": f"manual__{at.isoformat()}"}
        common = {
            "user": user,
            "outcome": "error",
            "at": at,
            "source": "airflow",
            "model": model,
            "error_kind": kind,
            "message": message,
            "details": details,
        }
        return [
            Event(action=f"task.{task_id}", stage=implied or stage, duration_s=20.0, **common),
            Event(action="dag_run.retrain", stage="training", duration_s=35.0, **common),
        ]

    return make


def _quarantine(reason: str, kind: ErrorKind) -> MakeEvents:
    def make(user: str, model: str, at: datetime) -> list[Event]:
        stage = kind_stage(kind)
        why = f"batch failed validation and was quarantined. Why:\n  - {reason}"
        return [
            *_run_failure("validate", why, kind)(user, model, at),
            Event(
                user=user,
                action="batch.quarantined",
                stage=stage or "data",
                outcome="error",
                at=at,
                source="store",
                model=model,
                error_kind=kind,
                message=reason,
            ),
        ]

    return make


def _refusal(command: str, message: str, kind: str, stage: str = "deployment") -> MakeEvents:
    def make(user: str, model: str, at: datetime) -> list[Event]:
        return [
            Event(
                user=user,
                action=f"cli.{command}",
                stage=stage,
                outcome="error",
                at=at,
                model=model,
                error_kind=kind,
                message=message,
                duration_s=2.1,
                details={"exit_code": 1},
            )
        ]

    return make


def _gate(status: str, reason: str) -> MakeEvents:
    def make(user: str, model: str, at: datetime) -> list[Event]:
        from model_factory.analyzer.collect import gate_kind

        return [
            Event(
                user=user,
                action=f"gate.{status}",
                stage="training",
                outcome="error",
                at=at,
                source="registry",
                model=model,
                error_kind=gate_kind(status, reason),
                message=reason,
            )
        ]

    return make


@dataclass(frozen=True)
class Planted:
    verdict: str
    """What the Analyzer should class it as: SoP, ET or watch."""
    stage: str
    goal: str
    """The goal whose attempts it fails: spec, run or ops."""
    counts: dict[str, int]
    """How many users of each skill have the problem."""
    make: MakeEvents


PLANTED: dict[str, Planted] = {
    "trigger: bad conf": Planted(
        "SoP",
        "training",
        "run",
        {"Beginner": 12, "Intermediate": 11, "Expert": 8},
        _run_failure(
            "ingest",
            "bad trigger conf or asset event: ds '2026/09/03' is not a date YYYY-MM-DD",
            ErrorKind.BAD_TRIGGER_CONF,
            "training",
        ),
    ),
    "spec: bad template_params": Planted(
        "SoP",
        "training",
        "spec",
        {"Beginner": 11, "Intermediate": 10, "Expert": 7},
        _spec_error(
            "template_params.search_space", "search space for 'C' must be a list or {low, high, log}", None
        ),
    ),
    "validation: unseen category": Planted(
        "SoP",
        "data",
        "run",
        {"Beginner": 11, "Intermediate": 10, "Expert": 6},
        _quarantine(
            "expect_column_values_to_be_in_set on column 'plan': 41 of 2000 rows failed (2.1%), "
            "e.g. ['enterprise']; expected {'value_set': ['basic', 'standard', 'premium']}",
            ErrorKind.UNSEEN_CATEGORY,
        ),
    ),
    "spec: unknown estimator param": Planted(
        "ET",
        "training",
        "spec",
        {"Beginner": 9, "Intermediate": 2, "Expert": 0},
        _spec_error(
            "estimator",
            "unknown params ['n_estimator'] for RandomForestClassifier; allowed: "
            "['bootstrap', 'ccp_alpha', 'class_weight', 'n_estimators']",
            ErrorKind.SPEC_UNKNOWN_PARAM,
        ),
    ),
    "validation: column missing": Planted(
        "ET",
        "data",
        "run",
        {"Beginner": 8, "Intermediate": 2, "Expert": 1},
        _quarantine("column 'usage_gb' is missing", ErrorKind.COLUMN_MISSING),
    ),
    "spec: features.categorical: wrong type": Planted(
        "ET",
        "features",
        "spec",
        {"Beginner": 7, "Intermediate": 3, "Expert": 0},
        _spec_error("features.categorical", "Input should be a valid list", "list_type"),
    ),
    "ops: promote refused by a rollout rule": Planted(
        "ET",
        "deployment",
        "ops",
        {"Beginner": 8, "Intermediate": 4, "Expert": 1},
        _refusal(
            "promote",
            "refused: model 'churn' has no canary running",
            "ops: promote refused by a rollout rule",
        ),
    ),
    # a distractor: many at every level, just short of the SoP rule at 50/65/80
    "gate: too good to be true (held)": Planted(
        "watch",
        "training",
        "run",
        {"Beginner": 10, "Intermediate": 8, "Expert": 5},
        _gate(
            "held_for_review",
            "roc_auc 0.9991 is 31.0% better than champion v3 (0.7620): above the 15% "
            "'too good to be true' limit, held for review",
        ),
    ),
}


@dataclass
class History:
    events: list[Event]
    skills: dict[str, str]
    """user -> the skill they were simulated with"""
    planted: dict[str, str] = field(default_factory=lambda: {k: p.verdict for k, p in PLANTED.items()})


def _users(rng: random.Random) -> dict[str, str]:
    names = [
        "ana",
        "ben",
        "chen",
        "dara",
        "eli",
        "fay",
        "gus",
        "hana",
        "ivo",
        "jo",
        "kai",
        "lena",
        "milo",
        "nora",
        "omar",
        "pia",
        "quin",
        "rosa",
        "sam",
        "tara",
        "uma",
        "vik",
        "wen",
        "xia",
        "yara",
        "zed",
        "abe",
        "bea",
        "cal",
        "dee",
        "eva",
        "finn",
        "gia",
        "hugo",
        "ines",
        "jack",
        "kim",
        "leo",
        "mae",
        "ned",
    ]
    rng.shuffle(names)
    skills = [skill for skill, n in SKILLS.items() for _ in range(n)]
    return {f"{name}@example.com": skill for name, skill in zip(names, skills, strict=False)}


def generate_history(seed: int = 7, weeks: int = 12, start: datetime = START) -> History:
    """The events of ``sum(SKILLS.values())`` simulated users over ``weeks`` weeks."""
    rng = random.Random(seed)
    skills = _users(rng)
    by_skill = {skill: sorted(u for u, s in skills.items() if s == skill) for skill in SKILLS}
    problems: dict[str, list[str]] = {user: [] for user in skills}
    for kind, planted in PLANTED.items():
        for skill, count in planted.counts.items():
            for user in rng.sample(by_skill[skill], count):
                problems[user].append(kind)
    rare_users = rng.sample(sorted(skills), 14)
    unknown_stage_users = rng.sample(sorted(skills), 5)
    events: list[Event] = []
    horizon = timedelta(weeks=weeks)
    for user, skill in sorted(skills.items()):
        t = start + timedelta(hours=rng.uniform(0, 24 * 14))
        models = rng.sample(MODELS, k=1 if skill == "Beginner" else len(MODELS))
        n_goals = rng.randint(*GOALS[skill])
        gap = (horizon - (t - start)) / (n_goals + 1)
        mine = list(problems[user])
        if user in rare_users:  # pairs of users share a rare mistake: too few to be a pattern
            mine.append(f"rare:{RARE_WORDS[rare_users.index(user) // 2]}")
        goal_types = ["spec"] + [rng.choice(("run", "run", "spec", "ops")) for _ in range(n_goals - 1)]
        for planted_kind in mine:  # every problem of this user gets a goal where it can happen
            goal = PLANTED[planted_kind].goal if planted_kind in PLANTED else "run"
            if goal not in goal_types[1:]:
                goal_types.insert(rng.randint(1, len(goal_types)), goal)
        pending = {kind: (PLANTED[kind].goal if kind in PLANTED else "run") for kind in mine}
        for index, goal in enumerate(goal_types):
            model = rng.choice(models)
            forced = [kind for kind, g in pending.items() if g == goal]
            failures: list[MakeEvents] = []
            for kind in forced:  # every pending problem of this kind of goal trips this attempt chain
                del pending[kind]
                if kind.startswith("rare:"):
                    why = f"the {kind[5:]} corner case"
                    rare = _refusal("trigger", f"refused: {why}", f"ops: trigger refused: {why}", "training")
                    failures.append(rare)
                else:
                    failures += [PLANTED[kind].make] * rng.choice((1, 1, 2))
            while rng.random() < FAIL_P[skill] and len(failures) < 5:
                command, stage = {"spec": ("validate", "training"), "run": ("trigger", "training")}.get(
                    goal, ("canary", "deployment")
                )
                slip = f"{user.split('@')[0]} slip {index}"  # a mistake of this user only
                kind = f"ops: {command} refused: {slip}"
                failures.append(_refusal(command, f"refused: {slip}", kind, stage))
            for make in failures:
                events += make(user, model, t)
                t += timedelta(minutes=rng.lognormvariate(0, 0.6) * FIX_MEDIAN_MIN[skill])
            events += _success(user, skill, goal, model, t, rng)
            t += gap * rng.uniform(0.6, 1.4)
        if user in unknown_stage_users:
            for _ in range(rng.randint(1, 3)):
                events.append(
                    Event(
                        user=user, action="cli.templates", stage="unknown", at=t, duration_s=0.8, model=None
                    )
                )
                t += timedelta(minutes=5)
    for number, event in enumerate(events):
        event.origin = event.origin or f"generated:{seed}:{number}"
    events.sort(key=lambda e: e.at)
    return History(events=events, skills=skills)


def _success(user: str, skill: str, goal: str, model: str, t: datetime, rng: random.Random) -> list[Event]:
    if goal == "spec":
        action = rng.choice(("cli.validate", "cli.validate", "cli.new-model"))
        stage = "data" if action == "cli.new-model" else "training"
        return [Event(user=user, action=action, stage=stage, at=t, model=model, duration_s=1.2)]
    if goal == "ops":
        command = rng.choice(OPS_BY_SKILL[skill])
        return [
            Event(user=user, action=f"cli.{command}", stage="deployment", at=t, model=model, duration_s=2.5)
        ]
    minutes = rng.uniform(3, 9)
    details = {"dag_id": f"{model}__retrain", "run_id": f"manual__{t.isoformat()}"}
    by_airflow = functools.partial(Event, user=user, at=t, source="airflow", model=model)
    out = [
        by_airflow(action=f"task.{task}", stage=stage, duration_s=minutes * 12, details=details)
        for task, stage in (
            ("ingest", "data"),
            ("validate", "data"),
            ("train", "training"),
            ("evaluate", "training"),
            ("register", "training"),
        )
    ]
    out.append(
        by_airflow(action="dag_run.retrain", stage="training", duration_s=minutes * 60, details=details)
    )
    out.append(
        Event(
            user=user,
            action="gate.blessed",
            stage="training",
            at=t + timedelta(minutes=minutes),
            source="registry",
            model=model,
            message="roc_auc meets the bar",
        )
    )
    if skill == "Expert" and rng.random() < 0.5:
        out.append(by_airflow(action="dag_run.drift_watch", stage="deployment", duration_s=40.0))
    return out


def write_history(store: EventStore | None = None, seed: int = 7, weeks: int = 12) -> History:
    history = generate_history(seed, weeks)
    (store or EventStore()).add(history.events)
    return history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--weeks", type=int, default=12)
    args = parser.parse_args(argv)
    store = EventStore()
    history = write_history(store, args.seed, args.weeks)
    print(
        f"{len(history.events)} events of {len(history.skills)} simulated users written to the "
        f"analyzer_events table of {store.engine.url.render_as_string(hide_password=True)}; planted: "
        + ", ".join(f"{kind} ({verdict})" for kind, verdict in history.planted.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
