"""The SafeCLIP decision rule as pure functions (numpy in, numbers out, no I/O).

For normalised image embeddings ``v`` and descriptor embeddings ``t(c, k)``::

    logits  = s * <v, t(c, k)>               s = the model's own logit scale (100 for CLIP)
    p       = softmax over all C*K descriptors jointly
    mass(c) = sum_k p(c, k)
    top     = argmax_c mass(c)
    flag   <=> top is toxic and mass(top) > threshold(top)        (decision="top", the paper)
    flag   <=> some toxic c has mass(c) > threshold(c)             (decision="any")

Benign classes never flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from safeclip_guardrail.concepts import ConceptBank
from safeclip_guardrail.config import Decision, ScoringConfig
from safeclip_guardrail.errors import EncoderOutputError
from safeclip_guardrail.result import ImageVerdict

__all__ = ["class_masses", "decide", "descriptor_probabilities", "score", "score_rows"]


def descriptor_probabilities(image_emb: np.ndarray, text_emb: np.ndarray,
                             logit_scale: float) -> np.ndarray:
    """(n, m) joint softmax over descriptors of ``logit_scale * cosine``; rows sum to 1."""
    logits = logit_scale * (np.asarray(image_emb, np.float64) @ np.asarray(text_emb, np.float64).T)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def class_masses(probs: np.ndarray, class_index: Sequence[int], n_classes: int) -> np.ndarray:
    """(n, C): the probability mass of each class (sum of its descriptors' probabilities)."""
    onehot = np.zeros((len(class_index), n_classes), np.float64)
    onehot[np.arange(len(class_index)), np.asarray(class_index)] = 1.0
    return np.asarray(probs @ onehot)


def decide(masses: np.ndarray, *, toxic: np.ndarray, thresholds: np.ndarray,
           decision: Decision = "top") -> tuple[np.ndarray, np.ndarray]:
    """Flags (n,) bool and the deciding class index (n,) for each row of ``masses``.

    The deciding class is the flagged class when flagged, else the top class.
    """
    top = masses.argmax(axis=1)
    rows = np.arange(masses.shape[0])
    if decision == "top":
        flagged = toxic[top] & (masses[rows, top] > thresholds[top])
        return flagged, top
    over = (masses > thresholds[None, :]) & toxic[None, :]
    flagged = over.any(axis=1)
    worst = np.where(over, masses, -1.0).argmax(axis=1)
    return flagged, np.where(flagged, worst, top)


def score(embeddings: np.ndarray, text_emb: np.ndarray, *, logit_scale: float,
          bank: ConceptBank, config: ScoringConfig) -> list[ImageVerdict]:
    """Verdicts for ``embeddings`` (n, d) against the bank's descriptor embeddings."""
    names = bank.class_names
    if embeddings.ndim != 2 or embeddings.shape[1] != text_emb.shape[1]:
        from safeclip_guardrail.errors import ConfigurationError

        msg = f"image embeddings have shape {embeddings.shape}, expected (n, {text_emb.shape[1]})"
        raise ConfigurationError(msg)
    probs = descriptor_probabilities(embeddings, text_emb, logit_scale)
    masses = class_masses(probs, bank.descriptor_class_index, len(names))
    toxic = np.array([bank.is_toxic(n) for n in names])
    thresholds = np.array([config.threshold_for(n) for n in names])
    flagged, deciding = decide(masses, toxic=toxic, thresholds=thresholds,
                               decision=config.decision)
    top = masses.argmax(axis=1)
    toxic_scores = masses[:, toxic].sum(axis=1)
    out: list[ImageVerdict] = []
    for i in range(masses.shape[0]):
        d = int(deciding[i])
        out.append(ImageVerdict(
            flagged=bool(flagged[i]),
            category=names[d] if flagged[i] else None,
            top_category=names[int(top[i])],
            scores={n: float(masses[i, j]) for j, n in enumerate(names)},
            toxic_score=float(toxic_scores[i]),
            threshold=float(thresholds[d]),
        ))
    return out


def score_rows(embeddings: Any, text_emb: np.ndarray, *, logit_scale: float, bank: ConceptBank,
               config: ScoringConfig, sources: Sequence[str] | None = None,
               ) -> list[ImageVerdict | EncoderOutputError]:
    """:func:`score` for raw encoder rows, each checked first: a row that is not finite or is
    all zeros (or whose scores come out non-finite) gets an :class:`EncoderOutputError`
    naming ``sources[i]``, never a verdict, so a broken encoder fails closed."""
    emb = np.asarray(embeddings, np.float32)
    if emb.ndim == 1:
        emb = emb[None, :]
    if emb.shape[0] == 0:
        return []
    with np.errstate(all="ignore"):
        finite = np.isfinite(emb).all(axis=1) & (np.abs(emb).sum(axis=1) > 0)
        safe = np.where(finite[:, None], emb, 1.0)
        norm = np.maximum(np.linalg.norm(safe, axis=1, keepdims=True), 1e-12)
        unit = np.asarray(safe / norm, dtype=np.float32)  # as encoders.base.l2_normalize
    verdicts = score(unit, text_emb, logit_scale=logit_scale, bank=bank, config=config)
    out: list[ImageVerdict | EncoderOutputError] = []
    for i, verdict in enumerate(verdicts):
        if finite[i] and all(np.isfinite(v) for v in (*verdict.scores.values(),
                                                      verdict.toxic_score)):
            out.append(verdict)
            continue
        where = sources[i] if sources is not None else f"row {i}"
        out.append(EncoderOutputError(
            f"the encoder produced a non-finite or zero embedding for image {where}; no "
            "verdict is possible (check the model's weights and dtype: float16 on CPU or a "
            "corrupt checkpoint can overflow)", source=where))
    return out
