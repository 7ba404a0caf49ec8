"""``model-factory shadow start|stop|show``: a challenger scored beside the champion, never answering."""

from __future__ import annotations

from typing import Annotated

import typer
from model_factory.cli.common import (
    Actor,
    Json,
    Reason,
    cli_attribution,
    print_decision,
    print_json,
    recorded_decision,
    registry_call,
)
from model_factory.settings import FactorySettings

shadow_app = typer.Typer(
    help="Shadow traffic: score a challenger on live requests beside the champion; callers only "
    "ever get the champion's answer.",
    no_args_is_help=True,
)

Share = Annotated[
    float | None,
    typer.Option(
        "--share", help="share of the champion's requests the shadow also scores, in (0, 1] (default 1)"
    ),
]


@shadow_app.command("start")
def start(
    model: str,
    version: str,
    reason: Reason,
    share: Share = None,
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Score blessed VERSION beside the champion on --share of its requests (default all)."""
    from model_factory.rollout.shadow import start_shadow

    settings = FactorySettings.from_env()
    attribution = cli_attribution(actor, reason)
    decision = registry_call(
        model, settings, lambda: start_shadow(model, version, share, settings, attribution)
    )
    print_decision(recorded_decision(decision, settings), as_json)


@shadow_app.command("stop")
def stop(model: str, reason: Reason, actor: Actor = None, as_json: Json = False) -> None:
    """Stop scoring the shadow (its logged comparison stays readable with `shadow show`)."""
    from model_factory.rollout.shadow import stop_shadow

    settings = FactorySettings.from_env()
    attribution = cli_attribution(actor, reason)
    decision = registry_call(model, settings, lambda: stop_shadow(model, settings, attribution))
    print_decision(recorded_decision(decision, settings), as_json)


@shadow_app.command("show")
def show(model: str, as_json: Json = False) -> None:
    """The shadow's comparison with the champion: agreement, output difference, latency, errors."""
    from model_factory.rollout.shadow import shadow_comparison

    settings = FactorySettings.from_env()
    comparison = registry_call(model, settings, lambda: shadow_comparison(settings, model))
    if as_json:
        print_json(comparison)
    elif comparison is None:
        typer.echo(f"{model} has no shadow (start one with `model-factory shadow start`)")
    else:
        typer.echo(comparison_line(comparison))


def comparison_line(comparison: dict) -> str:
    """``running at 50%: shadow v2 vs champion v1: ...`` (also a line of ``show MODEL``)."""
    status = comparison.get("status") or "?"
    where = f"{status} at {comparison['share']:.0%}" if status == "running" else status
    line = f"{where} since {str(comparison.get('since') or '-')[:19]}: {comparison['summary']}"
    if comparison.get("last_errors"):
        line += f"\n  last shadow errors: {'; '.join(comparison['last_errors'][:3])}"
    return line


def register(app: typer.Typer) -> None:
    app.add_typer(shadow_app, name="shadow")
