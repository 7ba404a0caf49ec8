"""Fixtures for tests that talk to real services on this machine.

``s3_server`` runs moto in server mode on 127.0.0.1 (a real HTTP S3 endpoint in a child
process) for the whole session; ``s3_env`` points boto3's standard environment at it for one
test; ``s3_bucket`` creates a fresh bucket. Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from model_factory.io import storage
from model_factory_dev.stack.config import free_port
from model_factory_dev.stack.s3 import moto_api

SERVER_START_TIMEOUT_S = 20.0
DUMMY_KEY = "testing"
REGION = "us-east-1"

# Every variable through which boto3 could find an endpoint, credentials or a profile
# somewhere else than where a test puts them.
_AWS_VARS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM the server if pytest itself dies (even by SIGKILL)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def mlflow_server_argv(port: int, *store: str) -> list[str]:
    """``mlflow server`` over the ``store`` arguments, on 127.0.0.1:``port`` with one worker."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        *store,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def until_mlflow_up(url: str, server: subprocess.Popen, timeout_s: float = 180.0) -> None:
    """Wait until the ``mlflow server`` at ``url`` answers its health check; fail if it exits
    (with its stderr when that is piped) or is not up in ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            stderr = server.stderr.read().decode()[-2000:] if server.stderr else ""
            raise AssertionError(f"mlflow server exited with {server.returncode}: {stderr}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"mlflow server at {url} not up within {timeout_s:.0f} s")


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, even if not with 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1; yields its endpoint URL, stops it at session end."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="moto-server-", suffix=".log", delete=False)  # noqa: SIM115
    log_path = Path(log.name)
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    log.close()
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _answers(endpoint):
            if proc.poll() is not None:
                pytest.fail(
                    f"moto server exited with code {proc.returncode} before answering on {endpoint}; "
                    f"its output:\n{log_path.read_text(errors='replace')}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"moto server did not answer on {endpoint} within {SERVER_START_TIMEOUT_S:.0f} s; "
                    f"its output:\n{log_path.read_text(errors='replace')}"
                )
            time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log_path.unlink(missing_ok=True)


@pytest.fixture
def aws_clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No AWS_* variable from the outside world, no ~/.aws files, no instance metadata.

    storage builds its clients with ``boto3.client``, i.e. on boto3's process-wide default
    session, which resolves credentials once and caches them; a fresh default session per
    test makes each test see the environment it sets.
    """
    import boto3

    for name in _AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    storage._s3_client.cache_clear()
    yield
    storage._s3_client.cache_clear()


@pytest.fixture
def s3_env(s3_server: str, aws_clean_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """boto3's environment points at the moto server (fresh state); yields the endpoint."""
    moto_api(s3_server, "reset")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    storage._s3_client.cache_clear()
    yield s3_server
    storage._s3_client.cache_clear()


def boto3_client(endpoint: str, service: str = "s3", key: str = DUMMY_KEY, secret: str = DUMMY_KEY):
    """A test-side client with explicit settings (independent of storage's cached ones)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=REGION,
    )


@pytest.fixture
def make_client():
    """``make_client(endpoint, service="s3")``: a boto3 client for test set-up with dummy keys."""
    return boto3_client


@pytest.fixture
def moto_control(s3_server: str):
    """``moto_control(path, body=b"")``: POST to the session server's ``/moto-api/<path>``."""
    return lambda path, body=b"": moto_api(s3_server, path, body)


@pytest.fixture
def s3_client(s3_env: str):
    return boto3_client(s3_env)


@pytest.fixture
def s3_bucket(s3_client) -> str:
    """A new, empty bucket with a unique name."""
    name = f"mf-test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def enforce_auth(s3_env: str) -> Iterator[Callable[[], contextlib.AbstractContextManager[None]]]:
    """``with enforce_auth(): ...`` makes the moto server check signatures and IAM policies.

    ``POST /moto-api/reset-auth`` with body ``0`` sets moto's INITIAL_NO_AUTH_ACTION_COUNT to 0
    (and its request counter to 0): from then on unknown access keys get InvalidAccessKeyId
    and IAM users without a matching policy get AccessDenied. Leaving the block restores the
    previous value (normally ``inf``: no auth); the fixture's teardown restores it again in
    case a test left the block abnormally, so other tests see the usual auth-free server.
    """
    original = moto_api(s3_env, "reset-auth", b"inf")["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
    moto_api(s3_env, "reset-auth", original.encode())

    @contextlib.contextmanager
    def enforced() -> Iterator[None]:
        moto_api(s3_env, "reset-auth", b"0")
        try:
            yield
        finally:
            moto_api(s3_env, "reset-auth", original.encode())

    try:
        yield enforced
    finally:
        moto_api(s3_env, "reset-auth", original.encode())


# ----------------------------------------------------------------------------- real stacks
# model_factory_dev.stack brings up Airflow's components (and MLflow / moto) as real processes.
# These fixtures skip (with the reason) where PostgreSQL or Redis are not on this machine.

STACK_POSTGRES_URL = os.environ.get(
    "FACTORY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
STACK_REDIS_URL = os.environ.get("FACTORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")


@pytest.fixture(scope="session")
def postgres_and_redis() -> dict[str, str]:
    """The PostgreSQL admin URL and Redis URL for production-configuration stacks, or a skip."""
    from model_factory_dev.stack import StackError, check_postgres, check_redis

    try:
        check_postgres(STACK_POSTGRES_URL)
        check_redis(STACK_REDIS_URL)
    except StackError as exc:
        pytest.skip(f"production configuration needs PostgreSQL and Redis on this machine: {exc}")
    return {"postgres_url": STACK_POSTGRES_URL, "redis_url": STACK_REDIS_URL}


def stack_home() -> Path:
    """A fresh folder for a stack's state. Not pytest's tmp_path: pytest deletes old basetemp
    folders when another pytest session starts, which would pull AIRFLOW_HOME from under the
    running processes."""
    return Path(tempfile.mkdtemp(prefix="mf-stack-"))


@pytest.fixture
def make_stack(request: pytest.FixtureRequest):
    """``make_stack(**StackConfig fields) -> Stack``, started; stopped (and cleaned) at teardown.

    Without arguments: LocalExecutor + SQLite, MLflow on SQLite, file:// store (no server but
    Airflow's own four processes). A failing test gets every component's log tail in its report
    and keeps the stack's folder; a passing one removes it.
    """
    from model_factory_dev.stack import Stack, StackConfig

    stacks: list[Stack] = []

    def make(**fields) -> Stack:
        fields.setdefault("home", stack_home())
        fields.setdefault("mlflow_server", False)
        fields.setdefault("s3", False)
        stack = Stack(StackConfig(**fields))
        stacks.append(stack)
        stack.start()
        return stack

    yield make
    report = getattr(request.node, "rep_call", None)
    failed = report is None or report.failed
    for stack in stacks:
        if failed:
            print(f"\n===== stack {stack.config.name} ({stack.home}) logs\n{stack.diagnostics()}")
        stack.stop()
        if not failed:
            shutil.rmtree(stack.home, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.rep_call``) for fixtures' teardown."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
