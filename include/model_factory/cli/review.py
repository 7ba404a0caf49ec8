"""Review commands: approve/reject a held version, list held versions, reproduce a version,
show a version's card and checklist, override a failing checklist (with a reason)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from model_factory.cli.common import (
    EXIT_REFUSED,
    Actor,
    Json,
    Reason,
    cli_attribution,
    console,
    err_console,
    fail,
    print_json,
)
from model_factory.io import tag_schema
from model_factory.settings import FactorySettings


def _airflow(settings: FactorySettings):
    """The Airflow REST client when Airflow answers, else None (the registry is enough)."""
    from model_factory.io.airflow_api import AirflowClient, AirflowUnreachableError

    client = AirflowClient.from_settings(settings, timeout_s=10.0)
    try:
        client.health()
    except (AirflowUnreachableError, ValueError):
        return None
    return client


def _wait_reviewed(model: str, version: str, settings: FactorySettings, timeout_s: float = 60.0) -> dict:
    from model_factory.io.tracking import connect

    deadline = time.monotonic() + timeout_s
    while True:
        tags = connect(settings).get_model_version(model, version).tags
        if tags.get(tag_schema.REVIEW_STATUS) or time.monotonic() > deadline:
            return {k: v for k, v in tags.items() if k.startswith(f"{tag_schema.REVIEW}.")}
        time.sleep(1.0)


def _review(model: str, version: str, approve: bool, reason: str, actor: str | None, as_json: bool) -> None:
    from model_factory.review import approval

    settings = FactorySettings.from_env()
    attribution = cli_attribution(actor, reason)
    try:
        approval.require_held(model, version, settings)
    except approval.ReviewError as exc:
        fail(f"refused: {exc}", EXIT_REFUSED)
    client = _airflow(settings)
    answered = approval.review_in_airflow(client, model, version, approve, attribution) if client else None
    if answered:
        review = _wait_reviewed(model, version, settings)
        result: dict[str, Any] = {"model": model, "version": version, "via": answered, "review": review}
    else:
        try:
            if approve:
                result = approval.approve_version(model, version, settings, attribution)
            else:
                result = approval.reject_version(model, version, settings, attribution)
        except approval.ReviewError as exc:
            fail(f"refused: {exc}", EXIT_REFUSED)
        if result["alias"] == "challenger":
            if client is not None:
                run = client.trigger(
                    f"{model}__canary",
                    conf={"version": version, "actor": attribution.actor, "reason": f"approved: {reason}"},
                )
                result["canary_run"] = client.ui_url(f"{model}__canary", run["dag_run_id"])
            else:
                conf = json.dumps({"version": version})
                result["canary"] = (
                    "Airflow is not reachable: start the canary later with "
                    f"`airflow dags trigger {model}__canary --conf '{conf}'`"
                )
    if as_json:
        print_json(result)
        return
    if answered:
        review = result["review"]
        recorded = (
            f"{review.get('factory.review.status', 'not recorded yet')} by "
            f"{review.get('factory.review.by', '?')}: {review.get('factory.review.reason', '')}"
            if review
            else "not recorded yet"
        )
        console.print(
            f"{model} v{version}: answered the review in Airflow ({answered['url']}); {recorded}",
            markup=False,
        )
    else:
        console.print(
            f"{model} v{version} {result['status']} by {result['actor']} at {result['at']}: "
            f"{result['reason']}; alias {result['alias']}"
        )
        for key in ("canary_run", "canary"):
            if key in result:
                console.print(f"canary: {result[key]}")


def approve(model: str, version: str, reason: Reason, actor: Actor = None, as_json: Json = False) -> None:
    """Approve a version held for review: it becomes challenger and its canary starts."""
    _review(model, version, True, reason, actor, as_json)


def reject(model: str, version: str, reason: Reason, actor: Actor = None, as_json: Json = False) -> None:
    """Reject a version held for review (who, when and why are recorded on it)."""
    _review(model, version, False, reason, actor, as_json)


def held(model: str, as_json: Json = False) -> None:
    """Versions of MODEL waiting for a review, with why they were held."""
    import re

    from model_factory.review.approval import held_versions
    from model_factory.spec import NAME_PATTERN

    if not re.match(NAME_PATTERN, model):  # a quote or space would reach MLflow's filter parser
        fail(
            f"{model!r} is not a model name (lower_snake_case, 2-63 characters, a letter first)",
            EXIT_REFUSED,
        )
    rows = held_versions(model, FactorySettings.from_env())
    if as_json:
        print_json(rows)
        return
    for row in rows or [{"version": "-", "waiting_hours": 0, "reason": "nothing held for review"}]:
        console.print(f"v{row['version']}  waiting {row['waiting_hours']} h  {row['reason']}")


def reproduce(
    model: str,
    version: str,
    tolerance: Annotated[float, typer.Option(help="largest absolute metric difference")] = 1e-6,
    allow_code_drift: Annotated[bool, typer.Option(help="compare even if the code revision differs")] = False,
    as_json: Json = False,
) -> None:
    """Retrain VERSION from its lineage in a scratch run; say whether its metrics reproduce."""
    from model_factory.review.reproduce import ReproduceError, reproduce_version

    try:
        settings = FactorySettings.from_env()
        # a live line on a terminal while the scratch run retrains (nothing when piped)
        with err_console.status(f"reproducing {model} v{version}: retraining from its lineage…"):
            result = reproduce_version(model, version, settings, tolerance, allow_code_drift)
    except ReproduceError as exc:
        fail(f"refused: {exc}", EXIT_REFUSED)
    if as_json:
        print_json(result)
    else:
        console.print(result["verdict"])
        for row in result["comparison"]:
            console.print(
                f"  {row['metric']:<10} recorded {row['recorded']:.6f}  reproduced "
                f"{row['reproduced']:.6f}  {'ok' if row['within'] else 'DIFFERS'}"
            )
        console.print(f"scratch run {result['scratch_run_id']} ({result['seconds']} s)")
    if not result["reproduced"]:
        raise typer.Exit(EXIT_REFUSED)


def card(model: str, version: str, as_json: Json = False) -> None:
    """Where VERSION's model card is, and its checklist."""
    from model_factory.io.tracking import connect

    mv = connect(FactorySettings.from_env()).get_model_version(model, version)
    items = {
        k.split(".")[2]: (v, mv.tags.get(f"{k}.reason", ""))
        for k, v in mv.tags.items()
        if k.startswith(f"{tag_schema.CHECKLIST}.") and k.count(".") == 2
    }
    info = {
        "description": mv.description,
        "checklist": mv.tags.get(tag_schema.CHECKLIST, "not run"),
        "items": items,
    }
    if as_json:
        print_json(info)
        return
    typer.echo(mv.description or "(no description)")  # markdown: its [link](url) is no rich markup
    typer.echo(f"checklist: {info['checklist']}")
    for item, (result, why) in items.items():  # a passing item's reason is on the card
        typer.echo(f"  {result:<4} {item}" + (f": {why}" if why else ""))


def override_checklist(
    model: str, version: str, reason: Reason, actor: Actor = None, as_json: Json = False
) -> None:
    """Allow serving VERSION although its checklist fails; who and why are recorded."""
    from model_factory.io.tracking import connect
    from model_factory.pipeline.registry import CHECKLIST_OVERRIDE, record_decision

    attribution = cli_attribution(actor, reason)
    client = connect(FactorySettings.from_env())
    decision = record_decision(client, model, version, CHECKLIST_OVERRIDE, attribution)
    if as_json:
        print_json(decision)
    else:
        typer.echo(
            f"{model} v{version} checklist overridden by {decision['actor']} at {decision['at']}: "
            f"{reason} (it may now be served although its checklist fails)"
        )


def register(app: typer.Typer) -> None:
    app.command("approve")(approve)
    app.command("reject")(reject)
    app.command("held")(held)
    app.command("reproduce")(reproduce)
    app.command("card")(card)
    app.command("override-checklist")(override_checklist)
