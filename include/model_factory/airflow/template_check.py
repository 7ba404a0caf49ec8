"""Try a data scientist's template in a child process before the DAG file runs it.

A template is code the factory did not write. A plain exception is caught where it is called,
but ``sys.exit()``, ``os._exit()``, a ``KeyboardInterrupt`` or an endless loop at import or in
``build()`` would end (or stall past Airflow's import timeout) the parse of the whole DAG file.
So a template file is first imported, and each model's ``build()`` first run, in a child Python
with a timeout; whatever the child does costs only that template's models, which get an
``invalid_spec__`` DAG with the reason.

Verdicts are cached under ``$FACTORY_HOME/template_checks`` by content: the template file's
sha256, and per model the spec file's sha256, so the child runs only when one of them changes.
A timeout verdict is re-checked after :data:`RECHECK_TIMEOUTS_AFTER` (a busy machine is not a
loop); an exit or a raise is kept until the file changes.

The child is forked from the parsing process (everything is already imported: a few ms, not the
seconds a new interpreter takes). It writes one JSON line per step to a pipe; the parent reads
them with a deadline per step, so a child that dies or hangs while building model X is blamed on
X, and the models after X are checked by a new child.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from model_factory.settings import FactorySettings

TIMEOUT_ENV = "FACTORY_TEMPLATE_CHECK_TIMEOUT"
DEFAULT_TIMEOUT = 10.0  # seconds per step (import, or one model's build); well inside Airflow's 30 s
RECHECK_TIMEOUTS_AFTER = 3600.0
MAX_BLAMED = 3  # a template that hangs or exits on this many models is not tried on the rest
# What template code may raise that is caught where it is called (not Airflow's own timeout,
# which must still end an overrunning parse).
CONTAINED = (Exception, SystemExit, KeyboardInterrupt, GeneratorExit)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""
    checked_at: float = 0.0
    timed_out: bool = False

    def fresh(self, now: float) -> bool:
        return not self.timed_out or now - self.checked_at < RECHECK_TIMEOUTS_AFTER


def describe(exc: BaseException) -> str:
    """What a template did, in words: ``called sys.exit(3)`` rather than a bare ``SystemExit: 3``."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}) (raised SystemExit)"
    if isinstance(exc, KeyboardInterrupt):
        return "raised KeyboardInterrupt"
    return f"{type(exc).__name__}: {exc}"


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def timeout_seconds() -> float:
    try:
        return max(0.5, FactorySettings.from_env().template_check_timeout)
    except ValueError:
        return DEFAULT_TIMEOUT


class TemplateCheckUnavailableError(RuntimeError):
    """No child process could check the template (the machine, not the template, is at fault)."""


class _Cache:
    """One JSON file per template content hash: ``{"import": verdict, "builds": {spec_hash: verdict}}``."""

    def __init__(self, template: Path):
        from model_factory.settings import FactorySettings

        self.key = _digest(_read(template))
        self.path = FactorySettings.from_env().home / "template_checks" / f"{self.key}.json"
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError):
            raw = {}
        self.import_verdict = Verdict(**raw["import"]) if isinstance(raw.get("import"), dict) else None
        self.builds = {k: Verdict(**v) for k, v in (raw.get("builds") or {}).items()}

    def save(self) -> None:
        data = {
            "import": self.import_verdict.__dict__ if self.import_verdict else None,
            "builds": {k: v.__dict__ for k, v in self.builds.items()},
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)
        except OSError:  # a read-only home only means checking again next parse
            pass


def _run_child(template: Path, specs: list[Path], timeout: float) -> tuple[dict[str, dict], str | None]:
    """Run the checks in a forked child (it starts with everything already imported: a few ms);
    the steps it reported and, if it died or hung, why (blamed on the step it had started last)."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_end)
        os.close(write_end)
        raise TemplateCheckUnavailableError(f"the template check process could not start: {exc}") from exc
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(read_end)
            _child_main(write_end, str(template), [str(p) for p in specs])
        except BaseException:
            code = 70
        finally:
            os._exit(code)  # no atexit handlers, no flushing of the parent's buffers
    os.close(write_end)
    steps: dict[str, dict] = {}
    buffer = b""
    deadline = time.monotonic() + timeout
    failure = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                failure = f"did not finish within {timeout:g} s (an endless loop or a hang)"
                break
            if not select.select([read_end], [], [], left)[0]:
                continue
            chunk = os.read(read_end, 65536)
            if not chunk:
                code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                pid = 0
                if code != 0 or "done" not in steps:
                    failure = f"ended the checking process with exit code {code} (os._exit() or a crash)"
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = json.loads(line)
                steps[event["factory_check"]] = event
            deadline = time.monotonic() + timeout
    finally:
        os.close(read_end)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    return steps, failure


def _current(steps: dict[str, dict]) -> str | None:
    """The step the child started but did not finish."""
    started = [k for k, e in steps.items() if e.get("started") and "ok" not in e]
    return started[-1] if started else None


def _blame(
    cache: _Cache, steps: dict[str, dict], failure: str | None, to_check: list[Path], keys: dict[Path, str]
) -> bool:
    """Record what one child found; True when a build step hung or exited (it is blamed)."""
    stamp = time.time()
    timed_out = "within" in (failure or "")
    imported = steps.get("import", {})
    if "ok" in imported:
        cache.import_verdict = Verdict(bool(imported["ok"]), imported.get("reason", ""), stamp)
    elif failure:  # died or hung while importing the template
        cache.import_verdict = Verdict(False, failure or "", stamp, timed_out)
        return False
    for path in list(to_check):
        event = steps.get(str(path), {})
        if "ok" in event:
            cache.builds[keys[path]] = Verdict(bool(event["ok"]), event.get("reason", ""), stamp)
            to_check.remove(path)
    current = _current(steps)
    if failure and current not in (None, "import", "ready"):
        path = Path(current)
        cache.builds[keys[path]] = Verdict(False, f"build() {failure}", stamp, timed_out)
        to_check.remove(path)
        return True
    return False


def check_template(template: Path, specs: list[Path]) -> tuple[str | None, dict[Path, str]]:
    """Whether ``template`` imports, and which of ``specs`` it cannot build: (why the import
    fails or None, {spec path: why}). Cached by content; a child runs only for what changed.
    Raises :class:`TemplateCheckUnavailableError` when no child could run (nothing is cached then)."""
    cache = _Cache(template)
    now = time.time()
    keys = {path: _digest(_read(path)) for path in specs}
    fresh_import = cache.import_verdict is not None and cache.import_verdict.fresh(now)
    if fresh_import and cache.import_verdict and not cache.import_verdict.ok:
        return cache.import_verdict.reason, {}
    to_check = [p for p in specs if not (v := cache.builds.get(keys[p])) or not v.fresh(now)]
    blamed = 0
    while to_check or not fresh_import:
        steps, failure = _run_child(template, to_check, timeout_seconds())
        fresh_import = True
        blamed += _blame(cache, steps, failure, to_check, keys)
        if cache.import_verdict is None or not cache.import_verdict.ok:
            break
        if failure and blamed >= MAX_BLAMED:
            for rest in to_check:
                cache.builds[keys[rest]] = Verdict(
                    False, f"not tried: build() hung or exited on {blamed} other models", time.time(), True
                )
            break
        if failure and not blamed:
            break
    cache.save()
    if cache.import_verdict is not None and not cache.import_verdict.ok:
        return cache.import_verdict.reason, {}
    return None, {p: v.reason for p in specs if (v := cache.builds.get(keys[p])) and not v.ok}


def _child_main(events_fd: int, template: str, specs: list[str]) -> None:
    """In the forked child: import the template, then build each spec's DAGs, reporting each
    step. An ordinary exception is reported by the parent's own build (with where it was
    raised); the child is there for what the parent cannot catch."""
    from model_factory.airflow.templates import check_params, load_file, validate_built
    from model_factory.settings import FactorySettings
    from model_factory.spec import LoadedSpec, load_spec

    signal.setitimer(signal.ITIMER_REAL, 0)  # the parent's import timeout is the parent's
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # what the template prints goes nowhere, never into the events
    os.dup2(quiet, 2)

    def emit(step: str, **fields: object) -> None:
        os.write(events_fd, (json.dumps({"factory_check": step, **fields}) + "\n").encode())

    emit("import", started=True)
    try:
        loaded_template = load_file(Path(template))
    except Exception:
        emit("import", ok=True)  # a plain exception: the parent reports it in-process
        emit("done")
        return
    except BaseException as exc:
        emit("import", ok=False, reason=describe(exc))
        emit("done")
        return
    emit("import", ok=True)
    settings = FactorySettings.from_env()
    for spec_path in specs:
        emit(spec_path, started=True)
        try:
            loaded = LoadedSpec(Path(spec_path), load_spec(spec_path, settings))
            params, problems = check_params(loaded_template, loaded.spec, settings)
            if not problems:
                validate_built(loaded, loaded_template, loaded_template.build(loaded, params))
            emit(spec_path, ok=True)
        except Exception:
            emit(spec_path, ok=True)
        except BaseException as exc:
            emit(spec_path, ok=False, reason=f"build() {describe(exc)}")
    emit("done")
