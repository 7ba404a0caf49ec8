"""The shared services a stack uses but does not run: PostgreSQL (its databases) and Redis (its keys)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from model_factory_dev.stack.config import StackError, _host_port, _redact, _with_database, _with_driver


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
