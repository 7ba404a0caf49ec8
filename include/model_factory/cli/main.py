"""``model-factory``: the one command line for the factory's ops.

``model-factory --help`` lists the commands; every command has its own ``--help``.
``run()`` is the console script; ``main(argv)`` runs the same app and returns the exit code
(for tests and for code that drives the CLI).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from model_factory.analyzer.hooks import note_error
from model_factory.cli.common import (
    EXIT_REFUSED,
    Actor,
    Json,
    Reason,
    airflow_side,
    cli_attribution,
    err_console,
    fail,
    print_decision,
    recorded_decision,
    registry_call,
)
from model_factory.settings import FactorySettings
from model_factory.spec import SpecError, load_spec
from rich.progress import track

# typer 0.29 vendors click: a usage error is typer's ClickException, not click's.
_TYPER_CLICK_ERROR: type[click.ClickException] = type(typer.BadParameter("")).__mro__[2]

app = typer.Typer(
    name="model-factory",
    help="Model factory ops: the fleet's state, runs through Airflow, rollout control, specs.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
)


# --- specs ------------------------------------------------------------------------------------


def _validate(paths: list[Path]) -> None:
    settings = FactorySettings.from_env()
    files = list(paths) or sorted(settings.specs_dir.glob("*.yaml"))
    if not files:
        fail(f"no spec files found in {settings.specs_dir}")
    failures = 0
    # A progress bar on a terminal for many specs (nothing when piped: the ok/FAIL lines are the output).
    shown = track(
        files,
        description="validating specs",
        console=err_console,
        transient=True,
        disable=len(files) < 20 or not err_console.is_terminal,
    )
    for path in shown:
        try:
            spec = load_spec(path, settings)
            typer.echo(f"ok    {path}  ({spec.name}: {spec.task}, {spec.estimator.class_})")
        except SpecError as exc:
            failures += 1
            note_error(exc)  # the Analyzer's event: one per problem, by kind
            typer.echo(f"FAIL  {exc}", err=True)
    if failures:
        raise typer.Exit(EXIT_REFUSED)


@app.command("validate")
def validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="spec files (default: every spec in FACTORY_SPECS_DIR)")
    ] = None,
    schema: Annotated[
        bool, typer.Option("--schema", help="print the JSON Schema of a spec (docs/spec.schema.json)")
    ] = False,
) -> None:
    """Parse specs; exit 1 naming file, field and reason for each bad one."""
    if schema:
        from model_factory.cli.docs_gen import spec_schema

        typer.echo(spec_schema(), nl=False)
        return
    _validate(paths or [])


@app.command("validate-specs", hidden=True)
def validate_specs(paths: Annotated[list[Path] | None, typer.Argument()] = None) -> None:
    """Old name of ``validate``."""
    _validate(paths or [])


# --- state and runs: cli/state.py (status, show), cli/runs.py (trigger, runs) -------------------


@app.command("summary", hidden=True)
def summary(as_json: Json = False) -> None:
    """Old name of ``status --offline``."""
    from model_factory.cli.state import status as fleet_status

    fleet_status(as_json=as_json, offline=True)


# --- rollout control --------------------------------------------------------------------------


def _version_event(decision: dict, settings: FactorySettings) -> None:
    """A promoted, rolled-back or pinned version: the canary DAG's event (``version_event``: the
    spec's Airflow connections, the factory's alert record), sent from here. Connections are read
    as outside a task: ``AIRFLOW_CONN_*`` variables and secrets backends. A channel or a spec that
    fails is named on stderr; the decision stands."""
    notify = airflow_side("notify")  # its log lines (the owner's alert) go to stderr
    if decision.get("action") not in notify.VERSION_EVENTS or not decision.get("changed", True):
        return
    model = decision.get("model")
    try:
        spec = load_spec(settings.specs_dir / f"{model}.yaml", settings)
    except SpecError as exc:
        note_error(exc)
        typer.echo(f"no {notify.VERSION_EVENTS[decision['action']]} event sent for {model}: {exc}", err=True)
        return
    sent = notify.version_event(spec, decision, {"where": "model-factory CLI"})
    failed = {c: why for c, why in ((sent or {}).get("channels") or {}).items() if why.startswith("failed")}
    for conn_id, why in failed.items():
        typer.echo(
            f"event not delivered through connection {conn_id!r}: {why} (recorded in the alerts)", err=True
        )


def _ops(
    action: str,
    model: str,
    reason: str,
    actor: str | None,
    version: str | None = None,
    share: float | None = None,
    as_json: bool = False,
) -> None:
    """promote / rollback / abort / pin / unpin / canary: who and why are recorded."""
    from model_factory.rollout.canary import OpsRequest, ops_action, start_canary

    settings = FactorySettings.from_env()
    attribution = cli_attribution(actor, reason)

    def carry_out() -> dict:
        if action == "canary":
            spec = load_spec(settings.specs_dir / f"{model}.yaml", settings)
            first = share if share is not None else spec.canary.ramp[0]
            return start_canary(model, str(version), first, settings, attribution)
        return ops_action(OpsRequest(model, action, attribution, version), settings)

    decision = registry_call(model, settings, carry_out)
    recorded = recorded_decision(decision, settings)
    _version_event(recorded, settings)
    print_decision(recorded, as_json)


@app.command("promote")
def promote(
    model: str,
    reason: Reason,
    version: Annotated[
        str | None, typer.Argument(help="a blessed version (default: the running canary)")
    ] = None,
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """The running canary, or VERSION, becomes champion."""
    _ops("promote", model, reason, actor, version, as_json=as_json)


@app.command("rollback")
def rollback(model: str, reason: Reason, actor: Actor = None, as_json: Json = False) -> None:
    """Roll the canary back; with none running, champion goes back to previous_champion."""
    _ops("rollback", model, reason, actor, as_json=as_json)


@app.command("abort")
def abort(model: str, reason: Reason, actor: Actor = None, as_json: Json = False) -> None:
    """Stop the canary without a verdict (the challenger alias stays)."""
    _ops("abort", model, reason, actor, as_json=as_json)


@app.command("pin")
def pin(model: str, version: str, reason: Reason, actor: Actor = None, as_json: Json = False) -> None:
    """Serve exactly VERSION; no canary starts until unpin."""
    _ops("pin", model, reason, actor, version, as_json=as_json)


@app.command("unpin")
def unpin(model: str, reason: Reason, actor: Actor = None, as_json: Json = False) -> None:
    """Allow canaries again."""
    _ops("unpin", model, reason, actor, as_json=as_json)


@app.command("canary")
def canary(
    model: str,
    version: str,
    reason: Reason,
    share: Annotated[
        float | None, typer.Option("--share", help="traffic share (default: the spec's first ramp step)")
    ] = None,
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Start a canary of a blessed VERSION by hand; the canary DAG judges it."""
    _ops("canary", model, reason, actor, version, share, as_json)


# --- processes ---------------------------------------------------------------------------------

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command("serve", context_settings=_PASS_THROUGH)
def serve(ctx: typer.Context) -> None:
    """The serving gateway (champion + canary per model); arguments go to it (--host, --port, --help)."""
    from model_factory.serving.__main__ import main as gateway

    raise typer.Exit(gateway(ctx.args))


@app.command("demo", context_settings=_PASS_THROUGH)
def demo(ctx: typer.Context) -> None:
    """The demo: data for several days, every model's DAGs run by Airflow (arguments: --help)."""
    from model_factory.cli.common import console

    # The demo is the repository's harness (include/model_factory_dev), not part of the wheel.
    if importlib.util.find_spec("model_factory_dev") is None:
        fail(
            "the demo runs from a checkout of the repository, not from the installed package: "
            "clone it and run `make demo`"
        )
    run_demo = importlib.import_module("model_factory_dev.demo").main
    if "-h" in ctx.args or "--help" in ctx.args:
        raise typer.Exit(run_demo(ctx.args))
    # A live line while the demo works (its own output scrolls above it; nothing when piped).
    with console.status("demo: running every model's DAGs through Airflow…"):
        code = run_demo(ctx.args)
    raise typer.Exit(code)


# --- other helpers' command modules -------------------------------------------------------------
# Each module model_factory/cli/<name>.py exposes ``register(app: typer.Typer) -> None`` that adds
# its commands. To add one: create the module and put its name in COMMAND_MODULES (one-word edit).
# A listed module that is not in the tree yet is skipped; an import error inside one is raised.

COMMAND_MODULES = ("state", "runs", "scaffold", "review", "analyze", "bench", "health", "shadow")

for _name in COMMAND_MODULES:
    if importlib.util.find_spec(f"model_factory.cli.{_name}") is not None:
        importlib.import_module(f"model_factory.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit code instead of exiting."""
    from model_factory.analyzer.hooks import cli_command

    with cli_command(argv) as action:  # the Analyzer's event: who ran what, outcome, time
        code = _run_app(argv)
        if action is not None:
            action.exit_code = code
    return code


def _run_app(argv: list[str] | None) -> int:
    try:
        result = app(args=argv, prog_name="model-factory", standalone_mode=False)
    except (click.ClickException, _TYPER_CLICK_ERROR) as exc:  # typer 0.29 raises its own copy
        note_error(exc)
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, typer.Abort):
        typer.echo("aborted", err=True)
        return 1
    return result if isinstance(result, int) else 0


def run() -> None:
    """The ``model-factory`` console script: ``main`` on ``sys.argv``, so a usage error reaches
    the Analyzer as click's exception (its kind), not as text on stderr."""
    raise SystemExit(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
