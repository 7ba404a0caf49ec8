"""The running stack: which components, in which order, waiting until each answers, and stopping them."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from model_factory.io.airflow_api import AirflowClient

from model_factory_dev.stack.config import (
    _INHERITED_PREFIXES,
    ADMIN_USER,
    CELERY,
    DEFAULT_REDIS_URL,
    StackConfig,
    StackError,
    _http_ok,
    _with_database,
    _with_driver,
    free_port,
)
from model_factory_dev.stack.env import StackEnvironment
from model_factory_dev.stack.processes import _Component, _group_alive
from model_factory_dev.stack.s3 import StackS3
from model_factory_dev.stack.services import (
    check_postgres,
    check_redis,
    create_database,
    delete_redis_keys,
    drop_database,
)


class Stack(StackEnvironment, StackS3):
    """The running configuration. Use as a context manager, or call start() and stop()."""

    def __init__(self, config: StackConfig):
        self.config = config
        c = config
        self.home = c.home
        self.airflow_home = c.home / "airflow"
        self.factory_home = c.home / "factory"
        self.logs = c.home / "logs"
        self.state_file = c.home / "stack.json"
        self.bucket = c.bucket or c.name.replace("_", "-")
        self.api_port = c.api_port or free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.gateway_port = c.gateway_port or free_port()
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        self.mlflow_port = c.mlflow_port or free_port()
        self.mlflow_url = f"http://127.0.0.1:{self.mlflow_port}" if c.mlflow_server else None
        self.s3_port = c.s3_port or free_port()
        if c.s3:
            self.s3_endpoint = c.s3_endpoint or f"http://127.0.0.1:{self.s3_port}"
        else:
            self.s3_endpoint = None
        self.scheduler_health_port = free_port()
        self.redis_url = c.redis_url or DEFAULT_REDIS_URL
        self.redis_prefix = f"{c.name}:"
        self.queue = c.name
        self.databases: list[str] = []  # created by this stack, dropped at stop()
        self.admin_password: str | None = None
        self.components: dict[str, _Component] = {}
        self.timings: dict[str, float] = {}
        self._started = False
        self.env = self._build_env()

    def _airflow(self, *args: str) -> list[str]:
        return [str(Path(sys.executable).parent / "airflow"), *args]

    def _component_specs(self) -> dict[str, list[str]]:
        c = self.config
        specs: dict[str, list[str]] = {}
        if c.s3 and not c.s3_endpoint:
            specs["s3"] = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)]
        if c.mlflow_server:
            if c.postgres_url:
                backend = _with_driver(_with_database(c.postgres_url, self.mlflow_db_name))
            else:
                backend = f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"
            artifacts = (
                f"s3://{self.bucket}/mlflow"
                if self.s3_endpoint
                else (self.home / "mlflow" / "artifacts").as_uri()
            )
            specs["mlflow"] = [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--backend-store-uri",
                backend,
                "--serve-artifacts",
                "--artifacts-destination",
                artifacts,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.mlflow_port),
                "--workers",
                "1",
            ]
        specs["api-server"] = self._airflow(
            "api-server", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"
        )
        specs["scheduler"] = self._airflow("scheduler")
        specs["dag-processor"] = self._airflow("dag-processor")
        specs["triggerer"] = self._airflow("triggerer")
        if c.executor == CELERY:
            specs["worker"] = self._worker_argv()
        if c.gateway:
            specs["gateway"] = [
                sys.executable,
                "-m",
                "model_factory.serving",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.gateway_port),
            ]
        return specs

    def _worker_argv(self) -> list[str]:
        return self._airflow(
            "celery",
            "worker",
            "--queues",
            self.queue,
            "--concurrency",
            str(self.config.worker_concurrency),
            "--celery-hostname",
            f"{self.config.name}@%h",
            "--pid",
            str(self.airflow_home / f"worker-{secrets.token_hex(3)}.pid"),
            "--without-gossip",
            "--without-mingle",
        )

    def _component_env(self, name: str) -> dict[str, str]:
        env = dict(self.env)
        if name == "mlflow":
            if self.s3_endpoint:
                env["MLFLOW_S3_ENDPOINT_URL"] = self.s3_endpoint
            env.pop("MLFLOW_TRACKING_URI", None)
        return env

    def _new_component(self, name: str, argv: list[str]) -> _Component:
        return _Component(
            name=name,
            argv=argv,
            env=self._component_env(name),
            log_path=self.logs / f"{name}.log",
            cwd=self.home,
            detach=self.config.detach,
        )

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def preflight(self) -> None:
        """Check the shared services before starting anything (clear message if one is down)."""
        c = self.config
        if c.postgres_url:
            check_postgres(c.postgres_url)
        if c.executor == CELERY:
            check_redis(self.redis_url)
        missing = [t for t in ("airflow", "mlflow") if not (Path(sys.executable).parent / t).exists()]
        if missing:
            raise StackError(f"{missing} not installed next to {sys.executable}: run `make install`")
        if c.s3 and c.s3_endpoint:
            self._create_bucket()  # an existing endpoint: check it answers and takes our keys

    def start(self) -> Stack:
        """Bring every component up and wait until each one answers; StackError otherwise."""
        c = self.config
        t0 = time.perf_counter()
        self.preflight()
        for folder in (self.airflow_home, self.factory_home, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        passwords = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        if not passwords.exists():
            passwords.write_text(json.dumps({ADMIN_USER: self.admin_password}))
            passwords.chmod(0o600)
        self._started = True
        if c.postgres_url:
            for db in (self.airflow_db_name, self.mlflow_db_name if c.mlflow_server else None):
                if db:
                    create_database(c.postgres_url, db)
                    if db not in self.databases:
                        self.databases.append(db)
        specs = self._component_specs()
        self._write_state()

        # S3 and MLflow (its own DB migrations) start while Airflow migrates its DB.
        if "s3" in specs:
            self.components["s3"] = self._new_component("s3", specs["s3"])
            self.components["s3"].start()
            self._wait_for("s3", c.start_timeout_s)
            self._create_bucket()
            if c.s3_auth:
                self._enable_s3_auth()
        if "mlflow" in specs:
            self.components["mlflow"] = self._new_component("mlflow", specs["mlflow"])
            self.components["mlflow"].start()
        self._write_state()
        if c.migrate:
            t_migrate = time.perf_counter()
            self.migrate()
            self.timings["airflow_db_migrate_s"] = time.perf_counter() - t_migrate
        for name in ("api-server", "scheduler", "dag-processor", "triggerer", "worker", "gateway"):
            if name in specs:
                self.components[name] = self._new_component(name, specs[name])
                self.components[name].start()
        self._write_state()
        for name in self.components:
            self._wait_for(name, c.start_timeout_s)
        self.timings["start_s"] = time.perf_counter() - t0
        return self

    def migrate(self) -> None:
        result = subprocess.run(
            self._airflow("db", "migrate"),
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=600,
        )
        (self.logs / "db-migrate.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise StackError(f"`airflow db migrate` failed (exit {result.returncode}):\n{tail}")

    def stop(self, timeout_s: float = 15.0) -> None:
        """End every component (SIGTERM to all at once, SIGKILL what is left after ``timeout_s``)
        and remove what the stack created in PostgreSQL and Redis."""
        t0 = time.perf_counter()
        running = {n: c for n, c in self.components.items() if c.pid is not None}
        for component in running.values():
            component.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while running and time.monotonic() < deadline:
            for name, component in list(running.items()):
                if component.popen is not None:
                    component.popen.poll()
                if not _group_alive(component.pid):
                    self.timings[f"{name}_stop_s"] = time.perf_counter() - t0
                    del running[name]
            time.sleep(0.2)
        for name, component in running.items():  # did not stop in time: no more waiting
            with contextlib.suppress(Exception):
                component.stop(timeout_s=0)
            self.timings[f"{name}_stop_s"] = time.perf_counter() - t0
        if self._started and not self.config.keep_data:
            self.cleanup_shared_services()
        self._started = False
        with contextlib.suppress(OSError):
            self.state_file.unlink()

    def cleanup_shared_services(self) -> None:
        c = self.config
        if c.postgres_url:
            for db in list(self.databases):
                with contextlib.suppress(Exception):
                    drop_database(c.postgres_url, db)
                    self.databases.remove(db)
        if c.executor == CELERY:
            with contextlib.suppress(Exception):
                delete_redis_keys(self.redis_url, self.redis_prefix)

    def _checks(self) -> dict[str, Callable[[], bool]]:
        def api_health(part: str) -> Callable[[], bool]:
            def check() -> bool:
                try:
                    health = self.client().health()
                except Exception:
                    return False
                return (health.get(part) or {}).get("status") == "healthy"

            return check

        return {
            "s3": lambda: _http_ok(f"{self.s3_endpoint}/moto-api/data.json"),
            "mlflow": lambda: _http_ok(f"{self.mlflow_url}/health"),
            # 200 while degraded too (e.g. no champion yet): the process answers.
            "gateway": lambda: _http_ok(f"{self.gateway_url}/health"),
            "api-server": lambda: _http_ok(f"{self.api_url}/api/v2/monitor/health"),
            "scheduler": lambda: _http_ok(f"http://127.0.0.1:{self.scheduler_health_port}/health"),
            "dag-processor": api_health("dag_processor"),
            "triggerer": api_health("triggerer"),
            "worker": lambda: bool(
                re.search(r"\S+@\S+ ready\.", self.components["worker"].log_since_start())
            ),
        }

    def healthy(self, name: str) -> bool:
        return self.components[name].alive() and self._checks()[name]()

    def _wait_for(self, name: str, timeout_s: float) -> None:
        component = self.components[name]
        check = self._checks()[name]
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        while True:
            if not component.alive():
                raise StackError(
                    f"{name} exited with code {component.exit_code()} while starting; "
                    f"its log ({component.log_path}) ends with:\n{component.tail(40)}"
                )
            if check():
                self.timings[f"{name}_ready_s"] = time.perf_counter() - t0
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{name} did not become healthy within {timeout_s:.0f} s; "
                    f"its log ({component.log_path}) ends with:\n{component.tail(40)}"
                )
            time.sleep(0.5)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> list[int]:
        """Signal a component's whole process tree (default SIGKILL: no cleanup at all)."""
        component = self.components[name]
        hit = component.signal(sig)
        if sig == signal.SIGKILL and component.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.popen.wait(timeout=10)
        return hit

    def stop_component(self, name: str) -> None:
        self.components[name].stop()

    def restart(self, name: str, wait: bool = True) -> None:
        """Stop (if still running) and start a component again with the same settings."""
        old = self.components[name]
        if old.alive():
            old.stop()
        argv = self._worker_argv() if name == "worker" else old.argv
        self.components[name] = self._new_component(name, argv)
        self.components[name].start()
        self._write_state()
        if wait:
            self._wait_for(name, self.config.start_timeout_s)

    def log(self, name: str) -> str:
        return self.components[name].log_since_start()

    def diagnostics(self, lines: int = 25) -> str:
        """The end of every component's log: what to print when a test fails."""
        parts = []
        for name, component in self.components.items():
            state = "running" if component.alive() else f"exited {component.exit_code()}"
            parts.append(f"--- {name} ({state}) {component.log_path}\n{component.tail(lines)}")
        return "\n".join(parts)

    def client(self) -> AirflowClient:
        return AirflowClient(self.api_url, ADMIN_USER, self.admin_password)

    def run_airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command against this stack's state."""
        return subprocess.run(
            self._airflow(*args), env=self.env, cwd=self.home, capture_output=True, text=True, timeout=timeout
        )

    def _write_state(self) -> None:
        state = {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.config).items()},
            "api_url": self.api_url,
            "mlflow_url": self.mlflow_url,
            "s3_endpoint": self.s3_endpoint,
            "bucket": self.bucket,
            "redis_prefix": self.redis_prefix,
            "databases": self.databases,
            "components": {n: {"pid": c.pid, "log": str(c.log_path)} for n, c in self.components.items()},
            "env": {k: v for k, v in self.env.items() if k.startswith(_INHERITED_PREFIXES)},
        }
        self.home.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2, default=str))
        self.state_file.chmod(0o600)
