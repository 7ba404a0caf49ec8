"""Events: who did what, when, at which lifecycle stage, with which outcome and how long it took.

Events live in the factory's own database, in the ``analyzer_events`` table beside the prediction
log's tables (same URL: ``FACTORY_PREDICTION_DB_URI``, else SQLite under FACTORY_HOME; Postgres
in production). Nothing is sent anywhere.

Per installation:

- ``FACTORY_ANALYZER=off`` (or false/0/no) records nothing; the hooks become no-ops.
- ``FACTORY_ANALYZER_PSEUDONYMIZE=true`` stores ``u-<12 hex>`` (an HMAC-SHA256 of the user id
  with a salt) instead of the user id. The salt is ``FACTORY_ANALYZER_SALT``, else a random one
  kept in ``<FACTORY_HOME>/analyzer/salt`` (mode 600): the same person keeps the same pseudonym,
  so the Analyzer still counts per user, and the plain id never reaches the database.

Where events come from (each recorded where it is caused):

- CLI commands: ``cli_command(argv)`` around the ``model-factory`` app, or ``tracked(...)`` as a
  decorator / context manager around one function.
- Spec errors at parse time: ``record_spec_errors(errors)`` from the DAG builder's invalid-spec
  path, attributed to whoever last changed the spec in git.
- DAG runs a person triggered, quarantines, gate decisions, canary outcomes: read by
  ``model_factory.analyzer.collect`` (deduplicated by ``origin``).
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from model_factory.settings import FactorySettings
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

# ---- lifecycle stages --------------------------------------------------------------------------

STAGES = ("data", "features", "training", "deployment")
UNKNOWN = "unknown"
STAGE_TITLES = {
    "data": "data collection, cleaning, labelling",
    "features": "feature engineering",
    "training": "model training",
    "deployment": "model deployment",
    UNKNOWN: "stage unknown",
}

SPEC_FIELD_STAGES = {
    "source": "data",
    "target": "data",
    "validation": "data",
    "schedule": "data",
    "features": "features",
    "estimator": "training",
    "split": "training",
    "training": "training",
    "gates": "training",
    "template": "training",
    "template_params": "training",
    "evaluation": "training",
    "review": "training",
    "retries": "training",
    "drift": "deployment",
    "canary": "deployment",
    "notify": "deployment",
}
"""A spec error's stage is the stage of its top-level field; name/owner/task/YAML errors: unknown."""

COMMAND_STAGES = {
    "new-model": "data",
    "validate": "training",
    "validate-specs": "training",
    "new-template": "training",
    "trigger": "training",
    "runs": "training",
    "reproduce": "training",
    "promote": "deployment",
    "rollback": "deployment",
    "abort": "deployment",
    "pin": "deployment",
    "unpin": "deployment",
    "canary": "deployment",
    "serve": "deployment",
    "status": "deployment",
    "show": "deployment",
    "summary": "deployment",
    "approve": "deployment",
    "reject": "deployment",
}
"""CLI commands by the part of the lifecycle they act on; others are recorded with stage unknown."""

NOT_TRACKED = frozenset({"analyze", "help"})
"""The platform team's own commands are not data scientists' actions."""

TASK_STAGES = {
    "ingest": "data",
    "validate": "data",
    "wait_for_batch": "data",
    "features": "features",
    "engineer_features": "features",
    "train": "training",
    "tune": "training",
    "evaluate": "training",
    "register": "training",
    "card": "training",
    "data_budget": "training",
    "explain": "training",
    "announce_challenger": "deployment",
    "check": "deployment",
    "fire_retrain": "deployment",
    "start": "deployment",
    "manual_action": "deployment",
    "score": "deployment",
}
DAG_KIND_STAGES = {
    "retrain": "training",
    "tuned_retrain": "training",
    "drift_watch": "deployment",
    "canary": "deployment",
    "batch_scoring": "deployment",
    "score": "deployment",
}


def task_stage(task_id: str) -> str:
    """The stage of a factory task (``stage_N_wait``/``stage_N_act`` are canary stages)."""
    base = task_id.rsplit(".", 1)[-1]
    if re.fullmatch(r"stage_\d+_(wait|act)", base):
        return "deployment"
    return TASK_STAGES.get(base, UNKNOWN)


def normalise_stage(stage: str | None) -> str:
    return stage if stage in STAGES else UNKNOWN


# ---- settings ----------------------------------------------------------------------------------

ENV_ENABLED = "FACTORY_ANALYZER"
ENV_PSEUDONYMIZE = "FACTORY_ANALYZER_PSEUDONYMIZE"
ENV_SALT = "FACTORY_ANALYZER_SALT"
_FALSE = ("0", "false", "no", "off")


def recording_enabled() -> bool:
    """False when this installation opted out (``FACTORY_ANALYZER=off``)."""
    return FactorySettings.from_env().analyzer.strip().lower() not in _FALSE


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class AnalyzerSettings:
    db_uri: str
    enabled: bool = True
    pseudonymize: bool = False
    salt_path: Path | None = None

    @classmethod
    def from_env(cls) -> AnalyzerSettings:
        from model_factory.serving.settings import prediction_db_uri
        from model_factory.settings import FactorySettings

        factory = FactorySettings.from_env()
        return cls(
            db_uri=prediction_db_uri(factory),
            enabled=recording_enabled(),
            pseudonymize=FactorySettings.from_env().analyzer_pseudonymize,
            salt_path=factory.home / "analyzer" / "salt",
        )

    def salt(self) -> str:
        """The installation's salt: ``FACTORY_ANALYZER_SALT``, else a random one kept on disk."""
        if FactorySettings.from_env().analyzer_salt:
            return FactorySettings.from_env().analyzer_salt
        if self.salt_path is None:
            raise ValueError(f"pseudonymising user ids needs {ENV_SALT} or a salt file")
        if not self.salt_path.exists():
            self.salt_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.salt_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(16))
        return self.salt_path.read_text().strip()


def pseudonym(user: str, salt: str) -> str:
    """A stable pseudonym for ``user``; without the salt it cannot be turned back."""
    if user.startswith("u-") and len(user) == 14:
        return user  # already one
    return "u-" + hmac.new(salt.encode(), user.encode(), hashlib.sha256).hexdigest()[:12]


def current_user() -> str:
    """The acting person: ``FACTORY_ACTOR`` (as the CLI records it), else the login name."""
    user = FactorySettings.from_env().actor or getpass.getuser()
    return user.removesuffix(" via cli")


# ---- the event and its table ------------------------------------------------------------------


@dataclass
class Event:
    user: str
    action: str
    """``cli.<command>``, ``spec.parse``, ``dag_run.<kind>``, ``task.<task_id>``,
    ``batch.quarantined``, ``gate.<decision>``, ``canary.<action>``..."""
    stage: str = UNKNOWN
    outcome: str = "ok"
    """``ok`` or ``error``."""
    at: datetime = field(default_factory=utcnow)
    source: str = "cli"
    model: str | None = None
    error_kind: str | None = None
    message: str | None = None
    duration_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    origin: str | None = None
    """Where an event read from elsewhere came from (its dedupe key); None for recorded ones."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat(timespec="seconds")
        return out


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


class EventStore:
    """The ``analyzer_events`` table: append (deduplicated by ``origin``) and read back."""

    def __init__(self, settings: AnalyzerSettings | None = None, db: str | Engine | None = None):
        from model_factory.serving.predlog import engine_for

        self.settings = settings or AnalyzerSettings.from_env()
        self.engine = engine_for(db if db is not None else self.settings.db_uri)
        METADATA.create_all(self.engine, checkfirst=True)
        self._salt: str | None = None

    def _user(self, user: str) -> str:
        user = (user or "unknown").strip() or "unknown"
        if not self.settings.pseudonymize:
            return user
        self._salt = self._salt or self.settings.salt()
        return pseudonym(user, self._salt)

    def _row(self, event: Event) -> dict[str, Any]:
        at = event.at.astimezone(UTC).replace(tzinfo=None) if event.at.tzinfo else event.at
        return {
            "at": at,
            "user": self._user(event.user)[:256],
            "source": event.source[:32],
            "action": event.action[:128],
            "stage": normalise_stage(event.stage),
            "outcome": event.outcome if event.outcome in ("ok", "error") else "error",
            "model": event.model[:128] if event.model else None,
            "error_kind": event.error_kind[:256] if event.error_kind else None,
            "message": (event.message or None) and event.message[:4000],
            "duration_s": event.duration_s,
            "details": json.dumps(event.details, default=str, sort_keys=True) if event.details else None,
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
        return [
            Event(
                user=r["user"],
                action=r["action"],
                stage=r["stage"],
                outcome=r["outcome"],
                at=r["at"],
                source=r["source"],
                model=r["model"],
                error_kind=r["error_kind"],
                message=r["message"],
                duration_s=r["duration_s"],
                details=json.loads(r["details"]) if r["details"] else {},
                origin=r["origin"],
            )
            for r in rows
        ]

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


def record(events: Event | Iterable[Event], store: EventStore | None = None) -> int:
    """Record events unless this installation opted out; never raises (the action matters more)."""
    batch = [events] if isinstance(events, Event) else list(events)
    try:
        settings = store.settings if store else AnalyzerSettings.from_env()
        if not settings.enabled or not batch:
            return 0
        return (store or EventStore(settings)).add(batch)
    except Exception as exc:
        log.warning("analyzer: %d event(s) not recorded: %s: %s", len(batch), type(exc).__name__, exc)
        return 0


# ---- error kinds ------------------------------------------------------------------------------

_MESSAGE_KINDS: list[tuple[str, str, str | None]] = [
    (
        r"column '[^']*' is missing|expect_column_to_exist|missing column",
        "validation: column missing",
        "data",
    ),
    (r"expect_column_values_to_be_in_set|unseen categor", "validation: unseen category", "data"),
    (r"unseen class", "validation: unseen class label", "data"),
    (r"expect_column_values_to_be_between|out of range", "validation: value out of range", "data"),
    (r"expect_column_values_to_not_be_null|null fraction", "validation: too many nulls", "data"),
    (
        r"expect_column_values_to_be_in_type_list|expect_column_values_to_be_of_type",
        "validation: wrong column type",
        "data",
    ),
    (r"expect_table_row_count", "validation: too few rows", "data"),
    (r"could not parse|malformed csv|parser error", "ingest: unreadable batch", "data"),
    (r"source\.aws_conn_id", "ingest: S3 connection missing", "data"),
    (r"template_params", "spec: bad template_params", "training"),
    (r"template [^\n]*raised|raised while building", "template raised", "training"),
    (r"unknown template", "spec: unknown template", "training"),
    (
        r"not an estimator|factory [^\n]*(raised|not found|missing)",
        "custom code: estimator factory failed",
        "features",
    ),
    (r"bad trigger conf", "trigger: bad conf", "training"),
    (r"too good", "gate: too good to be true", "training"),
    (r"held_for_review|held for review", "gate: held for review", "training"),
    (r"\brejected\b|below the (gate )?threshold|worse than the champion", "gate: rejected", "training"),
    (r"rolled back|roll(ed)?[ -]?back", "canary: rolled back", "deployment"),
    (
        r"not reachable|unreachable|connection refused|failed to establish a new connection",
        "platform: service unreachable",
        None,
    ),
]


def generalise(text: str, width: int = 70) -> str:
    """The shape of a message without its particulars (quoted names, numbers, lists, paths)."""
    text = text.strip().splitlines()[0] if text.strip() else ""
    text = re.sub(r"(file|s3)://\S+|/\S+", "<path>", text)
    text = re.sub(r"\[[^\]]*\]", "[…]", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"(?<==)[^\s,;:)]+", "…", text)  # key=value particulars
    text = re.sub(r"\b\d+(\.\d+)?\b", "N", text)
    text = re.sub(r"\s+", " ", text).strip(" :;,.")
    return text[:width]


def classify_error(message: str, command: str | None = None) -> tuple[str, str | None]:
    """An error message's kind (stable across users and models) and the stage it implies, if any."""
    usage = re.search(
        r"No such (option|command)|Missing (argument|option)|Invalid value|unexpected extra argument",
        message,
        flags=re.IGNORECASE,
    )
    if usage:  # the command line itself was wrong: a sign the command is hard to use
        what = usage.group(0).lower().replace("got ", "")
        return f"cli: {command or 'model-factory'} usage error: {what}", COMMAND_STAGES.get(command or "")
    for pattern, kind, stage in _MESSAGE_KINDS:
        if re.search(pattern, message, flags=re.IGNORECASE):
            return kind, stage
    first = message.strip().splitlines()[0] if message.strip() else "no message"
    if command and first.lower().startswith("refused:"):
        return f"ops: {command} refused: {generalise(first.split(':', 1)[1])}", COMMAND_STAGES.get(command)
    return (f"{command}: " if command else "error: ") + generalise(first), None


def _spec_fields() -> set[str]:
    from model_factory.spec import ModelSpec

    return {info.alias or name for name, info in ModelSpec.model_fields.items()} | set(SPEC_FIELD_STAGES)


def classify_spec_problem(field_path: str, reason: str) -> tuple[str, str]:
    """One spec problem (field, reason) -> (error kind, stage of its field)."""
    top = field_path.split(".", 1)[0] if field_path and field_path != "(top level)" else ""
    if not top:  # a whole-spec check names its field at the start of the reason ("gates.primary_metric ...")
        named = re.match(r"([a-z_]+)(\.[a-z_]+)*\b", reason)
        if named and named.group(1) in SPEC_FIELD_STAGES:
            field_path, top = named.group(0), named.group(1)
    stage = SPEC_FIELD_STAGES.get(top, UNKNOWN)
    low = reason.lower()
    if low.startswith("unknown params") or "unknown param" in low:
        return "spec: unknown estimator param", "training"
    if "is not allowed; choose one of" in low:
        return "spec: estimator not allowed", "training"
    if low.startswith("malformed yaml"):
        return "spec: malformed YAML", UNKNOWN
    if low == "unknown field":
        return f"spec: unknown field in {top or 'top level'}", stage
    if "must match the file name" in low:
        return "spec: name does not match the file", UNKNOWN
    kind, implied = classify_error(reason)
    if not kind.startswith("error: "):
        return kind, implied or stage
    general = re.sub(r"\.\d+(?=\.|$)", "[]", field_path or "")
    general = re.sub(r"^(validation\.(ranges|categories)|tags|template_params)\.[^.]+", r"\1.*", general)
    return f"spec: {general or 'top level'}: {generalise(reason, 60)}", stage


_SPEC_ERROR = re.compile(r"invalid model spec (?P<path>[^\n]+?):\n(?P<body>(?:[ ]{2}[^\n]*(?:\n|$))+)")


def parse_spec_errors(text: str) -> list[tuple[str, str, str]]:
    """``(path, field, reason)`` for every problem in SpecError texts found in ``text``."""
    fields = _spec_fields()
    out = []
    for match in _SPEC_ERROR.finditer(text):
        for line in match.group("body").splitlines():
            line = line.strip()
            if not line:
                continue
            head, sep, rest = line.partition(": ")
            if sep and head.split(".", 1)[0] in fields | {"(top level)"}:
                out.append((match.group("path"), head, rest))
            else:
                out.append((match.group("path"), "", line))
    return out


# ---- who changed a spec -----------------------------------------------------------------------


def git_last_author(path: Path | str) -> str | None:
    """``git log -1 --format=%ae -- <file>``: who last committed the file; None outside git."""
    path = Path(path)
    try:
        done = subprocess.run(
            ["git", "log", "-1", "--format=%ae", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def spec_owner(path: Path | str) -> str | None:
    """The ``owner:`` a spec file declares, read without validating the rest."""
    try:
        import yaml

        raw = yaml.safe_load(Path(path).read_text())
    except Exception:
        return None
    owner = raw.get("owner") if isinstance(raw, dict) else None
    return str(owner) if owner else None


def spec_author(path: Path | str) -> tuple[str, str]:
    """Who to attribute a spec's problems to, and from where: git, else the spec's owner."""
    author = git_last_author(path)
    if author:
        return author, "git"
    owner = spec_owner(path)
    return (owner, "spec owner") if owner else ("unknown", "unknown")


# ---- hooks ------------------------------------------------------------------------------------

_seen_spec_errors: set[str] = set()


def _content_hash(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return "unreadable"


def _spec_origin(source: str, path: str, content: str, index: int, field_path: str, reason: str) -> str:
    key = f"{path}|{content}|{index}|{field_path}|{reason}"
    return f"{source}:" + hashlib.sha256(key.encode()).hexdigest()[:40]


def spec_error_events(
    path: str,
    problems: Sequence[tuple[str, str]],
    source: str,
    user: str | None = None,
    user_from: str = "given",
    action: str = "spec.parse",
) -> list[Event]:
    """One error event per (field, reason) of an invalid spec (``origin`` set unless from the CLI)."""
    if user is None:
        user, user_from = spec_author(path)
    content = _content_hash(path) if source != "cli" else ""
    events = []
    for index, (field_path, reason) in enumerate(problems):
        kind, stage = classify_spec_problem(field_path, reason)
        events.append(
            Event(
                user=user,
                action=action,
                stage=stage,
                outcome="error",
                source=source,
                model=Path(path).stem,
                error_kind=kind,
                message=f"{Path(path).name}: {field_path + ': ' if field_path else ''}{reason}",
                details={"spec": str(path), "field": field_path, "user_from": user_from},
                origin=None
                if source == "cli"
                else _spec_origin(source, path, content, index, field_path, reason),
            )
        )
    return events


def record_spec_errors(errors: Iterable[Any], source: str = "dag_parse") -> int:
    """Record the problems of invalid specs (``SpecError``s) found while building DAGs.

    The DAG processor parses every few seconds: each distinct problem of each version of a spec
    file is recorded once (``origin`` = file + content hash + problem). A problem already known
    (to this process, else to the database) costs no ``git`` call. Never raises.
    """
    try:
        if not recording_enabled():
            return 0
        pending: list[tuple[str, list[tuple[str, str]], list[str]]] = []
        for error in errors:
            path = str(error.path)
            problems = list(getattr(error, "problems", None) or [("", str(error))])
            content = _content_hash(path)
            origins = [_spec_origin(source, path, content, i, f, r) for i, (f, r) in enumerate(problems)]
            if not set(origins) <= _seen_spec_errors:
                pending.append((path, problems, origins))
        if not pending:
            return 0
        store = EventStore()
        stored = store.known([o for _, _, origins in pending for o in origins])
        _seen_spec_errors.update(stored)
        events = [
            event
            for path, problems, origins in pending
            if not set(origins) <= stored
            for event in spec_error_events(path, problems, source)
            if event.origin not in stored
        ]
        written = record(events, store) if events else 0
        _seen_spec_errors.update(event.origin for event in events if event.origin)
        return written
    except Exception as exc:
        log.warning("analyzer: spec errors not recorded: %s: %s", type(exc).__name__, exc)
        return 0


def _exit_code(exc: BaseException | None) -> int:
    if exc is None:
        return 0
    code = getattr(exc, "exit_code", None)
    if code is None and isinstance(exc, SystemExit):
        code = exc.code
    if code is None:
        return 0 if isinstance(exc, SystemExit) else 1
    return code if isinstance(code, int) else 1


class _Tee(io.TextIOBase):
    """Write to the real stream and keep the first ``limit`` characters."""

    def __init__(self, stream: Any, limit: int = 20_000):
        self.stream, self.limit, self.kept = stream, limit, io.StringIO()

    def write(self, text: str) -> int:
        if self.kept.tell() < self.limit:
            self.kept.write(text[: self.limit - self.kept.tell()])
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")


class tracked(contextlib.ContextDecorator):  # noqa: N801 - used like a function
    """Record one action: as ``@tracked("cli.trigger", stage="training")`` or ``with tracked(...) as t``.

    The outcome is ``error`` when the block raises (an exit code other than 0 counts) or when
    ``t.fail(message)`` was called; the error kind comes from the message.
    """

    def __init__(
        self,
        action: str,
        stage: str | None = None,
        model: str | None = None,
        user: str | None = None,
        source: str = "cli",
        details: dict | None = None,
    ):
        self.action, self.stage, self.model, self.user, self.source = action, stage, model, user, source
        self.details = dict(details or {})
        self.messages: list[str] = []
        self.extra: list[Event] = []
        self.exit_code: int | None = None
        """Set it when the wrapped code returns an exit code instead of raising one."""

    def fail(self, message: str) -> None:
        self.messages.append(message)

    def __enter__(self) -> tracked:
        self.at, self.started = utcnow(), time.perf_counter()
        return self

    def events(self, exc: BaseException | None) -> list[Event]:
        command = self.action.removeprefix("cli.")
        code = _exit_code(exc) or (self.exit_code or 0)
        message = "\n".join(self.messages).strip()
        if exc is not None and not message and code:
            message = str(exc).strip() or type(exc).__name__
        failed = bool(code) or bool(self.messages)
        kind, implied = classify_error(message, command) if failed else (None, None)
        stage = self.stage or implied or COMMAND_STAGES.get(command, UNKNOWN)
        main = Event(
            user=self.user or current_user(),
            action=self.action,
            stage=stage,
            outcome="error" if failed else "ok",
            at=self.at,
            source=self.source,
            model=self.model,
            error_kind=kind,
            message=message[:4000] or None,
            duration_s=round(time.perf_counter() - self.started, 3),
            details={**self.details, **({"exit_code": code} if code else {})},
        )
        return [main, *self.extra]

    def __exit__(self, exc_type, exc, tb) -> bool:
        record(self.events(exc))
        return False


def _command_and_model(argv: Sequence[str]) -> tuple[str | None, str | None]:
    positional = [arg for arg in argv if not arg.startswith("-")]
    if not positional or any(arg in ("--help", "-h") for arg in argv):
        return None, None
    command = positional[0]
    model = positional[1] if len(positional) > 1 else None
    if model and (model.endswith((".yaml", ".yml")) or "/" in model):
        model = Path(model).stem
    return command, model


@contextlib.contextmanager
def cli_command(argv: Sequence[str] | None = None) -> Iterator[tracked | None]:
    """Around one ``model-factory`` invocation: record the command, its model, outcome and time.

    stderr is teed (the first 20k characters kept) so the error kind comes from what the user
    was told; every problem of an invalid spec it reports becomes its own event. ``--help`` and
    the platform team's ``analyze`` are not recorded.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    command, model = _command_and_model(args)
    if command is None or command in NOT_TRACKED:
        yield None
        return
    tee = _Tee(sys.stderr)
    saved, sys.stderr = sys.stderr, tee
    action = tracked(f"cli.{command}", model=model, details={"argv": args[:12]})
    action.__enter__()
    exc: BaseException | None = None
    try:
        yield action
    except BaseException as raised:
        exc = raised
        raise
    finally:
        sys.stderr = saved
        text = tee.kept.getvalue()
        problems = parse_spec_errors(text)
        if problems:
            for path, field_path, reason in problems:
                action.extra += spec_error_events(
                    path,
                    [(field_path, reason)],
                    source="cli",
                    user=action.user or current_user(),
                    action=f"cli.{command}",
                )
            action.details["spec_problems"] = len(problems)
        elif text.strip() and (_exit_code(exc) or action.exit_code):
            action.fail(text.strip())
        events = action.events(exc)
        if problems and len(events) > 1:
            # the command's own event then carries the first problem's kind/stage; the rest are extra
            first = events.pop(1)
            events[0].error_kind, events[0].stage, events[0].message = (
                first.error_kind,
                first.stage,
                first.message,
            )
            events[0].outcome = "error"
            events[0].details.update(first.details)
        record(events)
