"""Signals from events, in three classes: actions, errors and time, per user and lifecycle stage.

- actions: events per stage, completed (ok) actions, distinct kinds of action;
- errors: error events per stage and per error kind;
- time: time to complete, two ways:
  * trigger to green: for each goal a user pursues on a model (getting a spec accepted, getting a
    run green, getting an ops action through), from the first attempt after the previous success
    to the end of the next successful attempt; the failed attempts in between are the retries
    before success;
  * first spec to first blessed version: from the user's first spec event on a model to the
    model's first blessed version after it.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from model_factory.analyzer.events import STAGES, UNKNOWN, Event

GOALS = {
    "spec.parse": "spec",
    "cli.validate": "spec",
    "cli.validate-specs": "spec",
    "cli.new-model": "spec",
    "cli.trigger": "run",
    "cli.new-template": "template",
}
"""Actions that are attempts at a goal; ``dag_run.*`` are run attempts, deployment commands ops ones."""

OPS_COMMANDS = ("promote", "rollback", "abort", "pin", "unpin", "canary", "approve", "reject")


def goal_of(event: Event) -> str | None:
    if event.action in GOALS:
        return GOALS[event.action]
    if event.action.startswith("dag_run."):
        return "run"
    if event.action.removeprefix("cli.") in OPS_COMMANDS:
        return "ops"
    return None


@dataclass
class StageSignals:
    actions: int = 0
    errors: int = 0
    error_kinds: Counter = field(default_factory=Counter)


@dataclass
class UserSignals:
    user: str
    actions: int = 0
    completed: int = 0
    errors: int = 0
    distinct_actions: int = 0
    active_days: int = 0
    models: list[str] = field(default_factory=list)
    stages: dict[str, StageSignals] = field(default_factory=dict)
    error_kinds: Counter = field(default_factory=Counter)
    times_to_green_s: list[float] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    """Failed attempts before each success."""
    unfinished_goals: int = 0
    """Goals still without a success at the last event."""
    times_to_blessed_s: list[float] = field(default_factory=list)

    @property
    def time_to_green_s(self) -> float | None:
        # the mean: most goals go green at the first attempt, so a median hides the slow recoveries
        return statistics.fmean(self.times_to_green_s) if self.times_to_green_s else None

    @property
    def retries_before_success(self) -> float | None:
        return statistics.fmean(self.retries) if self.retries else None

    @property
    def time_to_blessed_s(self) -> float | None:
        return statistics.median(self.times_to_blessed_s) if self.times_to_blessed_s else None

    def to_dict(self) -> dict:
        return {
            "user": self.user,
            "actions": self.actions,
            "completed": self.completed,
            "errors": self.errors,
            "distinct_actions": self.distinct_actions,
            "active_days": self.active_days,
            "models": self.models,
            "time_to_green_s": self.time_to_green_s,
            "retries_before_success": self.retries_before_success,
            "unfinished_goals": self.unfinished_goals,
            "time_to_blessed_s": self.time_to_blessed_s,
            "stages": {
                stage: {"actions": s.actions, "errors": s.errors, "error_kinds": dict(s.error_kinds)}
                for stage, s in self.stages.items()
            },
        }


def _end(event: Event) -> datetime:
    from datetime import timedelta

    return event.at + timedelta(seconds=event.duration_s or 0.0)


def _goal_times(signals: UserSignals, events: list[Event]) -> None:
    """Walk each (goal, model) attempt chain of one user, oldest first."""
    chains: dict[tuple[str, str | None], list[Event]] = defaultdict(list)
    for event in events:
        goal = goal_of(event)
        if goal is not None:
            chains[(goal, event.model)].append(event)
    for chain in chains.values():
        start: Event | None = None
        failures = 0
        for event in chain:
            start = start or event
            if event.outcome == "error":
                failures += 1
                continue
            signals.times_to_green_s.append(max(0.0, (_end(event) - start.at).total_seconds()))
            signals.retries.append(failures)
            start, failures = None, 0
        if start is not None:
            signals.unfinished_goals += 1


def user_signals(events: list[Event]) -> dict[str, UserSignals]:
    """Every user's signals; events are read oldest first."""
    events = sorted(events, key=lambda e: e.at)
    by_user: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_user[event.user].append(event)
    blessed: dict[str, list[datetime]] = defaultdict(list)
    for event in events:
        if event.action == "gate.blessed" and event.model:
            blessed[event.model].append(event.at)
    out: dict[str, UserSignals] = {}
    for user, mine in by_user.items():
        signals = UserSignals(user=user, stages={stage: StageSignals() for stage in (*STAGES, UNKNOWN)})
        signals.actions = len(mine)
        signals.completed = sum(e.outcome == "ok" for e in mine)
        signals.errors = sum(e.outcome == "error" for e in mine)
        signals.distinct_actions = len({e.action for e in mine})
        signals.active_days = len({e.at.date() for e in mine})
        signals.models = sorted({e.model for e in mine if e.model})
        for event in mine:
            stage = signals.stages[event.stage if event.stage in signals.stages else UNKNOWN]
            stage.actions += 1
            if event.outcome == "error":
                stage.errors += 1
                kind = event.error_kind or "error: unclassified"
                stage.error_kinds[kind] += 1
                signals.error_kinds[kind] += 1
        _goal_times(signals, mine)
        first_spec: dict[str, datetime] = {}
        for event in mine:
            if goal_of(event) == "spec" and event.model and event.model not in first_spec:
                first_spec[event.model] = event.at
        for model, began in first_spec.items():
            after = [at for at in blessed.get(model, []) if at >= began]
            if after:
                signals.times_to_blessed_s.append((min(after) - began).total_seconds())
        out[user] = signals
    return out


def stage_table(signals: dict[str, UserSignals]) -> dict[str, dict]:
    """Per stage: users active, actions, errors and the most frequent error kinds."""
    table: dict[str, dict] = {}
    for stage in (*STAGES, UNKNOWN):
        kinds: Counter = Counter()
        users = actions = errors = 0
        for user in signals.values():
            s = user.stages.get(stage)
            if not s or not s.actions:
                continue
            users += 1
            actions += s.actions
            errors += s.errors
            kinds.update(s.error_kinds)
        table[stage] = {
            "users": users,
            "actions": actions,
            "errors": errors,
            "top_error_kinds": dict(kinds.most_common(5)),
        }
    return table
