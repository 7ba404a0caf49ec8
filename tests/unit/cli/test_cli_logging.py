"""stdout carries a command's output, stderr its log lines, for the commands that import Airflow
(importing Airflow gives the root logger a handler on stdout). Each command runs as its own
process, as a user runs it, so no earlier test's logging set-up decides the outcome."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from model_factory.settings import FactorySettings

from tests.conftest import REPO, shipped_specs
from tests.unit.pipeline.test_registry import two_versions  # noqa: F401 - fixture

CLI = REPO / "include" / "model_factory" / "cli"

# A data scientist's template that logs while it loads (stdlib logging, Airflow's structlog and
# a Python warning, which Airflow routes into logging): `templates` imports it.
LOUD_TEMPLATE = """
import logging
import warnings

import structlog

NAME = "loud"
DESCRIPTION = "a template that logs while it loads"

logging.getLogger("loud_template").warning("loud-stdlib-line")
structlog.get_logger("loud_template").warning("loud-structlog-line")
warnings.warn("loud-python-warning", UserWarning, stacklevel=1)


def build(loaded):
    return []
"""


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``model-factory ARGS`` in a fresh process (the package as the console script runs it)."""
    path = os.pathsep.join([str(REPO / "include"), str(REPO), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "model_factory.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": path, **env},
        check=False,
    )


def test_templates_prints_the_list_on_stdout_and_a_templates_log_lines_on_stderr(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "loud.py").write_text(LOUD_TEMPLATE)

    done = _cli("templates", FACTORY_TEMPLATES_DIR=str(folder))

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(line.rstrip().endswith("]") for line in lines), (
        done.stdout
    )  # NAME DESCRIPTION [origin]
    assert any(line.startswith("loud ") and str(folder / "loud.py") in line for line in lines)
    for marker in ("loud-stdlib-line", "loud-structlog-line", "loud-python-warning"):
        assert marker not in done.stdout
        assert marker in done.stderr


def test_a_json_command_that_sends_a_version_event_prints_only_json(
    two_versions: FactorySettings,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    """``promote --json`` sends the version event through Airflow's side (the notifier); the
    spec's connection is not defined, so the notifier logs an error during the command."""
    specs = shipped_specs(tmp_path / "specs", "churn")
    raw = yaml.safe_load((specs / "churn.yaml").read_text())
    raw["notify"]["webhook_conn_id"] = "no_such_connection"
    (specs / "churn.yaml").write_text(yaml.safe_dump(raw))

    done = _cli(
        "promote",
        "churn",
        "2",
        "--reason",
        "looked good",
        "--actor",
        "ana",
        "--json",
        FACTORY_SPECS_DIR=str(specs),
    )

    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout)  # nothing but the JSON document
    assert decision["action"] == "promoted" and decision["version"] == "2"
    assert "alert channel no_such_connection for churn failed" in done.stderr
    assert "event not delivered through connection 'no_such_connection'" in done.stderr


def test_commands_import_airflows_side_only_through_the_cli_helper() -> None:
    """Importing Airflow puts log lines on stdout until ``common.airflow_side`` moves them: a
    command module that imports it directly would print logs into its output."""
    direct = []
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            direct += [
                f"{path.name}:{node.lineno} imports {name}"
                for name in names
                if name == "airflow" or name.startswith(("airflow.", "model_factory.airflow"))
            ]
    assert direct == [], "use model_factory.cli.common.airflow_side(...):\n  " + "\n  ".join(direct)


@pytest.mark.parametrize("stream", ["stdout", "__stdout__"])
def test_a_moved_handler_writes_to_the_stderr_of_the_moment(
    stream: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Moved to stderr as it is when a line is written, not as it was: a capture (or redirect)
    that has ended since must not leave a handler writing to a closed stream."""
    import contextlib
    import io
    import logging

    from model_factory.cli.common import logs_to_stderr

    handler = logging.StreamHandler(getattr(sys, stream))
    log = logging.getLogger("envs2_cli_logging_test")
    log.addHandler(handler)
    log.propagate = False
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logs_to_stderr()
        later = io.StringIO()
        with contextlib.redirect_stderr(later):
            log.warning("a line after the move")
        assert later.getvalue() == "a line after the move\n"
        assert "a line after the move" not in capsys.readouterr().out
    finally:
        root.removeHandler(handler)
        log.removeHandler(handler)
