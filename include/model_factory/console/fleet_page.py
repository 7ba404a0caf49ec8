"""The fleet page's filters and pages over the rows ``rollout.fleet.fleet`` returns.

Plain functions on dict rows, testable without a server: a filter that is malformed gets a
``BadFilterError`` naming the parameter and what it accepts, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from model_factory.settings import FactorySettings

PER_PAGE, MAX_PER_PAGE = 50, 500
STATES = ("ok", "broken", "canary", "held", "no champion", "paused", "drift", "quarantined")
FAILED_RUN_STATES = ("failed", "upstream_failed")


class BadFilterError(ValueError):
    """A fleet filter that cannot be applied; the message names the parameter."""


@dataclass
class FleetFilter:
    """What the user asked for (query parameters of ``/`` and ``/api/fleet``)."""

    owner: str = ""
    template: str = ""
    state: str = ""
    attention: bool = False
    text: str = ""
    page: int = 1
    per_page: int = PER_PAGE

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> FleetFilter:
        state = query.get("state", "").strip()
        if state and state not in STATES:
            raise BadFilterError(f"state={state!r}: use one of {', '.join(STATES)}")
        attention = query.get("attention", "").strip().lower()
        if attention not in ("", "0", "1", "true", "false", "yes", "no", "on"):
            raise BadFilterError(f"attention={attention!r}: use 1 or 0")
        return cls(
            owner=query.get("owner", "").strip(),
            template=query.get("template", "").strip(),
            state=state,
            attention=attention in ("1", "true", "yes", "on"),
            text=query.get("q", "").strip(),
            page=_positive(query, "page", 1, None),
            per_page=_positive(query, "per_page", PER_PAGE, MAX_PER_PAGE),
        )

    def query(self, **changes: Any) -> dict[str, str]:
        """The query parameters that reproduce this filter (with ``changes``), defaults left out."""
        values = {
            "owner": self.owner,
            "template": self.template,
            "state": self.state,
            "attention": "1" if self.attention else "",
            "q": self.text,
            "page": str(self.page) if self.page != 1 else "",
            "per_page": str(self.per_page) if self.per_page != PER_PAGE else "",
        }
        values.update({k: str(v) for k, v in changes.items()})
        return {k: v for k, v in values.items() if v and not (k == "page" and v == "1")}


def _positive(query: Mapping[str, str], name: str, default: int, largest: int | None) -> int:
    text = query.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        upto = f" to {largest}" if largest else ""
        raise BadFilterError(f"{name}={text!r}: a whole number from 1{upto}")
    return min(int(text), largest) if largest else int(text)


def attention_reasons(row: dict) -> list[str]:
    """Why a model needs someone to look at it (empty: it does not)."""
    if row.get("status") == "broken":
        return ["broken spec"]
    reasons = []
    if not row.get("champion") and row.get("versions"):
        reasons.append("no champion")
    check = row.get("last_drift_check") or {}
    if check and check.get("status") != "ok":
        reasons.append(f"drift check {check.get('status')}")
    if row.get("quarantined"):
        reasons.append(f"{row['quarantined']} quarantined")
    if row.get("held"):
        reasons.append("held for review")
    outcome = str((row.get("last_training") or {}).get("outcome") or "")
    if outcome in FAILED_RUN_STATES:
        reasons.append(f"last training {outcome}")
    if row.get("checklist") == "failed":
        reasons.append("checklist failed")
    if row.get("paused"):
        reasons.append("retrain paused")
    return reasons


def _states(row: dict) -> set[str]:
    if row.get("status") == "broken":
        return {"broken"}
    states = {"ok"}
    states |= {"canary"} if row.get("canary") else set()
    states |= {"held"} if row.get("held") else set()
    states |= {"no champion"} if not row.get("champion") else set()
    states |= {"paused"} if row.get("paused") else set()
    check = row.get("last_drift_check") or {}
    states |= {"drift"} if check and check.get("status") != "ok" else set()
    states |= {"quarantined"} if row.get("quarantined") else set()
    return states


@dataclass
class FleetPage:
    """One page of the filtered fleet, with what the filter form offers."""

    rows: list[dict]
    matched: int
    total: int
    page: int
    pages: int
    owners: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    attention_total: int | None = 0
    """None when the page was read without every model's sources (see ``read_page``)."""


def select(rows: list[dict], wanted: FleetFilter) -> FleetPage:
    """The rows ``wanted`` keeps, one page of them, each marked with its ``attention`` reasons."""
    for row in rows:
        row["attention"] = attention_reasons(row)
    text = wanted.text.lower()
    kept = [
        row
        for row in rows
        if (not wanted.owner or row.get("owner") == wanted.owner)
        and (not wanted.template or row.get("template") == wanted.template)
        and (not wanted.state or wanted.state in _states(row))
        and (not wanted.attention or row["attention"])
        and (not text or text in str(row.get("model", "")).lower())
    ]
    pages = max(1, -(-len(kept) // wanted.per_page))
    page = min(wanted.page, pages)
    start = (page - 1) * wanted.per_page
    return FleetPage(
        rows=kept[start : start + wanted.per_page],
        matched=len(kept),
        total=len(rows),
        page=page,
        pages=pages,
        owners=sorted({str(r["owner"]) for r in rows if r.get("owner")}),
        templates=sorted({str(r["template"]) for r in rows if r.get("template")}),
        attention_total=sum(1 for r in rows if r["attention"]),
    )


def read_page(
    settings: FactorySettings,
    airflow: Any,
    wanted: FleetFilter,
    all_rows: bool = False,
    readable: Callable[[str], bool] | None = None,
) -> tuple[dict, FleetPage]:
    """The fleet summary and the page ``wanted`` asks for (``status`` and the view).

    Filters on what a spec says (owner, template, name) are applied to the spec index
    (``io.fleet_index``) and only the page's models are read from MLflow, the store, the
    prediction DB and Airflow: at 10,000 models a page costs its 50 rows, not the fleet. A state
    or attention filter needs every model's sources, so it reads the whole fleet (and only then is
    ``attention_total`` known). ``readable``: the models this user may see."""
    # imported here: the CLI imports this module at start, and the fleet read pulls MLflow in
    from model_factory.rollout.fleet import broken_row, fleet, fleet_specs

    if wanted.state or wanted.attention:
        summary = fleet(settings, airflow)
        if readable is not None:
            summary["models"] = [row for row in summary["models"] if readable(row["model"])]
        if all_rows:
            wanted = replace(wanted, page=1, per_page=max(len(summary["models"]), 1))
        return summary, select(summary["models"], wanted)
    good, bad = fleet_specs(settings)
    light = [{"model": s.model, "status": "ok", "owner": s.owner, "template": s.template} for s in good]
    light += [broken_row(error.path, error.problems) for error in bad]
    if readable is not None:
        light = [row for row in light if readable(row["model"])]
    light.sort(key=lambda row: row["model"])
    if all_rows:
        wanted = replace(wanted, page=1, per_page=max(len(light), 1))
    shown = select(light, wanted)
    summary = fleet(settings, airflow, only=[row["model"] for row in shown.rows])
    for row in summary["models"]:
        row["attention"] = attention_reasons(row)
    shown.rows = summary["models"]
    shown.attention_total = None
    return summary, shown
