"""The model card's figures: matplotlib (Agg) rendered to base64 PNG, so the card opens offline.

Every function takes plain arrays/dicts and returns ``data:image/png;base64,...`` strings.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from model_factory.pipeline.evaluation import Predictions

_COLOURS = {"candidate": "#1f77b4", "champion": "#ff7f0e"}


def _figure(width: float = 4.2, height: float = 3.3):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=90)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _positive_scores(p: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Binary: the positive class's score; multiclass: one-vs-rest for the last class."""
    positive = p.classes[-1]
    return (p.y == positive).astype(int), p.probabilities[:, -1]


def _curve_plot(
    models: dict[str, Predictions], curve, labels: tuple[str, str, str], legend: str, diagonal: bool = False
) -> str:
    """One curve per model from its positive-class scores, overlaid."""
    fig, ax = _figure()
    for name, p in models.items():
        x, y = curve(*_positive_scores(p))
        ax.plot(x, y, label=name, color=_COLOURS.get(name))
    if diagonal:
        ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set(xlabel=labels[0], ylabel=labels[1], title=labels[2])
    ax.legend(loc=legend)
    return _png(fig)


def classification_plots(models: dict[str, Predictions]) -> dict[str, str]:
    """ROC, precision-recall and calibration (candidate and champion overlaid) and the
    candidate's confusion matrix."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

    out: dict[str, str] = {}
    both_classes = {name: len(np.unique(_positive_scores(p)[0])) == 2 for name, p in models.items()}
    if any(both_classes.values()):
        shown = {name: p for name, p in models.items() if both_classes[name]}

        def roc(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            fpr, tpr, _ = roc_curve(y, score)
            return fpr, tpr

        def precision_recall(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            precision, recall, _ = precision_recall_curve(y, score)
            return recall, precision

        out["roc"] = _curve_plot(
            shown, roc, ("false positive rate", "true positive rate", "ROC"), "lower right", diagonal=True
        )
        out["precision_recall"] = _curve_plot(
            shown, precision_recall, ("recall", "precision", "Precision-recall"), "lower left"
        )

        fig, ax = _figure()
        for name, p in models.items():
            y, score = _positive_scores(p)
            bins = max(2, min(10, len(y) // 20))
            frac, mean = calibration_curve(y, score, n_bins=bins, strategy="quantile")
            ax.plot(mean, frac, marker="o", label=name, color=_COLOURS.get(name))
        ax.plot([0, 1], [0, 1], ls=":", color="grey")
        ax.set(xlabel="mean predicted probability", ylabel="observed share", title="Calibration")
        ax.legend(loc="upper left")
        out["calibration"] = _png(fig)

    p = models["candidate"]
    labels = list(p.classes)
    matrix = confusion_matrix(p.y, p.pred, labels=labels)
    fig, ax = _figure(3.6, 3.3)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black"
        )
    ax.set_xticks(range(len(labels)), [str(c) for c in labels])
    ax.set_yticks(range(len(labels)), [str(c) for c in labels])
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix (candidate)")
    out["confusion_matrix"] = _png(fig)
    return out


def regression_plots(models: dict[str, Predictions]) -> dict[str, str]:
    """Residuals vs predicted and the error distribution, candidate and champion overlaid."""
    out: dict[str, str] = {}
    fig, ax = _figure()
    for name, p in models.items():
        ax.scatter(p.pred, p.y - p.pred, s=6, alpha=0.4, label=name, color=_COLOURS.get(name))
    ax.axhline(0, color="grey", ls=":")
    ax.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals vs predicted")
    ax.legend(loc="upper right")
    out["residuals"] = _png(fig)

    fig, ax = _figure()
    for name, p in models.items():
        ax.hist(p.y - p.pred, bins=40, alpha=0.5, label=name, color=_COLOURS.get(name))
    ax.set(xlabel="error (actual - predicted)", ylabel="rows", title="Error distribution")
    ax.legend(loc="upper right")
    out["error_distribution"] = _png(fig)
    return out


def evaluation_plots(models: dict[str, Predictions]) -> dict[str, str]:
    """The task's plots; ``models`` maps "candidate" (and "champion") to their predictions."""
    # Scatter plots of a million points are slow and unreadable: plot a seeded sample.
    sampled = {name: _sample(p, 20_000) for name, p in models.items()}
    if next(iter(models.values())).task == "regression":
        return regression_plots(sampled)
    return classification_plots(sampled)


def _sample(p: Predictions, limit: int) -> Predictions:
    if len(p.y) <= limit:
        return p
    return p.take(np.sort(np.random.default_rng(0).choice(len(p.y), limit, replace=False)))


def importance_plot(features: list[dict]) -> str:
    """Horizontal bars: mean metric loss when each feature is shuffled, ± one std."""
    shown = sorted(features, key=lambda f: f["mean"])[-20:]
    fig, ax = _figure(5.0, max(2.0, 0.32 * len(shown) + 1.0))
    ax.barh(
        [f["feature"] for f in shown],
        [f["mean"] for f in shown],
        xerr=[f["std"] for f in shown],
        color="#1f77b4",
    )
    ax.axvline(0, color="grey", lw=0.8)
    ax.set(xlabel="metric loss when shuffled", title="Permutation importance")
    return _png(fig)


def budget_plot(points: list[dict], metric: str, recommended: float | None) -> str:
    """Holdout metric and CPU seconds against the share of training rows."""
    shares = [100 * p["share"] for p in points]
    fig, ax = _figure(5.0, 3.3)
    ax.plot(shares, [p["metric"] for p in points], marker="o", color="#1f77b4")
    ax.set(xlabel="share of training rows (%)", ylabel=f"holdout {metric}", title="Data budget")
    cpu = ax.twinx()
    cpu.plot(shares, [p["cpu_seconds"] for p in points], marker="s", ls="--", color="#d62728")
    cpu.set_ylabel("fit CPU seconds", color="#d62728")
    if recommended is not None:
        ax.axvline(100 * recommended, color="green", ls=":", label="recommended")
        ax.legend(loc="lower right")
    return _png(fig)
