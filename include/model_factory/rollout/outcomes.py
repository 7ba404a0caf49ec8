"""Live outcomes per arm: one SQL query over the gateway's prediction log.

:func:`arm_outcomes` joins the predictions of one model since a moment with the feedback that
labelled them and the gateway's logged load failures, and returns per arm (``champion``,
``canary``) the requests, errors, latencies and labelled outcomes the analysis judges.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from model_factory.serving import predlog

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


@dataclass
class ArmData:
    """One arm's live data since the canary started.

    ``scores``/``predictions``/``outcomes`` are aligned and hold only labelled predictions;
    ``score`` is P(positive class) for binary classification, the predicted value for regression.
    """

    arm: str
    versions: list[str] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    latencies_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    predictions: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    outcomes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    load_errors: list[str] = field(default_factory=list)
    probabilities: list[dict[str, float]] = field(default_factory=list)
    """Per labelled row, the class probabilities the arm served (classification; {} if none)."""
    invalid_outcomes: int = 0
    """Feedback rows that could not be read as an outcome (left out of every metric)."""

    @property
    def labelled(self) -> int:
        return len(self.outcomes)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p95_latency_ms(self) -> float | None:
        return float(np.percentile(self.latencies_ms, 95)) if len(self.latencies_ms) else None


def _naive_utc(moment: datetime | str) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def arm_outcomes(
    db: str | Engine,
    model: str,
    since: datetime | str,
    *,
    until: datetime | str | None = None,
    versions: dict[str, str] | None = None,
) -> dict[str, ArmData]:
    """Per arm (``champion``, ``canary``): requests, errors, latencies and labelled outcomes.

    ``since`` is the canary's ``started_at`` (ISO string or datetime; naive means UTC).
    ``versions`` ({"canary": "3", ...}) keeps only that arm's rows of that version, so rows of an
    earlier canary never count. Canary load failures logged by the gateway since ``since``
    come back in ``load_errors``.
    """
    engine = predlog.engine_for(db)
    predlog.ensure_schema(engine)
    p, f, d = predlog.PREDICTIONS, predlog.FEEDBACK, predlog.DECISIONS
    start = _naive_utc(since)
    where = [p.c.model == model, p.c.created_at >= start]
    if until is not None:
        where.append(p.c.created_at < _naive_utc(until))
    query = (
        sa.select(p.c.arm, p.c.version, p.c.status, p.c.latency_ms, p.c.prediction, p.c.score, f.c.outcome)
        .select_from(p.outerjoin(f, f.c.request_id == p.c.request_id))
        .where(*where)
        .order_by(p.c.id)
    )
    arms = {arm: ArmData(arm) for arm in ("champion", "canary")}
    rows: dict[str, dict[str, list]] = {
        arm: {"lat": [], "score": [], "pred": [], "out": [], "proba": []} for arm in arms
    }
    versions = versions or {}
    with engine.connect() as conn:
        for arm, version, status, latency, prediction, score, outcome in conn.execute(query):
            if arm not in arms or (arm in versions and str(version) != str(versions[arm])):
                continue
            data, acc = arms[arm], rows[arm]
            if version not in data.versions:
                data.versions.append(version)
            data.requests += 1
            if status != "ok":
                data.errors += 1
                continue
            acc["lat"].append(latency)
            if outcome is not None:
                try:
                    truth = json.loads(outcome)
                    served = json.loads(prediction) if prediction else {}
                except ValueError:
                    truth, served = None, {}
                if not isinstance(truth, str | int | float) or not isinstance(served, dict):
                    data.invalid_outcomes += 1
                    continue
                acc["score"].append(np.nan if score is None else score)
                acc["pred"].append(_scalar(served.get("label", score)))
                acc["out"].append(_scalar(truth))
                probabilities = served.get("probabilities")
                acc["proba"].append(probabilities if isinstance(probabilities, dict) else {})
        failures = sa.select(d.c.version, d.c.reason).where(
            d.c.model == model, d.c.action == "load_failed", d.c.at >= start
        )
        for version, reason in conn.execute(failures):
            if version == versions.get("canary", version):
                arms["canary"].load_errors.append(f"v{version}: {reason}")
    for arm, data in arms.items():
        acc = rows[arm]
        data.latencies_ms = np.asarray(acc["lat"], dtype=float)
        data.scores = np.asarray(acc["score"], dtype=float)
        data.predictions = _array(acc["pred"])
        data.outcomes = _array(acc["out"])
        data.probabilities = acc["proba"]
    return arms


@dataclass(frozen=True)
class LabelledCounts:
    """Labelled outcomes of the served (``ok``) predictions per arm: since the canary started, and
    the canary's since its current stage began. A count, not the analysis: it also counts feedback
    :func:`arm_outcomes` cannot read as an outcome, so it can only say when judging is worth it."""

    champion: int
    canary: int
    canary_in_stage: int

    def enough(self, min_samples: int) -> bool:
        """Could a stage needing ``min_samples`` per arm be judged on these counts?"""
        return min(self.champion, self.canary, self.canary_in_stage) >= min_samples

    def seconds_to(self, min_samples: int, since_s: float, stage_s: float) -> float:
        """Seconds until every count reaches ``min_samples`` at its rate so far (the arms' counts
        over the ``since_s`` seconds since the canary started, the stage's over ``stage_s``);
        infinite when a short count has no rate yet."""

        def eta(count: int, elapsed_s: float) -> float:
            if count >= min_samples:
                return 0.0
            if count <= 0 or elapsed_s <= 0:
                return math.inf
            return (min_samples - count) * elapsed_s / count

        return max(eta(self.champion, since_s), eta(self.canary, since_s), eta(self.canary_in_stage, stage_s))


def labelled_counts(
    db: str | Engine,
    model: str,
    since: datetime | str,
    stage_since: datetime | str,
    versions: dict[str, str],
) -> LabelledCounts:
    """One ``COUNT`` over the prediction log (what a canary stage's trigger polls every second or
    so): the labelled outcomes :func:`arm_outcomes` would read for the ``versions`` of each arm
    since ``since``, and the canary's since ``stage_since``."""
    engine = predlog.engine_for(db)
    predlog.ensure_schema(engine)
    p, f = predlog.PREDICTIONS, predlog.FEEDBACK
    in_stage = sa.case((p.c.created_at >= _naive_utc(stage_since), 1), else_=0)
    arms = [
        sa.and_(p.c.arm == arm, p.c.version == str(versions.get(arm, ""))) for arm in ("champion", "canary")
    ]
    query = (
        sa.select(p.c.arm, sa.func.count(), sa.func.sum(in_stage))
        .select_from(p.join(f, f.c.request_id == p.c.request_id))
        .where(p.c.model == model, p.c.created_at >= _naive_utc(since), p.c.status == "ok", sa.or_(*arms))
        .group_by(p.c.arm)
    )
    with engine.connect() as conn:
        counts = {arm: (int(total), int(staged or 0)) for arm, total, staged in conn.execute(query)}
    champion, canary = counts.get("champion", (0, 0)), counts.get("canary", (0, 0))
    return LabelledCounts(champion=champion[0], canary=canary[0], canary_in_stage=canary[1])


def _scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else value


def class_key(value: Any) -> str:
    """How a class is named in a served prediction's ``probabilities`` (``str(class)``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def probability_matrix(arm: ArmData) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(class names, n x k served probabilities, n true class names) of an arm's labelled rows;
    rows without probabilities are left out."""
    keep = [i for i, p in enumerate(arm.probabilities) if p]
    classes = sorted({k for i in keep for k in arm.probabilities[i]})
    rows = [[float(arm.probabilities[i].get(c, 0.0)) for c in classes] for i in keep]
    matrix = np.asarray(rows, dtype=float)
    truth = np.asarray([class_key(arm.outcomes[i]) for i in keep], dtype=object)
    return classes, matrix.reshape(len(keep), len(classes)), truth


def _array(values: list) -> np.ndarray:
    if all(isinstance(v, float) for v in values):
        return np.asarray(values, dtype=float)
    return np.asarray([str(v) for v in values], dtype=object)
