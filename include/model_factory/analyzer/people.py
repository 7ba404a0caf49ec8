"""Who counts as a person for the Analyzer's statistics, and who is flagged and left out.

A service account is not a data scientist, and an identity that only ever has outcomes pinned on
it (a spec's ``owner``, a spec's last git author) did nothing the segments could measure. Left in,
a few of them become a segment of their own (the demo's ``demo``, ``root``, spec owner and git
author were the whole "Beginner" segment) and every finding's shares go wrong. So:

1. **Service accounts** are left out of everything (signals, segments, findings) and named in the
   report: ``root``, ``airflow``, ``demo``, ``system``, ``scheduler``, ``nobody`` and the
   names in ``FACTORY_ANALYZER_SYSTEM_USERS`` (comma-separated).
2. **Attributed-only identities**, whose every event was pinned on them by a fallback (an event's
   ``details.user_from`` is ``spec owner``/``git``/``unknown``: a quarantine, a verdict, a spec
   error found at parse time), and **users with too little real activity** (fewer than
   ``MIN_OWN_ACTIONS`` actions of their own, or no goal attempted) are not placed in a segment:
   their errors still count in the findings, they weigh on no segment's share.

The remaining users are segmented on capped signals with robust scaling (``segments``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from model_factory.analyzer.events import Event
from model_factory.analyzer.signals import goal_of
from model_factory.settings import FactorySettings

SYSTEM_USERS = frozenset({"root", "airflow", "demo", "system", "scheduler", "nobody"})
"""Not persons. Airflow's ``admin`` is not among them: in many installations it is one person's login
(add it to FACTORY_ANALYZER_SYSTEM_USERS where it is shared)."""
ENV_SYSTEM_USERS = "FACTORY_ANALYZER_SYSTEM_USERS"
ATTRIBUTED = frozenset({"spec owner", "git", "unknown"})
"""``details.user_from`` values of a fallback attribution: not an action of the user."""
MIN_OWN_ACTIONS = 5


def system_users(settings: FactorySettings) -> frozenset[str]:
    """The default service accounts and this installation's own (``FACTORY_ANALYZER_SYSTEM_USERS``)."""
    configured = settings.analyzer_system_users
    extra = {name.strip().lower() for name in configured.split(",") if name.strip()}
    return SYSTEM_USERS | extra


@dataclass
class Population:
    people: list[Event] = field(default_factory=list)
    """The events of persons (service accounts' left out)."""
    excluded: dict[str, str] = field(default_factory=dict)
    """Service accounts: user -> why left out of everything."""
    not_segmented: dict[str, str] = field(default_factory=dict)
    """Persons not placed in a segment: user -> why (their errors still count)."""


def _own(event: Event) -> bool:
    return (event.details or {}).get("user_from") not in ATTRIBUTED


def population(events: list[Event], service_accounts: frozenset[str]) -> Population:
    """Split ``events`` into persons' events, flagged service accounts and users too thin to segment
    (``service_accounts``: ``system_users(settings)``)."""
    out = Population()
    by_user: dict[str, list[Event]] = {}
    for event in events:
        by_user.setdefault(event.user, []).append(event)
    for user, mine in sorted(by_user.items()):
        base = user.split(" via ", 1)[0].strip().lower()
        if base in service_accounts:
            out.excluded[user] = f"service account ({len(mine)} events)"
            continue
        out.people += mine
        own = [e for e in mine if _own(e)]
        if not own:
            pinned = f"{len(mine)} outcomes pinned on it"
            out.not_segmented[user] = f"attributed only: {pinned}, no action of its own"
        elif len(own) < MIN_OWN_ACTIONS or not any(goal_of(e) for e in own):
            out.not_segmented[user] = (
                f"too little activity: {len(own)} actions of its own (a segment needs {MIN_OWN_ACTIONS} "
                "and one goal attempted)"
            )
    out.people.sort(key=lambda e: e.at)
    return out
