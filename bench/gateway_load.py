"""Load test: the serving gateway under uvicorn vs the same model called in-process.

Trains one small real model (churn, the demo's LogisticRegression pipeline) into a temporary
FACTORY_HOME, starts ``python -m model_factory.serving`` on a free port in a subprocess, sends
N single-row prediction requests with concurrency C over keep-alive HTTP connections, and then
calls the same version's predict in-process on the same rows (loaded with the gateway's own
loader, so the work per row is identical apart from HTTP, JSON, routing and logging).

    PYTHONPATH=include .venv/bin/python bench/gateway_load.py --requests 2000 --concurrency 8

Prints a table and writes bench/results/gateway_load.json. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2026, 2, 2)


def gateway_argv(port: int, workers: int | None = None) -> list[str]:
    """The gateway's command line as every bench starts it: on 127.0.0.1, quiet."""
    argv = [sys.executable, "-m", "model_factory.serving", "--host", "127.0.0.1", "--port", str(port)]
    return argv + (["--workers", str(workers)] if workers else []) + ["--log-level", "warning"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolate_environment(home: Path) -> None:
    """Point this process's factory (and MLflow) at a fresh FACTORY_HOME under ``home``."""
    os.environ.update(
        {
            "FACTORY_HOME": str(home / "factory"),
            "FACTORY_DATA_ROOT": (home / "factory" / "source").as_uri(),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
    )
    for name in (
        "MLFLOW_TRACKING_URI",
        "FACTORY_STORE_URI",
        "FACTORY_MLFLOW_ARTIFACT_ROOT",
        "FACTORY_PREDICTION_DB_URI",
        "FACTORY_GATEWAY_API_KEY",
        "FACTORY_GATEWAY_MODELS",
    ):
        os.environ.pop(name, None)


def train_and_register(model: str) -> str:
    """One blessed champion version of ``model`` in the current FACTORY_HOME; returns its version."""
    from model_factory.io import storage
    from model_factory.pipeline.evaluation import evaluate_candidate
    from model_factory.pipeline.registry import register_version
    from model_factory.pipeline.training import train_model
    from model_factory.settings import FactorySettings
    from model_factory.spec import load_spec
    from model_factory_dev import demo_data

    settings = FactorySettings.from_env()
    spec = load_spec(REPO / "include" / "models" / f"{model}.yaml", FactorySettings.from_env())
    buffer = io.BytesIO()
    demo_data.generate_batch(model, DAY, rows=2000).to_parquet(buffer, index=False)
    uri = storage.write_bytes(
        storage.join(settings.store_uri, "validated", model, str(DAY), "data.parquet"), buffer.getvalue()
    )
    trained = train_model(spec, str(DAY), [uri], settings, {"bench": "gateway_load"})
    registered = register_version(spec, evaluate_candidate(spec, trained, settings), settings)
    if registered["alias"] != "champion":
        raise SystemExit(f"training did not produce a champion: {registered}")
    return registered["version"]


def percentiles(values_ms: list[float]) -> dict[str, float]:
    import numpy as np

    array = np.asarray(values_ms)
    return {
        "p50_ms": round(float(np.percentile(array, 50)), 3),
        "p90_ms": round(float(np.percentile(array, 90)), 3),
        "p99_ms": round(float(np.percentile(array, 99)), 3),
        "max_ms": round(float(array.max()), 3),
    }


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc): less sensitive to other jobs than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads_wall_s(target: Callable[[], None], count: int) -> float:
    """Run ``target`` on ``count`` threads at once; the wall seconds until the last has finished."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def http_load(
    base: str, model: str, rows: list[dict], requests: int, concurrency: int, server_pid: int, batch: int = 1
) -> dict:
    """N requests spread over C threads, each with its own keep-alive connection; ``batch`` rows each."""
    import httpx

    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        mine, bad = [], []
        with httpx.Client(base_url=base, timeout=60) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                if batch == 1:
                    body = {"features": rows[i % len(rows)], "entity_id": f"E{i}"}
                else:
                    body = {"instances": [rows[(i * batch + k) % len(rows)] for k in range(batch)]}
                started = time.perf_counter()
                response = client.post(f"/v1/models/{model}/predict", json=body)
                mine.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    bad.append(response.status_code)
        with lock:
            latencies.extend(mine)
            failures.extend(bad)

    cpu0 = process_cpu_s(server_pid)
    wall = threads_wall_s(worker, concurrency)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "seconds": round(wall, 3),
        "throughput_rps": round(requests / wall, 1),
        "rows_per_request": batch,
        "rows_per_s": round(requests * batch / wall, 1),
        "non_200": len(failures),
        **percentiles(latencies),
        "cpu_ms_per_request": round((process_cpu_s(server_pid) - cpu0) * 1000 / requests, 3),
    }


def in_process(model: str, version: str, rows: list[dict], requests: int) -> tuple[dict, dict]:
    """The same version, loaded by the gateway's loader: one row per call, then all rows at once."""
    from model_factory.io import tracking
    from model_factory.serving.models import load_version
    from model_factory.settings import FactorySettings

    settings = FactorySettings.from_env()
    loaded = load_version(tracking.connect(settings), model, version, settings)
    for row in rows[:50]:
        loaded.predict([row])
    latencies = []
    started, cpu0 = time.perf_counter(), time.process_time()
    for i in range(requests):
        t0 = time.perf_counter()
        loaded.predict([rows[i % len(rows)]])
        latencies.append((time.perf_counter() - t0) * 1000)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    single = {
        "requests": requests,
        "concurrency": 1,
        "seconds": round(wall, 3),
        "throughput_rps": round(requests / wall, 1),
        **percentiles(latencies),
        "cpu_ms_per_request": round(cpu * 1000 / requests, 3),
    }
    batch_rows = [rows[i % len(rows)] for i in range(requests)]
    t0 = time.perf_counter()
    loaded.predict(batch_rows)
    batch_s = time.perf_counter() - t0
    batch = {
        "rows": requests,
        "seconds": round(batch_s, 4),
        "throughput_rows_per_s": round(requests / batch_s, 1),
    }
    return single, batch


def wait_healthy(base: str, server: subprocess.Popen) -> None:
    """Until the gateway's /health answers 200; exits if the gateway does, or after 120 s."""
    import httpx

    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            raise SystemExit(f"gateway exited: {server.stderr.read()}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("gateway did not become healthy in 120 s")
        time.sleep(0.2)


def print_results(results: dict, out: Path) -> None:
    """The single-row paths as a table, then the in-process batch and the gateway's batch requests."""
    batch = results["in_process_batch"]
    header = (
        f"{'path':<26}{'requests':>9}{'conc':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'cpu ms/req':>12}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for name, r in results.items():
        if name in ("in_process_batch", "gateway_batch100_c2"):
            continue
        print(
            f"{name:<26}{r['requests']:>9}{r['concurrency']:>6}{r['throughput_rps']:>9}"
            f"{r['p50_ms']:>9}{r['p99_ms']:>9}{r['max_ms']:>9}{r['cpu_ms_per_request']:>12}"
        )
    print(
        f"{'in_process_batch':<26}{batch['rows']:>9}{'-':>6}{batch['throughput_rows_per_s']:>9}"
        f"  (all rows in one predict call, {batch['seconds'] * 1000:.1f} ms)"
    )
    b = results["gateway_batch100_c2"]
    print(
        f"{'gateway_batch100_c2':<26}{b['requests']:>9}{b['concurrency']:>6}{b['rows_per_s']:>9}"
        f"  rows/s (100 rows per request; p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms per request)"
    )
    print(
        f"\nload average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus; wrote {out}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="churn", choices=["churn", "demand"])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "gateway_load.json"))
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary FACTORY_HOME")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="gateway-load-"))
    isolate_environment(home)
    sys.path.insert(0, str(REPO / "include"))
    from model_factory.settings import FactorySettings
    from model_factory.spec import load_spec
    from model_factory_dev import demo_data

    print(f"training {args.model} into {home} ...", flush=True)
    version = train_and_register(args.model)
    spec = load_spec(REPO / "include" / "models" / f"{args.model}.yaml", FactorySettings.from_env())
    frame = demo_data.generate_batch(args.model, DAY + dt.timedelta(days=1), rows=1000)
    rows = json.loads(frame[spec.features.all].to_json(orient="records"))

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "include")}
    command = gateway_argv(port)
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, server)
        print(f"gateway up on {base}; warming up ...", flush=True)
        http_load(base, args.model, rows, 200, args.concurrency, server.pid)
        results = {
            "gateway_c1": http_load(base, args.model, rows, max(args.requests // 4, 200), 1, server.pid),
            f"gateway_c{args.concurrency}": http_load(
                base, args.model, rows, args.requests, args.concurrency, server.pid
            ),
        }
        results["gateway_batch100_c2"] = http_load(
            base, args.model, rows, max(args.requests // 20, 20), 2, server.pid, batch=100
        )
        single, batch = in_process(args.model, version, rows, args.requests)
        results["in_process_single_row"] = single
        results["in_process_batch"] = batch
    finally:
        server.terminate()
        server.wait(30)
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)

    import fastapi
    import sklearn
    import uvicorn

    report = {
        "model": args.model,
        "version": version,
        "estimator": spec.estimator.class_,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "versions": {
            "fastapi": fastapi.__version__,
            "uvicorn": uvicorn.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "notes": "single-row requests over keep-alive HTTP from threads in the same machine; the gateway "
        "validates against the signature, routes, predicts and enqueues a prediction-log row per "
        "request (SQLite); one uvicorn worker",
        "results": results,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    print_results(results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
