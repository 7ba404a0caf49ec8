"""Bring up the factory's production configuration on this machine, as real processes.

The same pieces as docker-compose.yaml, without Docker: ``airflow scheduler``, ``dag-processor``,
``triggerer``, ``api-server`` and (CeleryExecutor) ``celery worker``; an ``mlflow server``; and an
S3 endpoint (moto's server mode) holding the factory's store, the source batches and MLflow's
artifacts. Every component is its own process group with its own log file under ``home/logs``;
``start()`` waits until each one answers, ``stop()`` ends them all and removes what the stack
created in shared services (its PostgreSQL databases, its Redis keys).

Two shapes, one API::

    # Production configuration: Postgres metadata DB, CeleryExecutor on Redis, MLflow server
    # (Postgres backend store, artifacts on S3), everything on a fresh moto S3 endpoint.
    cfg = StackConfig(home=tmp, executor="CeleryExecutor",
                      postgres_url="postgresql://postgres@127.0.0.1:5432/postgres",
                      redis_url="redis://127.0.0.1:6379/5")
    # Light: LocalExecutor + SQLite, file:// store, MLflow on SQLite, no server processes
    # besides Airflow's own four.
    cfg = StackConfig(home=tmp, mlflow_server=False, s3=False)

    with Stack(cfg) as stack:              # start() ... stop(), even on errors
        api = stack.client()               # AirflowClient: token, unpause, trigger, wait...
        api.wait_for_dag("churn__retrain")
        api.unpause("churn__retrain")
        run = api.trigger("churn__retrain", conf={"ds": "2026-01-05"})
        api.wait_for_run("churn__retrain", run["dag_run_id"], timeout=300)

``stack.env`` is the complete environment of the components (AIRFLOW_HOME, the factory's
``FACTORY_*``, ``MLFLOW_TRACKING_URI``, ``AWS_*``), for running CLIs or library code against the
same state. ``python -m model_factory_dev.stack up|down|status|demo`` is the command line
(``make prod-up``, ``make prod-demo``, ``make prod-down``).

Processes die with the Python process that started them (``PR_SET_PDEATHSIG``; start the stack
from the main thread), except with ``detach=True`` (the CLI's ``up``), where ``down`` ends them
from the state file ``home/stack.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from model_factory.io.airflow_api import AirflowApiError, AirflowClient  # noqa: F401 - re-exported
from model_factory.io.storage import process_alive
from model_factory.settings import PROJECT_ROOT

LOCAL, CELERY = "LocalExecutor", "CeleryExecutor"
WARM_LOCAL = "model_factory.airflow.executor.WarmLocalExecutor"
WARM_CELERY = "model_factory.airflow.celery_config.CELERY_CONFIG"
TERMINAL_RUN_STATES = ("success", "failed")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# A Redis DB of its own for the factory's stacks; every key is prefixed with the stack's name too.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"
ADMIN_USER = "admin"

# Environment the components must not inherit from whoever starts the stack: their values come
# from the StackConfig (and StackConfig.env) only.
_INHERITED_PREFIXES = ("AIRFLOW_", "AIRFLOW__", "FACTORY_", "MLFLOW_", "AWS_")


class StackError(RuntimeError):
    """The stack cannot start or a component failed; the message says which and why."""


# ----------------------------------------------------------------------------- small helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when the process (thread) that started it dies."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def _with_database(url: str, database: str) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path=f"/{database}"))


def _with_driver(url: str, driver: str = "postgresql+psycopg2") -> str:
    return re.sub(r"^postgres(ql)?(\+\w+)?://", f"{driver}://", url)


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


# ----------------------------------------------------------------------------- shared services


def check_postgres(url: str, timeout_s: float = 3.0) -> None:
    """Raise StackError with a clear message when the PostgreSQL server at ``url`` is unusable."""
    import psycopg2

    host, port = _host_port(url, 5432)
    try:
        conn = psycopg2.connect(_with_driver(url, "postgresql"), connect_timeout=int(max(1, timeout_s)))
    except psycopg2.OperationalError as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise StackError(
            f"PostgreSQL is not reachable at {host}:{port} ({detail}). The production configuration "
            "keeps Airflow's metadata DB, the Celery result backend and MLflow's backend store "
            f"there: start PostgreSQL or point the stack at a running server ({_redact(url)})."
        ) from exc
    conn.close()


def check_redis(url: str, timeout_s: float = 3.0) -> None:
    """Raise StackError with a clear message when the Redis broker at ``url`` is unusable."""
    import redis

    host, port = _host_port(url, 6379)
    try:
        redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s).ping()
    except redis.RedisError as exc:
        raise StackError(
            f"Redis is not reachable at {host}:{port} ({exc}). The CeleryExecutor uses it as its "
            f"broker: start Redis or point the stack at a running server ({_redact(url)})."
        ) from exc


@contextlib.contextmanager
def _admin_cursor(admin_url: str, name: str) -> Iterator[Any]:
    """An autocommit cursor on the server for CREATE/DROP DATABASE ``name`` (checked to be safe)."""
    import psycopg2

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise StackError(f"not a safe database name: {name!r}")
    conn = psycopg2.connect(_with_driver(admin_url, "postgresql"), connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def create_database(admin_url: str, name: str) -> str:
    """Create an empty PostgreSQL database; return its SQLAlchemy URL (psycopg2 driver)."""
    with _admin_cursor(admin_url, name) as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    return _with_driver(_with_database(admin_url, name))


def drop_database(admin_url: str, name: str) -> None:
    """Drop a database this stack created, closing any connection still open to it."""
    with _admin_cursor(admin_url, name) as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_redis_keys(url: str, prefix: str) -> int:
    """Delete the keys under ``prefix`` (only those: the DB may be shared); return how many."""
    import redis

    if not prefix:
        raise StackError("refusing to delete Redis keys without a prefix")
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        batch.append(key)
        if len(batch) >= 500:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


# ----------------------------------------------------------------------------- configuration


@dataclass
class StackConfig:
    """What to bring up. Every field has a default that works on this machine."""

    home: Path
    """Everything the stack writes: AIRFLOW_HOME, FACTORY_HOME, logs, the state file."""
    executor: str = LOCAL
    """``LocalExecutor`` or ``CeleryExecutor`` (adds a ``celery worker`` on Redis)."""
    postgres_url: str | None = None
    """A PostgreSQL server (admin URL, e.g. DEFAULT_POSTGRES_URL) on which the stack creates its
    databases ``<name>_airflow`` and ``<name>_mlflow``; None keeps both in SQLite under home."""
    redis_url: str | None = None
    """Celery broker; None means DEFAULT_REDIS_URL. Keys are prefixed with ``<name>:``."""
    name: str = field(default_factory=lambda: f"mf_{secrets.token_hex(4)}")
    """Names the databases, the Redis key prefix, the Celery queue and the S3 bucket."""
    mlflow_server: bool = True
    """Run ``mlflow server`` (artifacts on S3 when s3 is on); False: tasks use MLflow's SQLite
    file under FACTORY_HOME, as the embedded setup does."""
    s3: bool = True
    """Run a moto S3 server and keep the store, the source batches and MLflow artifacts there."""
    s3_endpoint: str | None = None
    """Use this S3 endpoint instead of starting moto (with aws_access_key_id/secret)."""
    aws_access_key_id: str = "testing"
    aws_secret_access_key: str = "testing"
    aws_region: str = "us-east-1"
    s3_auth: bool = False
    """moto only: create an IAM user limited to the bucket, give the components its keys and make
    moto check every request's signature and policy (as MinIO/S3 do); other keys are refused."""
    bucket: str | None = None
    """S3 bucket for store/source/MLflow artifacts; default: the name, S3-style."""
    dags_folder: Path = PROJECT_ROOT / "dags"
    plugins_folder: Path = PROJECT_ROOT / "plugins"
    specs_dir: Path | None = None
    """FACTORY_SPECS_DIR for the components; None: include/models."""
    warm_imports: bool = True
    """Tasks start with their heavy libraries imported: LocalExecutor runs
    ``model_factory.airflow.executor.WarmLocalExecutor`` (imports once in the scheduler, before it
    forks); CeleryExecutor's workers use ``model_factory.airflow.celery_config`` (imports before
    they fork their pool). False: Airflow's plain executors."""
    parallelism: int = 4
    worker_concurrency: int = 2
    fast_recovery: bool = True
    """Notice a dead task within ~20 s (task heartbeat timeout) instead of Airflow's 300 s."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for every component; wins over everything above."""
    keep_data: bool = False
    """Keep the databases and Redis keys at stop() (the CLI's ``up`` keeps them until ``down``)."""
    detach: bool = False
    """Components outlive the starting process (for ``up``); ``stop``/``down`` end them."""
    gateway: bool = False
    """Run the serving gateway (``python -m model_factory.serving``) on the stack's registry."""
    gateway_port: int | None = None
    api_port: int | None = None
    mlflow_port: int | None = None
    s3_port: int | None = None
    start_timeout_s: float = 240.0

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        if self.executor not in (LOCAL, CELERY):
            raise StackError(f"executor must be {LOCAL} or {CELERY}, not {self.executor!r}")
        if not re.fullmatch(r"[a-z][a-z0-9_]{2,40}", self.name):
            raise StackError(f"stack name {self.name!r}: use 3-41 of a-z, 0-9, _ (a letter first)")
        if self.executor == CELERY and self.postgres_url is None:
            # Celery's result backend and the multi-process scheduler need a real database.
            raise StackError("CeleryExecutor needs postgres_url (metadata DB and result backend)")


@dataclass
class _Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path
    detach: bool = False
    popen: subprocess.Popen | None = None
    pid: int | None = None
    log_offset: int = 0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.log_offset = log.tell()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends all it forked
                preexec_fn=None if self.detach or not sys.platform.startswith("linux") else _die_with_parent,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid is not None and process_alive(self.pid)

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def signal(self, sig: int) -> list[int]:
        """Send ``sig`` to the component's whole process tree and group; return the pids hit."""
        if self.pid is None:
            return []
        return _signal_tree(self.pid, sig)

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.pid is None:
            return
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _group_alive(self.pid):
            if self.popen is not None:
                self.popen.poll()
            time.sleep(0.2)
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)

    def log_since_start(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self.log_offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        text = self.log_since_start().splitlines()
        return "\n".join(text[-lines:])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(process_alive(pid) for pid in _group_members(pgid)) or process_alive(pgid)


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) for every process (Linux /proc)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
        except (OSError, IndexError, ValueError):
            continue
    return table


def _group_members(pgid: int) -> list[int]:
    return [pid for pid, (_, group) in _proc_table().items() if group == pgid]


def _signal_tree(root: int, sig: int) -> list[int]:
    """Signal root, its descendants (even in other sessions) and its process group."""
    table = _proc_table() if Path("/proc").is_dir() else {}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    targets, stack = [], [root]
    while stack:
        pid = stack.pop()
        targets.append(pid)
        stack.extend(children.get(pid, []))
    targets += [pid for pid, (_, pgid) in table.items() if pgid == root and pid not in targets]
    hit = []
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            hit.append(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(root, sig)
    return hit


# ----------------------------------------------------------------------------- the stack


class Stack:
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

    # -------------------------------------------------------------- environment

    @property
    def airflow_db_name(self) -> str:
        return f"{self.config.name}_airflow"

    @property
    def mlflow_db_name(self) -> str:
        return f"{self.config.name}_mlflow"

    @property
    def store_uri(self) -> str:
        return self.env["FACTORY_STORE_URI"]

    @property
    def data_root(self) -> str:
        return self.env["FACTORY_DATA_ROOT"]

    def _secrets(self) -> dict[str, str]:
        """Per-stack secrets, kept in home so a restarted component uses the same ones."""
        path = self.home / "secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        from cryptography.fernet import Fernet

        values = {
            "fernet_key": Fernet.generate_key().decode(),
            "jwt_secret": secrets.token_hex(32),
            "api_secret_key": secrets.token_hex(32),
            "admin_password": secrets.token_urlsafe(12),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
        path.chmod(0o600)
        return values

    def _build_env(self) -> dict[str, str]:
        c = self.config
        env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
        include = str(PROJECT_ROOT / "include")
        env["PYTHONPATH"] = include + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        secret = self._secrets()
        self.admin_password = secret["admin_password"]
        if c.postgres_url:
            airflow_db = _with_driver(_with_database(c.postgres_url, self.airflow_db_name))
        else:
            airflow_db = f"sqlite:///{self.airflow_home / 'airflow.db'}"
        executor = WARM_LOCAL if c.executor == LOCAL and c.warm_imports else c.executor
        env.update(
            {
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(c.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(c.plugins_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": executor,
                "AIRFLOW__CORE__PARALLELISM": str(c.parallelism),
                "AIRFLOW__CORE__FERNET_KEY": secret["fernet_key"],
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                    self.airflow_home / "simple_auth_manager_passwords.json.generated"
                ),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__SECRET_KEY": secret["api_secret_key"],
                "AIRFLOW__API_AUTH__JWT_SECRET": secret["jwt_secret"],
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(self.scheduler_health_port),
                # Log servers of workers and triggerer: free ports, so stacks can run side by side.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
                "GX_ANALYTICS_ENABLED": "false",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "FACTORY_HOME": str(self.factory_home),
                "FACTORY_SPECS_DIR": str(c.specs_dir or PROJECT_ROOT / "include" / "models"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if c.fast_recovery:
            env.update(
                {
                    # A task whose process died (worker killed) is failed -> retried after ~20 s,
                    # not Airflow's default 300 s; running tasks heartbeat every 5 s.
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "5",
                    # A queued task no worker picked up (its message died with a worker) is
                    # requeued after 120 s instead of 600 s.
                    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
                    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
                }
            )
        if c.executor == CELERY:
            assert c.postgres_url is not None
            env.update(
                {
                    "AIRFLOW__CELERY__BROKER_URL": self.redis_url,
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + airflow_db,
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(c.worker_concurrency),
                    **({"AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": WARM_CELERY} if c.warm_imports else {}),
                    # Every broker key under "<name>:", so a shared Redis DB is never polluted
                    # and stop() deletes exactly what this stack wrote.
                    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": self.redis_prefix,
                    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
                }
            )
        if self.mlflow_url:
            env["MLFLOW_TRACKING_URI"] = self.mlflow_url
            # Clients fetch artifacts through the tracking server, not from presigned S3 URLs
            # (MLflow 3.17's default with an S3 destination): tasks, CLIs and the serving
            # gateway then need only the server, never the server's own view of S3.
            env["MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"] = "false"
        if self.s3_endpoint:
            env.update(
                {
                    "FACTORY_STORE_URI": f"s3://{self.bucket}/store",
                    "FACTORY_DATA_ROOT": f"s3://{self.bucket}/source",
                    "AWS_ENDPOINT_URL": self.s3_endpoint,
                    "AWS_ACCESS_KEY_ID": c.aws_access_key_id,
                    "AWS_SECRET_ACCESS_KEY": c.aws_secret_access_key,
                    "AWS_DEFAULT_REGION": c.aws_region,
                    "AWS_EC2_METADATA_DISABLED": "true",
                }
            )
        else:
            env["FACTORY_STORE_URI"] = (self.factory_home / "store").as_uri()
            env["FACTORY_DATA_ROOT"] = (self.factory_home / "source").as_uri()
        env.update(c.env)
        return env

    # -------------------------------------------------------------- components

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
                str(Path(sys.executable).parent / "mlflow"), "server",
                "--backend-store-uri", backend,
                "--serve-artifacts", "--artifacts-destination", artifacts,
                "--host", "127.0.0.1", "--port", str(self.mlflow_port),
                "--workers", "1",
            ]  # fmt: skip
        specs["api-server"] = self._airflow("api-server", "--host", "127.0.0.1", "--port",
                                            str(self.api_port), "--workers", "1")  # fmt: skip
        specs["scheduler"] = self._airflow("scheduler")
        specs["dag-processor"] = self._airflow("dag-processor")
        specs["triggerer"] = self._airflow("triggerer")
        if c.executor == CELERY:
            specs["worker"] = self._worker_argv()
        if c.gateway:
            specs["gateway"] = [sys.executable, "-m", "model_factory.serving", "--host", "127.0.0.1",
                                "--port", str(self.gateway_port)]  # fmt: skip
        return specs

    def _worker_argv(self) -> list[str]:
        return self._airflow(
            "celery", "worker", "--queues", self.queue,
            "--concurrency", str(self.config.worker_concurrency),
            "--celery-hostname", f"{self.config.name}@%h",
            "--pid", str(self.airflow_home / f"worker-{secrets.token_hex(3)}.pid"),
            "--without-gossip", "--without-mingle",
        )  # fmt: skip

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

    # -------------------------------------------------------------- lifecycle

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
            self._airflow("db", "migrate"), env=self.env, cwd=self.home, capture_output=True,
            text=True, timeout=600,
        )  # fmt: skip
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

    # -------------------------------------------------------------- health

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

    def _aws_client(self, service: str, key: str | None = None, secret: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            service,
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=key or self.config.aws_access_key_id,
            aws_secret_access_key=secret or self.config.aws_secret_access_key,
            region_name=self.config.aws_region,
            config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
        )

    def _create_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        s3 = self._aws_client("s3")
        try:
            s3.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                raise StackError(
                    f"S3 at {self.s3_endpoint} refused the stack's credentials ({code}) for bucket "
                    f"{self.bucket!r}: check aws_access_key_id/aws_secret_access_key "
                    f"(key id {self.config.aws_access_key_id[:4]}...) and the bucket policy"
                ) from exc
            raise StackError(
                f"cannot create bucket {self.bucket!r} on {self.s3_endpoint}: {code}: {exc}"
            ) from exc
        except BotoCoreError as exc:
            raise StackError(f"S3 endpoint {self.s3_endpoint} is not reachable: {exc}") from exc

    def _enable_s3_auth(self) -> None:
        """moto: an IAM user allowed only this bucket; every component uses its keys from now on."""
        iam = self._aws_client("iam")
        user = "factory"
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user,
            PolicyName="factory-bucket",
            PolicyDocument=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Action": "s3:*",
                    "Resource": [f"arn:aws:s3:::{self.bucket}", f"arn:aws:s3:::{self.bucket}/*"],
                }],
            }),
        )  # fmt: skip
        key = iam.create_access_key(UserName=user)["AccessKey"]
        self.env["AWS_ACCESS_KEY_ID"] = key["AccessKeyId"]
        self.env["AWS_SECRET_ACCESS_KEY"] = key["SecretAccessKey"]
        self._moto_api("reset-auth", b"0")  # from now on moto checks keys and policies

    def _moto_api(self, path: str, body: bytes = b"") -> Any:
        import urllib.request

        request = urllib.request.Request(f"{self.s3_endpoint}/moto-api/{path}", data=body, method="POST",
                                         headers={"Content-Type": "text/plain"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
        return json.loads(text) if text else {}

    # -------------------------------------------------------------- operating on components

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
        return subprocess.run(self._airflow(*args), env=self.env, cwd=self.home,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    @contextlib.contextmanager
    def environ(self) -> Iterator[dict[str, str]]:
        """Temporarily put this process on the stack's factory/MLflow/S3 settings (not Airflow's)."""
        keys = [k for k in self.env if k.startswith(("FACTORY_", "MLFLOW_", "AWS_"))]
        saved = {k: os.environ.get(k) for k in keys}
        dropped = {k: os.environ.pop(k) for k in list(os.environ)
                   if k.startswith(("FACTORY_", "MLFLOW_TRACKING", "AWS_")) and k not in keys}  # fmt: skip
        os.environ.update({k: self.env[k] for k in keys})
        _clear_storage_cache()
        try:
            yield self.env
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            os.environ.update(dropped)
            _clear_storage_cache()

    def upload_demo_data(
        self,
        start: Any,
        days: int,
        rows: int = 2000,
        faults: dict | None = None,
        models: Iterable[str] | None = None,
        fmt: str = "csv",
    ) -> list[str]:
        """Write the demo generator's batches under FACTORY_DATA_ROOT (S3 or file); return URIs."""
        import tempfile

        from model_factory.io import storage

        from model_factory_dev import demo_data

        wanted = set(models or demo_data.MODELS)
        uris = []
        with tempfile.TemporaryDirectory() as tmp, self.environ():
            for path in demo_data.write_demo_batches(tmp, start, days, rows=rows, faults=faults or {},
                                                     fmt=fmt):  # fmt: skip
                path = Path(path)
                model = path.parent.name
                if model not in wanted:
                    continue
                uri = storage.join(self.data_root, model, path.name)
                storage.upload_file(path, uri)
                uris.append(uri)
        return uris

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


def _clear_storage_cache() -> None:
    with contextlib.suppress(Exception):
        from model_factory.io import storage

        storage._s3_client.cache_clear()


# ----------------------------------------------------------------------------- REST client


# AirflowClient lives in the core library (the CLI uses it too); re-exported here.


# ----------------------------------------------------------------------------- command line


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
            n = delete_redis_keys(state["env"].get("AIRFLOW__CELERY__BROKER_URL", DEFAULT_REDIS_URL),
                                  state["redis_prefix"])  # fmt: skip
            print(f"deleted {n} Redis keys under {state['redis_prefix']}")
    (home / "stack.json").unlink(missing_ok=True)


def _print_up(stack: Stack) -> None:
    print(f"""
Production configuration is up ({stack.config.executor}, {stack.timings.get('start_s', 0):.0f} s):
  Airflow UI/API  {stack.api_url}   user {ADMIN_USER}, password {stack.admin_password}
  MLflow          {stack.mlflow_url or '(no server: ' + stack.env.get('MLFLOW_TRACKING_URI', 'sqlite') + ')'}
  S3 endpoint     {stack.s3_endpoint or '(none: file store)'}  bucket {stack.bucket}
  store / source  {stack.store_uri}  {stack.data_root}
  logs            {stack.logs}
  state           {stack.state_file}
""")


def _demo(stack: Stack, days: int, rows: int) -> int:
    import datetime as dt

    from model_factory.rollout.summary import format_table, model_rows
    from model_factory.settings import FactorySettings
    from model_factory.spec import load_specs

    start = dt.date(2026, 1, 5)
    faults = {("churn", 2): "unseen_category"}
    uris = stack.upload_demo_data(start, days, rows=rows, faults=faults)
    print(f"uploaded {len(uris)} demo batches to {stack.data_root} (churn day 3: unseen_category)")
    api = stack.client()
    specs = [loaded.spec for loaded in load_specs(stack.env["FACTORY_SPECS_DIR"])[0]]
    for spec in specs:
        api.wait_for_dag(f"{spec.name}__retrain")
        api.unpause(f"{spec.name}__retrain")
    for offset in range(days):
        ds = (start + dt.timedelta(days=offset)).isoformat()
        started = time.perf_counter()
        runs = {s.name: api.trigger(f"{s.name}__retrain", conf={"ds": ds})["dag_run_id"] for s in specs}
        for model, run_id in runs.items():
            run = api.wait_for_run(f"{model}__retrain", run_id, timeout_s=900)
            failed = [t["task_id"] for t in api.task_instances(f"{model}__retrain", run_id)
                      if t["state"] == "failed"]  # fmt: skip
            where = f"  failed at {','.join(failed)}" if failed else ""
            print(f"  {ds}  {model + '__retrain':<18} {run['state']:<8} "
                  f"{time.perf_counter() - started:5.1f}s{where}")  # fmt: skip
    with stack.environ():
        print("\nModel factory summary (through the MLflow server)\n")
        print(format_table(model_rows(FactorySettings.from_env(), specs)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_factory_dev.stack",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("command", choices=["up", "down", "status", "demo", "run"],
                        help="up: start detached; down: stop and clean; status; demo: upload demo data and "
                             "run every model through the running stack; run: up + demo + down")  # fmt: skip
    parser.add_argument("--home", type=Path, default=PROJECT_ROOT / ".factory" / "prod")
    parser.add_argument("--executor", choices=[LOCAL, CELERY], default=CELERY)
    env = os.environ
    parser.add_argument("--postgres-url", default=env.get("FACTORY_STACK_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--redis-url", default=env.get("FACTORY_STACK_REDIS_URL", DEFAULT_REDIS_URL))
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


def _attach(home: Path) -> Stack:
    """A Stack object for the detached stack running from ``home`` (for ``demo``)."""
    state = _load_state(home)
    cfg = state["config"]
    config = StackConfig(
        home=home, executor=cfg["executor"], postgres_url=cfg["postgres_url"], redis_url=cfg["redis_url"],
        name=cfg["name"], api_port=cfg["api_port"], mlflow_port=cfg["mlflow_port"], s3_port=cfg["s3_port"],
        keep_data=True, detach=True,
    )  # fmt: skip
    stack = Stack(config)
    stack.env.update(state["env"])
    stack.s3_endpoint = state["s3_endpoint"]
    return stack


if __name__ == "__main__":
    sys.exit(main())
