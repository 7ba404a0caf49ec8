"""One component as an operating-system process group: start, health of the group, signals, logs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from model_factory.io.storage import process_alive


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when the process (thread) that started it dies."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class _Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path
    detach: bool = False
    popen: subprocess.Popen | None = None
    pid: int | None = None
    log_offset: int = 0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.log_offset = log.tell()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends all it forked
                preexec_fn=None if self.detach or not sys.platform.startswith("linux") else _die_with_parent,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid is not None and process_alive(self.pid)

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def signal(self, sig: int) -> list[int]:
        """Send ``sig`` to the component's whole process tree and group; return the pids hit."""
        if self.pid is None:
            return []
        return _signal_tree(self.pid, sig)

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.pid is None:
            return
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _group_alive(self.pid):
            if self.popen is not None:
                self.popen.poll()
            time.sleep(0.2)
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)

    def log_since_start(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.log_offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        text = self.log_since_start().splitlines()
        return "\n".join(text[-lines:])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(process_alive(pid) for pid in _group_members(pgid)) or process_alive(pgid)


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) for every process (Linux /proc)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
        except (OSError, IndexError, ValueError):
            continue
    return table


def _group_members(pgid: int) -> list[int]:
    return [pid for pid, (_, group) in _proc_table().items() if group == pgid]


def _signal_tree(root: int, sig: int) -> list[int]:
    """Signal root, its descendants (even in other sessions) and its process group."""
    table = _proc_table() if Path("/proc").is_dir() else {}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    targets, stack = [], [root]
    while stack:
        pid = stack.pop()
        targets.append(pid)
        stack.extend(children.get(pid, []))
    targets += [pid for pid, (_, pgid) in table.items() if pgid == root and pid not in targets]
    hit = []
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            hit.append(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(root, sig)
    return hit
