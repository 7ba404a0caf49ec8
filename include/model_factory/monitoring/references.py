"""Seasonal references for input drift: which past data a day is compared with.

``drift.reference`` in the spec:

* ``training``: the champion's training baseline (today's behaviour);
* ``rolling``: the ``window_days`` days before the checked day;
* ``same_weekday``: the same weekday in the ``weeks`` weeks before (a weekly pattern);
* ``same_period_last_year``: the days within ``± half_width_days`` of the date 364 days before
  (52 weeks: the same weekday), for yearly peaks such as holidays.

``reference_days`` names the days; the caller profiles their batches (``build_baseline``) and runs
the usual ``check_drift``. Too little history is no reference (None with the reason), never a
silent fallback to training.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

REFERENCES = ("training", "rolling", "same_weekday", "same_period_last_year")


@dataclass(frozen=True)
class ReferenceChoice:
    kind: str
    days: tuple[date, ...]  # empty for training
    reason: str


def reference_days(
    kind: str,
    day: date,
    available: set[date] | list[date],
    *,
    window_days: int = 28,
    weeks: int = 4,
    half_width_days: int = 3,
    min_days: int = 2,
) -> ReferenceChoice | None:
    """The past days ``day`` is compared with under ``kind``; None when history is too short."""
    if kind not in REFERENCES:
        raise ValueError(f"drift.reference must be one of {list(REFERENCES)}, got {kind!r}")
    if kind == "training":
        return ReferenceChoice(kind, (), "the champion's training baseline")
    have = set(available)
    if kind == "rolling":
        wanted = [day - timedelta(days=k) for k in range(1, window_days + 1)]
        what = f"the {window_days} days before {day}"
    elif kind == "same_weekday":
        wanted = [day - timedelta(weeks=k) for k in range(1, weeks + 1)]
        what = f"the same weekday ({day:%A}) in the {weeks} weeks before {day}"
    else:
        centre = day - timedelta(days=364)
        wanted = [centre + timedelta(days=k) for k in range(-half_width_days, half_width_days + 1)]
        what = f"{centre} ± {half_width_days} days (52 weeks before {day})"
    days = tuple(sorted(d for d in wanted if d in have))
    if len(days) < min_days:
        return None
    return ReferenceChoice(kind, days, f"{what}: {len(days)} of {len(wanted)} days present")


def no_reference_reason(kind: str, day: date, min_days: int = 2) -> str:
    return (
        f"drift.reference {kind!r}: fewer than {min_days} reference days before {day} are stored; "
        "no decision until the history is there"
    )
