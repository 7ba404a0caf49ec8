"""What a stack is made of: its configuration, its constants and errors, and small URL/port helpers."""

from __future__ import annotations

import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    migrate: bool = True
    """Run ``airflow db migrate`` at start; False when the caller just used (so migrated) this DB."""
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
