"""Where events are recorded as they happen: around each CLI command, and when specs are parsed.

- CLI commands: ``cli_command(argv)`` around the ``model-factory`` app, or ``tracked(...)`` as a
  decorator / context manager around one function. The CLI's error handler calls
  ``note_error(exc)`` with the exception it reports: the event's kind comes from that exception
  (``classify.exception_kind``), never from the text printed on stderr.
- Spec errors at parse time: ``record_spec_errors(errors)`` from the DAG builder's invalid-spec
  path, attributed to whoever last changed the spec in git.

DAG runs a person triggered, quarantines, gate decisions and canary outcomes are read afterwards
by ``model_factory.analyzer.collect``.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from model_factory.analyzer.classify import exception_kind, spec_error_problems, spec_problem_kind
from model_factory.analyzer.events import COMMAND_STAGES, NOT_TRACKED, UNKNOWN, Event, utcnow
from model_factory.analyzer.store import AnalyzerSettings, EventStore, current_user, record, recording_enabled
from model_factory.settings import FactorySettings
from model_factory.spec import SpecError

log = logging.getLogger(__name__)

# ---- who changed a spec -----------------------------------------------------------------------


def git_last_author(path: Path | str) -> str | None:
    """``git log -1 --format=%ae -- <file>``: who last committed the file; None outside git."""
    path = Path(path)
    try:
        done = subprocess.run(
            ["git", "log", "-1", "--format=%ae", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def spec_owner(path: Path | str) -> str | None:
    """The ``owner:`` a spec file declares, read without validating the rest."""
    try:
        import yaml

        raw = yaml.safe_load(Path(path).read_text())
    except Exception:
        return None
    owner = raw.get("owner") if isinstance(raw, dict) else None
    return str(owner) if owner else None


def spec_author(path: Path | str) -> tuple[str, str]:
    """Who to attribute a spec's problems to, and from where: git, else the spec's owner."""
    author = git_last_author(path)
    if author:
        return author, "git"
    owner = spec_owner(path)
    return (owner, "spec owner") if owner else ("unknown", "unknown")


# ---- spec errors ------------------------------------------------------------------------------

_seen_spec_errors: set[str] = set()


def _content_hash(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return "unreadable"


def _spec_origin(source: str, path: str, content: str, index: int, field_path: str, reason: str) -> str:
    key = f"{path}|{content}|{index}|{field_path}|{reason}"
    return f"{source}:" + hashlib.sha256(key.encode()).hexdigest()[:40]


def spec_error_events(
    path: str,
    problems: Sequence[tuple[str, str, str | None]],
    source: str,
    user: str | None = None,
    user_from: str = "given",
    action: str = "spec.parse",
) -> list[Event]:
    """One error event per (field, reason, kind) of an invalid spec (``origin`` set unless from the CLI)."""
    if user is None:
        user, user_from = spec_author(path)
    content = _content_hash(path) if source != "cli" else ""
    events = []
    for index, (field_path, reason, problem) in enumerate(problems):
        kind, stage = spec_problem_kind(field_path, problem)
        events.append(
            Event(
                user=user,
                action=action,
                stage=stage,
                outcome="error",
                source=source,
                model=Path(path).stem,
                error_kind=kind,
                message=f"{Path(path).name}: {field_path + ': ' if field_path else ''}{reason}",
                details={"spec": str(path), "field": field_path, "user_from": user_from},
                origin=None
                if source == "cli"
                else _spec_origin(source, path, content, index, field_path, reason),
            )
        )
    return events


def record_spec_errors(errors: Iterable[Any], settings: FactorySettings, source: str = "dag_parse") -> int:
    """Record the problems of invalid specs (``SpecError``s) found while building DAGs.

    The DAG processor parses every few seconds: each distinct problem of each version of a spec
    file is recorded once (``origin`` = file + content hash + problem). A problem already known
    (to this process, else to the database) costs no ``git`` call. Never raises.
    """
    try:
        if not recording_enabled(settings):
            return 0
        pending: list[tuple[str, list[tuple[str, str, str | None]], list[str]]] = []
        for error in errors:
            path = str(error.path)
            problems = spec_error_problems(error)
            content = _content_hash(path)
            origins = [_spec_origin(source, path, content, i, f, r) for i, (f, r, _) in enumerate(problems)]
            if not set(origins) <= _seen_spec_errors:
                pending.append((path, problems, origins))
        if not pending:
            return 0
        store = EventStore(AnalyzerSettings.of(settings))
        stored = store.known([o for _, _, origins in pending for o in origins])
        _seen_spec_errors.update(stored)
        events = [
            event
            for path, problems, origins in pending
            if not set(origins) <= stored
            for event in spec_error_events(path, problems, source)
            if event.origin not in stored
        ]
        written = record(events, store.settings, store) if events else 0
        _seen_spec_errors.update(event.origin for event in events if event.origin)
        return written
    except Exception as exc:
        log.warning("analyzer: spec errors not recorded: %s: %s", type(exc).__name__, exc)
        return 0


# ---- actions ----------------------------------------------------------------------------------


def _is_exit(exc: BaseException) -> bool:
    """``SystemExit`` or click's/typer's ``Exit``: an exit code, not an error of its own."""
    return isinstance(exc, SystemExit) or any(
        cls.__name__ == "Exit" and cls.__module__.split(".")[0] in ("click", "typer", "_typer")
        for cls in type(exc).__mro__
    )


def _exit_code(exc: BaseException | None) -> int:
    if exc is None:
        return 0
    code = getattr(exc, "exit_code", None)
    if code is None and isinstance(exc, SystemExit):
        code = exc.code
    if code is None:
        return 0 if isinstance(exc, SystemExit) else 1
    return code if isinstance(code, int) else 1


_current: contextvars.ContextVar[tracked | None] = contextvars.ContextVar("analyzer_action", default=None)


def note_error(exc: BaseException | None = None) -> None:
    """The CLI's error handler names the error it reports (default: the one being handled) so the
    running action's event gets its kind from the exception, not from the printed text."""
    action = _current.get()
    exc = exc if exc is not None else sys.exc_info()[1]
    if action is not None and exc is not None and not _is_exit(exc):
        action.errors.append(exc)


class tracked(contextlib.ContextDecorator):  # noqa: N801 - used like a function
    """Record one action: as ``@tracked("cli.trigger", stage="training")`` or ``with tracked(...) as t``.

    The outcome is ``error`` when the block raises (an exit code other than 0 counts), when an
    error was noted (``note_error``) or when ``t.fail(kind)`` was called. The kind comes from the
    first error's ``kind`` or type (``classify.exception_kind``), or from ``fail``.
    """

    def __init__(
        self,
        action: str,
        stage: str | None = None,
        model: str | None = None,
        user: str | None = None,
        source: str = "cli",
        details: dict | None = None,
    ):
        self.action, self.stage, self.model, self.user, self.source = action, stage, model, user, source
        self.details = dict(details or {})
        self.errors: list[BaseException] = []
        self.failures: list[tuple[str, str]] = []
        self.exit_code: int | None = None
        """Set it when the wrapped code returns an exit code instead of raising one."""

    def fail(self, kind: str, message: str = "") -> None:
        """Mark the action failed with a known kind (no exception at hand)."""
        self.failures.append((kind, message))

    def __enter__(self) -> tracked:
        self.at, self.started = utcnow(), time.perf_counter()
        self._token = _current.set(self)
        return self

    def _spec_events(self, error: Any, user: str) -> list[Event]:
        return spec_error_events(
            error.path, spec_error_problems(error), source=self.source, user=user, action=self.action
        )

    def events(self, exc: BaseException | None, settings: FactorySettings) -> list[Event]:
        command = self.action.removeprefix("cli.")
        code = _exit_code(exc) or (self.exit_code or 0)
        errors = [*self.errors, *([exc] if exc is not None and not _is_exit(exc) else [])]
        failed = bool(code) or bool(errors) or bool(self.failures)
        user = self.user or current_user(settings)
        kind = message = implied = None
        problems: list[Event] = []
        for error in errors:
            if isinstance(error, SpecError):
                problems += self._spec_events(error, user)
        if problems:
            kind, implied, message = problems[0].error_kind, problems[0].stage, problems[0].message
            self.details.update(problems[0].details, spec_problems=len(problems))
        elif errors:
            kind, implied = exception_kind(errors[0], command)
            message = str(errors[0]).strip() or type(errors[0]).__name__
        elif self.failures:
            kind, message = self.failures[0][0], self.failures[0][1] or None
        elif failed:
            kind = f"cli: {command} failed (exit code {code})"
        stage = self.stage or (implied if implied not in (None, UNKNOWN) else None)
        main = Event(
            user=user,
            action=self.action,
            stage=stage or COMMAND_STAGES.get(command, implied or UNKNOWN),
            outcome="error" if failed else "ok",
            at=self.at,
            source=self.source,
            model=self.model,
            error_kind=kind,
            message=message or None,
            duration_s=round(time.perf_counter() - self.started, 3),
            details={**self.details, **({"exit_code": code} if code else {})},
        )
        return [main, *problems[1:]]

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        _current.reset(self._token)
        # The entry point of a recorded action (often a decorator made at import): the settings
        # are read when it ends, once.
        settings = FactorySettings.from_env()
        record(self.events(exc, settings), AnalyzerSettings.of(settings))
        return False


def _command_and_model(argv: Sequence[str]) -> tuple[str | None, str | None]:
    positional = [arg for arg in argv if not arg.startswith("-")]
    if not positional or any(arg in ("--help", "-h") for arg in argv):
        return None, None
    command = positional[0]
    model = positional[1] if len(positional) > 1 else None
    if model and (model.endswith((".yaml", ".yml")) or "/" in model):
        model = Path(model).stem
    return command, model


@contextlib.contextmanager
def cli_command(argv: Sequence[str] | None = None) -> Iterator[tracked | None]:
    """Around one ``model-factory`` invocation: record the command, its model, outcome and time.

    The kind of a failure comes from the exception the CLI reported (``note_error``, called by
    its error handler) or raised; every problem of an invalid spec becomes its own event.
    ``--help`` and the platform team's ``analyze`` are not recorded.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    command, model = _command_and_model(args)
    if command is None or command in NOT_TRACKED:
        yield None
        return
    with tracked(f"cli.{command}", model=model, details={"argv": args[:12]}) as action:
        yield action
