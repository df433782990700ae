"""Ablations over descriptors per class (K) and ``cls_source``, from one set of embeddings.

A bank truncated to its first K descriptors per class embeds to a subset of the rows of
the full bank's descriptor matrix, so every ablation is a row selection plus a re-score:
no extra vision pass and no extra text-tower pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from safeclip_guardrail.concepts import ConceptBank
from safeclip_guardrail.config import ClsSource, GuardConfig
from safeclip_guardrail.encoders.base import ImageEmbeddings
from safeclip_guardrail.eval.metrics import class_masses_for, guard_metrics

__all__ = ["DEFAULT_KS", "AblationRow", "ablate", "truncated_rows"]

DEFAULT_KS: tuple[int | None, ...] = (1, 3, 5, None)
"""Descriptors per class compared by default (None: all of them); the paper found 5 best."""


class AblationRow(BaseModel):
    """Metrics of one (K, cls_source) variant."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int | None
    """Descriptors per class kept (None: all)."""
    label: str
    """``K=1``, ``K=3``, ``all (K=5)`` ..."""
    cls_source: ClsSource
    defense_success_rate: float | None
    false_positive_rate: float | None
    accuracy: float | None
    roc_auc: float | None


def truncated_rows(bank: ConceptBank, k: int | None) -> np.ndarray:
    """Indices of the full bank's descriptor rows that ``bank.truncated(k)`` keeps, in order."""
    rows: list[int] = []
    start = 0
    for c in bank.classes:
        n = len(c.descriptors)
        rows.extend(range(start, start + (n if k is None else min(k, n))))
        start += n
    return np.asarray(rows, np.int64)


def ablate(embeddings: ImageEmbeddings, labels: Sequence[str], *, bank: ConceptBank,
           text_embeddings: np.ndarray, logit_scale: float, config: GuardConfig,
           ks: Sequence[int | None] = DEFAULT_KS) -> list[AblationRow]:
    """One row per (K, cls_source); K values at or above the bank's largest K collapse into
    "all". ``cls_source="penultimate"`` rows appear when the encoder provides it."""
    max_k = max(len(c.descriptors) for c in bank.classes)
    wanted: list[int | None] = []
    for k in ks:
        kk = None if k is None or k >= max_k else int(k)
        if kk not in wanted:
            wanted.append(kk)
    sources: list[ClsSource] = ["final"]
    if embeddings.penultimate is not None:
        sources.append("penultimate")
    out = []
    for source in sources:
        emb = embeddings.get(source)
        for k in wanted:
            sub_bank = bank if k is None else bank.truncated(k)
            text = text_embeddings[truncated_rows(bank, k)]
            masses = class_masses_for(emb, text, logit_scale=logit_scale, bank=sub_bank)
            m = guard_metrics(masses, labels, bank=sub_bank, config=config)
            out.append(AblationRow(
                k=k, label=f"K={k}" if k is not None else f"all (K={max_k})", cls_source=source,
                defense_success_rate=m.defense_success_rate,
                false_positive_rate=m.false_positive_rate,
                accuracy=m.accuracy, roc_auc=m.roc_auc,
            ))
    return out
