"""The gateway in front of 1,000 registered models under a memory budget.

Trains one small real model (churn) into a temporary FACTORY_HOME, registers it under 1,000 names
(``model_factory_dev.fleet``: blessed, attested champions, loaded through the real safe loader),
and starts ``python -m model_factory.serving`` (one worker) with ``FACTORY_GATEWAY_MEMORY_MB``.
Then, one caller over keep-alive HTTP:

* start: seconds to ready, RSS, versions loaded (none: nothing is loaded at start);
* cold: the first request of ``--cold`` distinct models (each one a load: registry reads,
  artifact download, skops load, fast-path compile), p50/p99;
* warm: ``--warm`` requests spread over a working set that fits the budget, p50/p99;
* skewed: ``--skewed`` requests over the whole fleet, model i with weight 1/(i+1) (Zipf s=1):
  hit rate, evictions, p50/p99; then the resident estimate next to the process's RSS.

    PYTHONPATH=include python bench/gateway_fleet.py [--models 1000] [--budget-mb 16]
        [--out bench/results/gateway_fleet.json] [--into bench/results/latest.json]

``--into`` adds the result to a bench report as its ``gateway_fleet`` row and rewrites its table.
Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
DAY = dt.date(2026, 2, 2)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def timed_requests(client, names: list[str], rows: list[dict]) -> tuple[list[float], int]:
    """One request per name in order; (latencies in ms, non-200 count)."""
    latencies, bad = [], 0
    for i, name in enumerate(names):
        started = time.perf_counter()
        response = client.post(f"/v1/models/{name}/predict", json={"features": rows[i % len(rows)]})
        latencies.append((time.perf_counter() - started) * 1000)
        bad += response.status_code != 200
    return latencies, bad


def measure(models: int, budget_mb: float, cold: int, warm: int, skewed: int, working_set: int) -> dict:
    from gateway_load import free_port, gateway_argv, isolate_environment
    from serving_row import wait_http

    home = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    isolate_environment(home)
    sys.path.insert(0, str(REPO / "include"))
    import httpx

    names, register_s, rows = register_churn_fleet(home, models)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "include"),
        "FACTORY_GATEWAY_MEMORY_MB": str(budget_mb),
        "FACTORY_GATEWAY_REFRESH_SECONDS": "3600",
    }
    command = gateway_argv(port)
    launched = time.perf_counter()
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(port, "/health/ready", server, 300)
        with httpx.Client(base_url=base, timeout=120) as client:
            start = {
                "seconds_to_ready": round(time.perf_counter() - launched, 2),
                "rss_mb": rss_mb(server.pid),
                "loaded_versions": client.get("/health").json()["memory"]["loaded_versions"],
            }
            print(f"ready: {start}", flush=True)
            return {
                "models": models,
                "budget_mb": budget_mb,
                "register_seconds": round(register_s, 1),
                "start": start,
                **request_phases(client, server.pid, names, rows, cold, warm, skewed, working_set),
            }
    finally:
        server.terminate()
        server.wait(30)


def register_churn_fleet(home: Path, models: int) -> tuple[list[str], float, list[dict]]:
    """churn trained into ``home`` and registered under ``models`` names: the names, the seconds
    the registering took, 500 rows of requests."""
    from gateway_load import train_and_register
    from model_factory.settings import FactorySettings
    from model_factory.spec import load_spec
    from model_factory_dev import demo_data
    from model_factory_dev.fleet import register_fleet

    print(f"training churn into {home} ...", flush=True)
    version = train_and_register("churn")
    started = time.perf_counter()
    fleet = register_fleet(FactorySettings.from_env(), "churn", version, models)
    register_s = time.perf_counter() - started
    print(f"registered {models} models in {register_s:.0f} s", flush=True)
    spec = load_spec(REPO / "include" / "models" / "churn.yaml", FactorySettings.from_env())
    frame = demo_data.generate_batch("churn", DAY + dt.timedelta(days=1), rows=500)
    rows = json.loads(frame[spec.features.all].to_json(orient="records"))
    return list(fleet.names), register_s, rows


def request_phases(
    client, pid: int, names: list[str], rows: list[dict], cold: int, warm: int, skewed: int, working_set: int
) -> dict:
    """The cold, warm and skewed requests in turn, the gateway's memory after them and its RSS."""
    from gateway_load import percentiles

    rng = random.Random(7)
    cold_names = rng.sample(names, cold)
    cold_ms, cold_bad = timed_requests(client, cold_names, rows)
    rss_after_cold = rss_mb(pid)
    print(f"cold: {percentiles(cold_ms)}, RSS {rss_after_cold} MiB", flush=True)
    hot = cold_names[-working_set:]  # the most recently loaded: resident already
    warm_ms, warm_bad = timed_requests(client, [hot[i % len(hot)] for i in range(warm)], rows)
    print(f"warm: {percentiles(warm_ms)}", flush=True)
    before = client.get("/health").json()["memory"]
    weights = [1 / (i + 1) for i in range(len(names))]
    order = rng.sample(names, len(names))  # which models are popular: not the cold sample's
    skewed_names = rng.choices(order, weights=weights, k=skewed)
    skewed_ms, skewed_bad = timed_requests(client, skewed_names, rows)
    after = client.get("/health").json()["memory"]
    loads = after["cold_loads"] - before["cold_loads"]
    print(f"skewed: {percentiles(skewed_ms)}, {loads} loads", flush=True)
    return {
        "cold": {"requests": cold, "non_200": cold_bad, **percentiles(cold_ms)},
        "warm": {
            "requests": warm,
            "working_set": working_set,
            "non_200": warm_bad,
            **percentiles(warm_ms),
        },
        "skewed": {
            "requests": skewed,
            "non_200": skewed_bad,
            "loads": loads,
            "hit_rate": round(1 - loads / skewed, 3),
            **percentiles(skewed_ms),
        },
        "memory": after,
        "rss_mb_after_cold": rss_after_cold,
        "rss_mb_end": rss_mb(pid),
    }


def add_to_report(result: dict, report_path: Path) -> None:
    """Put ``result`` into a bench report as its gateway_fleet row and rewrite its table."""
    from report_table import build_rows, table

    report = json.loads(report_path.read_text())
    report["results"]["gateway_fleet"] = result
    report["rows"] = build_rows(report["results"], report["mode"] == "quick")
    report_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    report_path.with_suffix(".md").write_text(table(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--budget-mb", type=float, default=16.0)
    parser.add_argument("--cold", type=int, default=200, help="distinct models asked once each (cold loads)")
    parser.add_argument("--warm", type=int, default=2000)
    parser.add_argument("--working-set", type=int, default=20)
    parser.add_argument("--skewed", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gateway_fleet.json")
    parser.add_argument("--into", type=Path, default=None, help="a bench report to add the row to")
    args = parser.parse_args(argv)
    result = measure(args.models, args.budget_mb, args.cold, args.warm, args.skewed, args.working_set)
    result |= {
        "finished_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if args.into:
        add_to_report(result, args.into)
    return 0


if __name__ == "__main__":
    sys.exit(main())
