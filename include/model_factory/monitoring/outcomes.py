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


def _valid_outcomes(outcome: pd.Series, classes: list[Any] | None) -> tuple[pd.Series, np.ndarray]:
    """(outcomes in the model's type, valid mask): numbers for a regressor, known classes otherwise."""
    if classes is None:
        values = pd.to_numeric(outcome, errors="coerce")
        return values, np.isfinite(values.to_numpy(dtype="float64", na_value=np.nan))
    by_text = {str(c): c for c in classes}
    text = outcome.astype("str")
    return text.map(by_text), text.isin(by_text).to_numpy()


def join_outcomes(
    predictions: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    max_delay_days: float,
    classes: list[Any] | None = None,
) -> OutcomeJoin:
    """Join outcomes with predictions by id under the module's rules (``classes``: a classifier's)."""
    _require(predictions, PREDICTION_COLUMNS, "predictions")
    _require(outcomes, OUTCOME_COLUMNS, "outcomes")
    as_of = pd.Timestamp(as_of)
    max_delay = pd.Timedelta(days=max_delay_days)
    preds = predictions.copy()
    preds["id"] = preds["id"].astype("str")
    preds["predicted_at"] = pd.to_datetime(preds["predicted_at"])
    skewed = preds["predicted_at"] > as_of
    preds = preds[~skewed]

    outs = outcomes.copy()
    outs["id"] = outs["id"].astype("str")
    outs["event_time"] = pd.to_datetime(outs["event_time"], errors="coerce")
    outs["arrived_at"] = pd.to_datetime(outs["arrived_at"]) if "arrived_at" in outs else outs["event_time"]
    n_outcomes = len(outs)
    # Out of order: an outcome that arrived after one whose event is later than its own.
    by_arrival = outs.sort_values(["arrived_at"], kind="stable")["event_time"]
    out_of_order = int((by_arrival < by_arrival.cummax().shift()).sum())  # NaT compares False
    values, valid = _valid_outcomes(outs["outcome"], classes)
    valid = valid & outs["event_time"].notna().to_numpy()  # an unparseable event time is invalid too
    outs["outcome"] = values
    invalid = int((~valid).sum())
    outs = outs[valid]
    known = outs["id"].isin(set(preds["id"]))
    unknown = int((~known).sum())
    outs = outs[known]
    # Duplicates (same outcome again) keep the first arrival; conflicting ids lose all theirs.
    outs = outs.sort_values("arrived_at", kind="stable")
    distinct = outs.drop_duplicates(["id", "outcome"])
    duplicate = len(outs) - len(distinct)
    per_id = distinct.groupby("id")["outcome"].transform("size")
    conflicting = int(outs["id"].isin(distinct.loc[per_id > 1, "id"]).sum())
    outs = distinct[per_id == 1]

    # The prediction an outcome judges: the latest one for its id made at or before the event.
    preds = preds.sort_values("predicted_at", kind="stable")
    merged = outs.merge(preds, on="id", how="left", suffixes=("", "_pred"))
    eligible = merged[merged["predicted_at"] <= merged["event_time"]]
    chosen = eligible.drop_duplicates("id", keep="last")
    before = int(len(outs) - chosen["id"].nunique())
    joined = chosen.reset_index(drop=True)
    joined["delay_days"] = (joined["arrived_at"] - joined["predicted_at"]) / pd.Timedelta(days=1)
    late = int((joined["delay_days"] > max_delay_days).sum())
    joined["young"] = joined["predicted_at"] > as_of - max_delay

    last_pred = preds.drop_duplicates("id", keep="last")
    repeated = len(preds) - len(last_pred)
    unlabelled = last_pred[~last_pred["id"].isin(set(joined["id"]))]
    young = unlabelled["predicted_at"] > as_of - max_delay
    matured = int((last_pred["predicted_at"] <= as_of - max_delay).sum())
    counts = JoinCounts(
        predictions=len(predictions),
        outcomes=n_outcomes,
        matched=len(joined),
        clock_skewed=int(skewed.sum()),
        repeated_predictions=repeated,
        unknown_id=unknown,
        invalid=invalid,
        duplicate=duplicate,
        conflicting=conflicting,
        before_prediction=before,
        late=late,
        out_of_order=out_of_order,
        pending=int(young.sum()),
        expired=int((~young).sum()),
    )
    return OutcomeJoin(joined=joined, counts=counts, matured_predictions=matured)
