"""``new-model``, ``new-template`` and ``templates``: what a data scientist runs first."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from model_factory.cli.common import EXIT_REFUSED, airflow_side, err_console, fail
from model_factory.settings import PROJECT_ROOT, FactorySettings


def _report(result) -> None:
    for path in result.written:
        typer.echo(f"wrote {path}")
    for line in result.notes + result.validation:
        typer.echo(f"  - {line}")
    typer.echo("next:")
    for number, step in enumerate(result.next_steps, 1):
        typer.echo(f"  {number}. {step}")


def new_model(
    name: Annotated[str, typer.Argument(help="lower_snake_case; also the spec's file name")],
    template: Annotated[str, typer.Option("--template", "-t", help="`model-factory templates`")] = "retrain",
    from_data: Annotated[
        Path | None, typer.Option("--from-data", help="a CSV/Parquet sample: fills features, ranges, classes")
    ] = None,
    target: Annotated[str | None, typer.Option(help="the target column (default: target/label/y)")] = None,
    owner: Annotated[str, typer.Option(prompt="Owner (team or person)", help="the DAG owner")] = "",
    source: Annotated[
        str | None, typer.Option(help="batch URI with {ds}; default ${FACTORY_DATA_ROOT}/NAME/{ds}.csv")
    ] = None,
    force: Annotated[bool, typer.Option(help="overwrite an existing spec/code stub")] = False,
) -> None:
    """Scaffold a model spec for a template (and code/NAME.py for custom_training)."""
    from model_factory.scaffold import ScaffoldError
    from model_factory.scaffold import new_model as scaffold

    if not owner.strip():
        fail("--owner is required (who owns the model's DAGs and alerts)", EXIT_REFUSED)
    try:
        # reading a big sample and validating the spec take a while: a live line on a terminal
        doing = f"reading {from_data}…" if from_data else "writing…"
        with err_console.status(f"new-model {name}: {doing}"):
            settings = FactorySettings.from_env()
            result = scaffold(
                name,
                template,
                settings.specs_dir,
                owner=owner.strip(),
                source=source,
                sample=from_data,
                target=target,
                force=force,
                settings=settings,
            )
    except ScaffoldError as exc:
        fail(str(exc), EXIT_REFUSED)
    _report(result)


def new_template(
    name: Annotated[str, typer.Argument(help="lower_snake_case; what specs write in template:")],
    force: Annotated[bool, typer.Option(help="overwrite existing files")] = False,
) -> None:
    """Scaffold a DAG template module (include/templates/NAME.py) and its test."""
    from model_factory.scaffold import ScaffoldError
    from model_factory.scaffold import new_template as scaffold

    folder = FactorySettings.from_env().templates_folder  # no Airflow to import for this one
    try:
        result = scaffold(name, folder, PROJECT_ROOT / "tests" / "templates", force=force)
    except ScaffoldError as exc:
        fail(str(exc), EXIT_REFUSED)
    _report(result)


def templates() -> None:
    """List the templates a spec can use: shipped, include/templates/, installed packages."""
    registry = airflow_side("template_registry").discover()
    for name, origin, description in registry.describe():
        typer.echo(f"{name:<20} {description}  [{origin}]")
    for name, why in sorted(registry.broken.items()):
        typer.echo(f"{name:<20} BROKEN: {why}", err=True)


def register(app: typer.Typer) -> None:
    app.command("new-model")(new_model)
    app.command("new-template")(new_template)
    app.command("templates")(templates)
