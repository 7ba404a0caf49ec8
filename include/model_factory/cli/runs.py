"""``trigger MODEL`` and ``runs MODEL``: through Airflow's REST API, never around Airflow."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from model_factory.cli.common import EXIT_REFUSED, EXIT_UNREACHABLE, Json, console, fail, print_json
from model_factory.settings import FactorySettings
from rich.table import Table

Model = Annotated[str, typer.Argument(help="the model's name (see `model-factory status`)")]


def _known_model(model: str) -> None:
    from model_factory.spec import load_specs

    settings = FactorySettings.from_env()
    good, bad = load_specs(settings.specs_dir, settings)
    names = {loaded.spec.name for loaded in good}
    if model in names:
        return
    broken = [e for e in bad if e.path.endswith(f"/{model}.yaml")]
    if broken:
        fail(f"model {model!r} has an invalid spec, so it has no DAGs to run:\n{broken[0]}", EXIT_REFUSED)
    fail(
        f"no model {model!r} in {settings.specs_dir} (known: {', '.join(sorted(names)) or 'none'})",
        EXIT_REFUSED,
    )


def _client():
    from model_factory.io.airflow_api import AirflowClient

    return AirflowClient.from_settings(FactorySettings.from_env())


def trigger(
    model: Model,
    date: Annotated[
        str | None, typer.Option("--date", help="the batch date YYYY-MM-DD (default: the run's)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="retrain even if this data was trained on")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="follow the run until it ends")] = False,
    as_json: Json = False,
) -> None:
    """Trigger MODEL's retrain DAG through Airflow's REST API; prints the run's URL."""
    from model_factory.io.airflow_api import AirflowApiError, AirflowUnreachableError
    from model_factory.io.batches import check_ds

    _known_model(model)
    conf: dict = {}
    if date:
        try:
            conf["ds"] = check_ds(date)
        except ValueError as exc:
            fail(f"--date: {exc}", EXIT_REFUSED)
    if force:
        conf["force_retrain"] = True
    dag_id = f"{model}__retrain"
    client = _client()
    try:
        run = client.trigger(dag_id, conf=conf)
        url = client.ui_url(dag_id, run["dag_run_id"])
        if wait:
            run = _follow(client, dag_id, run["dag_run_id"])
    except AirflowUnreachableError as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    except AirflowApiError as exc:
        fail(f"Airflow refused to trigger {dag_id}: {exc}", EXIT_REFUSED)
    out = {"dag_id": dag_id, "run_id": run["dag_run_id"], "state": run["state"], "conf": conf, "url": url}
    if as_json:
        print_json(out)
    else:
        console.print(f"triggered {dag_id} run {out['run_id']} ({out['state']})\n{url}", markup=False)
    if wait and run["state"] != "success":
        raise typer.Exit(EXIT_REFUSED)


def _follow(client, dag_id: str, run_id: str, poll_s: float = 2.0) -> dict:
    """A live line per task state until the run ends."""
    from model_factory.io.airflow_api import TERMINAL_RUN_STATES

    with console.status(f"{dag_id} {run_id}") as spinner:
        while True:
            run = client.run(dag_id, run_id)
            tasks = client.task_instances(dag_id, run_id)
            done = sum(t["state"] in ("success", "skipped", "failed", "upstream_failed") for t in tasks)
            current = [
                t["task_id"] for t in tasks if t["state"] in ("running", "queued", "up_for_reschedule")
            ]
            spinner.update(f"{dag_id}: {run['state']}, {done}/{len(tasks)} tasks done {' '.join(current)}")
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            time.sleep(poll_s)


def runs(
    model: Model,
    limit: Annotated[int, typer.Option("--limit", help="runs per DAG")] = 10,
    as_json: Json = False,
) -> None:
    """Recent runs of MODEL's DAGs (retrain, drift watch, canary): state, when, who, URL."""
    from model_factory.io.airflow_api import AirflowApiError, AirflowUnreachableError
    from model_factory.rollout.fleet import dag_ids

    _known_model(model)
    client = _client()
    found: list[dict] = []
    try:
        for dag_id in dag_ids(model).values():
            try:
                listed = client.runs(dag_id, limit=limit, newest_first=True)
            except AirflowApiError as exc:
                if exc.status == 404:  # a template without this DAG
                    continue
                raise
            found += [
                {
                    "dag_id": dag_id,
                    "run_id": r["dag_run_id"],
                    "state": r["state"],
                    "run_type": r.get("run_type"),
                    "triggered_by": r.get("triggering_user_name"),
                    "start": r.get("start_date"),
                    "end": r.get("end_date"),
                    "conf": r.get("conf"),
                    "url": client.ui_url(dag_id, r["dag_run_id"]),
                }
                for r in listed
            ]
    except AirflowUnreachableError as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    except AirflowApiError as exc:
        fail(f"Airflow refused: {exc}", EXIT_REFUSED)
    found.sort(key=lambda r: r["start"] or "", reverse=True)
    if as_json:
        print_json(found)
        return
    table = Table(title=f"{model}: recent runs")
    for column in ("dag", "run", "state", "type / who", "started", "url"):
        table.add_column(column, overflow="fold")
    for r in found:
        table.add_row(
            r["dag_id"].split("__", 1)[-1],
            r["run_id"],
            r["state"],
            f"{r['run_type']} {r['triggered_by'] or ''}".strip(),
            (r["start"] or "-")[:19].replace("T", " "),
            r["url"],
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("trigger")(trigger)
    app.command("runs")(runs)
