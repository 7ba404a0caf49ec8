"""``status`` (the fleet) and ``show MODEL``: what serves, is it healthy, what changed and why."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from model_factory.cli.common import EXIT_REFUSED, EXIT_UNREACHABLE, Json, console, fail, print_json
from model_factory.console.fleet_page import MAX_PER_PAGE, PER_PAGE, STATES, FleetFilter, read_page
from model_factory.settings import FactorySettings
from rich.table import Table

Offline = Annotated[
    bool, typer.Option("--offline", help="do not ask Airflow (no last runs, no next run; exit 0 without it)")
]


def _quick_mlflow() -> None:
    """A read command must not sit through MLflow's default retries (minutes) when the server is down."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def airflow_source(settings: FactorySettings, offline: bool) -> Any:
    from model_factory.io.airflow_api import AirflowClient
    from model_factory.rollout.fleet_airflow import RestAirflowSource

    return None if offline else RestAirflowSource(AirflowClient.from_settings(settings, timeout_s=10))


def unreachable_notes(sources: dict[str, str], settings: FactorySettings) -> list[str]:
    """One line per source that could not be read, naming what to start."""
    hints = {
        "airflow": "start Airflow (`make ui`) or set FACTORY_AIRFLOW_URL; --offline skips it",
        "mlflow": f"start MLflow at {settings.tracking_uri} (`make ui` runs one) or fix MLFLOW_TRACKING_URI",
        "store": f"check the object store {settings.store_uri}",
        "alerts": "check the prediction DB (FACTORY_PREDICTION_DB_URI)",
        "decisions": "check the prediction DB (FACTORY_PREDICTION_DB_URI)",
        "health": "check the prediction DB (FACTORY_PREDICTION_DB_URI): the model_health table",
    }
    return [
        f"{name} {state}\n  -> {hints.get(name, '')}"
        for name, state in sources.items()
        if state.startswith("unreachable")
    ]


def _when(text: str | None) -> str:
    return str(text)[:16].replace("T", " ") if text else "-"


def _v(version: str | None) -> str:
    return f"v{version}" if version else "-"


def _figure(value: float | None, day: str | None) -> str:
    return "-" if value is None else f"{value:.4f}" + (f" ({day[5:]})" if day else "")


def health_cells(health: dict | None) -> tuple[str, str, str]:
    """(live metric, estimated metric, expiry) of the champion, from its health history: each
    metric with the day it is of; expiry "by <date>" is the forecast's retrain-by date."""
    if not health:
        return "-", "-", "-"
    check = health["check"] or {}
    expiry = "-"
    if check.get("retrain_by"):
        expiry = f"by {check['retrain_by']}"
    elif check:
        expiry = "no decline"
    if check.get("action") in ("alert", "retrain"):
        expiry += f" ({check['action']})"
    live = _figure(health["live"], health["live_day"])
    return live, _figure(health["estimated"], health["estimated_day"]), expiry


def fleet_table(summary: dict, counts: dict | None = None) -> Table:
    shown = len(summary["models"])
    what = f"{shown} models"
    if counts and (counts["matched"] != shown or counts["total"] != shown):
        what = f"{shown} of {counts['matched']} matching, {counts['total']} in all, page {counts['page']}"
    table = Table(title=f"Model factory fleet ({what}, {summary['at']})")
    for column in (
        "model",
        "template",
        "champion",
        "live metric",
        "estimated",
        "expiry",
        "canary",
        "challenger / held",
        "last training",
        "last drift check",
        "next run",
        "quarantined",
        "alerts",
    ):
        # the figures stay whole; the text columns fold when the terminal is narrow
        table.add_column(
            column,
            overflow="fold",
            no_wrap=column in ("live metric", "estimated", "expiry"),
            min_width=18 if column == "champion" else None,
        )
    for row in summary["models"]:
        if row["status"] == "broken":
            table.add_row(
                f"[red]{row['model']}[/]",
                "[red]BROKEN[/]",
                f"[red]{row['reason']}[/]",
                *["" for _ in range(10)],
            )
            continue
        champion = _v(row["champion"])
        if row["champion_metric"] is not None:
            champion += f" {row['metric']}={row['champion_metric']:.4f}"
        canary = f"{_v(row['canary']['version'])} @ {row['canary']['share']:.0%}" if row["canary"] else "-"
        waiting = " / ".join([_v(row["challenger"]), ",".join(_v(v) for v in row["held"]) or "-"])
        training = row["last_training"]
        drift = row["last_drift_check"]
        table.add_row(
            row["model"],
            row["template"],
            champion + (f" (pinned {_v(row['pinned'])})" if row["pinned"] else ""),
            *health_cells(row.get("health")),
            canary,
            waiting,
            f"{_when(training['when'])} {training['outcome'] or ''}".strip(),
            f"{drift['ds']} {drift['status']}" if drift else "-",
            _when(row["next_run"]) + (" (paused)" if row.get("paused") else ""),
            str(row["quarantined"]),
            f"{len(row['alerts'])}: {row['alerts'][0]['subject']}" if row["alerts"] else "0",
        )
    return table


def status(
    as_json: Json = False,
    offline: Offline = False,
    owner: Annotated[str, typer.Option(help="only this owner's models")] = "",
    template: Annotated[str, typer.Option(help="only models built by this template")] = "",
    state: Annotated[str, typer.Option(help=f"only models in this state: {', '.join(STATES)}")] = "",
    attention: Annotated[bool, typer.Option("--attention", help="only models that need attention")] = False,
    match: Annotated[str, typer.Option("--match", help="only models whose name contains this")] = "",
    page: Annotated[int, typer.Option(min=1, help="which page of rows")] = 1,
    per_page: Annotated[int, typer.Option(min=1, max=MAX_PER_PAGE, help="rows per page")] = PER_PAGE,
    all_rows: Annotated[bool, typer.Option("--all", help="every matching row, no pages")] = False,
) -> None:
    """The fleet, one row per model, a page at a time (--json for scripts).

    Template, champion and its metric, its live (realized) and estimated metric and expiry
    forecast from the health check, canary and share, challenger/held versions, last
    training, last drift check, next run, quarantines, alerts. A broken spec is a row with its
    reason. The filters are the view's (owner, template, state, needs attention, name); the
    JSON carries ``matched``, ``total``, ``page`` and ``pages`` like the view's ``/api/fleet``.
    Exit 3 when Airflow or MLflow could not be read (the rest is still shown)."""
    if state and state not in STATES:
        fail(f"--state {state!r}: use one of {', '.join(STATES)}", code=2)
    _quick_mlflow()
    settings = FactorySettings.from_env()
    wanted = FleetFilter(owner, template, state, attention, match, page, per_page)
    summary, shown = read_page(settings, airflow_source(settings, offline), wanted, all_rows)
    counts = {"matched": shown.matched, "total": shown.total, "page": shown.page, "pages": shown.pages}
    if as_json:
        print_json({**summary, "models": shown.rows, **counts})
    else:
        console.print(fleet_table({**summary, "models": shown.rows}, counts))
        if shown.pages > 1:
            typer.echo(f"page {shown.page} of {shown.pages}: --page N for another, --all for every row")
    notes = unreachable_notes(summary["sources"], settings)
    for note in notes:
        typer.echo(note, err=True)
    if notes:
        raise typer.Exit(EXIT_UNREACHABLE)


def show(
    model: Annotated[str, typer.Argument(help="the model's name (see `model-factory status`)")],
    as_json: Json = False,
    offline: Offline = False,
) -> None:
    """One model in detail: versions, canary, shadow comparison, rollout history, drift, quarantines, alerts.

    Versions with decisions (cards and checklists where present), rollout history with who
    and why, drift checks with their reports, quarantined batches with reasons, alerts."""
    from model_factory.rollout.fleet import model_detail

    _quick_mlflow()
    settings = FactorySettings.from_env()
    try:
        detail = model_detail(settings, model, airflow_source(settings, offline))
    except KeyError as exc:
        fail(str(exc.args[0]), EXIT_REFUSED)
    notes = unreachable_notes(detail["sources"], settings)
    if as_json:
        print_json(detail)
    else:
        _print_detail(detail)
    for note in notes:
        typer.echo(note, err=True)
    if notes:
        raise typer.Exit(EXIT_UNREACHABLE)


def _print_detail(d: dict) -> None:
    if d["status"] == "broken":
        console.print(f"[red bold]{d['model']}: BROKEN[/] spec {d['file']}\n  {d['reason']}")
        return
    console.print(f"[bold]{d['model']}[/]  template {d['template']}, {d['task']}, owner {d['owner']}")
    canary = d["canary"]
    console.print(
        f"champion {_v(d['champion'])}  canary "
        + (f"{_v(canary['version'])} at {canary['share']:.0%} (stage {canary['stage']})" if canary else "-")
        + f"  challenger {_v(d['challenger'])}  pinned {_v(d['pinned'])}  next run {_when(d['next_run'])}"
    )
    if d.get("shadow_comparison"):
        from model_factory.cli.shadow import comparison_line

        console.print(f"shadow {comparison_line(d['shadow_comparison'])}", markup=False, highlight=False)
    versions = Table(title="versions")
    for column in ("version", "created", "decision", d["metric"], "aliases", "card", "checklist", "reason"):
        versions.add_column(column, overflow="fold")
    for v in d.get("versions_detail", []):
        versions.add_row(
            _v(v["version"]),
            _when(v["created"]),
            v["decision"] or "?",
            f"{v['metric']:.4f}" if v["metric"] is not None else "-",
            ",".join(v["aliases"]),
            "yes" if v.get("card") else "-",
            v["checklist"] or "-",
            (v["reason"] or "")[:120],
        )
    console.print(versions)
    _section(
        "rollout history (who / why)",
        [
            f"{_when(str(r['at']))} {_v(r['version'])} {r['action']} by {r['actor']}: "
            f"{(r['reason'] or '')[:160]}"
            for r in d.get("rollouts", [])
        ],
    )
    _section(
        "drift checks",
        [
            f"{c['ds']} {c['status']}: {'; '.join(c['reasons'][:2]) or 'no finding'}  "
            f"report {c['report_uri']}"
            for c in d.get("drift_checks", [])
        ],
    )
    _section(
        "quarantined batches (never trained on)",
        [f"{q['ds']}: {'; '.join(q['reasons'][:3])}  [{q['folder']}]" for q in d["quarantines"]],
    )
    _section("alerts", [f"{a['at']} {a['kind']}: {a['subject']}" for a in d.get("all_alerts", [])])


def _section(title: str, lines: list[str]) -> None:
    console.print(f"\n[bold]{title}[/]" + ("" if lines else ": none"), highlight=False)
    for line in lines:
        console.print(f"  {line}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("show")(show)
