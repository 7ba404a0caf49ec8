"""``bench``: the performance table, each row against its alternative in the same run (bench/suite.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Annotated

import typer
from model_factory.cli.common import err_console, fail
from model_factory.settings import PROJECT_ROOT

ROWS = "serving,drift,drift_10m,validation,dag_parse,retrain,health,gateway_fleet"


def _suite(root: Path):
    path = root / "bench" / "suite.py"
    if not path.is_file():
        fail(f"no {path}: the bench ships with the repository checkout, not the installed package")
    spec = importlib.util.spec_from_file_location("factory_bench_suite", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="small data, in one process, no virtualenvs (what the test runs)")
    ] = False,
    repeats: Annotated[int | None, typer.Option(min=1, help="runs per side (3; quick 2)")] = None,
    rows: Annotated[int | None, typer.Option(min=1000, help="rows of the drift/validation data (1M)")] = None,
    only: Annotated[str | None, typer.Option(help=f"comma list of rows to run: {ROWS}")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for latest.json/latest.md (bench/results)")] = None,
) -> None:
    """Measure the performance table side by side: the factory vs what users would pick instead.

    Serving vs `mlflow models serve`, drift vs Evidently (each from a virtualenv of its own under
    .factory/bench-venvs, created on first use from PyPI), validation vs GX's batch.validate,
    DAG-file parse. Alternating runs; medians, minimums, peak memory, machine load. Writes
    bench/results/latest.json and latest.md (quick: quick.json/quick.md).
    """
    wanted = only.split(",") if only else None
    suite = _suite(PROJECT_ROOT)
    unknown = sorted(set(wanted or []) - set(suite.ROWS))  # the suite's rows, not a copy of them
    if unknown:
        fail(f"unknown rows {unknown}; choose from {','.join(suite.ROWS)}", code=2)
    # each measurement's line scrolls on stderr; on a terminal a live line says what runs now
    with err_console.status("bench: starting…") as live:

        def log(line: str) -> None:
            err_console.print(line, markup=False, highlight=False, soft_wrap=True)
            live.update(f"bench: {line[:100]}")

        report = suite.run(quick=quick, repeats=repeats, rows=rows, out=out, only=wanted, log=log)
    typer.echo(suite.table(report), nl=False)
    typer.echo("wrote " + ", ".join(report["written"]))


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
