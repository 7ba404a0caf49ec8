"""Where events are kept: the ``analyzer_events`` table, and who may be named in it.

Events live in the factory's own database, in the ``analyzer_events`` table beside the prediction
log's tables (same URL: ``FACTORY_PREDICTION_DB_URI``, else SQLite under FACTORY_HOME; Postgres
in production). Nothing is sent anywhere.

Per installation:

- ``FACTORY_ANALYZER=off`` (or false/0/no) records nothing; the hooks become no-ops.
- ``FACTORY_ANALYZER_PSEUDONYMIZE=true`` stores ``u-<12 hex>`` (an HMAC-SHA256 of the user id
  with a salt) instead of the user id, and pseudonymises or drops every other personal field
  (names and free text on the command line, in details and in messages: see ``privacy``). The
  salt is ``FACTORY_ANALYZER_SALT``, else a random one kept in ``<FACTORY_HOME>/analyzer/salt``
  (mode 600): the same person keeps the same pseudonym, so the Analyzer still counts per user,
  and the plain id never reaches the database.
- Always: details and messages are bounded (``privacy.MAX_DETAILS_CHARS``...).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from model_factory.analyzer.events import Event, normalise_stage, utcnow
from model_factory.analyzer.privacy import Pseudonymiser, bounded_message, details_json, pseudonym
from model_factory.settings import FactorySettings
from sqlalchemy.engine import Engine

__all__ = ["EVENTS", "AnalyzerSettings", "EventStore", "current_user", "pseudonym", "record"]

log = logging.getLogger(__name__)

# ---- settings ----------------------------------------------------------------------------------

ENV_ENABLED = "FACTORY_ANALYZER"
ENV_PSEUDONYMIZE = "FACTORY_ANALYZER_PSEUDONYMIZE"
ENV_SALT = "FACTORY_ANALYZER_SALT"
_FALSE = ("0", "false", "no", "off")


def recording_enabled(settings: FactorySettings) -> bool:
    """False when this installation opted out (``FACTORY_ANALYZER=off``)."""
    return settings.analyzer.strip().lower() not in _FALSE


@dataclass(frozen=True)
class AnalyzerSettings:
    db_uri: str
    enabled: bool = True
    pseudonymize: bool = False
    salt_path: Path | None = None
    configured_salt: str | None = field(default=None, repr=False)
    """``FACTORY_ANALYZER_SALT``; None: the random one in ``salt_path``."""

    @classmethod
    def of(cls, factory: FactorySettings) -> AnalyzerSettings:
        """The Analyzer's part of the factory's settings."""
        from model_factory.serving.settings import prediction_db_uri

        return cls(
            db_uri=prediction_db_uri(factory),
            enabled=recording_enabled(factory),
            pseudonymize=factory.analyzer_pseudonymize,
            salt_path=factory.home / "analyzer" / "salt",
            configured_salt=factory.analyzer_salt,
        )

    def salt(self) -> str:
        """The installation's salt: ``FACTORY_ANALYZER_SALT``, else a random one kept on disk."""
        if self.configured_salt:
            return self.configured_salt
        if self.salt_path is None:
            raise ValueError(f"pseudonymising user ids needs {ENV_SALT} or a salt file")
        if not self.salt_path.exists():
            self.salt_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.salt_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(16))
        return self.salt_path.read_text().strip()


def current_user(settings: FactorySettings) -> str:
    """The acting person: ``FACTORY_ACTOR`` (as the CLI records it), else the login name."""
    user = settings.actor or getpass.getuser()
    return user.removesuffix(" via cli")


METADATA = sa.MetaData()
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
EVENTS = sa.Table(
    "analyzer_events",
    METADATA,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("user", sa.String(256), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("action", sa.String(128), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("model", sa.String(128)),
    sa.Column("error_kind", sa.String(256)),
    sa.Column("message", sa.Text),
    sa.Column("duration_s", sa.Float),
    sa.Column("details", sa.Text),  # JSON
    sa.Column("origin", sa.String(255), unique=True),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
    sa.Index("ix_analyzer_events_at", "at"),
)


def _stored_origins(conn: sa.Connection, origins: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(origins), 500):
        chunk = origins[start : start + 500]
        found |= set(conn.execute(sa.select(EVENTS.c.origin).where(EVENTS.c.origin.in_(chunk))).scalars())
    return found


def _stored_event(row: dict[str, Any]) -> Event:
    """An event read back: every field from its column of the same name, ``details`` from JSON."""
    values = {field.name: row[field.name] for field in fields(Event)}
    values["details"] = json.loads(values["details"]) if values["details"] else {}
    return Event(**values)


class EventStore:
    """The ``analyzer_events`` table: append (deduplicated by ``origin``) and read back."""

    def __init__(self, settings: AnalyzerSettings, db: str | Engine | None = None):
        from model_factory.serving.predlog import engine_for

        self.settings = settings
        self.engine = engine_for(db if db is not None else self.settings.db_uri)
        METADATA.create_all(self.engine, checkfirst=True)
        self._pseudonymiser: Pseudonymiser | None = None

    def _private(self, event: Event) -> tuple[str, str | None, dict[str, Any]]:
        """The user, message and details as stored: bounded, and pseudonymised when asked."""
        user = (event.user or "unknown").strip() or "unknown"
        if not self.settings.pseudonymize:
            return user, bounded_message(event.message), event.details
        self._pseudonymiser = self._pseudonymiser or Pseudonymiser(self.settings.salt())
        quoted = {user.partition(" via ")[0]: self._pseudonymiser.name(user.partition(" via ")[0])}
        details = self._pseudonymiser.details(event.details, quoted)
        message = self._pseudonymiser.message(event.message, event.source, quoted)
        return self._pseudonymiser.name(user), bounded_message(message), details

    def _row(self, event: Event) -> dict[str, Any]:
        at = event.at.astimezone(UTC).replace(tzinfo=None) if event.at.tzinfo else event.at
        user, message, details = self._private(event)
        return {
            "at": at,
            "user": user[:256],
            "source": event.source[:32],
            "action": event.action[:128],
            "stage": normalise_stage(event.stage),
            "outcome": event.outcome if event.outcome in ("ok", "error") else "error",
            "model": event.model[:128] if event.model else None,
            "error_kind": event.error_kind[:256] if event.error_kind else None,
            "message": message,
            "duration_s": event.duration_s,
            "details": details_json(details),
            "origin": event.origin[:255] if event.origin else None,
            "recorded_at": utcnow(),
        }

    def add(self, events: Iterable[Event]) -> int:
        """Append events; one whose ``origin`` is already stored is skipped. Returns how many were new."""
        rows = [self._row(event) for event in events]
        if not rows:
            return 0
        origins = [row["origin"] for row in rows if row["origin"]]
        with self.engine.begin() as conn:
            known = _stored_origins(conn, origins)
            fresh, seen = [], set()
            for row in rows:
                if row["origin"] and (row["origin"] in known or row["origin"] in seen):
                    continue
                seen.add(row["origin"])
                fresh.append(row)
            if fresh:
                try:
                    with conn.begin_nested():
                        conn.execute(EVENTS.insert(), fresh)
                except sa.exc.IntegrityError:  # a concurrent writer stored one of them: one by one
                    written = 0
                    for row in fresh:
                        try:
                            with conn.begin_nested():
                                conn.execute(EVENTS.insert(), [row])
                            written += 1
                        except sa.exc.IntegrityError:
                            pass
                    return written
        return len(fresh)

    def events(self, since: datetime | None = None, until: datetime | None = None) -> list[Event]:
        query = sa.select(EVENTS).order_by(EVENTS.c.at, EVENTS.c.id)
        if since is not None:
            query = query.where(EVENTS.c.at >= since)
        if until is not None:
            query = query.where(EVENTS.c.at < until)
        with self.engine.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
        return [_stored_event(row) for row in rows]

    def latest(self, source: str) -> datetime | None:
        """When the newest event of ``source`` happened (where a collector takes up again)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(EVENTS.c.at)).where(EVENTS.c.source == source)).scalar()

    def known(self, origins: list[str]) -> set[str]:
        """Which of these origins are stored already."""
        with self.engine.connect() as conn:
            return _stored_origins(conn, origins)

    def origins(self, prefix: str) -> set[str]:
        """The stored origins starting with ``prefix`` (what a collector already has)."""
        with self.engine.connect() as conn:
            return set(
                conn.execute(sa.select(EVENTS.c.origin).where(EVENTS.c.origin.like(f"{prefix}%"))).scalars()
            )

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(EVENTS)).scalar() or 0)


def record(
    events: Event | Iterable[Event], settings: AnalyzerSettings, store: EventStore | None = None
) -> int:
    """Record events unless this installation opted out; never raises (the action matters more).
    ``store``: an open one with these settings (default: one is opened)."""
    batch = [events] if isinstance(events, Event) else list(events)
    try:
        if not settings.enabled or not batch:
            return 0
        return (store or EventStore(settings)).add(batch)
    except Exception as exc:
        log.warning("analyzer: %d event(s) not recorded: %s: %s", len(batch), type(exc).__name__, exc)
        return 0
