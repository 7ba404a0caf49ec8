"""Evaluate: candidate vs current champion on the same holdout, then the gates decide.

Like TFX's evaluator, the output is an explicit blessing: ``blessed``, ``rejected`` or
``held_for_review`` with the reason, written to the run as an artifact and tags. Only
``blessed`` versions may get a serving alias (see ``registry``).

Over 500 lines on purpose: scoring on the holdout, the paired interval and the gates are one
decision and share its data.
"""

from __future__ import annotations

import contextlib
import functools
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pandas as pd
from model_factory.contracts import TrainedModel
from model_factory.io import attestation, storage, tag_schema, tracking
from model_factory.io.batches import parse_batch
from model_factory.pipeline.delong import difference_se as _delong_standard_error
from model_factory.pipeline.features import prepare_features, target_values
from model_factory.settings import FactorySettings
from model_factory.spec import METRICS, GatesSpec, ModelSpec

# "undecided": too little evidence to judge (fewer rows than gates.min_holdout_rows, even by
# cross-validation): registered, no alias, not rejected; a later run with more rows decides.
Status = Literal["blessed", "rejected", "held_for_review", "undecided"]


@dataclass(frozen=True)
class Decision:
    status: Status
    reason: str
    metric: str
    candidate: float
    champion: float | None = None
    champion_version: str | None = None
    relative_change: float | None = None
    baseline: float | None = None
    evidence: str | None = None


@dataclass(frozen=True)
class Predictions:
    """One model's output on a holdout: what every metric, slice and plot is computed from."""

    task: str
    y: np.ndarray
    pred: np.ndarray
    proba: np.ndarray | None = None
    classes: tuple = ()

    @property
    def probabilities(self) -> np.ndarray:
        """The class probabilities (a classifier's); a regression's predictions have none."""
        if self.proba is None:
            raise ValueError(f"{self.task} predictions have no class probabilities")
        return self.proba

    def take(self, idx: np.ndarray) -> Predictions:
        proba = None if self.proba is None else self.proba[idx]
        return Predictions(self.task, self.y[idx], self.pred[idx], proba, self.classes)


def predict_holdout(model: Any, holdout: pd.DataFrame, spec: ModelSpec) -> Predictions:
    X, y = prepare_features(holdout, spec), target_values(holdout, spec).to_numpy()
    if spec.task == "regression":
        return Predictions("regression", y, np.asarray(model.predict(X), dtype=float))
    proba = np.asarray(model.predict_proba(X))
    classes = tuple(model.classes_)
    return Predictions("classification", y, np.asarray(classes)[proba.argmax(axis=1)], proba, classes)


def metric_value(metric: str, p: Predictions) -> float:
    """One metric from predictions; NaN when it cannot be computed (one class in y)."""
    from sklearn import metrics

    if metric == "rmse":
        return float(np.sqrt(metrics.mean_squared_error(p.y, p.pred)))
    if metric == "mae":
        return float(metrics.mean_absolute_error(p.y, p.pred))
    if metric == "r2":
        return float(metrics.r2_score(p.y, p.pred)) if len(p.y) > 1 else float("nan")
    binary = len(p.classes) == 2
    if metric == "accuracy":
        return float(metrics.accuracy_score(p.y, p.pred))
    if metric == "f1":
        return float(
            metrics.f1_score(
                p.y,
                p.pred,
                average="binary" if binary else "macro",
                pos_label=p.classes[-1] if binary else 1,
                zero_division=0,
            )
        )
    if metric == "log_loss":
        if set(np.unique(p.y)) - set(p.classes):  # a class this model never saw: undefined
            return float("nan")
        return float(metrics.log_loss(p.y, p.probabilities, labels=list(p.classes)))
    if len(np.unique(p.y)) < 2:
        return float("nan")
    if binary:
        return float(metrics.roc_auc_score(p.y, p.probabilities[:, 1]))
    # One-vs-rest, macro over the classes where it is defined (present in y, and not all of y):
    # sklearn's multi_class="ovr" answers NaN as soon as one class is missing from the holdout.
    aucs = [
        metrics.roc_auc_score(p.y == c, p.probabilities[:, i])
        for i, c in enumerate(p.classes)
        if 0 < int((p.y == c).sum()) < len(p.y)
    ]
    return float(np.mean(aucs)) if aucs else float("nan")


def dummy_predictions(
    y: np.ndarray, task: str, classes: tuple, prior_from: np.ndarray | None = None
) -> Predictions:
    """What a model that ignores the features answers: the class shares (most frequent class)
    or the mean, learnt from ``prior_from`` (default: ``y`` itself, which flatters the dummy)."""
    source = y if prior_from is None else prior_from
    if task == "regression":
        return Predictions("regression", y, np.full(len(y), float(np.mean(source))))
    shares = np.array([(source == c).mean() for c in classes], dtype=float)
    if shares.sum() == 0:
        shares = np.full(len(classes), 1.0 / len(classes))
    proba = np.tile(shares / shares.sum(), (len(y), 1))
    pred = np.full(len(y), classes[int(shares.argmax())], dtype=object)
    return Predictions("classification", y, pred, proba, classes)


def metrics_from_predictions(p: Predictions) -> dict[str, float]:
    names = [m for m, info in METRICS.items() if info["task"] == p.task]
    return {name: metric_value(name, p) for name in names}


def compute_metrics(model: Any, holdout: pd.DataFrame, spec: ModelSpec) -> dict[str, float]:
    """Holdout metrics for the spec's task."""
    return metrics_from_predictions(predict_holdout(model, holdout, spec))


def paired_interval(
    metric: str,
    candidate: Predictions,
    champion: Predictions,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Gain of the candidate over the champion on the same rows (oriented so > 0 is better),
    with a paired interval: both models are scored on the same rows.

    Up to BOOTSTRAP_MAX_ROWS rows: a seeded paired bootstrap (each resample held as row counts,
    the metric computed from weighted sums, ``weighted_metric``). Beyond: the bootstrap's
    large-sample normal form where the metric has one (DeLong's variance for the difference
    of two correlated ROC AUCs; the per-row paired differences for accuracy, log loss and
    MAE; the delta method for RMSE), which agrees with the bootstrap at that size and costs one
    sort instead of 2 x 1000 (at 250,000 holdout rows the bootstrap took 100 s of evaluate)."""
    higher = METRICS[metric]["higher_is_better"]
    sign = 1.0 if higher else -1.0
    point = sign * (metric_value(metric, candidate) - metric_value(metric, champion))
    n = len(candidate.y)
    if n > BOOTSTRAP_MAX_ROWS:
        se = _paired_standard_error(metric, candidate, champion)
        if se is not None and np.isfinite(se):
            z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2)
            return float(point), float(point - z * se), float(point + z * se)
    rng = np.random.default_rng(seed)
    gains = np.concatenate(
        [
            sign * (weighted_metric(metric, candidate, counts) - weighted_metric(metric, champion, counts))
            for counts in resample_counts(rng, n, resamples)
        ]
    )
    gains = gains[~np.isnan(gains)]
    if len(gains) < resamples // 2:
        return point, float("nan"), float("nan")
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(gains, [tail, 1.0 - tail])
    return float(point), float(low), float(high)


# Holdouts larger than this get the normal-theory interval (where the metric has one).
BOOTSTRAP_MAX_ROWS = 20_000
# Row counts held at once while bootstrapping: resamples per block x holdout rows (~32 MB each).
BOOTSTRAP_BLOCK_CELLS = 4_000_000


def metric_standard_error(metric: str, p: Predictions, resamples: int = 400, seed: int = 0) -> float | None:
    """The bootstrap standard error of ``metric_value(metric, p)`` (seeded); None when under half
    of the resamples give a value (one class drawn)."""
    draws = resample_counts(np.random.default_rng(seed), len(p.y), resamples)
    values = np.concatenate([weighted_metric(metric, p, counts) for counts in draws])
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if len(values) >= max(2, resamples // 2) else None


def resample_counts(rng: np.random.Generator, n: int, resamples: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples of ``n`` rows as counts (resamples x n, how often each row was drawn),
    a block at a time; the same draws as ``rng.integers(0, n, n)`` once per resample."""
    block = max(1, BOOTSTRAP_BLOCK_CELLS // max(n, 1))
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        rows = rng.integers(0, n, (size, n))
        rows += (np.arange(size) * n)[:, None]
        yield np.bincount(rows.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)


def _row_losses(metric: str, p: Predictions) -> np.ndarray | None:
    """Per-row terms whose mean is the metric (accuracy, log loss, MAE); None for the others
    and for a log loss that is undefined (a class in y this model never saw)."""
    if metric == "accuracy":
        return (p.pred == p.y).astype(np.float64)
    if metric == "mae":
        return np.abs(p.pred - p.y).astype(np.float64)
    if metric == "log_loss":
        column = pd.Index(p.classes).get_indexer(p.y)
        if (column < 0).any():
            return None
        proba = p.probabilities / p.probabilities.sum(axis=1, keepdims=True)
        eps = np.finfo(proba.dtype).eps
        return -np.log(np.clip(proba[np.arange(len(p.y)), column], eps, 1 - eps))
    return None


def _paired_standard_error(metric: str, a: Predictions, b: Predictions) -> float | None:
    """Standard error of metric(a) - metric(b) on the same rows, when the metric has a
    large-sample form; None otherwise (F1, R2, multiclass ROC AUC: bootstrapped)."""
    n = len(a.y)
    if metric in ("accuracy", "mae", "log_loss"):
        loss_a, loss_b = _row_losses(metric, a), _row_losses(metric, b)
        if loss_a is None or loss_b is None:
            return None
        return float(np.std(loss_a - loss_b, ddof=1) / np.sqrt(n))
    if metric == "rmse":
        squared_a, squared_b = (a.pred - a.y) ** 2, (b.pred - b.y) ** 2
        rmse_a, rmse_b = np.sqrt(squared_a.mean()), np.sqrt(squared_b.mean())
        if rmse_a == 0 or rmse_b == 0:
            return None
        influence = squared_a / (2 * rmse_a) - squared_b / (2 * rmse_b)  # the delta method
        return float(np.std(influence, ddof=1) / np.sqrt(n))
    if metric == "roc_auc" and len(a.classes) == 2:
        return _delong_standard_error(a.probabilities[:, 1], b.probabilities[:, 1], a.y == a.classes[1])
    return None


def _weighted_auc(score: np.ndarray, positive: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC AUC (ties count half, as roc_auc_score) of each row-count vector; NaN without both classes."""
    order = np.argsort(score, kind="stable")
    ordered = score[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # groups of tied scores
    w = counts[:, order]
    pos = np.add.reduceat(w * positive[order], starts, axis=1)
    neg = np.add.reduceat(w, starts, axis=1) - pos
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _weighted_f1(
    y: np.ndarray, pred: np.ndarray, label: Any, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """F1 of one label for each row-count vector (0 where undefined) and whether the label occurs."""
    tp = counts @ ((pred == label) & (y == label))
    fp = counts @ ((pred == label) & (y != label))
    fn = counts @ ((pred != label) & (y == label))
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return f1, (tp + fp + fn) > 0


def weighted_metric(metric: str, p: Predictions, counts: np.ndarray) -> np.ndarray:
    """``metric_value`` of the rows drawn ``counts`` times (one value per row of ``counts``)."""
    total = counts.sum(axis=1)
    if metric in ("accuracy", "mae", "log_loss"):
        losses = _row_losses(metric, p)
        return np.full(len(counts), np.nan) if losses is None else counts @ losses / total
    if p.task == "regression":
        error = p.pred - p.y
        if metric == "rmse":
            return np.sqrt(counts @ (error * error) / total)
        y = p.y.astype(float)
        sse, sum_y, sum_yy = counts @ (error * error), counts @ y, counts @ (y * y)
        sst = sum_yy - sum_y * sum_y / total
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = np.where(sst > 0, 1 - sse / sst, np.where(sse == 0, 1.0, 0.0))  # as r2_score
        return np.where(total > 1, r2, np.nan)
    binary = len(p.classes) == 2
    if metric == "f1":
        if binary:
            return _weighted_f1(p.y, p.pred, p.classes[-1], counts)[0]
        scores = [_weighted_f1(p.y, p.pred, label, counts) for label in np.unique(np.r_[p.y, p.pred])]
        f1s, present = np.array([f for f, _ in scores]), np.array([o for _, o in scores])
        return (f1s * present).sum(axis=0) / present.sum(axis=0)
    if binary:
        return _weighted_auc(p.probabilities[:, 1], p.y == p.classes[1], counts)
    per_class = []
    for i, label in enumerate(p.classes):
        members = counts @ (p.y == label)
        auc = _weighted_auc(p.probabilities[:, i], p.y == label, counts)
        per_class.append(np.where((members > 0) & (members < total), auc, np.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample where no class is defined
        return np.nanmean(np.array(per_class), axis=0)


def _reached(value: float, level: float | None, higher: bool) -> bool:
    if level is None or value is None or np.isnan(value):
        return False
    return value >= level if higher else value <= level


def decide(
    gates: GatesSpec,
    candidate: float,
    champion: float | None,
    champion_version: str | None = None,
    *,
    holdout_rows: int | None = None,
    interval: tuple[float, float, float] | None = None,
    baseline: float | None = None,
    evidence: str | None = None,
) -> Decision:
    """Apply the gates to the primary metric, against the champion's on the same rows.

    ``interval`` is the paired bootstrap gain of candidate over champion (point, low, high;
    > 0 is better); with it, "worse" and "too good" must be significant, not noise. A holdout
    under ``gates.min_holdout_rows`` is too small to decide against a champion: it stays.

    Over 80 lines on purpose: the gates in the order they apply, each returning its Decision with
    its reason from the same scores and wording; split, the policy would not read top to bottom.
    """
    metric = gates.primary_metric
    higher = METRICS[metric]["higher_is_better"]
    word = "at least" if higher else "at most"
    base: dict[str, Any] = {
        "metric": metric,
        "candidate": candidate,
        "champion": champion,
        "champion_version": champion_version,
        "baseline": baseline,
        "evidence": evidence or (f"a holdout of {holdout_rows} rows" if holdout_rows else None),
    }
    rows = f" on the same {holdout_rows} rows" if holdout_rows else " on the same holdout"
    small = holdout_rows is not None and holdout_rows < gates.min_holdout_rows

    if np.isnan(candidate):
        return Decision("rejected", f"{metric} could not be computed on the holdout", **base)
    meets_bar = candidate >= gates.threshold if higher else candidate <= gates.threshold
    if not meets_bar:
        return Decision(
            "rejected", f"{metric} {candidate:.4f} misses the bar: must be {word} {gates.threshold}", **base
        )
    if gates.baseline_margin is not None and baseline is not None and np.isfinite(baseline):
        need = baseline + gates.baseline_margin if higher else baseline - gates.baseline_margin
        if not (candidate >= need if higher else candidate <= need):
            return Decision(
                "rejected",
                f"{metric} {candidate:.4f} does not beat a dummy model ({baseline:.4f}, the class "
                f"prior / mean on the same rows) by gates.baseline_margin {gates.baseline_margin}",
                **base,
            )
    if small:
        vs = f"; champion v{champion_version} stays" if champion_version else "; no champion yet"
        return Decision(
            "undecided",
            f"too small to decide: {holdout_rows} rows of evidence < gates.min_holdout_rows "
            f"{gates.min_holdout_rows} ({metric} {candidate:.4f}){vs}. The version stays "
            "registered; a run with more rows decides (training.window_rows gathers them)",
            **base,
        )
    perfect = _reached(candidate, gates.too_good_score, higher)
    if champion is None or np.isnan(champion):
        if perfect:
            return Decision(
                "held_for_review",
                f"{metric} {candidate:.4f} reaches the too-good score {gates.too_good_score} with no "
                "champion to compare: check for target leakage, then approve or reject",
                **base,
            )
        return Decision("blessed", f"{metric} {candidate:.4f} meets the bar; no champion yet", **base)

    vs = f"champion v{champion_version}" if champion_version else "the champion"
    gain = (candidate - champion) if higher else (champion - candidate)
    relative = gain / abs(champion) if champion else gain
    base["relative_change"] = relative
    allowed = gates.max_regression * abs(champion) if champion else gates.max_regression
    low = high = None
    if interval is not None and not np.isnan(interval[1]):
        low, high = interval[1], interval[2]
    ci = f" (gain interval [{low:+.4f}, {high:+.4f}])" if low is not None else ""
    worse = (high < -allowed) if high is not None else (relative < -gates.max_regression)
    if worse:
        return Decision(
            "rejected",
            f"{metric} {candidate:.4f} is {-relative:.1%} worse than {vs} ({champion:.4f}){rows}"
            f"{ci}; allowed regression is {gates.max_regression:.1%}",
            **base,
        )
    if perfect and not _reached(champion, gates.too_good_score, higher):
        return Decision(
            "held_for_review",
            f"{metric} {candidate:.4f} reaches the too-good score {gates.too_good_score} while {vs} "
            f"scores {champion:.4f}{rows}: check for target leakage, then approve or reject",
            **base,
        )
    jump = gates.too_good_jump is not None and relative > gates.too_good_jump
    if jump and (low is None or low > 0):
        return Decision(
            "held_for_review",
            f"{metric} {candidate:.4f} is {relative:.1%} better than {vs} ({champion:.4f}){rows}"
            f"{ci}: above the {gates.too_good_jump:.0%} 'too good to be true' limit, held for review",
            **base,
        )
    if relative < -gates.max_regression:
        return Decision(
            "blessed",
            f"{metric} {candidate:.4f} vs {vs} {champion:.4f} ({relative:+.1%}){rows}: not "
            f"significantly worse{ci}, a difference this holdout cannot tell from noise; the "
            "canary decides on live traffic",
            **base,
        )
    return Decision(
        "blessed",
        f"{metric} {candidate:.4f} vs {vs} {champion:.4f} ({relative:+.1%}){rows}{ci}",
        **base,
    )


def _alias_version(client: Any, model: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def _recorded_estimate(client: Any, name: str, version: str, metric: str) -> float:
    """A version's own estimate of the metric: its cross-validation, else its holdout score."""
    run = client.get_run(client.get_model_version(name, version).run_id)
    cv = run.data.tags.get(tag_schema.CROSS_VALIDATION)
    if cv and json.loads(cv).get("metric") == metric:
        return float(json.loads(cv)["score"])
    return float(run.data.metrics.get(f"holdout_{metric}", float("nan")))


def _cross_validated_gain(
    metric: str, score: float, champion_score: float, score_sd: float
) -> tuple[float, float, float]:
    """The gain over the champion's own estimate (> 0 is better), +/- two cross-validation SDs."""
    spread = 2 * score_sd
    higher = METRICS[metric]["higher_is_better"]
    gain = (score - champion_score) if higher else (champion_score - score)
    return (gain, gain - spread, gain + spread)


def _decision_on_failure(evaluate: Any) -> Any:
    """An evaluation that raises still leaves its reason on the run (``factory.decision``
    ``failed``), so no trained run is left without a decision and nobody has to guess why."""

    @functools.wraps(evaluate)
    def wrapper(spec: ModelSpec, trained: dict, settings: FactorySettings, *args: Any, **kwargs: Any) -> dict:
        try:
            return evaluate(spec, trained, settings, *args, **kwargs)
        except Exception as exc:
            with contextlib.suppress(Exception):
                client = tracking.connect(settings, attempts=1)
                client.set_tag(trained["run_id"], tag_schema.DECISION, "failed")
                message = f"evaluation failed: {type(exc).__name__}: {exc}"
                client.set_tag(trained["run_id"], tag_schema.DECISION_REASON, message[:5000])
            raise

    return wrapper


@_decision_on_failure
def evaluate_candidate(
    spec: ModelSpec,
    trained: TrainedModel,
    settings: FactorySettings,
    s3: storage.S3Options | None = None,
) -> dict:
    """Score the candidate, the champion and a waiting challenger on the candidate's holdout
    (the same rows); log and return the decision.

    A challenger waiting for its canary (alias ``challenger``, not yet ``canary``) is compared
    with the candidate on the same rows too, so ``register`` can keep the better of the two.
    """
    from model_factory.io.model_loading import load_registered, load_uri

    client = tracking.connect(settings)
    name = spec.registered_model_name
    holdout_uri = trained["holdout_uri"]
    holdout = parse_batch(storage.read_bytes(holdout_uri, s3), "parquet", holdout_uri)
    metric = spec.gates.primary_metric
    # The one safe loader (skops, trusted types only); the champion must be blessed, too.
    code_dir = settings.specs_dir / "code"
    run_tags = client.get_run(trained["run_id"]).data.tags
    candidate = load_uri(trained["model_uri"], run_tags=run_tags, code_dir=code_dir).estimator
    cand_pred = predict_holdout(candidate, holdout, spec)
    candidate_metrics = metrics_from_predictions(cand_pred)

    def versus(version: str) -> tuple[dict, tuple[float, float, float]]:
        key = attestation.signing_key(settings)
        other_model = load_registered(client, name, version, code_dir=code_dir, key=key).estimator
        other = predict_holdout(other_model, holdout, spec)
        interval = paired_interval(metric, cand_pred, other, spec.gates.confidence, seed=spec.split.seed)
        return metrics_from_predictions(other), interval

    champion_metrics, champion_interval = None, None
    champion_version = _alias_version(client, name, "champion")
    if champion_version is not None:
        champion_metrics, champion_interval = versus(champion_version)

    score = candidate_metrics[metric]
    champion_score = champion_metrics[metric] if champion_metrics else None
    baseline = metric_value(metric, dummy_predictions(cand_pred.y, cand_pred.task, cand_pred.classes))
    evidence_rows, evidence = len(holdout), f"a holdout of {len(holdout)} rows"
    cv_tag = run_tags.get(tag_schema.CROSS_VALIDATION)
    cv = json.loads(cv_tag) if cv_tag is not None else None
    if cv is not None and cv.get("metric") == metric and len(holdout) < spec.gates.min_holdout_rows:
        # The holdout is too small: judge on the cross-validated estimate over the window, and
        # against the champion's own estimate (its cross-validation, else its holdout score).
        score, baseline, evidence_rows = cv["score"], cv["baseline"], cv["rows"]
        evidence = (
            f"{cv['folds']}-fold cross-validation repeated {cv['repeats']}x over the "
            f"{cv['rows']} rows of the training window"
        )
        if champion_version is not None:
            champion_score = _recorded_estimate(client, name, champion_version, metric)
            champion_interval = _cross_validated_gain(metric, score, champion_score, cv["score_sd"])
    decision = decide(
        spec.gates,
        score,
        champion_score,
        champion_version,
        holdout_rows=evidence_rows,
        interval=champion_interval,
        baseline=baseline,
        evidence=evidence,
    )
    challenger = _waiting_challenger(client, name, decision, champion_version, versus)
    run_id = trained["run_id"]
    record = {
        **asdict(decision),
        "candidate_metrics": candidate_metrics,
        "champion_metrics": champion_metrics,
        "champion_gain_interval": champion_interval,
        "waiting_challenger": challenger,
        "holdout_uri": trained["holdout_uri"],
        "holdout_rows": len(holdout),
        "gates": spec.gates.model_dump(),
    }
    _log_decision(client, run_id, decision, record, evidence_rows)
    return {"run_id": run_id, "model_uri": trained["model_uri"], **record}


def _waiting_challenger(
    client: Any,
    name: str,
    decision: Decision,
    champion_version: str | None,
    versus: Callable[[str], tuple[dict, tuple[float, float, float]]],
) -> dict | None:
    """A blessed candidate against the challenger waiting for its canary, on the same rows;
    None when the candidate is not blessed or no other version waits."""
    waiting = _alias_version(client, name, "challenger")
    if (
        decision.status == "blessed"
        and waiting not in (None, champion_version)
        and waiting != _alias_version(client, name, "canary")
    ):
        challenger_metrics, gain = versus(waiting)
        # The newer version (fresher data) replaces the waiting one unless the waiting one is
        # better beyond noise on the same rows: a tie is for the canary to judge, on live data.
        return {
            "version": waiting,
            "metrics": challenger_metrics,
            "gain": gain,
            "candidate_better": bool(gain[2] >= 0),
        }
    return None


def _log_decision(client: Any, run_id: str, decision: Decision, record: dict, evidence_rows: int) -> None:
    """The holdout metrics, ``decision.json`` and the decision's tags on the candidate's run."""
    for key, value in record["candidate_metrics"].items():
        client.log_metric(run_id, f"holdout_{key}", value)
    for key, value in (record["champion_metrics"] or {}).items():
        client.log_metric(run_id, f"champion_holdout_{key}", value)
    client.log_dict(run_id, record, "decision.json")
    client.set_tag(run_id, tag_schema.DECISION, decision.status)
    client.set_tag(run_id, tag_schema.DECISION_REASON, decision.reason)
    client.set_tag(run_id, tag_schema.DECISION_EVIDENCE, decision.evidence or "")
    client.set_tag(run_id, tag_schema.DECISION_EVIDENCE_ROWS, str(evidence_rows))
