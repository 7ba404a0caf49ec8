"""WarmLocalExecutor: the tasks' heavy imports happen once, in the scheduler, before it forks."""

from __future__ import annotations

import sys

from airflow.executors.local_executor import LocalExecutor
from model_factory.airflow import executor


def test_warm_imports_loads_modules_and_skips_a_missing_one(caplog):
    sys.modules.pop("json.tool", None)
    took = executor.warm_imports(("json.tool", "no_such_module_anywhere"))
    assert set(took) == {"json.tool"} and "json.tool" in sys.modules
    assert "could not pre-import no_such_module_anywhere" in caplog.text


def test_every_warm_module_exists():
    took = executor.warm_imports()
    assert set(took) == set(executor.WARM_MODULES)


def test_the_executor_warms_before_forking_its_workers(monkeypatch):
    calls = []
    monkeypatch.setattr(executor, "warm_imports", lambda: calls.append("warm") or {})
    monkeypatch.setattr(LocalExecutor, "start", lambda self: calls.append("fork workers"))
    warm = executor.WarmLocalExecutor(parallelism=1)
    warm.is_mp_using_fork = True
    warm.start()
    assert calls == ["warm", "fork workers"]
    warm.is_mp_using_fork = False  # spawned workers start fresh: nothing to gain
    calls.clear()
    warm.start()
    assert calls == ["fork workers"]
