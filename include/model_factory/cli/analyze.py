"""``analyze``: where data scientists get stuck, from what they do (the Analyzer)."""

from __future__ import annotations

from typing import Annotated

import typer
from model_factory.cli.common import Json, fail, print_json


def analyze(
    as_json: Json = False,
    weeks: Annotated[
        int, typer.Option("--weeks", min=0, help="only events of the last N weeks (0: all)")
    ] = 0,
    collect: Annotated[
        bool,
        typer.Option(
            "--collect/--no-collect",
            help="first read new events from Airflow's API, the store, the registry and the decisions",
        ),
    ] = True,
    expert: Annotated[float, typer.Option(min=0.0, max=100.0, help="SoP: % of Experts above")] = 50.0,
    intermediate: Annotated[
        float, typer.Option(min=0.0, max=100.0, help="SoP: % of Intermediates above")
    ] = 65.0,
    beginner: Annotated[float, typer.Option(min=0.0, max=100.0, help="SoP: % of Beginners above")] = 80.0,
    write: Annotated[bool, typer.Option("--write", help="also write the report to the store")] = False,
) -> None:
    """Where data scientists get stuck: users segmented by skill, recurring errors classed SoP or ET.

    Events: CLI commands and spec errors (recorded as they happen); runs people triggered (Airflow API).

    Also quarantines (store), gate verdicts (registry), canary outcomes (decisions table).

    FACTORY_ANALYZER=off stops recording; FACTORY_ANALYZER_PSEUDONYMIZE=true stores salted pseudonyms.
    """
    from model_factory.analyzer.report import build_report, format_report, weeks_ago, write_report
    from model_factory.analyzer.rules import Thresholds
    from model_factory.settings import FactorySettings

    settings = FactorySettings.from_env()
    thresholds = Thresholds(expert=expert / 100, intermediate=intermediate / 100, beginner=beginner / 100)
    try:
        report = build_report(
            settings, since=weeks_ago(weeks) if weeks else None, thresholds=thresholds, collect=collect
        )
    except Exception as exc:  # the events DB itself is unreadable: say which and why
        from model_factory.serving.settings import prediction_db_uri
        from sqlalchemy.engine import make_url

        where = make_url(prediction_db_uri(settings)).render_as_string(hide_password=True)
        fail(f"cannot read the Analyzer's events from {where}: {type(exc).__name__}: {exc}")
    if write:
        report["written_to"] = write_report(report, settings.store_uri)
    if as_json:
        print_json(report)
        return
    typer.echo(format_report(report))
    if write:
        typer.echo(f"\nreport written to {report['written_to']}")


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
