"""The servers the bench's serving rows compare the gateway with, each from a virtualenv of its own.

* ``mlflow models serve`` of the registered version (the model's pinned requirements, ``--workers``);
* MLServer 1.7 with its scikit-learn runtime (``mlserver-sklearn``), V2 / Open Inference Protocol,
  ``parallel_workers``;
* BentoML 1.4, a ``@bentoml.service`` with ``workers`` (``bench/peers/peer_bentoml.py``);
* LitServe 0.2, a ``LitAPI`` with ``workers_per_device`` on the CPU (``bench/peers/peer_litserve.py``).

MLServer, BentoML and LitServe serve the factory's own loaded pipeline of the same version (the
gateway's loader, exported with joblib; nothing is retrained). Every server gets the same number of
worker processes as the gateway and one BLAS/OpenMP thread, as the gateway runs. Executables are
run by their venv's absolute path with the venv's ``bin`` first on PATH (``mlflow models serve``
execs ``uvicorn`` from PATH), so the bench runs from any shell, not only under ``make``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import venvs
from gateway_load import gateway_argv

HERE = Path(__file__).resolve().parent
PEER_CODE = HERE / "peers"
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Server:
    """One server of the serving rows: how to start it, where it is ready, what one request is."""

    key: str
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    predict_path: str
    bodies: list[bytes]
    body_shape: str  # the request body, as the table states it
    workers: int
    cwd: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def model_pins() -> list[str]:
    """scikit-learn, pandas, numpy, scipy at the factory's versions: the same pipeline, unpickled."""
    from model_factory.pipeline.training import _pip_requirements

    wanted = ("scikit-learn", "pandas", "numpy", "scipy")
    return [pin for pin in _pip_requirements() if pin.split("==")[0] in wanted]


def venv_env(python: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a user of that venv would have: its bin first on PATH, no PYTHONPATH of ours."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(python.parent.parent)
    return env | SINGLE_THREAD | (extra or {})


def export_model(loaded: Any, folder: Path) -> Path:
    """The gateway's loaded version as the peers load it: the pipeline (joblib) and its columns."""
    import joblib

    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(loaded.estimator, folder / "model.joblib")
    meta = {
        "numeric": list(loaded.spec.features.numeric),
        "categorical": list(loaded.spec.features.categorical),
        "classes": [c.item() if hasattr(c, "item") else c for c in loaded.classes],
        "model": loaded.model,
        "version": loaded.version,
    }
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def v2_body(row: dict, numeric: list[str]) -> bytes:
    """One row as an Open Inference Protocol (V2) request for the sklearn runtime: one input per
    column, decoded as a pandas DataFrame (``content_type: pd``), asking for ``predict_proba``."""
    inputs = []
    for name, value in row.items():
        if name in numeric:
            inputs.append({"name": name, "shape": [1], "datatype": "FP64", "data": [float(value)]})
        else:
            inputs.append({"name": name, "shape": [1], "datatype": "BYTES", "data": [str(value)]})
    body = {"parameters": {"content_type": "pd"}, "inputs": inputs, "outputs": [{"name": "predict_proba"}]}
    return json.dumps(body).encode()


def mlserver_folder(model_dir: Path, folder: Path, workers: int, ports: tuple[int, int, int]) -> Path:
    """``mlserver start`` folder: settings.json (workers, ports) and the model's model-settings.json."""
    http_port, grpc_port, metrics_port = ports
    model = folder / "churn"
    model.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": workers,
        "debug": False,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": "churn",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model_dir / "model.joblib")},
    }
    (model / "model-settings.json").write_text(json.dumps(model_settings))
    return folder


def servers(
    rows: list[dict],
    numeric: list[str],
    mlflow_model_dir: Path,
    peer_model_dir: Path,
    work: Path,
    workers: int,
    free_port,
    log=print,
) -> list[Server]:
    """The four peers, their venvs ensured (created on first use from PyPI)."""
    records = [json.dumps({"dataframe_records": [r]}).encode() for r in rows]
    features = [json.dumps({"features": r}).encode() for r in rows]
    return [
        mlflow_server(records, mlflow_model_dir, workers, free_port, log),
        mlserver_server(rows, numeric, peer_model_dir, work, workers, free_port, log),
        *own_code_servers(features, peer_model_dir, work, workers, free_port, log),
    ]


def mlflow_server(records: list[bytes], mlflow_model_dir: Path, workers: int, free_port, log=print) -> Server:
    """``mlflow models serve`` of the registered version, with the model's pinned requirements."""
    from model_factory.pipeline.training import _pip_requirements

    python = venvs.ensure("mlflow-serve", _pip_requirements(), log)
    port = free_port()
    return Server(
        "mlflow",
        "mlflow models serve (own venv), same version",
        [
            str(python.parent / "mlflow"),
            "models",
            "serve",
            "-m",
            str(mlflow_model_dir),
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        venv_env(python, {"MLFLOW_DISABLE_TELEMETRY": "true"}),
        port,
        "/ping",
        "/invocations",
        records,
        '{"dataframe_records": [{...}]}',
        workers,
    )


def mlserver_server(
    rows: list[dict], numeric: list[str], peer_model_dir: Path, work: Path, workers: int, free_port, log=print
) -> Server:
    """MLServer's scikit-learn runtime serving the exported pipeline, V2 requests."""
    python = venvs.ensure("mlserver", [*venvs.MLSERVER, *model_pins()], log)
    port, grpc, metrics = free_port(), free_port(), free_port()
    folder = mlserver_folder(peer_model_dir, work / "mlserver", workers, (port, grpc, metrics))
    return Server(
        "mlserver",
        f"MLServer {venvs.MLSERVER[0].split('==')[1]} sklearn runtime (own venv)",
        [str(python.parent / "mlserver"), "start", str(folder)],
        venv_env(python),
        port,
        "/v2/health/ready",
        "/v2/models/churn/infer",
        [v2_body(r, numeric) for r in rows],
        'V2 infer: {"parameters": {"content_type": "pd"}, "inputs": [one {"name", "shape": [1], '
        '"datatype": "FP64"|"BYTES", "data": [v]} per column], "outputs": [{"name": "predict_proba"}]}',
        workers,
        extra={"workers_setting": "parallel_workers"},
    )


def own_code_servers(
    features: list[bytes], peer_model_dir: Path, work: Path, workers: int, free_port, log=print
) -> list[Server]:
    """BentoML and LitServe, each serving the exported pipeline with the peers' own code."""
    out = []
    # BentoML and LitServe serve the peers' own code (bench/peers, run from that folder): the same
    # POST /predict taking {"features": {...}}; a row says what differs. The argv is formatted with
    # the venv's python, its bin folder and the port.
    own_code = (
        (
            "bentoml",
            venvs.BENTOML,
            "BentoML {} service (own venv)",
            ["{bin}/bentoml", "serve", "peer_bentoml:Churn", "--host", "127.0.0.1", "--port", "{port}"],
            {
                "PEER_WORKERS": str(workers),
                "BENTOML_DO_NOT_TRACK": "True",
                "BENTOML_HOME": str(work / "bentoml-home"),
            },
            "/readyz",
            "@bentoml.service(workers=N)",
        ),
        (
            "litserve",
            venvs.LITSERVE,
            "LitServe {} LitAPI (own venv)",
            ["{python}", str(PEER_CODE / "peer_litserve.py"), "{port}", str(workers)],
            {"LITSERVE_DISABLE_TELEMETRY": "1"},
            "/health",
            "workers_per_device=N, accelerator=cpu",
        ),
    )
    for key, pins, title, argv, env, ready_path, workers_setting in own_code:
        python = venvs.ensure(key, [*pins, *model_pins()], log)
        port = free_port()
        out.append(
            Server(
                key,
                title.format(pins[0].split("==")[1]),
                [arg.format(python=python, bin=python.parent, port=port) for arg in argv],
                venv_env(python, {"PEER_MODEL_DIR": str(peer_model_dir), **env}),
                port,
                ready_path,
                "/predict",
                features,
                '{"features": {...}}',
                workers,
                cwd=str(PEER_CODE),
                extra={"workers_setting": workers_setting},
            )
        )
    return out


def gateway(rows: list[dict], workers: int, port: int, env: dict[str, str]) -> Server:
    return Server(
        "gateway",
        "model-factory gateway",
        gateway_argv(port, workers),
        env,
        port,
        "/health",
        "/v1/models/churn/predict",
        [json.dumps({"features": r}).encode() for r in rows],
        '{"features": {...}}',
        workers,
    )
