"""The gateway's server CPU per single-row request: an earlier revision against the working tree.

    python bench/gateway_cpu_ab.py --before d6e767f [--rounds 3] [--requests 4000] [--floor]

Exports ``include/`` of the ``--before`` revision with ``git archive``, trains one churn champion
into a temporary FACTORY_HOME, then starts the gateway (one worker) from the old tree and from
this one in turn, A B A B ..., and loads each with single-row requests at 1 and 8 callers. CPU is
the server process's (all its threads, the log writer included), per request; wall-clock figures
move with the machine's load far more than CPU does, so the load average is kept with each run.
``--floor`` adds a third side to each round: a bare ASGI app under uvicorn (bench/gateway_floor.py),
loaded the same way, the CPU per request of HTTP and ASGI alone. Writes
bench/results/gateway_cpu_ab.json. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

FLOOR_KINDS = ("asgi", "protocol", "uvicorn-protocol")
FLOOR_SIDES = {"asgi": "floor", "protocol": "floor_protocol", "uvicorn-protocol": "floor_uvicorn_protocol"}
KEYS = ("requests_per_s", "p50_ms", "cpu_ms_per_request", "event_loop_cpu_ms_per_request")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per thread of ``pid`` (Linux /proc)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        out[task.name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def measure(tree: Path | str, bodies: list[bytes], requests: int) -> dict:
    """One server's figures: the gateway from the ``tree`` directory, or a floor server of that
    kind (``bench/gateway_floor.py --kind``)."""
    import gateway_load
    from serving_row import http_load, wait_http

    port = gateway_load.free_port()
    env = {**os.environ, "PYTHONPATH": str(tree if isinstance(tree, Path) else REPO / "include")}
    argv = (
        gateway_load.gateway_argv(port, workers=1)
        if isinstance(tree, Path)
        else [sys.executable, str(HERE / "gateway_floor.py"), "--port", str(port), "--kind", tree]
    )
    server = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http(port, "/health", server, 180)
        path = "/v1/models/churn/predict"
        http_load(port, path, bodies, 300, 1)  # warm-up
        out = {}
        for callers in (1, 8):
            before = thread_cpu_s(server.pid)
            load = http_load(port, path, bodies, requests, callers)
            after = thread_cpu_s(server.pid)
            main = str(server.pid)
            total = sum(after.values()) - sum(before.values())
            out[str(callers)] = {
                "requests": requests,
                "non_200": load["non_200"],
                "requests_per_s": round(load["requests_per_s"], 1),
                "p50_ms": round(load["p50_ms"], 3),
                "cpu_ms_per_request": round(total * 1000 / requests, 4),
                "event_loop_cpu_ms_per_request": round((after[main] - before[main]) * 1000 / requests, 4),
                "load_1m": round(os.getloadavg()[0], 2),
            }
        return out
    finally:
        server.terminate()
        server.wait(30)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The arguments and the floor kinds to run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="git revision of the earlier gateway (unless --floors-only)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument(
        "--floor",
        nargs="?",
        const="asgi",
        default="",
        help="also floor servers each round: comma-separated kinds of bench/gateway_floor.py "
        f"({', '.join(FLOOR_KINDS)}; bare --floor: asgi)",
    )
    parser.add_argument("--floors-only", action="store_true", help="only the floor servers, no gateway")
    parser.add_argument("--out", default=str(HERE / "results" / "gateway_cpu_ab.json"))
    args = parser.parse_args(argv)
    if not args.floors_only and not args.before:
        parser.error("--before is required (or --floors-only)")
    floors = [kind for kind in args.floor.split(",") if kind] or (["asgi"] if args.floors_only else [])
    unknown = sorted(set(floors) - set(FLOOR_KINDS))
    if unknown:
        parser.error(f"unknown floor kinds {unknown}: {', '.join(FLOOR_KINDS)}")
    return args, floors


def gateway_trees(before: str, work: Path) -> tuple[dict[str, Path | str], str]:
    """``include/`` of ``before`` exported into ``work``, and churn trained into ``work``/home:
    the two trees' include folders and the registered version."""
    import gateway_load

    old = work / "before"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", before, "include"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    gateway_load.isolate_environment(work / "home")
    print("training churn ...", flush=True)
    version = gateway_load.train_and_register("churn")
    return {"before": old / "include", "after": REPO / "include"}, version


def churn_bodies() -> list[bytes]:
    """500 single-row churn requests of the day after the bench's day."""
    import gateway_load
    from model_factory.settings import FactorySettings
    from model_factory.spec import load_spec
    from model_factory_dev import demo_data

    spec = load_spec(REPO / "include" / "models" / "churn.yaml", FactorySettings.from_env())
    frame = demo_data.generate_batch("churn", gateway_load.DAY + dt.timedelta(days=1), rows=500)
    rows = json.loads(frame[spec.features.all].to_json(orient="records"))
    return [json.dumps({"features": r}).encode() for r in rows]


def main(argv: list[str] | None = None) -> int:
    args, floors = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gateway-cpu-ab-"))
    saved = dict(os.environ)
    try:
        trees: dict[str, Path | str] = {}
        version = None
        if not args.floors_only:
            trees, version = gateway_trees(args.before, work)
        bodies = churn_bodies()
        for kind in floors:
            trees[FLOOR_SIDES[kind]] = kind
        runs: dict[str, list[dict]] = {side: [] for side in trees}
        for round_ in range(args.rounds):
            for side in list(trees) if round_ % 2 == 0 else list(trees)[::-1]:
                runs[side].append(measure(trees[side], bodies, args.requests))
                print(side, json.dumps(runs[side][-1]), flush=True)
        summary = {
            side: {
                callers: {key: statistics.median(run[callers][key] for run in side_runs) for key in KEYS}
                for callers in ("1", "8")
            }
            for side, side_runs in runs.items()
        }
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        report = {
            "before": args.before,
            "after": f"{head} + working tree",
            "version": version,
            "method": "one gateway worker from each tree in turn (A B / B A), single-row requests over "
            "keep-alive HTTP from threads on the same machine; CPU of the server process (all threads) "
            "per request; medians of the rounds"
            + (
                f"; floors (bench/gateway_floor.py --kind, loaded alike): {', '.join(floors)}"
                if floors
                else ""
            ),
            "machine": {"cpus": os.cpu_count(), "load_after": [round(x, 2) for x in os.getloadavg()]},
            "median": summary,
            "runs": runs,
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(summary, indent=1))
        return 0
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
