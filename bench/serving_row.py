"""The serving rows: the gateway against mlflow models serve, MLServer, BentoML and LitServe over
HTTP (``serving_peers``), each with the same worker processes, at 1 and 8 callers; with --quick the
compiled predictor against the scikit-learn pipeline in-process."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from measure import DAY, REPO, alternate, child_env, peak_rss_mb, ratio, summarise

if TYPE_CHECKING:
    from serving_peers import Server


def http_load(port: int, path: str, bodies: list[bytes], requests: int, callers: int) -> dict:
    """``requests`` POSTs spread over ``callers`` threads, each on its own keep-alive connection."""
    from gateway_load import threads_wall_s

    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def caller() -> None:
        nonlocal failures
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, bad = [], 0
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            started = time.perf_counter()
            conn.request("POST", path, bodies[i % len(bodies)], {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            bad += response.status != 200
        conn.close()
        with lock:
            latencies.extend(mine)
            failures += bad

    wall = threads_wall_s(caller, callers)
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "seconds": wall,
        "requests_per_s": requests / wall,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "non_200": failures,
    }


def tree_cpu_and_peak(pid: int) -> tuple[float, float]:
    import psutil

    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    cpu, peak = 0.0, 0.0
    for p in procs:
        try:
            times = p.cpu_times()
            cpu += times.user + times.system
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak += int(line.split()[1]) / 1024
        except (psutil.Error, OSError):
            continue
    return cpu, peak


def wait_http(port: int, path: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited ({proc.returncode}): {proc.stderr.read()[-2000:] if proc.stderr else ''}"
            )
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server on port {port} not ready in {seconds:.0f} s")


def row_serving(repeats: int, requests: int, log) -> dict:
    """The gateway (fast path, uvicorn workers) vs mlflow models serve, MLServer, BentoML and
    LitServe (``serving_peers``), all with the same worker processes, 1 and 8 callers."""
    import gateway_load
    import serving_peers

    home = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    saved = dict(os.environ)
    procs: dict[str, subprocess.Popen] = {}
    try:
        gateway_load.isolate_environment(home)
        model_dir, peer_model, numeric, rows = _churn_to_serve(home, log)
        workers = max(1, min(os.cpu_count() or 1, 4))
        sides = [serving_peers.gateway(rows, workers, gateway_load.free_port(), child_env())]
        sides += serving_peers.servers(
            rows,
            numeric,
            model_dir,
            peer_model,
            home,
            workers,
            gateway_load.free_port,
            log,
        )
        _start_servers(sides, procs, workers, log)
        return _measure_servers(sides, procs, repeats, requests, log)
    finally:
        for proc in procs.values():
            stop_tree(proc)
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(home, ignore_errors=True)


def _churn_to_serve(home: Path, log) -> tuple[Path, Path, list[str], list[dict]]:
    """churn trained and registered in ``home``: its MLflow model directory, the same version
    exported for the peers, its numeric features and 500 rows of requests."""
    import gateway_load
    import serving_peers

    log("serving: training churn into a temporary FACTORY_HOME ...")
    version = gateway_load.train_and_register("churn")
    import mlflow.artifacts
    from model_factory.io import tracking
    from model_factory.serving.models import load_version
    from model_factory.settings import FactorySettings
    from model_factory.spec import load_spec
    from model_factory_dev import demo_data

    settings = FactorySettings.from_env()
    client = tracking.connect(settings)
    model_dir = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/churn/{version}", dst_path=str(home / "model")
        )
    )
    # the peers serve the version the gateway loads, exported from the gateway's own loader
    loaded = load_version(client, "churn", version, settings)
    peer_model = serving_peers.export_model(loaded, home / "peer-model")
    spec = load_spec(REPO / "include" / "models" / "churn.yaml", FactorySettings.from_env())
    frame = demo_data.generate_batch("churn", DAY + dt.timedelta(days=1), rows=500)
    rows = json.loads(frame[spec.features.all].to_json(orient="records"))
    return model_dir, peer_model, list(spec.features.numeric), rows


def _start_servers(sides: list[Server], procs: dict[str, subprocess.Popen], workers: int, log) -> None:
    """Start every server into ``procs`` (the caller stops them), wait until each is ready and
    answers 50 predictions without an error."""
    for side in sides:
        procs[side.key] = subprocess.Popen(
            side.argv,
            env=side.env,
            cwd=side.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    log(f"serving: waiting for {', '.join(s.key for s in sides)} ({workers} workers each) ...")
    for side in sides:
        wait_http(side.port, side.ready_path, procs[side.key], 300)
    for side in sides:
        check = http_load(side.port, side.predict_path, side.bodies, 50, 1)
        if check["non_200"]:
            raise RuntimeError(
                f"{side.key}: {side.predict_path} answered {check['non_200']} of 50 with errors"
            )


def _measure_servers(
    sides: list[Server], procs: dict[str, subprocess.Popen], repeats: int, requests: int, log
) -> dict:
    """Each server's idle CPU, then ``repeats`` rounds at 1 and at 8 callers; the summaries by callers."""
    idle = {side.key: idle_cpu_ms_per_s(procs[side.key].pid) for side in sides}

    def run(side: Server, callers: int) -> dict:
        # CPU times tick in 10 ms: the gateway gets 8x the requests so its figure is not a
        # rounding of a few ticks (a run of each takes seconds either way)
        n = requests * 8 if side.key == "gateway" else requests
        pid = procs[side.key].pid
        cpu0, _ = tree_cpu_and_peak(pid)
        out = http_load(side.port, side.predict_path, side.bodies, n, callers)
        cpu1, peak = tree_cpu_and_peak(pid)
        return out | {
            "requests": n,
            "server_cpu_ms_per_request": (cpu1 - cpu0) * 1000 / n,
            "peak_mb": peak,
            "load_1m": round(os.getloadavg()[0], 2),
        }

    result: dict[int, Any] = {}
    for callers in (1, 8):
        log(
            f"serving: {callers} caller(s), {repeats} rounds on each server ({requests} requests, "
            f"the gateway {8 * requests}) ..."
        )
        runs: dict[str, list[dict]] = {side.key: [] for side in sides}
        for repeat in range(repeats):  # every server once per round, the order rotated each round
            shift = repeat % len(sides)
            for side in sides[shift:] + sides[:shift]:
                runs[side.key].append(run(side, callers))
        result[callers] = {
            side.key: summarise(runs[side.key], "requests_per_s")
            | {
                "name": side.name,
                "body": side.body_shape,
                "workers": side.workers,
                "p50_ms_median": statistics.median(r["p50_ms"] for r in runs[side.key]),
                "p99_ms_median": statistics.median(r["p99_ms"] for r in runs[side.key]),
                "cpu_ms_per_request_median": statistics.median(
                    r["server_cpu_ms_per_request"] for r in runs[side.key]
                ),
                "idle_cpu_ms_per_s": idle[side.key],
                **side.extra,
            }
            for side in sides
        }
    return result


def idle_cpu_ms_per_s(pid: int, seconds: float = 2.0) -> float:
    """CPU a server's process tree burns doing nothing (polling workers cost the others too)."""
    cpu0, _ = tree_cpu_and_peak(pid)
    time.sleep(seconds)
    cpu1, _ = tree_cpu_and_peak(pid)
    return round((cpu1 - cpu0) * 1000 / seconds, 1)


def stop_tree(proc: subprocess.Popen) -> None:
    """SIGTERM the server's session (its workers too), SIGKILL what is left after 30 s."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def row_serving_quick(repeats: int, requests: int, log) -> dict:
    """In-process: the compiled predictor vs the pipeline path, single rows (no HTTP, no MLflow)."""
    import pandas as pd
    from model_factory.pipeline.features import prepare_features
    from model_factory.pipeline.training import build_pipeline
    from model_factory.serving import fastpath
    from model_factory.settings import FactorySettings
    from model_factory.spec import load_spec
    from model_factory_dev import demo_data

    spec = load_spec(REPO / "include" / "models" / "churn.yaml", FactorySettings.from_env())
    train = demo_data.generate_batch("churn", DAY, rows=2000)
    pipeline = build_pipeline(spec).fit(prepare_features(train, spec), train[spec.target])
    compiled, status = fastpath.compile_version(pipeline, spec)
    if compiled is None:
        raise RuntimeError(f"the churn pipeline did not compile: {status}")
    rows = json.loads(
        demo_data.generate_batch("churn", DAY, rows=200)[spec.features.all].to_json(orient="records")
    )

    def timed(fn: Callable[[dict], Any]) -> Callable[[], dict]:
        def go() -> dict:
            started = time.perf_counter()
            for i in range(requests):
                fn(rows[i % len(rows)])
            wall = time.perf_counter() - started
            return {"seconds": wall, "requests_per_s": requests / wall, "peak_mb": peak_rss_mb()}

        return go

    def slow(row: dict) -> Any:
        return pipeline.predict_proba(
            prepare_features(pd.DataFrame.from_records([row], columns=spec.features.all), spec)
        )

    a, b = alternate(timed(lambda row: compiled.predict([row])), timed(slow), repeats)
    one = {
        "ours": summarise(a, "requests_per_s") | {"path": status},
        "alternative": {
            "name": "the scikit-learn pipeline on a one-row DataFrame, in-process "
            "(quick stand-in; HTTP and mlflow models serve skipped)"
        }
        | summarise(b, "requests_per_s"),
    }
    return {1: one}


CPU_TARGET_MS = 0.15  # the gateway's server CPU per single-row request
LEAD_AT_ONE_CALLER = 3.0  # the gateway's throughput over the best peer's, one caller


def _latency(side: dict) -> str:
    if "p50_ms_median" not in side:
        return ""
    return f", p50 {side['p50_ms_median']:.2f} ms, p99 {side['p99_ms_median']:.1f} ms"


def serving_rows(callers: int, r: dict, quick: bool) -> list[dict]:
    """One row for the gateway against the best peer (its CPU target too), one per peer."""
    plural = "s" if callers > 1 else ""
    if "ours" in r:  # quick: the compiled predictor vs the pipeline, in-process
        ours, theirs = r["ours"], r["alternative"]
        rel = ratio(ours["requests_per_s_median"], theirs.get("requests_per_s_median"))
        return [
            {
                "work": f"single-row predict (in-process), {callers} caller{plural}",
                "ours_text": f"{ours['requests_per_s_median']:.0f} req/s{_latency(ours)}{_cpu(ours)}",
                "alternative_text": f"{theirs['name']}: {theirs['requests_per_s_median']:.0f} req/s",
                "ratio": rel,
                "ratio_text": f"{rel:.1f}x" if rel else "—",
                "target": "—",
                "met": "—",
            }
        ]
    ours = r["gateway"]
    peers = {key: side for key, side in r.items() if key != "gateway"}
    need = LEAD_AT_ONE_CALLER if callers == 1 else 1.0
    target = f"≥{need:g}x" if callers == 1 else ">1x"
    best_key = max(peers, key=lambda k: peers[k]["requests_per_s_median"])
    best = peers[best_key]
    lead = ratio(ours["requests_per_s_median"], best["requests_per_s_median"])
    cpu = ours["cpu_ms_per_request_median"]
    lead_met = lead is not None and (lead >= need if callers == 1 else lead > 1)
    work = f"single-row predict over HTTP, {callers} caller{plural}, {ours['workers']} worker processes each"
    out = [
        {
            "work": f"{work}: the gateway vs the best peer",
            "ours_text": f"{ours['requests_per_s_median']:.0f} req/s{_latency(ours)}{_cpu(ours)}; "
            f"body {ours['body']}",
            "alternative_text": f"{best['name']}: {best['requests_per_s_median']:.0f} req/s",
            "ratio": lead,
            "ratio_text": f"{lead:.1f}x" if lead else "—",
            "target": f"{target}; ≤{CPU_TARGET_MS} ms CPU/request",
            "met": "yes" if lead_met and cpu <= CPU_TARGET_MS else "no",
        }
    ]
    for side in sorted(peers.values(), key=lambda side: -side["requests_per_s_median"]):
        rel = ratio(ours["requests_per_s_median"], side["requests_per_s_median"])
        out.append(
            {
                "work": f"{work}: vs {side['name'].split(' (')[0]}",
                "ours_text": f"{ours['requests_per_s_median']:.0f} req/s",
                "alternative_text": f"{side['name']}: {side['requests_per_s_median']:.0f} req/s"
                f"{_latency(side)}{_cpu(side)}; body {side['body']}"
                + (f"; workers: {side['workers_setting']}" if side.get("workers_setting") else ""),
                "ratio": rel,
                "ratio_text": f"{rel:.1f}x" if rel else "—",
                "target": target,
                "met": "yes" if rel and (rel >= need if callers == 1 else rel > 1) else "no",
            }
        )
    return out


def _cpu(side: dict) -> str:
    cpu, peak = side.get("cpu_ms_per_request_median"), side.get("peak_mb_max")
    return f", server CPU {cpu:.2f} ms/request, {peak:.0f} MiB" if cpu is not None and peak else ""
