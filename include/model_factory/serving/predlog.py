"""The prediction log: predictions, feedback and decisions in a SQL database via SQLAlchemy Core.

SQLite by default (``<FACTORY_HOME>/serving/predictions.db``), Postgres or any SQLAlchemy URL
through ``FACTORY_PREDICTION_DB_URI``; the code uses only portable types and statements.
Predictions are written by a background thread in batches so the request path only enqueues.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from model_factory.serving.logwrite import RowInsert, one_shot, row_columns
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

METADATA = sa.MetaData()
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only

PREDICTIONS = sa.Table(
    "predictions",
    METADATA,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(160), nullable=False, index=True),  # the gateway's, unique
    sa.Column("entity_id", sa.String(256)),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("arm", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # ok | error
    sa.Column("error", sa.Text),
    sa.Column("latency_ms", sa.Float),
    sa.Column("prediction", sa.Text),  # JSON: {"label", "probabilities"} or {"value"}
    sa.Column("score", sa.Float),  # P(positive) for binary classification, the value for regression
    sa.Column("inputs", sa.Text),  # JSON of the features (FACTORY_GATEWAY_LOG_INPUTS)
    sa.Column("inputs_hash", sa.String(64)),
    sa.Column("created_at", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("client_request_id", sa.String(160)),  # the caller's own id, if it sent one
    sa.Index("ix_predictions_model_created", "model", "created_at"),
)
SHADOW_PREDICTIONS = sa.Table(
    "shadow_predictions",
    METADATA,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(160), nullable=False),  # the champion's row: what was answered
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),  # the shadow's
    sa.Column("champion_version", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # ok | error (the shadow's)
    sa.Column("error", sa.Text),
    sa.Column("latency_ms", sa.Float),  # the shadow's model time for the request
    sa.Column("prediction", sa.Text),  # the shadow's output JSON
    sa.Column("score", sa.Float),
    sa.Column("champion_latency_ms", sa.Float),
    sa.Column("champion_prediction", sa.Text),  # what the caller got
    sa.Column("champion_score", sa.Float),
    sa.Column("created_at", sa.DateTime, nullable=False),  # naive UTC
    sa.Index("ix_shadow_predictions_model_created", "model", "created_at"),
)
"""Shadow scoring, one row per instance: never read as served predictions (feedback, the canary
analysis and monitoring read ``predictions`` only)."""
# Columns added after the first release: ensure_schema adds them to an existing table.
_ADDED_COLUMNS = {"predictions": ("client_request_id",)}
FEEDBACK = sa.Table(
    "feedback",
    METADATA,
    sa.Column("request_id", sa.String(160), primary_key=True),
    sa.Column("outcome", sa.Text, nullable=False),  # JSON scalar
    sa.Column("received_at", sa.DateTime, nullable=False),
)
DECISIONS = sa.Table(
    "decisions",
    METADATA,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("version", sa.String(32)),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("details", sa.Text),  # JSON
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Index("ix_decisions_model_at", "model", "at"),
)

SQLITE_BUSY_TIMEOUT_MS = 30_000
_engines: dict[str, Engine] = {}
_schema_ready: set[int] = set()
_lock = threading.Lock()


_EPOCH = datetime(1970, 1, 1)


def utcnow() -> datetime:
    """Now, as naive UTC: ``datetime.now(UTC).replace(tzinfo=None)`` (microseconds floored alike)
    without the time zone round trip (once per request)."""
    return _EPOCH + timedelta(microseconds=time.time_ns() // 1000)


def engine_for(db: str | Engine) -> Engine:
    """One engine per URL and process; SQLite gets WAL and a busy timeout (gateway + DAG readers)."""
    if isinstance(db, Engine):
        return db
    with _lock:
        if db in _engines:
            return _engines[db]
        url = sa.engine.make_url(db)
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        try:
            engine = sa.create_engine(url, **kwargs)
        except ModuleNotFoundError as exc:
            raise RuntimeError(
                f"prediction DB {url.render_as_string(hide_password=True)}: its driver module {exc.name!r} "
                "is not installed (PostgreSQL: psycopg2-binary)"
            ) from exc
        if url.get_backend_name() == "sqlite":

            @sa.event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                cursor.close()

        _engines[db] = engine
        return engine


def ensure_schema(engine: Engine) -> None:
    if id(engine) in _schema_ready:
        return
    METADATA.create_all(engine, checkfirst=True)
    for table, names in _ADDED_COLUMNS.items():
        _add_missing_columns(engine, METADATA.tables[table], names)
    _schema_ready.add(id(engine))


def _add_missing_columns(engine: Engine, table: sa.Table, names: tuple[str, ...]) -> None:
    """ALTER TABLE ... ADD COLUMN for columns a log written by an older gateway lacks (another
    process adding the same column at the same moment is fine)."""
    present = {column["name"] for column in sa.inspect(engine).get_columns(table.name)}
    for name in names:
        if name in present:
            continue
        column = table.c[name]
        kind = column.type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))
        except sa.exc.DBAPIError:
            if name not in {c["name"] for c in sa.inspect(engine).get_columns(table.name)}:
                raise


dumps = one_shot(json.JSONEncoder(default=str, sort_keys=True, allow_nan=False))
"""JSON text of a logged value (keys sorted): one encoder, not one per call."""


def write_decision(db: str | Engine, decision: dict) -> None:
    """Append a decision (as returned by the canary/registry operations) to the decisions table."""
    engine = engine_for(db)
    ensure_schema(engine)
    at = decision.get("at")
    moment = datetime.fromisoformat(at) if isinstance(at, str) else (at or utcnow())
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    details = {
        k: v for k, v in decision.items() if k not in ("model", "version", "action", "actor", "reason", "at")
    }
    details = {**details.pop("details", {}), **details}
    with engine.begin() as conn:
        conn.execute(
            DECISIONS.insert().values(
                model=decision["model"],
                version=decision.get("version"),
                action=decision["action"],
                actor=decision.get("actor", "unknown"),
                reason=decision.get("reason"),
                details=json.dumps(details, default=str, sort_keys=True),
                at=moment,
            )
        )


def decisions(db: str | Engine, model: str, since: datetime | None = None) -> list[dict]:
    engine = engine_for(db)
    ensure_schema(engine)
    query = sa.select(DECISIONS).where(DECISIONS.c.model == model).order_by(DECISIONS.c.id)
    if since is not None:
        query = query.where(DECISIONS.c.at >= since)
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    for row in rows:
        row["details"] = json.loads(row["details"]) if row["details"] else {}
    return rows


SERVED_COLUMNS = row_columns(PREDICTIONS)
"""The values of a ``predictions`` row (:meth:`PredictionLog.log_values`), in this order."""
_REQUEST_ID, _MODEL, _VERSION, _STATUS = (
    SERVED_COLUMNS.index(name) for name in ("request_id", "model", "version", "status")
)


class PredictionLog:
    """Batched, background writes of prediction rows; synchronous feedback.

    ``log()`` only enqueues. A failing database keeps the batch and retries (the gateway keeps
    serving; health reports the error); beyond ``max_pending`` rows the oldest are dropped and
    counted.
    """

    def __init__(
        self,
        db: str | Engine,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        max_pending: int = 100_000,
        max_queue: int = 20_000,
        table: sa.Table = PREDICTIONS,
    ):
        self.table = table
        """Where the rows go: ``predictions`` (served; feedback looks ids up) or ``shadow_predictions``."""
        self.engine = engine_for(db)
        ensure_schema(self.engine)
        self.batch_size, self.flush_interval_s, self.max_pending = batch_size, flush_interval_s, max_pending
        # Items: a request's rows (list), a flush waiter (Event) or the stop marker (None). A deque,
        # not a Queue: appending wakes nobody (a notify per request, and the writer thread taking
        # the GIL to pick one row up, cost more CPU than the rest of a request); the writer looks
        # every ``flush_interval_s`` or when flush()/close() wakes it.
        self._queue: deque[list[tuple] | threading.Event | None] = deque()
        self.columns = row_columns(table)
        """The order of a row's values (:meth:`log_values`): the table's columns but its id."""
        self._insert = RowInsert(self.engine, table, self.columns)
        self._wake = threading.Event()
        self._pending_ids: dict[str, int] = {}
        self._pending_served: dict[str, tuple[str, str]] = {}
        self._ids_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0
        self.max_queue = max_queue
        self.overflowed = 0  # rows refused because max_queue batches were already waiting
        self.write_errors = 0
        self.last_error: str | None = None

    def start(self) -> PredictionLog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()
        return self

    def log(self, rows: list[dict]) -> None:
        """Enqueue rows given as dicts of column values (an absent column is null)."""
        columns = self.columns
        for row in rows:
            unknown = set(row) - set(columns)
            if unknown:
                raise ValueError(f"{self.table.name} has no column {sorted(unknown)}")
        self.log_values([tuple(row.get(name) for name in columns) for row in rows])

    def log_values(self, rows: list[tuple]) -> None:
        """Enqueue rows given as tuples of values in :attr:`columns` order, for the writer thread;
        never blocks. With ``max_queue`` batches already waiting (the database far behind) the rows
        are refused and counted in ``overflowed`` (health and /metrics show it) rather than holding
        the request or growing memory without bound."""
        if len(self._queue) >= self.max_queue:
            self.overflowed += len(rows)
            if self.overflowed == len(rows) or self.overflowed % 1000 < len(rows):
                log.warning(
                    "prediction log queue full (%d batches): %d rows not logged so far",
                    self.max_queue,
                    self.overflowed,
                )
            return
        self._remember(rows, +1)
        self._queue.append(rows)

    def _remember(self, rows: list[tuple], delta: int) -> None:
        if self.table is not PREDICTIONS:  # only served predictions can get feedback
            return
        with self._ids_lock:
            for row in rows:
                if row[_STATUS] != "ok":
                    continue
                request_id = row[_REQUEST_ID]
                count = self._pending_ids.get(request_id, 0) + delta
                if count > 0:
                    self._pending_ids[request_id] = count
                    self._pending_served[request_id] = (row[_MODEL], row[_VERSION])
                else:
                    self._pending_ids.pop(request_id, None)
                    self._pending_served.pop(request_id, None)

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything logged so far is written (or timeout); True when written."""
        done = threading.Event()
        self._queue.append(done)
        self._wake.set()
        if self._thread is None:
            self._run(until_empty=True)
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        if self._thread is not None:
            self.flush(timeout_s)
            self._queue.append(None)
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self, until_empty: bool = False) -> None:
        """Write what is queued in batches of up to ``batch_size`` rows; then sleep until
        ``flush_interval_s`` has passed or flush()/close() wakes it (``until_empty``: return)."""
        stop = False
        while not stop:
            if not self._queue:
                if until_empty:
                    return
                self._wake.wait(self.flush_interval_s)
                self._wake.clear()
                continue
            batch: list[tuple] = []
            waiters: list[threading.Event] = []
            while self._queue and len(batch) < self.batch_size and not waiters and not stop:
                item = self._queue.popleft()
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    batch.extend(item)
            self._write(batch)
            for waiter in waiters:
                waiter.set()

    def _write(self, batch: list[tuple]) -> None:
        while batch:
            try:
                with self.engine.begin() as conn:
                    self._insert(conn, batch)
                self.written += len(batch)
                self.last_error = None
                break
            except Exception as exc:  # the DB is down or locked: keep serving, retry
                self.write_errors += 1
                self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                log.warning("prediction log write failed (%d rows kept): %s", len(batch), self.last_error)
                if self._stop.wait(1.0):
                    self.dropped += len(batch)
                    break
                batch.extend(self._take_more(self.max_pending - len(batch)))
        self._remember(batch, -1)

    def _take_more(self, room: int) -> list[tuple]:
        """While the DB is down, keep at most ``max_pending`` rows: older ones beyond are dropped."""
        more: list[tuple] = []
        while self._queue:
            item = self._queue.popleft()
            if not isinstance(item, list):
                self._queue.appendleft(item)  # a flush waiter or the stop marker: handled by _run
                return more
            more.extend(item)
            if len(more) > room:
                self.dropped += len(more) - room
                self._remember(more[: len(more) - room], -1)
                more = more[len(more) - room :]
        return more

    def known_request(self, request_id: str, wait_s: float = 0.0) -> bool:
        """A prediction with this id was served (queued here or written); error rows do not count."""
        return self.served(request_id, wait_s) is not None

    def served(self, request_id: str, wait_s: float = 0.0) -> tuple[str, str] | None:
        """(model, version) of the served prediction with this id, or None; error rows do not count.

        ``wait_s`` keeps looking in the database that long: another gateway process may still
        hold the row in its write batch.
        """
        with self._ids_lock:
            if request_id in self._pending_served:
                return self._pending_served[request_id]
        query = (
            sa.select(PREDICTIONS.c.model, PREDICTIONS.c.version)
            .where(PREDICTIONS.c.request_id == request_id, PREDICTIONS.c.status == "ok")
            .limit(1)
        )
        deadline = time.monotonic() + wait_s
        while True:
            with self.engine.connect() as conn:
                row = conn.execute(query).first()
            if row is not None:
                return str(row[0]), str(row[1])
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def record_feedback(self, request_id: str, outcome: Any, wait_s: float | None = None) -> str:
        """Store the outcome of one prediction once: ``recorded``; the same outcome again (a
        retried call): ``unchanged``; a different one: ``conflict`` (nobody can overwrite it).

        ``wait_s`` bounds the wait for a database another writer holds locked: past it,
        :class:`LogUnavailableError` says why (the caller answers 503; nothing half-written)."""
        text = dumps(outcome)
        try:
            with self.engine.begin() as conn:
                if wait_s is not None:
                    _bound_lock_wait(conn, wait_s)
                try:
                    conn.execute(
                        FEEDBACK.insert().values(request_id=request_id, outcome=text, received_at=utcnow())
                    )
                finally:
                    if wait_s is not None:
                        _restore_lock_wait(conn)
            return "recorded"
        except sa.exc.OperationalError as exc:
            why = str(exc.orig).splitlines()[0][:200] if str(exc.orig) else ""
            raise LogUnavailableError(f"{type(exc.orig).__name__}: {why}") from exc
        except sa.exc.IntegrityError:
            with self.engine.connect() as conn:
                kept = conn.execute(
                    sa.select(FEEDBACK.c.outcome).where(FEEDBACK.c.request_id == request_id)
                ).scalar()
            return "unchanged" if kept == text else "conflict"


class LogUnavailableError(RuntimeError):
    """The prediction DB cannot take a write now (locked past the wait, or down)."""


def _bound_lock_wait(conn: sa.Connection, wait_s: float) -> None:
    """Wait at most ``wait_s`` for another writer's lock in this transaction (SQLite's busy
    timeout, PostgreSQL's lock_timeout); other databases keep their own setting."""
    backend = conn.engine.url.get_backend_name()
    if backend == "sqlite":
        conn.exec_driver_sql(f"PRAGMA busy_timeout={int(wait_s * 1000)}")
    elif backend == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(wait_s * 1000)}ms'")


def _restore_lock_wait(conn: sa.Connection) -> None:
    """SQLite's busy timeout back to the engine's (the connection returns to the pool)."""
    if conn.engine.url.get_backend_name() == "sqlite":
        with contextlib.suppress(sa.exc.DBAPIError):  # a broken connection: the pool discards it
            conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def purge(db: str | Engine, older_than_days: float) -> dict[str, int]:
    """Delete predictions, shadow predictions and feedback older than ``older_than_days`` (the
    retention policy); decisions are an audit trail and stay. Returns the rows deleted per table."""
    engine = engine_for(db)
    ensure_schema(engine)
    cutoff = utcnow() - timedelta(days=older_than_days)
    with engine.begin() as conn:
        predictions = conn.execute(PREDICTIONS.delete().where(PREDICTIONS.c.created_at < cutoff)).rowcount
        feedback = conn.execute(FEEDBACK.delete().where(FEEDBACK.c.received_at < cutoff)).rowcount
        shadow = conn.execute(
            SHADOW_PREDICTIONS.delete().where(SHADOW_PREDICTIONS.c.created_at < cutoff)
        ).rowcount
    return {"predictions": predictions, "feedback": feedback, "shadow_predictions": shadow}
