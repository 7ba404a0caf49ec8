"""One decision per subject, atomically: a row in a small SQL table that only one caller can insert.

Two reviewers (two CLIs, a CLI and the Airflow review task, two Airflow workers) may answer the
same held version at once. MLflow tags cannot settle it: a tag write is last-writer-wins and a
read-after-write check still lets both callers see their own tag. A primary key can: the first
``INSERT`` of a subject wins, every later one fails with an integrity error on any SQL database
(SQLite's file lock on one machine, PostgreSQL across machines), and the loser reads the winner's
row to say who decided what and when.

The table lives in the factory's own database: ``FACTORY_CLAIMS_DB_URI``, else the prediction DB
(``FACTORY_PREDICTION_DB_URI``, shared by every process of a deployment), else SQLite under
``FACTORY_HOME``.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from model_factory.settings import FactorySettings
from sqlalchemy.engine import Engine

CLAIMS_DB_ENV = "FACTORY_CLAIMS_DB_URI"
PREDICTION_DB_ENV = "FACTORY_PREDICTION_DB_URI"

_metadata = sa.MetaData()
CLAIMS = sa.Table(
    "factory_claims",
    _metadata,
    sa.Column("subject", sa.String(500), primary_key=True),
    sa.Column("outcome", sa.String(100), nullable=False),
    sa.Column("actor", sa.String(500), nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
)
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Claim:
    """The row that decided ``subject``; ``won`` says whether it is this caller's."""

    subject: str
    outcome: str
    actor: str
    token: str
    at: str
    won: bool


def claims_db_uri(settings: FactorySettings) -> str:
    return settings.claims_db_uri or settings.prediction_db_uri or f"sqlite:///{settings.home / 'claims.db'}"


def _engine(uri: str) -> Engine:
    with _lock:
        if uri not in _engines:
            url = sa.engine.make_url(uri)
            kwargs = {}
            if url.get_backend_name() == "sqlite":
                if url.database and url.database != ":memory:":
                    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
                kwargs["connect_args"] = {"timeout": 30}
            engine = sa.create_engine(url, **kwargs)
            _create_table(engine)
            _engines[uri] = engine
        return _engines[uri]


def _create_table(engine: Engine) -> None:
    """Create the table unless it exists; two processes creating it at once is fine."""
    try:
        _metadata.create_all(engine, checkfirst=True)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
        if not sa.inspect(engine).has_table(CLAIMS.name):  # not the race: a real error
            raise


def claim(uri: str, subject: str, outcome: str, actor: str) -> Claim:
    """Insert the claim of ``subject``; the first caller wins, every later one gets the winner's row."""
    engine = _engine(uri)
    mine = {
        "subject": subject,
        "outcome": outcome,
        "actor": actor,
        "token": uuid.uuid4().hex,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        with engine.begin() as conn:
            conn.execute(CLAIMS.insert().values(**mine))
        return Claim(**mine, won=True)
    except sa.exc.IntegrityError:
        with engine.connect() as conn:
            row = conn.execute(sa.select(CLAIMS).where(CLAIMS.c.subject == subject)).mappings().one()
        return Claim(**dict(row), won=False)


def release(uri: str, won: Claim) -> None:
    """Give up a claim this caller won (its decision could not be recorded): another may decide."""
    mine = (CLAIMS.c.subject == won.subject) & (CLAIMS.c.token == won.token)
    with _engine(uri).begin() as conn:
        conn.execute(CLAIMS.delete().where(mine))
