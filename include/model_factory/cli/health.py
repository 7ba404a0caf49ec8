"""``model-factory health <model>``: the model's health history (realized vs estimated metric with
intervals, label coverage and delay, output drift, p95 latency) per version and day."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, timedelta
from typing import Annotated

import sqlalchemy as sa
import typer
from model_factory.cli.common import Json, console, fail, print_json
from model_factory.monitoring.health_history import HealthRow, history
from model_factory.serving.settings import prediction_db_uri
from model_factory.settings import FactorySettings

Days = Annotated[int, typer.Option("--days", min=1, help="how many days back")]


def _interval(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" + (f" [{low:.4f}, {high:.4f}]" if low is not None and high is not None else "")


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def health(model: str, days: Days = 30, as_json: Json = False) -> None:
    """Show a model's health per version and day (from the health check's history table)."""
    from rich.table import Table

    settings = FactorySettings.from_env()
    if not (settings.specs_dir / f"{model}.yaml").exists():
        fail(f"no model {model!r}: no spec {settings.specs_dir / f'{model}.yaml'}", 2)
    engine = sa.create_engine(prediction_db_uri(settings))
    try:
        rows: list[HealthRow] = history(engine, model, since=date.today() - timedelta(days=days))
    finally:
        engine.dispose()
    if as_json:
        print_json({"model": model, "days": [asdict(r) for r in rows]})
        return
    if not rows:
        console.print(f"{model}: no health history yet (the {model}__health DAG writes it daily)")
        return
    table = Table(title=f"{model}: health over the last {days} days ({rows[0].metric})")
    for column in (
        "day",
        "version",
        "realized [95%]",
        "estimated [95%]",
        "predictions",
        "outcomes",
        "coverage",
        "delay (d)",
        "output KS",
        "p95 ms",
        "errors",
    ):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.day),
            r.version,
            _interval(r.realized, r.realized_low, r.realized_high),
            _interval(r.estimated, r.estimated_low, r.estimated_high),
            f"{r.predictions:,}",
            f"{r.outcomes:,}",
            _number(r.label_coverage, ".0%"),
            _number(r.label_delay_days, ".1f"),
            _number(r.output_drift_ks, ".3f"),
            _number(r.p95_ms, ".1f"),
            _number(r.error_rate, ".1%"),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("health")(health)
