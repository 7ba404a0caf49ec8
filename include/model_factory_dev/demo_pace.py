"""The demo's clock (issue 22): each part's wall time, and what it waits for with the time left.

A newcomer's first ``make demo`` takes minutes; every wait says what it waits for, how long it
has waited and at most how long is left, and every part ends with its wall time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

PROGRESS_EVERY_S = 20.0  # a waiting line at most this often


@dataclass
class Clock:
    """Wall time per part of the demo, printed as each part ends and again in the summary."""

    started: float = field(default_factory=time.monotonic)
    parts: list[tuple[str, float]] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        end = self.begin(name)
        try:
            yield
        finally:
            end()

    def begin(self, name: str) -> Callable[[], None]:
        """Start timing a part; call what it returns when the part ends (prints its wall time)."""
        t0 = time.monotonic()

        def end() -> None:
            took = time.monotonic() - t0
            self.parts.append((name, took))
            print(f"  [{name}: {took:.0f}s; demo at {self.elapsed():.0f}s]", flush=True)

        return end

    def lines(self) -> list[str]:
        return [f"{name:<44} {took:6.0f}s" for name, took in self.parts] + [
            f"{'total (this process)':<44} {self.elapsed():6.0f}s"
        ]


def eta(done: int, total: int, elapsed_s: float) -> str:
    """'about Ns left' at the pace so far ('' before the first finished item)."""
    if done <= 0 or done >= total:
        return ""
    return f", about {elapsed_s / done * (total - done):.0f}s left at this pace"


def wait_for_run(api: Any, dag_id: str, run_id: str, what: str, timeout_s: float = 600.0) -> dict:
    """``api.wait_for_run``, printing every ``PROGRESS_EVERY_S`` what it waits on (the run's
    unfinished tasks), how long so far and at most how long is left."""
    last_said = 0.0

    def say(run: dict, waited_s: float) -> None:
        nonlocal last_said
        if waited_s - last_said < PROGRESS_EVERY_S:
            return
        last_said = waited_s
        pending = [
            f"{t['task_id']} {t['state']}"
            for t in api.task_instances(dag_id, run_id)
            if t["state"] not in ("success", "skipped", "failed", "upstream_failed", "removed")
        ]
        print(
            f"      waiting for {what}: {', '.join(pending[:3]) or run['state']}; "
            f"{waited_s:.0f}s so far, gives up in {timeout_s - waited_s:.0f}s",
            flush=True,
        )

    return api.wait_for_run(dag_id, run_id, timeout_s=timeout_s, on_poll=say)
