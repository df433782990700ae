"""Guard-level metrics as pure functions of class masses and labels (no I/O, no model).

Definitions (the SafeCLIP paper's, at the guard level):

- defense success rate (DSR): share of toxic-labelled images that are flagged;
- false positive rate (FPR): share of benign-labelled images that are flagged;
- zero-shot accuracy: share of images whose top class is their label;
- detection rate of a class: share of its images that are flagged (for a benign class this
  is its own false-positive rate);
- ROC / AUC of the toxic score (1 - benign mass) separating toxic from benign labels;
- sweep: DSR and FPR with one global threshold ``t`` for every toxic class.

A rate with an empty denominator is ``None`` (e.g. FPR of a dataset without benign images).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from safeclip_guardrail import scoring
from safeclip_guardrail.concepts import ConceptBank
from safeclip_guardrail.config import Decision, GuardConfig

__all__ = [
    "DEFAULT_SWEEP",
    "ClassMetrics",
    "ConfusionMatrix",
    "GuardMetrics",
    "RocCurve",
    "SweepPoint",
    "class_masses_for",
    "flags_for",
    "guard_metrics",
    "roc_curve",
    "threshold_sweep",
]

DEFAULT_SWEEP: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""Thresholds of the default sweep: 0.05, 0.10, ..., 0.95."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClassMetrics(_Model):
    """How the images labelled with one class fared."""

    kind: str
    """``toxic`` or ``benign``."""
    n: int
    flagged: int
    """Images of this class that were flagged (as any toxic class)."""
    detection_rate: float | None
    """``flagged / n``: recall for a toxic class, false-positive rate for a benign one."""
    flagged_as_label: int
    """Images flagged with exactly this class as the category (toxic classes)."""
    correct: int
    """Images whose top class is this class (zero-shot classification hits)."""
    accuracy: float | None


class ConfusionMatrix(_Model):
    """Rows: true label; columns: top class (zero-shot prediction); order of ``labels``."""

    labels: list[str]
    matrix: list[list[int]]


class RocCurve(_Model):
    """ROC of the toxic score; point 0 is the origin (nothing flagged)."""

    fpr: list[float]
    tpr: list[float]
    thresholds: list[float | None]
    """Score cut of each point (flag when toxic score >= cut); None for the origin."""


class SweepPoint(_Model):
    threshold: float
    defense_success_rate: float | None
    false_positive_rate: float | None
    flagged: int


class GuardMetrics(_Model):
    """Every guard-level number for one configuration."""

    n_images: int
    n_toxic: int
    n_benign: int
    defense_success_rate: float | None
    """Share of toxic-labelled images flagged."""
    false_positive_rate: float | None
    """Share of benign-labelled images flagged."""
    accuracy: float | None
    """Zero-shot category accuracy (top class == label)."""
    roc_auc: float | None
    per_class: dict[str, ClassMetrics]
    confusion: ConfusionMatrix
    roc: RocCurve


# ---------------------------------------------------------------------- building blocks
def class_masses_for(embeddings: np.ndarray, text_embeddings: np.ndarray, *,
                     logit_scale: float, bank: ConceptBank) -> np.ndarray:
    """(n, C) class masses of normalised image embeddings under ``bank``'s descriptors."""
    probs = scoring.descriptor_probabilities(embeddings, text_embeddings, logit_scale)
    return scoring.class_masses(probs, bank.descriptor_class_index, len(bank))


def flags_for(masses: np.ndarray, *, bank: ConceptBank, thresholds: np.ndarray,
              decision: Decision) -> tuple[np.ndarray, np.ndarray]:
    """The guard's decision rule (``scoring.decide``) for every row of ``masses``."""
    toxic = np.array([bank.is_toxic(n) for n in bank.class_names])
    return scoring.decide(masses, toxic=toxic, thresholds=thresholds, decision=decision)


def config_thresholds(bank: ConceptBank, config: GuardConfig) -> np.ndarray:
    return np.array([config.threshold_for(n) for n in bank.class_names], np.float64)


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


# ---------------------------------------------------------------------- metrics
def guard_metrics(masses: np.ndarray, labels: Sequence[str], *, bank: ConceptBank,
                  config: GuardConfig) -> GuardMetrics:
    """All guard-level metrics of ``masses`` (n, C) against ``labels`` (class names)."""
    names = list(bank.class_names)
    y = np.array([names.index(label) for label in labels], np.int64)
    toxic_cls = np.array([bank.is_toxic(n) for n in names])
    positive = toxic_cls[y] if len(y) else np.zeros(0, bool)
    flagged, deciding = flags_for(masses, bank=bank, thresholds=config_thresholds(bank, config),
                                  decision=config.decision)
    top = masses.argmax(axis=1) if len(y) else np.zeros(0, np.int64)
    conf = np.zeros((len(names), len(names)), np.int64)
    np.add.at(conf, (y, top), 1)
    per_class: dict[str, ClassMetrics] = {}
    for j, name in enumerate(names):
        mine = y == j
        n = int(mine.sum())
        hits = int((flagged & mine).sum())
        as_label = int((flagged & mine & (deciding == j)).sum())
        correct = int(conf[j, j])
        per_class[name] = ClassMetrics(
            kind="toxic" if toxic_cls[j] else "benign", n=n, flagged=hits,
            detection_rate=_rate(hits, n), flagged_as_label=as_label,
            correct=correct, accuracy=_rate(correct, n),
        )
    toxic_score = masses[:, toxic_cls].sum(axis=1) if len(y) else np.zeros(0)
    roc = roc_curve(toxic_score, positive)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return GuardMetrics(
        n_images=len(y), n_toxic=n_pos, n_benign=n_neg,
        defense_success_rate=_rate(int((flagged & positive).sum()), n_pos),
        false_positive_rate=_rate(int((flagged & ~positive).sum()), n_neg),
        accuracy=_rate(int(np.trace(conf)), len(y)),
        roc_auc=roc_auc(roc) if n_pos and n_neg else None,
        per_class=per_class,
        confusion=ConfusionMatrix(labels=names, matrix=conf.tolist()),
        roc=roc,
    )


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> RocCurve:
    """ROC points at every distinct score (ties move together), from (0, 0) to (1, 1)."""
    s = np.asarray(scores, np.float64)
    pos = np.asarray(positive, bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return RocCurve(fpr=[], tpr=[], thresholds=[])
    order = np.argsort(-s, kind="mergesort")
    s, pos = s[order], pos[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tps = np.cumsum(pos)[last_of_run]
    fps = last_of_run + 1 - tps
    return RocCurve(
        fpr=[0.0, *(fps / n_neg).tolist()],
        tpr=[0.0, *(tps / n_pos).tolist()],
        thresholds=[None, *s[last_of_run].tolist()],
    )


def roc_auc(roc: RocCurve) -> float:
    """Area under the curve (trapezoids): P(toxic score of a toxic image > a benign one),
    ties counted one half."""
    f, t = np.asarray(roc.fpr), np.asarray(roc.tpr)
    return float(((f[1:] - f[:-1]) * (t[1:] + t[:-1]) / 2.0).sum())


def threshold_sweep(masses: np.ndarray, labels: Sequence[str], *, bank: ConceptBank,
                    decision: Decision, thresholds: Sequence[float] = DEFAULT_SWEEP,
                    ) -> list[SweepPoint]:
    """DSR and FPR when every toxic class uses the same threshold ``t``."""
    names = list(bank.class_names)
    toxic_cls = np.array([bank.is_toxic(n) for n in names])
    positive = np.array([toxic_cls[names.index(label)] for label in labels], bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    out = []
    for t in sorted(set(float(x) for x in thresholds)):
        flagged, _ = flags_for(masses, bank=bank, thresholds=np.full(len(names), t),
                               decision=decision)
        out.append(SweepPoint(
            threshold=t,
            defense_success_rate=_rate(int((flagged & positive).sum()), n_pos),
            false_positive_rate=_rate(int((flagged & ~positive).sum()), n_neg),
            flagged=int(flagged.sum()),
        ))
    return out
