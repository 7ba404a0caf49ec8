"""python -m model_factory.serving [--host 127.0.0.1] [--port 8000]: the gateway under uvicorn.

Settings come from the environment: see ``model_factory.serving.settings.ENV``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from model_factory.settings import FactorySettings

if TYPE_CHECKING:
    from fastapi import FastAPI

# One thread per BLAS/OpenMP pool, set before numpy/scikit-learn load them: a request scores one
# row or a few, and on a busy machine extra threads only fight each other and the other worker
# processes (a gradient-boosting model swung from 43 ms to ~5 s with OpenMP's default, 13 ms
# with one thread). FACTORY_GATEWAY_THREADS raises it; the app applies it again with threadpoolctl.
for _pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_pool, str(FactorySettings.from_env().gateway_threads))

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_factory.serving", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default=FactorySettings.from_env().gateway_host)
    parser.add_argument("--port", type=int, default=FactorySettings.from_env().gateway_port)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request (slower)")
    parser.add_argument(
        "--workers",
        type=int,
        default=FactorySettings.from_env().gateway_workers,
        help="processes behind the one port (uvicorn workers), each loading the registry's versions "
        "itself and writing the shared prediction log; /metrics then counts per process",
    )
    args = parser.parse_args(argv)

    import uvicorn
    from model_factory.serving.app import create_app
    from model_factory.serving.server import uvicorn_options
    from model_factory.serving.settings import GatewaySettings

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        settings = GatewaySettings.of(FactorySettings.from_env())
    except ValueError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    anonymous = FactorySettings.from_env().gateway_allow_anonymous
    if settings.api_key is None and args.host not in LOOPBACK and not anonymous:
        print(
            f"gateway: refusing to listen on {args.host} without an API key: set "
            "FACTORY_GATEWAY_API_KEY (docker/init-env.sh generates one), or "
            "FACTORY_GATEWAY_ALLOW_ANONYMOUS=true to serve without one on purpose",
            file=sys.stderr,
        )
        return 2
    if args.workers > 1:  # workers import the app factory by name and read the same environment
        uvicorn.run(
            "model_factory.serving.__main__:worker_app",
            factory=True,
            workers=args.workers,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=args.access_log,
            **uvicorn_options(settings),
        )
        return 0
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        **uvicorn_options(settings),
    )
    return 0


def worker_app() -> FastAPI:
    """The app of one ``--workers`` process (uvicorn imports this factory by name): the same
    settings, read from the same environment in the worker."""
    from model_factory.serving.app import create_app
    from model_factory.serving.server import uvicorn_options
    from model_factory.serving.settings import GatewaySettings

    settings = GatewaySettings.of(FactorySettings.from_env())
    uvicorn_options(settings)  # the header deadline of this process's connections
    return create_app(settings)


if __name__ == "__main__":
    sys.exit(main())
