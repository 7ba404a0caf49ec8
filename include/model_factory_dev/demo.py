"""The demo: several days of batches for every demo model, run through Airflow, then a summary.

Each (day, model) is one real DAG run executed by Airflow in this process (``dag.test``),
against the embedded SQLite metadata DB, so the runs show up in the Airflow UI afterwards.
Run via ``make demo``; it expects AIRFLOW_HOME to be migrated (the Makefile does it).

Over 500 lines on purpose: the demo driver, its two parts and their summary, told in order.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from model_factory.contracts import Attribution
from model_factory.io import tag_schema
from model_factory.rollout.summary import format_table, model_rows
from model_factory.settings import PROJECT_ROOT, FactorySettings
from model_factory.spec import load_specs

from model_factory_dev import demo_data, demo_part1, demo_part1_workers, health_story
from model_factory_dev.demo_pace import Clock, wait_for_run
from model_factory_dev.demo_part1 import dag_ids, run_dag

if TYPE_CHECKING:
    from model_factory_dev.simulator import TrafficLoop
    from model_factory_dev.stack import Stack, StackConfig

__all__ = ["dag_ids", "main", "plan", "run_dag"]

START = date(2026, 1, 5)
DAYS = 6
FAULTS = {("churn", 3): "unseen_category", ("demand", 4): "dropped_column"}


# The demo's own models (their batches come from demo_data): one or more per shipped template.
# Any other spec in the specs folder is a data scientist's: run where its batches exist, else
# left alone, and said so.
DEMO_SPECS = ("churn", "demand", "segment", "churn_tuned", "churn_custom", "churn_scoring")
# Models on a template other than retrain run on the last days only (the demo stays short).
TEMPLATE_DAYS = 2
# The first part's models side by side, one process each (its DAG runs are CPU-bound, one core
# each): two on the 2-core machine this was sized on, one where only one core is there.
PART1_WORKERS = min(2, os.cpu_count() or 1)


# churn's champion decays from the third day (the first two stay as they were): its customers move
# to sign-ups of middling tenure, where it is least sure (its own probabilities show that), and
# whose churn follows their usage, a change only the outcomes show (demo_data's uncertain_shift).
DECAY = {2: 0.3, 3: 0.6, 4: 0.85, 5: 1.0}
OUTCOME_DELAY_DAYS = 2  # churn's outcomes arrive in churn_outcomes/<day + 2>.csv
SEASONAL_HISTORY_DAYS = 14  # demand batches before START: the same weekday twice for every demo day


def generate(settings: FactorySettings, days: int) -> Path:
    root = Path(urlparse(settings.data_root).path)
    faults = {key: fault for key, fault in FAULTS.items() if key[1] < days}  # --days 2 works too
    demo_data.write_demo_batches(
        root,
        START,
        days,
        faults=faults,
        models=demo_data.ALL_MODELS,
        uncertain_shift={("churn", i): shift for i, shift in DECAY.items() if i < days},
        outcome_delay_days={"churn": OUTCOME_DELAY_DAYS},
    )
    # demand's watch compares a day with the same weekday in the weeks before: that history
    demo_data.write_demo_batches(
        root, START - timedelta(days=SEASONAL_HISTORY_DAYS), SEASONAL_HISTORY_DAYS, models=("demand",)
    )
    return root


def has_batch(settings: FactorySettings, spec, day: date) -> bool:
    """Does the spec's source hold a batch for ``day`` (a data scientist's own model)?"""
    from model_factory.io import storage
    from model_factory.io.batches import resolve_source_uri

    try:
        return storage.exists(resolve_source_uri(spec.source.uri, day.isoformat(), settings))
    except Exception:  # an unresolvable URI or an unreachable store: nothing to run
        return False


def plan(settings: FactorySettings, specs, days: int) -> tuple[list[tuple[date, object]], list[str]]:
    """(day, spec) pairs to run, and one line per spec that is left alone or cut short."""
    runs, notes = [], []
    all_days = [START + timedelta(days=offset) for offset in range(days)]
    for spec in specs:
        if spec.name in DEMO_SPECS:
            chosen = all_days if spec.template == "retrain" else all_days[-TEMPLATE_DAYS:]
        else:
            chosen = [day for day in all_days if has_batch(settings, spec, day)]
            notes.append(
                f"{spec.name}: not a demo model; "
                + (
                    f"runs on the {len(chosen)} demo date(s) its source has a batch for"
                    if chosen
                    else f"no batch at {spec.source.uri} for the demo dates {all_days[0]}..{all_days[-1]}: "
                    "left alone"
                )
            )
        runs += [(day, spec) for day in chosen]
    return sorted(runs, key=lambda pair: (pair[0], pair[1].name)), notes


def template_lines(settings: FactorySettings, specs, rows: list[dict]) -> list[str]:
    """One line per model: its template, versions and champion, and what the template adds
    (tuning trials, the own code's hash, scored dates)."""
    from model_factory.io import storage, tracking

    client = tracking.connect(settings)
    by_name = {r["model"]: r for r in rows}
    lines = []
    for spec in sorted(specs, key=lambda s: (s.template, s.name)):
        row = by_name.get(spec.name, {})
        champion = row.get("champion")
        line = f"{spec.template:<16} {spec.name:<14} {row.get('versions', 0)} version(s), champion " + (
            f"v{champion}" if champion else "none"
        )
        if champion and spec.template in ("tuned_retrain", "custom_training"):
            tags = client.get_run(client.get_model_version(spec.name, champion).run_id).data.tags
            if spec.template == "tuned_retrain":
                trials, best = tags.get(tag_schema.TUNING_TRIALS, "?"), tags.get(tag_schema.TUNING_BEST_CV)
                line += f"; {trials} trials, best CV {best}"
            else:
                sha = tags.get(tag_schema.CODE_SHA256, "")[:12]
                line += f"; code {tags.get(tag_schema.CODE_FILE)} sha256 {sha}"
        if spec.template == "batch_scoring":
            folder = storage.join(settings.store_uri, "predictions", spec.name)
            files = [u for u in storage.list_uris(folder) if u.endswith(".parquet")]
            scored = sorted({u.rsplit("/", 2)[-2] for u in files})
            line += f"; predictions for {', '.join(scored) or 'no date yet'}"
        lines.append(line)
    return lines


DRIFTED = {"churn": 0.8}  # covariate shift of the production batch after the demo days
BROKEN_LABELS = 0.75  # concept shift of the churn batches an upstream label bug produced
LIVE_MODEL = "churn"
# Live requests per second while no canary waits for outcomes (the drift retrains, the shadow):
# the gateway's CPU goes to the scheduler's tasks instead; a canary lifts the cap.
QUIET_RATE = 20.0
QUIET_BATCH = 50
# Requests per round while a canary waits: each round ends by waiting out its last outcome's
# feedback delay, so rounds of 50 held the traffic near 50 requests/s whatever the gateway could do.
CANARY_BATCH = 500


def _traffic_quiet(traffic: TrafficLoop) -> None:
    traffic.rate, traffic.batch = QUIET_RATE, QUIET_BATCH


def _traffic_for_a_canary(traffic: TrafficLoop) -> None:
    """As fast as the gateway answers: the canary's stages wait for outcomes."""
    traffic.rate, traffic.batch = None, CANARY_BATCH


def demo_run_id(dag_id: str) -> str:
    """A run id of the demo's own, so a trigger that meets a locked metadata DB can be retried."""
    return f"demo__{dag_id}__{uuid.uuid4().hex[:12]}"


def _write_production_batch(settings: FactorySettings, model: str, day: date, **shift: float) -> Path:
    root = Path(urlparse(settings.data_root).path)
    df = demo_data.generate_batch(model, day, rows=2000, **shift)
    return demo_data.write_batch(df, root / model / f"{day.isoformat()}.csv")


def _wait_for_asset_run(api, dag_id: str, seen: set[str], timeout_s: float = 300) -> str | None:
    t0 = time.monotonic()
    deadline, said = t0 + timeout_s, t0
    while time.monotonic() < deadline:
        if time.monotonic() - said >= 20:
            said = time.monotonic()
            print(
                f"      waiting for the scheduler to start {dag_id} on its asset event: "
                f"{said - t0:.0f}s so far, gives up in {deadline - said:.0f}s",
                flush=True,
            )
        fresh = [
            r["dag_run_id"]
            for r in api.runs(dag_id)
            if r["run_type"] == "asset_triggered" and r["dag_run_id"] not in seen
        ]
        if fresh:
            return fresh[-1]
        time.sleep(1)
    return None


def _scheduled_runs(api, dag_id: str) -> list[dict]:
    return [r for r in api.runs(dag_id) if r["run_type"] == "scheduled"]


def _settle_scheduled_runs(api, known: dict[str, set[str]], create_s: float = 30.0) -> None:
    """Unpausing a cron DAG makes the scheduler start its latest scheduled run at once. Let those
    runs end first: the drift watch (rightly) fires no retrain beside one already running. Waits
    for the scheduler to create each DAG's new scheduled run (not in ``known``, the scheduled runs
    before the unpause; up to ``create_s``; the first part's runs are manual), then for each to end."""
    deadline = time.monotonic() + create_s
    waiting = list(known)
    while waiting and time.monotonic() < deadline:
        waiting = [d for d in waiting if not {r["dag_run_id"] for r in _scheduled_runs(api, d)} - known[d]]
        if waiting:
            time.sleep(0.5)
    for dag_id in known:
        for run in _scheduled_runs(api, dag_id):
            if run["state"] in ("queued", "running"):
                what = f"{dag_id}'s scheduled run (started by the unpause) to end"
                wait_for_run(api, dag_id, run["dag_run_id"], what, timeout_s=600)


def _print_canary(api, run_id: str, min_samples: int | None) -> dict | None:
    """One line per stage decision of a ``<model>__canary`` run; the last decision."""
    dag_id = f"{LIVE_MODEL}__canary"
    what = (
        f"{dag_id}: each stage waits for {min_samples or 'canary.min_samples'} labelled live outcomes "
        "per arm (stage_N_wait counts them every second: in the worker, then deferred to the triggerer)"
    )
    run = wait_for_run(api, dag_id, run_id, what, timeout_s=1800)
    states = {t["task_id"]: t["state"] for t in api.task_instances(dag_id, run_id)}
    last = None
    for task_id in sorted(t for t in states if t.endswith("_act")):
        if states[task_id] != "success":
            continue
        last = api.xcom(dag_id, run_id, task_id)
        print(f"      {task_id.removesuffix('_act')}: {last['action']}: {last['reason'][:230]}")
    print(f"  {dag_id:<22} {run['state']:<8} ({run_id})")
    return last


def _retrain(api, model: str, ds: str) -> dict | None:
    dag_id = f"{model}__retrain"
    run_id = api.trigger(dag_id, conf={"ds": ds}, run_id=demo_run_id(dag_id))["dag_run_id"]
    run = wait_for_run(api, dag_id, run_id, f"{dag_id} on {ds}", timeout_s=600)
    registered = api.xcom(dag_id, run_id, "register") if run["state"] == "success" else None
    outcome = (
        f"v{registered['version']} {registered['status']} ({registered['reason'][:90]}), "
        f"alias {registered['alias']}"
        if registered
        else "see the Airflow UI"
    )
    print(f"  {ds}  {dag_id:<16} {run['state']:<8} {outcome}")
    return registered


def _start_shadow(settings: FactorySettings) -> str | None:
    """The champion replaced by step 2 (``previous_champion``) shadows the new one on all live
    requests: callers only ever get the champion's answer (issue 21's shadow traffic)."""
    from model_factory.io.tracking import connect
    from model_factory.pipeline.registry import PREVIOUS_CHAMPION, current_alias_version
    from model_factory.rollout.shadow import start_shadow

    version = current_alias_version(connect(settings), LIVE_MODEL, PREVIOUS_CHAMPION)
    if version is None:
        print(f"  no shadow: {LIVE_MODEL} has no previous champion (no promotion in step 2)")
        return None
    reason = "the replaced champion scores beside the new one while the label bug is retrained"
    start_shadow(LIVE_MODEL, version, None, settings, Attribution("demo", reason))
    print(
        f"  shadow: the replaced champion v{version} scores every live {LIVE_MODEL} request beside the "
        f"champion (`model-factory shadow start {LIVE_MODEL} {version} --reason ...`); callers get "
        "the champion's answer"
    )
    return version


def _show_and_stop_shadow(settings: FactorySettings, traffic) -> None:
    from model_factory.rollout.shadow import shadow_comparison, stop_shadow

    deadline = time.monotonic() + 30  # the gateway writes its shadow rows off the response path
    comparison = shadow_comparison(settings, LIVE_MODEL)
    while comparison and not comparison["requests"] and time.monotonic() < deadline:
        time.sleep(1)
        comparison = shadow_comparison(settings, LIVE_MODEL)
    print(
        f"  shadow (`model-factory shadow show {LIVE_MODEL}`): "
        f"{comparison['summary'] if comparison else 'no comparison'}"
    )
    print(f"    traffic errors so far: {dict(traffic.errors) or 'none'} (a shadow never changes an answer)")
    stop_shadow(LIVE_MODEL, settings, Attribution("demo", "compared; the canary decides the next version"))
    print(f"  shadow stopped (`model-factory shadow stop {LIVE_MODEL} --reason ...`)")


def _write_drifted_batches(settings: FactorySettings, specs, day: date) -> None:
    """Each model's production batch of ``day``, churn's drifted (DRIFTED)."""
    for spec in specs:
        _write_production_batch(settings, spec.name, day, covariate_shift=DRIFTED.get(spec.name, 0.0))
    print(
        f"\nproduction batch for {day}: "
        + ", ".join(f"{s.name} (covariate shift {DRIFTED.get(s.name, 0.0):g})" for s in specs)
    )


def _live_stack_config(settings: FactorySettings) -> StackConfig:
    from model_factory_dev.stack import StackConfig

    return StackConfig(
        home=settings.home,
        mlflow_server=False,
        s3=False,
        gateway=True,
        migrate=False,  # part 1 ran on this metadata DB: the Makefile (or `airflow db migrate`) migrated it
        env={
            "FACTORY_HOME": str(settings.home),
            "FACTORY_STORE_URI": settings.store_uri,
            "FACTORY_DATA_ROOT": settings.data_root,
            "FACTORY_GATEWAY_REFRESH_SECONDS": "2",
        },
    )


def _unpause_live_dags(api, specs) -> list[str]:
    """Every retrain, drift_watch and canary DAG the specs switch on, unpaused once the scheduled
    runs the unpause starts have ended; the DAG ids."""
    kinds = {
        "retrain": lambda s: True,
        "drift_watch": lambda s: s.drift.enabled,
        "canary": lambda s: s.canary.enabled,
    }
    dags = [f"{s.name}__{kind}" for s in specs for kind, on in kinds.items() if on(s)]
    known: dict[str, set[str]] = {}
    for dag_id in dags:
        api.wait_for_dag(dag_id)
        if dag_id.endswith("__retrain"):
            known[dag_id] = {r["dag_run_id"] for r in _scheduled_runs(api, dag_id)}
        api.unpause(dag_id)
    _settle_scheduled_runs(api, known)
    return dags


def _live_traffic(gateway_url: str, day: date) -> TrafficLoop:
    """LIVE_MODEL's requests from a drifted batch of ``day``, sticky by customer id, at the quiet pace."""
    from model_factory_dev.simulator import TrafficLoop

    live = demo_data.generate_batch(
        LIVE_MODEL, day, rows=5000, seed=99, covariate_shift=DRIFTED.get(LIVE_MODEL, 0.0)
    )
    live["customer_id"] = [f"cust-{i}" for i in range(len(live))]
    traffic = TrafficLoop(
        gateway_url,
        LIVE_MODEL,
        live,
        label_column="churned",
        entity_column="customer_id",
        concurrency=4,
        feedback_delay_s=0.5,
        batch=QUIET_BATCH,
    )
    _traffic_quiet(traffic)
    return traffic


def _step_drift(api, stack: Stack, specs, day: date, traffic: TrafficLoop, clock: Clock) -> bool:
    """Step 1: every watched model's drift_watch DAG on ``day``; did LIVE_MODEL get a new challenger?"""
    print("\n1. drift: each watched model's drift_watch DAG checks the new batch")
    new_challenger = False
    end_step = clock.begin("step 1: drift and the retrains it fires")
    # All watches at once (they do not depend on each other); their results in spec order.
    # force: a second `make demo` re-checks the date instead of waiting for a new batch
    watch_runs = {
        spec.name: api.trigger(
            f"{spec.name}__drift_watch",
            conf={"ds": str(day), "force": True},
            run_id=demo_run_id(f"{spec.name}__drift_watch"),
        )["dag_run_id"]
        for spec in specs
        if spec.drift.enabled
    }
    for spec in specs:
        if not spec.drift.enabled:
            print(f"  {spec.name}: drift watch switched off in its spec (drift.enabled: false)")
            continue
        if _drift_watch_result(api, stack, spec, day, watch_runs[spec.name], traffic):
            new_challenger = True
    end_step()
    return new_challenger


def _drift_watch_result(api, stack: Stack, spec, day: date, run_id: str, traffic: TrafficLoop) -> bool:
    """One model's drift watch and the retrain it fires; did it register LIVE_MODEL's challenger?"""
    dag_id = f"{spec.name}__drift_watch"
    run = wait_for_run(api, dag_id, run_id, f"{dag_id} on {day}", timeout_s=600)
    states = {t["task_id"]: t["state"] for t in api.task_instances(dag_id, run_id)}
    check = api.xcom(dag_id, run_id, "check") if states.get("check") == "success" else None
    print(
        f"  {dag_id:<22} {run['state']:<8} check: {check['status'] if check else states}; "
        f"fire_retrain: {states.get('fire_retrain')}"
    )
    if check:
        for reason in check["reasons"][:3]:
            print(f"      - {reason}")
        print(f"      report: {check['report_uri']}")
    if states.get("fire_retrain") != "success":
        if states.get("fire_retrain") == "skipped":
            log_text = api.task_log(dag_id, run_id, "fire_retrain", 1)
            why = [ln for ln in log_text.splitlines() if "no retrain fired" in ln]
            print(f"      {why[0].strip() if why else 'no retrain fired (see the task log)'}")
        return False
    fired = _wait_for_asset_run(api, f"{spec.name}__retrain", set())
    if fired is None:
        print(f"  {spec.name}__retrain: no asset-triggered run within 300 s (see {stack.logs})")
        return False
    run = wait_for_run(api, f"{spec.name}__retrain", fired, "the drift-fired retrain", timeout_s=600)
    registered = api.xcom(f"{spec.name}__retrain", fired, "register")
    new_challenger = spec.name == LIVE_MODEL and registered["alias"] == "challenger"
    if new_challenger:
        _traffic_for_a_canary(traffic)  # its canary starts now: outcomes from now on
    print(
        f"  {spec.name + '__retrain':<22} {run['state']:<8} started by the scheduler on the "
        f"{spec.name}__drift asset event: v{registered['version']} {registered['status']}, "
        f"alias {registered['alias']}"
    )
    return new_challenger


def _step_first_canary(
    api, new_challenger: bool, min_samples: int | None, traffic: TrafficLoop, clock: Clock
) -> None:
    """Step 2: the canary the drift retrain's challenger started, stage by stage."""
    print(f"\n2. canary: the blessed challenger takes a share of {LIVE_MODEL}'s live traffic")
    end_step = clock.begin("step 2: the first canary")
    _traffic_for_a_canary(traffic)
    good = _wait_for_asset_run(api, f"{LIVE_MODEL}__canary", set()) if new_challenger else None
    if good is None:
        print(f"  no new {LIVE_MODEL}__canary run: no drift retrain registered a new challenger")
        print("  (on a second `make demo` the cooldown holds and the earlier rollout stands)")
    else:
        _print_canary(api, good, min_samples)
    end_step()


def _step_label_bug(
    settings: FactorySettings,
    api,
    stack: Stack,
    day: date,
    traffic: TrafficLoop,
    min_samples: int | None,
    clock: Clock,
) -> None:
    """Step 3: three days of broken labels retrained under a shadow, then their challenger's canary."""
    end_step = clock.begin("step 3: label bug, shadow, second canary")
    print(
        f"\n3. an upstream bug corrupts {LIVE_MODEL}'s labels for three days (concept shift "
        f"{BROKEN_LABELS:g}); canaries paused while they are retrained"
    )
    api.pause(f"{LIVE_MODEL}__canary")
    _traffic_quiet(traffic)
    with stack.environ():  # while these retrain, live traffic flows: a shadow costs no time
        shadowed = _start_shadow(FactorySettings.from_env())
    registered = None
    for offset in range(1, 4):
        bad_day = day + timedelta(days=offset)
        _write_production_batch(settings, LIVE_MODEL, bad_day, concept_shift=BROKEN_LABELS)
        registered = _retrain(api, LIVE_MODEL, str(bad_day)) or registered
    if shadowed:
        with stack.environ():
            _show_and_stop_shadow(FactorySettings.from_env(), traffic)
    api.unpause(f"{LIVE_MODEL}__canary")
    _traffic_for_a_canary(traffic)
    with stack.environ():
        from model_factory.io.tracking import connect
        from model_factory.pipeline.registry import CHALLENGER, current_alias_version

        client = connect(FactorySettings.from_env())
        challenger = current_alias_version(client, LIVE_MODEL, CHALLENGER)
    if challenger is None:
        print(
            "  no challenger waiting: the gates stopped the broken days' versions, or (on a "
            "second `make demo`) their canary was already judged: see the summary"
        )
    else:
        reason = "challenger from the days of the label bug: let live outcomes judge it"
        conf = {"version": challenger, "reason": reason, "actor": "demo"}
        canary = f"{LIVE_MODEL}__canary"
        run_id = api.trigger(canary, conf=conf, run_id=demo_run_id(canary))["dag_run_id"]
        print(f'  ops start the canary of v{challenger}: conf {{"version": "{challenger}"}}')
        _print_canary(api, run_id, min_samples)
    end_step()


def live_phase(settings: FactorySettings, specs, day: date, clock: Clock) -> None:
    """Under a real Airflow scheduler, with the serving gateway and live traffic:

    1. the production batch of ``day`` drifted for churn: the watch DAG detects it and the
       scheduler starts the retrain its asset event asks for;
    2. that retrain's blessed challenger starts ``churn__canary`` (asset event); live outcomes of
       both arms decide each ramp stage; it is promoted;
    3. three days of batches with broken labels make a challenger that looks good on its own
       holdout; its canary loses on live outcomes and is rolled back automatically.
    """
    from model_factory_dev.stack import Stack

    _write_drifted_batches(settings, specs, day)
    print(
        "starting Airflow's scheduler, dag-processor, triggerer, api-server (LocalExecutor) and the "
        "serving gateway ...",
        flush=True,
    )
    config = _live_stack_config(settings)
    started = time.perf_counter()
    end_start_up = clock.begin("part 2: stack start-up")
    with Stack(config) as stack:
        api = stack.client()
        print(
            f"  up in {time.perf_counter() - started:.0f}s; Airflow API {stack.api_url}, gateway "
            f"{stack.gateway_url}, logs in {stack.logs}"
        )
        dags = _unpause_live_dags(api, specs)
        end_start_up()
        traffic = _live_traffic(stack.gateway_url, day)
        with traffic:
            print(f"  live traffic: {LIVE_MODEL} requests (sticky by customer id) with delayed feedback")
            new_challenger = _step_drift(api, stack, specs, day, traffic, clock)
            min_samples = next((s.canary.min_samples for s in specs if s.name == LIVE_MODEL), None)
            _step_first_canary(api, new_challenger, min_samples, traffic, clock)
            _step_label_bug(settings, api, stack, day, traffic, min_samples, clock)
        print(
            f"\n  traffic: {traffic.sent} requests, by arm {dict(traffic.by_arm)}, by version "
            f"{dict(traffic.by_version)}, errors {dict(traffic.errors) or 'none'}"
        )
        from model_factory.analyzer.report import collect_demo_runs

        collect_demo_runs(
            api, FactorySettings.from_env()
        )  # the Analyzer keeps the runs this demo triggered: who, outcome, time
        for dag_id in dags:  # leave the embedded state as `make demo` found it: nothing scheduled
            api.pause(dag_id)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--verbose", action="store_true", help="show Airflow's task logs")
    parser.add_argument(
        "--workers",
        type=int,
        default=PART1_WORKERS,
        help="processes running the first part's models side by side (1: all in this process)",
    )
    parser.add_argument(
        "--no-scheduler",
        action="store_true",
        help="skip the drift + canary phase (real scheduler, gateway, traffic)",
    )
    return parser.parse_args(argv)


def _print_summary(settings: FactorySettings, specs, story, clock: Clock) -> None:
    """The health story of the demo days, the fleet's table, each template's line, the Analyzer's
    findings and where the time went."""
    print("\nModel health over the demo days (issue 20: `model-factory health churn` shows the history)\n")
    for line in health_story.format_story(story):
        print(f"  {line}")

    print("\nModel factory summary\n")
    rows = model_rows(settings, specs)
    print(format_table(rows))
    print("\nBy template:")
    for line in template_lines(settings, specs, rows):
        print(f"  {line}")
    from model_factory.analyzer.report import demo_findings

    with clock.part("the Analyzer's findings"):
        print("\n" + demo_findings(settings))  # where people got stuck, from this demo's own events
    print("\nWhere this demo's time went (wall):")
    for line in clock.lines():
        print(f"  {line}")
    print(
        "\nLook closer:  make ui   (Airflow UI on http://localhost:8080, MLflow UI on "
        "http://localhost:5000; the Airflow admin password is printed at start-up)"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)

    # One OpenMP thread (the Makefile sets it too): gradient boosting's pool spins against the
    # demo and the stack's processes on a busy 2-core box. Read when scikit-learn loads it.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    clock = Clock()
    settings = FactorySettings.from_env()
    data_root = generate(settings, args.days)
    print(f"demo data: {args.days} days x {len(demo_data.ALL_MODELS)} models in {data_root}")
    injected = [f"{m} day {d + 1}: {f}" for (m, d), f in FAULTS.items() if d < args.days]
    print(f"  injected faults: {', '.join(injected) or 'none'}")

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    if bag.import_errors:
        print(f"DAG import errors: {bag.import_errors}", file=sys.stderr)
        return 1
    good, bad = load_specs(settings.specs_dir, settings)
    specs = [loaded.spec for loaded in good]
    for error in bad:
        print(f"  skipped (invalid spec; its invalid_spec__ DAG says why): {error}")
    runs, notes = plan(settings, specs, args.days)
    for note in notes:
        print(f"  {note}")

    total = sum(len(dag_ids(spec)) for _, spec in runs)
    print(
        f"\nrunning {total} DAG runs through Airflow, models by template: "
        + ", ".join(f"{s.name} ({s.template})" for s in specs if any(s is spec for _, spec in runs))
        + f" (AIRFLOW_HOME={os.environ.get('AIRFLOW_HOME')})"
        + (
            f"; each model's days in order, {args.workers} models at a time in worker processes "
            "(their Airflow logs in FACTORY_HOME/demo_part1_worker*.log)"
            if args.workers > 1
            else ""
        )
    )
    by_name = {s.name: s for s in specs}
    story_spec = by_name.get(health_story.STORY_MODEL)
    story_spec = story_spec if story_spec and story_spec.outcomes.enabled else None
    seasonal_spec = by_name.get(health_story.SEASONAL_MODEL)
    seasonal_spec = seasonal_spec if seasonal_spec and seasonal_spec.drift.enabled else None
    with clock.part(f"part 1: {total} DAG runs and the daily health checks"):
        part = demo_part1.Part1(settings, bag, runs, story_spec, seasonal_spec, args.verbose, total)
        if args.workers > 1:
            story = demo_part1_workers.run_part1_in_workers(part, args.workers)
        else:
            story = demo_part1.run_part1(part)

    if not args.no_scheduler:
        # The live phase drives the demo's own models, whose production batches it writes.
        live = [s for s in specs if s.name in demo_data.MODELS]
        live_phase(settings, live, START + timedelta(days=args.days), clock)

    _print_summary(settings, specs, story, clock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
