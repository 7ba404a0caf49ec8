"""What every ``model-factory`` command module shares: consoles, JSON output, who is acting, errors.

Command modules (cli/scaffold.py, cli/review.py, ...) import from here rather than from main.py,
so main.py can import them without a cycle.
"""

from __future__ import annotations

import getpass
import importlib
import json
import logging
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from model_factory.analyzer.hooks import note_error
from model_factory.contracts import Attribution
from model_factory.errors import UnattributedError
from model_factory.settings import FactorySettings
from rich.console import Console

console = Console(highlight=False, width=None if sys.stdout.isatty() else 180)
"""Tables and progress go to stdout; rich picks up ``sys.stdout`` at print time (capsys works)."""

err_console = Console(stderr=True, highlight=False)

# Parameter types shared by command modules: ``def cmd(as_json: Json = False, reason: Reason, ...)``.
Json = Annotated[bool, typer.Option("--json", help="print JSON instead of a table (for scripts)")]
Reason = Annotated[str, typer.Option("--reason", help="why: recorded with who and when")]
Actor = Annotated[str | None, typer.Option("--actor", help="who (default: $FACTORY_ACTOR or the login name)")]


class _Stderr:
    """Writes to what ``sys.stderr`` is at the time (text, or its bytes with ``binary``), not to
    the object it was when logging was set up: a redirect or a test's capture that ends later
    must not leave log handlers writing to a closed stream."""

    def __init__(self, binary: bool = False) -> None:
        self.binary = binary

    def write(self, data: Any) -> int:
        return (sys.stderr.buffer if self.binary else sys.stderr).write(data)

    def flush(self) -> None:
        sys.stderr.flush()


def logs_to_stderr() -> None:
    """Log lines go to stderr: stdout carries the command's output (``--json`` is read by scripts).

    Importing Airflow configures logging: the root logger gets a handler on stdout, and
    structlog (Airflow's own loggers) a logger factory that writes to stdout. Both are moved."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
            handler.setStream(_Stderr())
    structlog: Any = sys.modules.get("structlog")  # only when something imported it (Airflow does)
    if structlog is None:
        return
    factory: Any = structlog.get_config().get("logger_factory")
    # Airflow's own: LoggerFactory(cls, io), io=None meaning sys.stdout (its buffer with json_logs)
    if getattr(factory, "io", False) is None and isinstance(getattr(factory, "cls", None), type):
        binary = issubclass(factory.cls, structlog.BytesLogger)
        structlog.configure(logger_factory=type(factory)(factory.cls, _Stderr(binary)))


def airflow_side(module: str) -> ModuleType:
    """``model_factory.airflow.<module>`` for a command: every command imports the factory's Airflow
    side through here, so Airflow's log lines go to stderr (``logs_to_stderr``), never into the
    command's output (tests/unit/cli/test_cli_logging.py keeps it so).

    Airflow itself is imported first: it configures logging when it is imported, which a module
    of the factory's side may leave to the first call that needs it (after the move)."""
    importlib.import_module("airflow")
    imported = importlib.import_module(f"model_factory.airflow.{module}")
    logs_to_stderr()
    return imported


def print_json(value: Any) -> None:
    """One JSON document on stdout; dates and paths as strings."""
    typer.echo(json.dumps(value, indent=2, default=str))


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` on stderr (no markup interpretation) and exit with ``code``.

    Called while handling an exception, that exception is handed to the Analyzer: its event's
    kind comes from the exception's kind or type, never from ``message``."""
    note_error()
    typer.echo(message, err=True)
    raise typer.Exit(code)


# Exit codes scripts can tell apart.
EXIT_REFUSED = 1
"""The request was understood and refused (bad spec, no such model, a rollout rule)."""
EXIT_UNREACHABLE = 3
"""Airflow or MLflow did not answer: the message names what to start."""


def cli_attribution(actor: str | None, reason: str) -> Attribution:
    """Who asks (``--actor``, else ``$FACTORY_ACTOR``, else the login name, "via cli") and why.
    Checked here, once: an empty reason is refused (exit 1) before anything is read or written."""
    who = actor or FactorySettings.from_env().actor or getpass.getuser()
    try:
        return Attribution(f"{who} via cli", reason)
    except UnattributedError as exc:
        fail(f"refused: {exc}", EXIT_REFUSED)


T = TypeVar("T")


def registry_call(model: str, settings: FactorySettings, call: Callable[[], T]) -> T:
    """Run a registry operation; a refusal (a rollout rule, a bad spec, no such model or version)
    exits 1 with the reason, an MLflow that does not answer exits 3 naming what to start."""
    from model_factory.pipeline.registry import PromotionError
    from model_factory.spec import SpecError

    try:
        return call()
    except (PromotionError, SpecError) as exc:
        fail(f"refused: {exc}")
    except Exception as exc:
        from mlflow.exceptions import MlflowException
        from model_factory.io.tracking import TrackingUnavailableError

        if not isinstance(exc, (MlflowException, TrackingUnavailableError)):
            raise
        if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
            fail(f"refused: no registered model or version for {model!r}: {str(exc).splitlines()[0]}")
        fail(
            f"MLflow did not answer at {settings.tracking_uri}: {str(exc).splitlines()[0][:300]}\n"
            "  -> start it (`make ui` runs one) or fix MLFLOW_TRACKING_URI",
            EXIT_UNREACHABLE,
        )


# --- ops decisions: recorded beside the gateway's, shown as one line -------------------------


def recorded_decision(decision: dict, settings: FactorySettings) -> dict:
    """Decisions go to the prediction DB too, beside the gateway's own records."""
    from model_factory.serving.predlog import write_decision
    from model_factory.serving.settings import prediction_db_uri

    if decision.get("changed", True):
        write_decision(prediction_db_uri(settings), decision)
    return decision


_SHOWN_DETAILS = ("champion", "previous_champion", "share")


def decision_line(decision: dict) -> str:
    """One readable line for an ops decision, e.g. ``churn v2 promoted by ana via cli: looked good
    (champion 2, previous_champion 1)``; ``--json`` prints the whole record instead."""
    version = f" v{decision['version']}" if decision.get("version") else ""
    fields = {**(decision.get("details") or {}), **decision}
    shown = ", ".join(f"{key} {fields[key]}" for key in _SHOWN_DETAILS if fields.get(key) not in (None, ""))
    line = f"{decision.get('model')}{version} {decision.get('action')} by {decision.get('actor')}"
    line += f": {decision.get('reason')}" + (f" ({shown})" if shown else "")
    return line + ("" if decision.get("changed", True) else " (already so: nothing changed)")


def print_decision(decision: dict, as_json: bool) -> None:
    """The decision as its line, or with ``--json`` the whole record."""
    typer.echo(json.dumps(decision, default=str) if as_json else decision_line(decision))
