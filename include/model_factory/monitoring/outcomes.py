"""True outcomes joined by id with what the model predicted, by stated rules, every row counted.

Inputs are plain frames, wherever they came from (the gateway's prediction log and feedback, batch
scoring's predictions, an outcomes file from another system):

* predictions: ``id``, ``version``, ``predicted_at`` (naive UTC), ``prediction`` and ``score``
  (P(positive class) for a binary classifier, the value for a regressor; may be absent);
* outcomes: ``id``, ``outcome``, ``event_time`` (when it happened) and optionally ``arrived_at``
  (when the factory learnt it; defaults to ``event_time``).

The rules (``join_outcomes``), each with its count in ``JoinCounts``; no row disappears uncounted:

* **clock-skewed prediction**: ``predicted_at`` after ``as_of`` (the check's time): excluded.
* **repeated prediction** (same id predicted twice): the latest one before the outcome's event
  counts (that is what the user acted on); the earlier ones are counted, not joined.
* **unknown id**: an outcome whose id was never predicted: set aside, counted.
* **invalid outcome**: not a number for a regressor, a class the model does not know, or no
  readable event time: excluded.
* **duplicate**: the same id with the same outcome again: kept once.
* **conflicting**: the same id with different outcomes: no truth for that id, all excluded.
* **before prediction**: an outcome whose event precedes its prediction (a wrong id or a skewed
  clock): excluded.
* **late**: arrived more than ``max_delay_days`` after its prediction: used (truth is truth) and
  counted; the days it belongs to are recomputed by the next check.
* **out of order**: arrived in an order other than their event times: used, counted (the join does
  not depend on arrival order).
* **pending / expired**: a prediction without an outcome is *pending* while younger than
  ``max_delay_days`` and *expired* (never labelled) after: label coverage counts only matured ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

PREDICTION_COLUMNS = ("id", "version", "predicted_at", "prediction")
OUTCOME_COLUMNS = ("id", "outcome", "event_time")


class OutcomeInputError(ValueError):
    """The predictions or outcomes cannot be joined (a column is missing); the message says which."""


@dataclass(frozen=True)
class JoinCounts:
    predictions: int
    outcomes: int
    matched: int
    clock_skewed: int
    repeated_predictions: int
    unknown_id: int
    invalid: int
    duplicate: int
    conflicting: int
    before_prediction: int
    late: int
    out_of_order: int
    pending: int
    expired: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class OutcomeJoin:
    """``joined``: one row per matched prediction (its columns plus outcome, event_time,
    arrived_at, delay_days); ``matured``: predictions old enough to have an outcome (for coverage)."""

    joined: pd.DataFrame
    counts: JoinCounts
    matured_predictions: int

    @property
    def label_coverage(self) -> float | None:
        """Share of matured predictions that got an outcome (None: none matured yet)."""
        if not self.matured_predictions:
            return None
        matured_matched = int((~self.joined["young"]).sum()) if len(self.joined) else 0
        return matured_matched / self.matured_predictions

    @property
    def median_delay_days(self) -> float | None:
        return float(self.joined["delay_days"].median()) if len(self.joined) else None


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise OutcomeInputError(f"the {what} lack column(s) {missing}; they have {list(frame.columns)}")


NAT = np.iinfo(np.int64).min  # NaT as int64 nanoseconds: below every real time
LAST = np.iinfo(np.int64).max  # where a NaT must sort last (as pandas sorts it)
NS_PER_DAY = 86_400 * 10**9


def nanoseconds(times: pd.Series) -> np.ndarray:
    """Datetimes as int64 nanoseconds since the epoch (NaT: ``NAT``), for array arithmetic."""
    return np.asarray(times.to_numpy(dtype="datetime64[ns]")).view(np.int64)


def rows_by_version_and_day(version_code: np.ndarray, day: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """Row indices per (version code, day) in (version, day) order, each group's rows in their
    order: a frame group-by's groups, without the frame (code -1: no version, left out)."""
    rows = np.flatnonzero(version_code >= 0)
    if not len(rows):
        return {}
    first_day = int(day[rows].min())
    days = int(day[rows].max()) - first_day + 1
    group = version_code[rows].astype(np.int64) * days + day[rows] - first_day
    # Few groups: a 16-bit stable sort is numpy's radix sort, linear in the rows.
    order = np.argsort(group.astype(np.uint16) if group.max() < 2**16 else group, kind="stable")
    starts = np.flatnonzero(np.diff(group[order], prepend=-1))
    return {
        (int(version_code[rows[order[a]]]), int(day[rows[order[a]]])): rows[order[a:b]]
        for a, b in zip(starts, [*starts[1:], len(order)], strict=True)
    }


def _valid_outcomes(outcome: pd.Series, classes: list[Any] | None) -> tuple[pd.Series, np.ndarray]:
    """(outcomes in the model's type, valid mask): numbers for a regressor, known classes otherwise.

    A class is matched by its text (``"1"`` is class ``1``). Typed columns are matched by their
    distinct values (a handful), not row by row; an ``object`` column (mixed types, where ``1`` and
    ``1.0`` hash alike but read differently) is matched row by row."""
    if classes is None:
        values = pd.to_numeric(outcome, errors="coerce")
        return values, np.isfinite(values.to_numpy(dtype="float64", na_value=np.nan))
    by_text = {str(c): c for c in classes}
    if outcome.dtype == object:
        text = outcome.astype("str")
        return text.map(by_text), text.isin(by_text).to_numpy()
    codes, uniques = pd.factorize(outcome, use_na_sentinel=False)
    text = pd.Series(uniques, dtype=outcome.dtype).astype("str")
    mapped = text.map(by_text)
    values = pd.Series(mapped.to_numpy()[codes], index=outcome.index, dtype=mapped.dtype)
    return values, text.isin(by_text).to_numpy()[codes]


def _out_of_order(event_time: np.ndarray, arrival_order: np.ndarray) -> int:
    """How many outcomes arrived after one whose event is later than their own (a NaT event is
    never out of order, nor is the outcome right after it: pandas' cummax skips it)."""
    in_arrival = event_time[arrival_order]
    known_event = in_arrival != NAT
    latest_before = np.full(len(in_arrival), NAT)
    latest_before[1:] = np.maximum.accumulate(in_arrival)[:-1]
    after_known = np.zeros(len(in_arrival), dtype=bool)
    after_known[1:] = known_event[:-1]
    return int(np.sum(known_event & after_known & (in_arrival < latest_before)))


def _first_arrivals(rows: np.ndarray, out_key: np.ndarray, values: pd.Series, n_keys: int) -> np.ndarray:
    """``rows`` (outcome rows in arrival order) without the duplicates: each (id, outcome) pair
    kept at its first arrival."""
    first = np.ones(len(rows), dtype=bool)  # first arrival of its (id, outcome)
    again = np.flatnonzero(np.bincount(out_key[rows], minlength=n_keys)[out_key[rows]] > 1)
    if len(again):  # only ids with several outcomes need the pairs (usually few or none)
        code, distinct_values = pd.factorize(values.iloc[rows[again]].to_numpy())
        pair = out_key[rows[again]].astype(np.int64) * len(distinct_values) + code
        first[again] = False
        first[again[np.unique(pair, return_index=True)[1]]] = True
    return rows[first]


def _judged_predictions(
    keys: np.ndarray,
    events: np.ndarray,
    pred_keys: np.ndarray,
    pred_times: np.ndarray,
    pred_rows: np.ndarray,
    n_keys: int,
) -> np.ndarray:
    """The prediction row each outcome (its id's key, at most one outcome per key, and its event
    time) judges, -1 for none: the latest one for its id made at or before the event (equal times:
    the later row, as a stable sort by time and "keep last" would choose)."""
    event_of_key = np.full(n_keys, NAT)
    event_of_key[keys] = events
    judged = event_of_key[pred_keys]
    eligible = (judged != NAT) & (pred_times != NAT) & (pred_times <= judged)
    latest = np.full(n_keys, NAT)
    np.maximum.at(latest, pred_keys[eligible], pred_times[eligible])
    top = eligible & (pred_times == latest[pred_keys])
    chosen = np.full(n_keys, -1)
    np.maximum.at(chosen, pred_keys[top], pred_rows[top])
    return chosen[keys]


def join_outcomes(
    predictions: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    max_delay_days: float,
    classes: list[Any] | None = None,
) -> OutcomeJoin:
    """Join outcomes with predictions by id under the module's rules (``classes``: a classifier's).

    One pass over integer arrays: ids are hashed once into keys (0..n_keys), times are int64
    nanoseconds, and every per-id question (has a prediction? its outcome's event? its latest
    prediction?) is an array indexed by key; no merge, sort or group-by of frames.

    Over 80 lines on purpose: each rule reads the per-key arrays (keys, prediction times, kept
    rows) that the rules before it built; split further, every step would pass half a dozen of them.
    """
    _require(predictions, PREDICTION_COLUMNS, "predictions")
    _require(outcomes, OUTCOME_COLUMNS, "outcomes")
    as_of = pd.Timestamp(as_of)
    cutoff = (as_of - pd.Timedelta(days=max_delay_days)).value
    pred_ids = predictions["id"].astype("str")
    out_ids = outcomes["id"].astype("str")
    keys, uniques = pd.factorize(pd.concat([pred_ids, out_ids], ignore_index=True))
    n_keys = len(uniques) + 1
    keys[keys < 0] = n_keys - 1  # a missing id is one key of its own, as the frame join matched it
    pred_key, out_key = keys[: len(predictions)], keys[len(predictions) :]
    predicted_at = pd.to_datetime(predictions["predicted_at"])
    pred_time = nanoseconds(predicted_at)
    skewed = pred_time > as_of.value
    kept = np.flatnonzero(~skewed)  # predictions' rows in play, in their order
    pk, pt = pred_key[kept], pred_time[kept]
    has_prediction = np.zeros(n_keys, dtype=bool)
    has_prediction[pk] = True

    event = pd.to_datetime(outcomes["event_time"], errors="coerce")
    arrived = pd.to_datetime(outcomes["arrived_at"]) if "arrived_at" in outcomes else event
    event_time = nanoseconds(event)
    arrival_order_key = nanoseconds(arrived)
    arrival_order_key = np.where(arrival_order_key == NAT, LAST, arrival_order_key)
    arrival_order = np.argsort(arrival_order_key, kind="stable")
    out_of_order = _out_of_order(event_time, arrival_order)
    values, valid = _valid_outcomes(outcomes["outcome"], classes)
    valid = valid & (event_time != NAT)  # an unparseable event time is invalid too
    invalid = int((~valid).sum())
    known = has_prediction[out_key]
    unknown = int((valid & ~known).sum())
    # Duplicates (same outcome again) keep the first arrival; conflicting ids lose all theirs.
    rows = arrival_order[(valid & known)[arrival_order]]
    distinct = _first_arrivals(rows, out_key, values, n_keys)
    duplicate = len(rows) - len(distinct)
    outcomes_per_id = np.bincount(out_key[distinct], minlength=n_keys)
    conflicting = int((outcomes_per_id[out_key[rows]] > 1).sum())
    single = distinct[outcomes_per_id[out_key[distinct]] == 1]  # at most one outcome per key now

    pred_row = _judged_predictions(out_key[single], event_time[single], pk, pt, kept, n_keys)
    out_rows, pred_rows = single[pred_row >= 0], pred_row[pred_row >= 0]
    before = int(len(single) - len(out_rows))

    left = outcomes.assign(id=out_ids, outcome=values, event_time=event, arrived_at=arrived)
    right = predictions.drop(columns=["id"]).assign(predicted_at=predicted_at)
    right = right.rename(columns={c: f"{c}_pred" for c in right.columns if c in left.columns})
    joined = pd.concat(
        [left.take(out_rows).reset_index(drop=True), right.take(pred_rows).reset_index(drop=True)], axis=1
    )
    joined["delay_days"] = (joined["arrived_at"] - joined["predicted_at"]) / pd.Timedelta(days=1)
    late = int((joined["delay_days"] > max_delay_days).sum())
    joined["young"] = joined["predicted_at"] > as_of - pd.Timedelta(days=max_delay_days)

    # Each id's latest prediction (a NaT time counts as latest, as pandas sorts it last).
    last_time = np.full(n_keys, NAT)
    np.maximum.at(last_time, pk, np.where(pt == NAT, LAST, pt))
    labelled = np.zeros(n_keys, dtype=bool)
    labelled[out_key[out_rows]] = True
    last_known = last_time[has_prediction]
    unlabelled = last_time[has_prediction & ~labelled]
    young = (unlabelled != LAST) & (unlabelled > cutoff)
    counts = JoinCounts(
        predictions=len(predictions),
        outcomes=len(outcomes),
        matched=len(joined),
        clock_skewed=int(skewed.sum()),
        repeated_predictions=int(len(kept) - len(last_known)),
        unknown_id=unknown,
        invalid=invalid,
        duplicate=duplicate,
        conflicting=conflicting,
        before_prediction=before,
        late=late,
        out_of_order=out_of_order,
        pending=int(young.sum()),
        expired=int(len(unlabelled) - young.sum()),
    )
    matured = int(((last_known != LAST) & (last_known <= cutoff)).sum())
    return OutcomeJoin(joined=joined, counts=counts, matured_predictions=matured)
