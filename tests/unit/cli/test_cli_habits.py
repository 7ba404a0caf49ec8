"""CLI habits: shell completion, one readable line per ops command (JSON with --json)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import typer
from model_factory.cli.main import app, main

OPS = {
    "promote",
    "rollback",
    "abort",
    "pin",
    "unpin",
    "canary",
    "approve",
    "reject",
    "held",
    "card",
    "reproduce",
    "override-checklist",
    "status",
    "show",
    "trigger",
    "runs",
    "health",
    "analyze",
}


def test_shell_completion_is_offered(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--install-completion" in out and "--show-completion" in out


def test_every_ops_command_takes_json():
    commands = typer.main.get_command(app).commands
    missing = sorted(n for n in OPS if "--json" not in [o for p in commands[n].params for o in p.opts])
    assert missing == []


def test_override_checklist_prints_one_readable_line_and_json_on_request(monkeypatch, capsys):
    from model_factory.io import tracking
    from model_factory.pipeline import registry

    recorded = []

    def record(client, model, version, action, attribution, details=None):
        recorded.append((model, version, action, attribution.reason))
        return {
            "model": model,
            "version": version,
            "action": action,
            "actor": attribution.actor,
            "reason": attribution.reason,
            "at": "2026-12-04T04:00:00+00:00",
            "details": {},
        }

    monkeypatch.setattr(tracking, "connect", lambda settings: SimpleNamespace())
    monkeypatch.setattr(registry, "record_decision", record)
    args = ["override-checklist", "churn", "3", "--reason", "slices checked by hand", "--actor", "bob"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and not out.lstrip().startswith("{")
    assert out.startswith(
        "churn v3 checklist overridden by bob via cli at 2026-12-04T04:00:00+00:00: slices checked by hand"
    )
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "checklist_override"
    assert recorded == [("churn", "3", "checklist_override", "slices checked by hand")] * 2
