"""A model's performance after deployment: realized on matured outcomes, estimated before them.

* ``realized``: the metric on joined outcomes with a 95% interval (accuracy: Wilson; ROC AUC:
  Hanley-McNeil; RMSE/MAE: normal interval of the mean loss, RMSE through the square root).
* ``check_calibration``: on the holdout, a Hosmer-Lemeshow test over 10 quantile bins of the
  classifier's P(positive) (and the expected calibration error); when it fails (p < 0.01) an
  isotonic map fitted on the holdout corrects the live probabilities before estimating.
* ``estimate_classifier`` (confidence-based performance estimation, as NannyML's CBPE): with
  calibrated probabilities p, each row is correct with probability max(p, 1 - p) at the 0.5
  threshold, so expected accuracy is their mean and its sampling SD sqrt(sum c (1 - c)) / n;
  expected ROC AUC comes from the expected confusion matrix at every threshold (cumulative p and
  1 - p along the sorted scores; from 100,000 rows along 65,536 value buckets, within a checked
  1e-9 of the sorted walk) with the Hanley-McNeil interval at those expected counts.
* ``estimate_regressor`` (a direct loss estimate): the holdout's squared / absolute error binned
  by predicted value (10 quantile bins) gives each live prediction its expected loss.

Binary classifiers and regressors; a multiclass model gets no estimate (``reason`` says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.isotonic import IsotonicRegression

Z95 = 1.959963984540054
CALIBRATION_ALPHA = 0.01
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class MetricEstimate:
    """A metric with its 95% interval over ``n`` rows; ``value`` None with ``reason`` when none."""

    metric: str
    value: float | None
    low: float | None
    high: float | None
    n: int
    reason: str = ""

    def covers(self, x: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= x <= self.high


@dataclass(frozen=True)
class Calibration:
    """Holdout calibration of P(positive): the test, and the isotonic correction when it failed."""

    calibrated: bool
    hl_statistic: float
    pvalue: float
    ece: float
    n: int
    thresholds_x: tuple[float, ...] = ()  # isotonic map (empty: identity)
    thresholds_y: tuple[float, ...] = ()

    def apply(self, scores: np.ndarray) -> np.ndarray:
        if not self.thresholds_x:
            return np.asarray(scores, dtype="float64")
        return np.interp(scores, self.thresholds_x, self.thresholds_y)

    @property
    def reason(self) -> str:
        verdict = "calibrated" if self.calibrated else "miscalibrated: corrected by isotonic regression"
        return (
            f"holdout calibration: Hosmer-Lemeshow {self.hl_statistic:.1f} (p = {self.pvalue:.2g}), "
            f"ECE {self.ece:.3f} on {self.n:,} rows: {verdict}"
        )


def _none(metric: str, n: int, reason: str) -> MetricEstimate:
    return MetricEstimate(metric, None, None, None, n, reason)


def _wilson(successes: float, n: int) -> tuple[float, float]:
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return centre - half, centre + half


def _auc_interval(auc: float, n_pos: float, n_neg: float) -> tuple[float, float]:
    """Hanley and McNeil's (1982) standard error of the AUC, as a normal interval clipped to [0, 1]."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    half = Z95 * math.sqrt(max(var, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC by ranks (ties share their mean rank)."""
    ranks = stats.rankdata(scores)
    n_pos = float(positive.sum())
    n_neg = len(scores) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def realized(
    metric: str, y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray | None = None, positive: object = 1
) -> MetricEstimate:
    """The metric on matured outcomes with its 95% interval."""
    n = len(y_true)
    if n == 0:
        return _none(metric, 0, "no matured outcomes")
    if metric == "accuracy":
        correct = float(np.sum(np.asarray(y_true) == np.asarray(y_pred)))
        low, high = _wilson(correct, n)
        return MetricEstimate(metric, correct / n, low, high, n)
    if metric == "roc_auc":
        if score is None:
            return _none(metric, n, "no probabilities logged: ROC AUC needs them")
        pos = np.asarray(y_true) == positive
        if pos.all() or not pos.any():
            return _none(metric, n, "only one class among the outcomes: ROC AUC is undefined")
        auc = _auc(np.asarray(score, dtype="float64"), pos)
        low, high = _auc_interval(auc, float(pos.sum()), float(n - pos.sum()))
        return MetricEstimate(metric, auc, low, high, n)
    if metric in ("rmse", "mae"):
        err = np.asarray(y_true, dtype="float64") - np.asarray(y_pred, dtype="float64")
        loss = err * err if metric == "rmse" else np.abs(err)
        return _from_losses(metric, loss.mean(), loss.std(ddof=1) / math.sqrt(n) if n > 1 else 0.0, n)
    return _none(metric, n, f"{metric} has no interval here (realized: accuracy, roc_auc, rmse, mae)")


def _from_losses(metric: str, mean_loss: float, se: float, n: int) -> MetricEstimate:
    low, high = max(0.0, mean_loss - Z95 * se), mean_loss + Z95 * se
    if metric == "rmse":
        return MetricEstimate(metric, math.sqrt(mean_loss), math.sqrt(low), math.sqrt(high), n)
    return MetricEstimate(metric, mean_loss, low, high, n)


def check_calibration(
    scores: np.ndarray, positive: np.ndarray, alpha: float = CALIBRATION_ALPHA
) -> Calibration:
    """Hosmer-Lemeshow over quantile bins of the holdout's P(positive); isotonic map when it fails."""
    p = np.clip(np.asarray(scores, dtype="float64"), 1e-6, 1 - 1e-6)
    y = np.asarray(positive, dtype="float64")
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, CALIBRATION_BINS)
    hl = ece = 0.0
    for b in bins:
        if not len(b):
            continue
        expected, observed, n_b = p[b].sum(), y[b].sum(), len(b)
        mean_p = expected / n_b
        hl += (observed - expected) ** 2 / (n_b * mean_p * (1 - mean_p))
        ece += abs(observed - expected) / len(p)
    pvalue = float(stats.chi2.sf(hl, CALIBRATION_BINS - 2))
    if pvalue >= alpha:
        return Calibration(True, float(hl), pvalue, float(ece), len(p))
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    return Calibration(
        False,
        float(hl),
        pvalue,
        float(ece),
        len(p),
        tuple(iso.X_thresholds_.tolist()),
        tuple(iso.y_thresholds_.tolist()),
    )


CHUNK_ROWS = 2**17  # rows per pass over 1M scores: temporaries stay small (no fresh pages to fault in)


def _chunks(n: int) -> list[slice]:
    return [slice(start, start + CHUNK_ROWS) for start in range(0, n, CHUNK_ROWS)]


AUC_BUCKETS = 2**16
AUC_BUCKETED_FROM = 100_000
AUC_BUCKET_TOLERANCE = 1e-9


def _expected_auc(p: np.ndarray, n_pos: float, n_neg: float) -> float:
    """The expected ROC AUC of calibrated P(positive) ``p`` (``n_pos`` = sum p, ``n_neg`` = n - n_pos).

    Walking the thresholds down the sorted values, row i adds p_i expected positives and 1 - p_i
    expected negatives; the area under that path is sum_i (1 - p_i)(TP_i - p_i / 2) / (n_pos n_neg),
    TP_i the cumulative p (tied values: equal steps, i.e. half credit). From ``AUC_BUCKETED_FROM``
    rows the walk goes over ``AUC_BUCKETS`` equal-width buckets of the values instead of a sort
    (rows sharing a bucket count as tied): a pair in one bucket moves the area by at most half the
    bucket's width, so the change is at most width * pairs / (2 n_pos n_neg), computed here; above
    ``AUC_BUCKET_TOLERANCE`` (values crowded into few buckets) the sort is used.
    """
    if len(p) >= AUC_BUCKETED_FROM:
        lo, hi = float(p.min()), float(p.max())
        if hi > lo:
            width = (hi - lo) / AUC_BUCKETS
            count, positive = np.zeros(AUC_BUCKETS), np.zeros(AUC_BUCKETS)
            for rows in _chunks(len(p)):
                bucket = ((p[rows] - lo) * (1 / width)).astype(np.intp)
                np.minimum(bucket, AUC_BUCKETS - 1, out=bucket)  # the highest value: the last bucket
                count += np.bincount(bucket, minlength=AUC_BUCKETS)
                positive += np.bincount(bucket, weights=p[rows], minlength=AUC_BUCKETS)
            pairs = float(np.sum(count * (count - 1))) / 2
            if width * pairs / (2 * n_pos * n_neg) <= AUC_BUCKET_TOLERANCE:
                cumulative = np.cumsum(positive)
                above = cumulative[-1] - cumulative  # expected positives in the higher buckets
                return float(np.sum((count - positive) * (above + 0.5 * positive))) / (n_pos * n_neg)
    descending = np.sort(p)[::-1]
    negative = 1 - descending
    area = np.sum(negative * (np.cumsum(descending) - 0.5 * descending))  # no BLAS: its threads spin
    return float(area) / (n_pos * n_neg)


def estimate_classifier(
    metric: str, scores: np.ndarray | None, calibration: Calibration | None = None, threshold: float = 0.5
) -> MetricEstimate:
    """CBPE: the expected metric from (calibrated) P(positive), before any outcome arrives."""
    if scores is None:
        return _none(metric, 0, "no probabilities for this classifier: no estimate (log P(positive))")
    p = np.asarray(scores, dtype="float64")
    finite = np.isfinite(p)
    p = p if finite.all() else p[finite]
    n = len(p)
    if n == 0:
        return _none(metric, 0, "no predictions with probabilities")
    # A map fitted on the holdout carries the holdout's sampling error: counted as a second sample.
    corrected = calibration is not None and not calibration.calibrated
    scores_raw = p
    if calibration is not None:
        p = calibration.apply(p)
    if metric == "accuracy":
        value, var = 0.0, 0.0
        for rows in _chunks(n):  # P(correct): p where the model said positive (raw score), else 1 - p
            correct = np.where(scores_raw[rows] >= threshold, p[rows], 1 - p[rows])
            value += float(correct.sum())
            var += float(np.sum(correct * (1 - correct)))
        value, var = value / n, var / (n * n)
        if corrected and calibration is not None:
            var += value * (1 - value) / calibration.n
        half = Z95 * math.sqrt(var)
        return MetricEstimate(metric, value, max(0.0, value - half), min(1.0, value + half), n)
    if metric == "roc_auc":
        n_pos = float(p.sum())
        n_neg = n - n_pos
        if n_pos <= 0 or n_neg <= 0:
            return _none(metric, n, "the probabilities expect a single class: ROC AUC is undefined")
        auc = _expected_auc(p, n_pos, n_neg)
        low, high = _auc_interval(auc, n_pos, n_neg)
        if corrected and calibration is not None:
            share = n_pos / n
            h_low, h_high = _auc_interval(auc, share * calibration.n, (1 - share) * calibration.n)
            low, high = auc - math.hypot(auc - low, auc - h_low), auc + math.hypot(high - auc, h_high - auc)
            low, high = max(0.0, low), min(1.0, high)
        return MetricEstimate(metric, auc, low, high, n)
    return _none(metric, n, f"no estimate for {metric} (estimated: accuracy, roc_auc, rmse, mae)")


@dataclass(frozen=True)
class LossModel:
    """Expected loss per bin of predicted value, from the holdout (a direct loss estimate)."""

    edges: tuple[float, ...]
    squared: tuple[float, ...]
    absolute: tuple[float, ...]
    squared_var: tuple[float, ...]
    absolute_var: tuple[float, ...]
    counts: tuple[int, ...]  # holdout rows per bin: the bins' means carry their sampling error


def fit_loss_model(y_true: np.ndarray, y_pred: np.ndarray, bins: int = 10) -> LossModel:
    pred = np.asarray(y_pred, dtype="float64")
    err = np.asarray(y_true, dtype="float64") - pred
    edges = np.unique(np.quantile(pred, np.linspace(0, 1, bins + 1)[1:-1]))
    cell = np.searchsorted(edges, pred, side="right")
    sq, ab, sqv, abv, counts = [], [], [], [], []
    for k in range(len(edges) + 1):
        e = err[cell == k]
        if not len(e):
            e = err
        counts.append(len(e))
        sq.append(float(np.mean(e * e)))
        ab.append(float(np.mean(np.abs(e))))
        sqv.append(float(np.var(e * e)))
        abv.append(float(np.var(np.abs(e))))
    return LossModel(tuple(edges.tolist()), tuple(sq), tuple(ab), tuple(sqv), tuple(abv), tuple(counts))


def estimate_regressor(metric: str, predictions: np.ndarray, model: LossModel) -> MetricEstimate:
    """The expected RMSE / MAE of live predictions from the holdout's loss per predicted value."""
    pred = np.asarray(predictions, dtype="float64")
    pred = pred[np.isfinite(pred)]
    n = len(pred)
    if n == 0:
        return _none(metric, 0, "no predictions")
    if metric not in ("rmse", "mae"):
        return _none(metric, n, f"no estimate for {metric} (estimated: accuracy, roc_auc, rmse, mae)")
    cell = np.searchsorted(np.asarray(model.edges), pred, side="right")
    bin_var = np.asarray(model.squared_var if metric == "rmse" else model.absolute_var)
    loss = np.asarray(model.squared if metric == "rmse" else model.absolute)[cell]
    live_var = float(bin_var[cell].sum()) / (n * n)  # the live rows' own noise around their bins' means
    share = np.bincount(cell, minlength=len(bin_var)) / n
    model_var = float(np.sum(share**2 * bin_var / np.asarray(model.counts)))  # the holdout's, per bin
    return _from_losses(metric, float(loss.mean()), math.sqrt(live_var + model_var), n)
