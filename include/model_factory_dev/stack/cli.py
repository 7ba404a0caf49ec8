"""``python -m model_factory_dev.stack up|down|status|demo|run`` (make prod-up, prod-demo, prod-down)."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

from model_factory.io.storage import process_alive
from model_factory.settings import PROJECT_ROOT, FactorySettings

from model_factory_dev.stack.config import (
    ADMIN_USER,
    CELERY,
    DEFAULT_REDIS_URL,
    LOCAL,
    StackConfig,
    StackError,
)
from model_factory_dev.stack.orchestration import Stack
from model_factory_dev.stack.processes import _Component
from model_factory_dev.stack.services import delete_redis_keys, drop_database


def _load_state(home: Path) -> dict:
    path = home / "stack.json"
    if not path.exists():
        raise StackError(f"no stack is running from {home} (no {path})")
    return json.loads(path.read_text())


def down(home: Path) -> None:
    """Stop a detached stack from its state file and remove its databases and Redis keys."""
    state = _load_state(home)
    for name, info in reversed(list(state["components"].items())):
        if info.get("pid"):
            component = _Component(name, [], {}, Path(info["log"]), home)
            component.pid = info["pid"]
            component.stop()
            print(f"stopped {name} (pid {info['pid']})")
    config = state["config"]
    if config.get("postgres_url"):
        for db in state.get("databases", []):
            with contextlib.suppress(Exception):
                drop_database(config["postgres_url"], db)
                print(f"dropped database {db}")
    if config.get("executor") == CELERY:
        with contextlib.suppress(Exception):
            n = delete_redis_keys(
                state["env"].get("AIRFLOW__CELERY__BROKER_URL", DEFAULT_REDIS_URL), state["redis_prefix"]
            )
            print(f"deleted {n} Redis keys under {state['redis_prefix']}")
    (home / "stack.json").unlink(missing_ok=True)


def _print_up(stack: Stack) -> None:
    print(f"""
Production configuration is up ({stack.config.executor}, {stack.timings.get("start_s", 0):.0f} s):
  Airflow UI/API  {stack.api_url}   user {ADMIN_USER}, password {stack.admin_password}
  MLflow          {stack.mlflow_url or "(no server: " + stack.env.get("MLFLOW_TRACKING_URI", "sqlite") + ")"}
  S3 endpoint     {stack.s3_endpoint or "(none: file store)"}  bucket {stack.bucket}
  store / source  {stack.store_uri}  {stack.data_root}
  logs            {stack.logs}
  state           {stack.state_file}
""")


def _demo(stack: Stack, days: int, rows: int) -> int:
    import datetime as dt

    from model_factory.rollout.summary import format_table, model_rows
    from model_factory.spec import load_specs

    start = dt.date(2026, 1, 5)
    faults = {("churn", 2): "unseen_category"}
    uris = stack.upload_demo_data(start, days, rows=rows, faults=faults)
    print(f"uploaded {len(uris)} demo batches to {stack.data_root} (churn day 3: unseen_category)")
    api = stack.client()
    specs = [
        loaded.spec for loaded in load_specs(stack.env["FACTORY_SPECS_DIR"], FactorySettings.from_env())[0]
    ]
    for spec in specs:
        api.wait_for_dag(f"{spec.name}__retrain")
        api.unpause(f"{spec.name}__retrain")
    for offset in range(days):
        ds = (start + dt.timedelta(days=offset)).isoformat()
        started = time.perf_counter()
        runs = {s.name: api.trigger(f"{s.name}__retrain", conf={"ds": ds})["dag_run_id"] for s in specs}
        for model, run_id in runs.items():
            run = api.wait_for_run(f"{model}__retrain", run_id, timeout_s=900)
            failed = [
                t["task_id"]
                for t in api.task_instances(f"{model}__retrain", run_id)
                if t["state"] == "failed"
            ]
            where = f"  failed at {','.join(failed)}" if failed else ""
            print(
                f"  {ds}  {model + '__retrain':<18} {run['state']:<8} "
                f"{time.perf_counter() - started:5.1f}s{where}"
            )
    with stack.environ():
        print("\nModel factory summary (through the MLflow server)\n")
        print(format_table(model_rows(FactorySettings.from_env(), specs)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_factory_dev.stack", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "command",
        choices=["up", "down", "status", "demo", "run"],
        help="up: start detached; down: stop and clean; status; demo: upload demo data and "
        "run every model through the running stack; run: up + demo + down",
    )
    parser.add_argument("--home", type=Path, default=PROJECT_ROOT / ".factory" / "prod")
    parser.add_argument("--executor", choices=[LOCAL, CELERY], default=CELERY)
    settings = FactorySettings.from_env()  # FACTORY_STACK_POSTGRES_URL, FACTORY_STACK_REDIS_URL
    parser.add_argument("--postgres-url", default=settings.stack_postgres_url)
    parser.add_argument("--redis-url", default=settings.stack_redis_url)
    parser.add_argument("--sqlite", action="store_true", help="SQLite metadata DB (LocalExecutor only)")
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument("--s3-port", type=int, default=None)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args(argv)
    home = args.home.resolve()

    try:
        if args.command == "down":
            down(home)
            return 0
        if args.command == "status":
            state = _load_state(home)
            for name, info in state["components"].items():
                alive = info.get("pid") and process_alive(info["pid"])
                print(f"{name:<14} {'running' if alive else 'DOWN':<8} pid {info.get('pid')}  {info['log']}")
            print(f"Airflow {state['api_url']}  MLflow {state['mlflow_url']}  S3 {state['s3_endpoint']}")
            return 0
        if args.command == "demo":
            stack = _attach(home)
            return _demo(stack, args.days, args.rows)
        if (home / "stack.json").exists():
            raise StackError(f"a stack is already up from {home}: `make prod-down` first")
        if (home / "secrets.json").exists():
            shutil.rmtree(home)  # a fresh start: the previous state belonged to dropped databases
        elif home.exists() and any(home.iterdir()):
            raise StackError(f"{home} is not empty and not a stack home: choose another --home")
        config = StackConfig(
            home=home,
            executor=LOCAL if args.sqlite else args.executor,
            postgres_url=None if args.sqlite else args.postgres_url,
            redis_url=args.redis_url,
            name="model_factory",
            api_port=args.api_port,
            mlflow_port=args.mlflow_port,
            s3_port=args.s3_port,
            detach=args.command == "up",
            keep_data=args.command == "up",
        )
        stack = Stack(config)
        if args.command == "up":
            try:
                stack.start()
            except BaseException:
                stack.config.keep_data = False
                stack.stop()
                raise
            _print_up(stack)
            print("Stop it with `make prod-down`; run the demo on it with `make prod-demo`.")
            return 0
        with stack:  # run
            _print_up(stack)
            return _demo(stack, args.days, args.rows)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


# What a stack attached to a detached one takes over of the config that one saved in its state.
_ATTACHED = ("executor", "postgres_url", "redis_url", "name", "api_port", "mlflow_port", "s3_port")


def _attach(home: Path) -> Stack:
    """A Stack object for the detached stack running from ``home`` (for ``demo``)."""
    state = _load_state(home)
    cfg = state["config"]
    config = StackConfig(home=home, keep_data=True, detach=True, **{key: cfg[key] for key in _ATTACHED})
    stack = Stack(config)
    stack.env.update(state["env"])
    stack.s3_endpoint = state["s3_endpoint"]
    return stack
