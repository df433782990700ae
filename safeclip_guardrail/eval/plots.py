"""PNG plots of a report: ROC curve, defense-success vs false-positive sweep, confusion matrix.

matplotlib is the optional extra ``eval`` (``pip install "safeclip-guardrail[eval]"``); the
non-interactive Agg backend is used so plots work on servers without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeclip_guardrail.errors import require

if TYPE_CHECKING:
    from safeclip_guardrail.eval.metrics import ConfusionMatrix, RocCurve, SweepPoint

__all__ = ["plot_confusion", "plot_roc", "plot_sweep", "pyplot"]


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or MissingDependencyError naming the extra."""
    mpl = require("matplotlib", package="matplotlib", extra="eval",
                  feature="evaluation plots (skip them: --no-plots, plots=False)")
    mpl.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_roc(roc: RocCurve, auc: float | None, path: Path, *,
             operating_point: tuple[float, float] | None = None) -> Path:
    """ROC of the toxic score, with the configured threshold's (FPR, DSR) marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    label = f"toxic score (AUC = {auc:.3f})" if auc is not None else "toxic score"
    ax.plot(roc.fpr, roc.tpr, color="tab:blue", linewidth=2, label=label)
    if operating_point is not None:
        ax.scatter([operating_point[0]], [operating_point[1]], color="tab:red", zorder=3,
                   label="guard at its threshold")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="false positive rate",
           ylabel="defense success rate (true positive rate)", title="ROC")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_sweep(points: list[SweepPoint], path: Path, *, current: float | None = None) -> Path:
    """Left: DSR and FPR against the global threshold. Right: the trade-off, DSR vs FPR."""
    plt = pyplot()
    fig, (ax, tr) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    ts = [p.threshold for p in points]
    dsr = [_nan(p.defense_success_rate) for p in points]
    fpr = [_nan(p.false_positive_rate) for p in points]
    ax.plot(ts, dsr, marker="o", color="tab:green", label="defense success rate")
    ax.plot(ts, fpr, marker="s", color="tab:red", label="false positive rate")
    if current is not None:
        ax.axvline(current, color="0.4", linestyle=":", label=f"threshold {current:g}")
    ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), xlabel="threshold (class mass)", ylabel="rate",
           title="Threshold sweep")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    tr.plot(fpr, dsr, marker="o", color="tab:blue")
    for p, x, y in zip(points, fpr, dsr, strict=True):
        if current is not None and abs(p.threshold - current) < 1e-12:
            tr.scatter([x], [y], color="tab:red", zorder=3, s=60, label=f"threshold {current:g}")
    tr.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="false positive rate",
           ylabel="defense success rate", title="Defense success vs false positives")
    tr.grid(alpha=0.3)
    if current is not None:
        tr.legend(loc="lower right")
    return _save(fig, path)


def plot_confusion(confusion: ConfusionMatrix, path: Path) -> Path:
    """Counts of true label (rows) against the zero-shot top class (columns)."""
    import numpy as np

    plt = pyplot()
    labels = confusion.labels
    mat = np.asarray(confusion.matrix, dtype=float)
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    im = ax.imshow(mat, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels=labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    peak = mat.max() if mat.size else 0
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            if mat[i, j]:
                ax.text(j, i, str(int(mat[i, j])), ha="center", va="center",
                        color="white" if mat[i, j] > peak / 2 else "black")
    ax.set(xlabel="top class (prediction)", ylabel="label", title="Confusion matrix")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def _nan(x: float | None) -> float:
    return float("nan") if x is None else x


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
