"""Issue 18 finding 7: pseudonymised events keep no name or free text; details are bounded (the page's
rule, per-user detail for the platform team only, is tested in test_analyzer_view.py)."""

from __future__ import annotations

import sqlalchemy as sa
from model_factory.analyzer.events import Event
from model_factory.analyzer.privacy import MAX_DETAILS_CHARS, MAX_MESSAGE_CHARS
from model_factory.analyzer.store import EVENTS, EventStore
from model_factory.cli.main import main

from tests.conftest import event_store


def _stored_text(store: EventStore) -> str:
    """Every stored cell of every event, as one text (what someone reading the table sees)."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(EVENTS)).all()
    return "\n".join(" | ".join(str(cell) for cell in row) for row in rows)


def test_pseudonymised_events_keep_no_name_and_no_free_text(factory_home, monkeypatch) -> None:
    monkeypatch.setenv("FACTORY_ANALYZER_PSEUDONYMIZE", "true")
    monkeypatch.setenv("FACTORY_ACTOR", "ana.smith")
    reason = "Bea Jones okayed it on the phone"
    main(["promote", "churn", "--actor", "Carl Dunn", "--reason", reason])
    main(["rollback", "churn", "--actor=Carl Dunn", f"--reason={reason}"])
    main(["validate", "/home/ana.smith/specs/churn.yaml"])
    event_store().add(
        [
            Event(
                user="dee@example.com",
                action="canary.rolled_back",
                source="decisions",
                outcome="error",
                message="Dee: rolled back, the customer called",
                details={"actor": "dee@example.com via airflow", "reason": "the customer called"},
            ),
            Event(
                user="eve",
                action="task.ingest",
                source="airflow",
                outcome="error",
                message="cannot read /home/eve/data/2026-01-01.csv for eve",
            ),
        ]
    )
    stored = _stored_text(event_store())
    for personal in (
        "ana.smith",
        "Carl Dunn",
        "Bea Jones",
        "phone",
        "dee@example.com",
        "customer called",
        "/home/eve",
        "for eve",
    ):
        assert personal not in stored, personal
    events = event_store().events()
    assert len(events) == 5 and all(e.user.startswith("u-") for e in events)
    promote = events[0]
    assert "--actor" in promote.details["argv"] and "<dropped>" in promote.details["argv"]
    assert events[3].details["actor"].endswith(" via airflow")  # who acted stays countable, unnamed


def test_details_and_messages_are_bounded(factory_home) -> None:
    """A 100 KB reason was stored whole in ``details`` (the command line)."""
    main(["promote", "churn", "--reason", "x" * 100_000])
    big = Event(user="a", action="cli.x", message="y" * 100_000, details={"k": ["z" * 1000] * 500})
    event_store().add([big])
    with event_store().engine.connect() as conn:
        rows = conn.execute(sa.select(EVENTS.c.details, EVENTS.c.message)).all()
    assert len(rows) == 2
    for details, message in rows:
        assert len(details) <= MAX_DETAILS_CHARS
        assert message is None or len(message) <= MAX_MESSAGE_CHARS
