"""Calibrate thresholds to a target false-positive rate on a set of benign images.

The decision rule flags image ``i`` as class ``c`` when ``mass(i, c) > t(c)`` and ``c`` may
decide it: with ``decision="top"`` only the top class can (so a threshold matters only for
images whose top class is toxic), with ``decision="any"`` every toxic class can. Each
benign image therefore has a *flag score* per toxic class (its mass there, or -inf when
that class cannot decide it), and the false-positive count at threshold ``t`` is the
number of scores above ``t``.

- global: one threshold for every toxic class, the lowest one whose false-positive count
  is at most ``floor(target * n)``;
- per class (``per_class=True``): that budget of false positives is split evenly over the
  toxic classes (the remainder going to the classes with the most benign images that
  could flag), and each class gets the lowest threshold within its share. The shares add
  up to the budget, so the whole set still meets the target.

The threshold sits ``margin`` above the highest benign score that must pass, so that
re-encoding noise (other batch sizes, another dtype) does not tip that image over.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from safeclip_guardrail.concepts import ConceptBank
from safeclip_guardrail.config import Decision, GuardConfig
from safeclip_guardrail.errors import CalibrationError, ConfigurationError
from safeclip_guardrail.eval.datasets import EvalDataset, UnreadableFile
from safeclip_guardrail.eval.embed import EmbeddedDataset, embed_dataset, subset
from safeclip_guardrail.eval.metrics import class_masses_for, flags_for

if TYPE_CHECKING:
    from safeclip_guardrail.guard import SafeCLIPGuard

__all__ = [
    "CalibrationError",
    "CalibrationResult",
    "calibrate",
    "calibrate_thresholds",
    "flag_scores",
]

DEFAULT_MARGIN = 1e-4


class CalibrationResult(BaseModel):
    """Thresholds meeting the target, and what they give on the calibration set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_fpr: float
    n_images: int
    allowed_false_positives: int
    per_class: bool
    threshold: float
    """The global threshold (for per-class calibration: the config's unchanged default)."""
    thresholds: dict[str, float]
    """Per-class thresholds (empty for global calibration)."""
    false_positives: int
    false_positive_rate: float
    false_positives_by_class: dict[str, int]
    decision: Decision
    notes: list[str]
    unreadable: list[UnreadableFile] = Field(default_factory=list)
    """Calibration files that could not be read (left out)."""

    def apply(self, config: GuardConfig) -> GuardConfig:
        """``config`` with these thresholds (global calibration clears per-class overrides)."""
        return config.replace(threshold=self.threshold, thresholds=dict(self.thresholds))


def calibrate(guard: SafeCLIPGuard, dataset: EvalDataset, *, target_fpr: float,
              per_class: bool = False, margin: float = DEFAULT_MARGIN,
              min_threshold: float | None = None,
              show_progress: bool = True,
              embedded: EmbeddedDataset | None = None) -> CalibrationResult:
    """Embed the benign images of ``dataset`` once and calibrate ``guard``'s thresholds.

    Images with a toxic label (a manifest may mix them in) are left out. Apply the result
    with ``result.apply(guard.config)`` and save it with ``GuardConfig.to_file``.
    ``embedded``: embeddings computed before (e.g. read from a corpus scan with
    :func:`~safeclip_guardrail.eval.stored.load_scan_embeddings`); no encoder pass then.
    """
    bank = guard.bank
    if embedded is None:
        embedded = embed_dataset(guard, dataset, show_progress=show_progress)
    benign = subset(embedded, np.array([not bank.is_toxic(s.label) for s in embedded.samples],
                                       bool))
    if not len(benign):
        msg = (f"no readable benign images in {dataset.source} "
               f"({len(embedded.unreadable)} unreadable); calibration needs benign images")
        raise CalibrationError(msg)
    emb = benign.embeddings.get(guard.config.cls_source)
    masses = class_masses_for(emb, guard.text_embeddings,
                              logit_scale=guard.encoder.logit_scale, bank=bank)
    result = calibrate_thresholds(masses, bank=bank, config=guard.config,
                                  target_fpr=target_fpr, per_class=per_class, margin=margin,
                                  min_threshold=min_threshold)
    return result.model_copy(update={"unreadable": list(embedded.unreadable)})


def flag_scores(masses: np.ndarray, *, bank: ConceptBank, decision: Decision) -> np.ndarray:
    """(n, C): the mass with which each class could flag each image; -inf where it cannot."""
    names = bank.class_names
    toxic = np.array([bank.is_toxic(n) for n in names])
    out = np.full(masses.shape, -np.inf)
    if decision == "top":
        rows = np.arange(masses.shape[0])
        top = masses.argmax(axis=1)
        can = toxic[top]
        out[rows[can], top[can]] = masses[rows[can], top[can]]
    else:
        out[:, toxic] = masses[:, toxic]
    return out


def calibrate_thresholds(masses: np.ndarray, *, bank: ConceptBank, config: GuardConfig,
                         target_fpr: float, per_class: bool = False,
                         margin: float = DEFAULT_MARGIN,
                         min_threshold: float | None = None) -> CalibrationResult:
    """The lowest thresholds whose false-positive rate on ``masses`` (benign images) is
    at most ``target_fpr``; raises :class:`CalibrationError` when no threshold below 1 can.

    A threshold no benign image constrains falls to the lowest meaningful value (1/C for
    ``decision="top"``: the top class always has at least that mass) or to
    ``min_threshold`` when given; the result's ``notes`` say which classes that happened to.
    """
    if not 0.0 <= target_fpr < 1.0:
        msg = f"target false-positive rate must be in [0, 1), got {target_fpr}"
        raise ConfigurationError(msg)
    if not 0.0 <= margin < 0.1:
        msg = f"margin must be in [0, 0.1), got {margin}"
        raise ConfigurationError(msg)
    n = int(masses.shape[0])
    if n == 0:
        msg = "no readable benign images to calibrate on"
        raise CalibrationError(msg)
    names = list(bank.class_names)
    toxic_idx = [j for j, name in enumerate(names) if bank.is_toxic(name)]
    scores = flag_scores(masses, bank=bank, decision=config.decision)
    budget = math.floor(target_fpr * n + 1e-9)
    if min_threshold is not None and not 0.0 < min_threshold < 1.0:
        msg = f"min_threshold must be in (0, 1), got {min_threshold}"
        raise ConfigurationError(msg)
    floor = 1.0 / len(names) if config.decision == "top" else 1e-3
    floor = max(floor, min_threshold or 0.0)
    notes: list[str] = []
    if per_class:
        shares = _split_budget(budget, scores, toxic_idx)
        found = {names[j]: _lowest_threshold(scores[:, j], shares[j], floor, margin,
                                             what=f"class {names[j]!r}", n=n,
                                             target=target_fpr)
                 for j in toxic_idx}
        thresholds = found
        threshold = config.threshold
    else:
        thresholds = {}
        threshold = _lowest_threshold(scores.max(axis=1), budget, floor, margin,
                                      what="the global threshold", n=n, target=target_fpr)
    cut = np.array([thresholds.get(name, threshold) for name in names])
    flagged, deciding = flags_for(masses, bank=bank, thresholds=cut, decision=config.decision)
    by_class = {names[j]: int((flagged & (deciding == j)).sum()) for j in toxic_idx}
    at_floor = [k for k, v in (thresholds or {"all classes": threshold}).items() if v == floor]
    if at_floor:
        notes.append(
            f"the threshold of {', '.join(at_floor)} is the lowest allowed ({floor:.4g}): no "
            "benign image constrains it. Check detection on toxic images with 'safeclip eval', "
            "or set a floor with --min-threshold"
        )
    return CalibrationResult(
        target_fpr=target_fpr, n_images=n, allowed_false_positives=budget, per_class=per_class,
        threshold=float(threshold), thresholds={k: float(v) for k, v in thresholds.items()},
        false_positives=int(flagged.sum()), false_positive_rate=float(flagged.mean()),
        false_positives_by_class=by_class, decision=config.decision, notes=notes,
    )


def _lowest_threshold(scores: np.ndarray, allowed: int, floor: float, margin: float, *,
                      what: str, n: int, target: float) -> float:
    """Lowest ``t`` in (0, 1) with at most ``allowed`` of ``scores`` above it."""
    finite = np.sort(scores[np.isfinite(scores)])[::-1]
    if len(finite) <= allowed:
        return floor
    must_pass = float(finite[allowed])  # the (allowed+1)-th highest score must not flag
    if must_pass >= 1.0:
        msg = (f"cannot reach a false-positive rate <= {target:g} on {n} benign images with "
               f"{what}: {int((finite >= 1.0).sum())} image(s) have a toxic mass of 1.0 and flag "
               "at every threshold below 1. Add benign-context classes to the concept bank for "
               "what these images show, or accept a higher target")
        raise CalibrationError(msg)
    t = min(must_pass + margin, (must_pass + 1.0) / 2.0)
    return max(t, floor)


def _split_budget(budget: int, scores: np.ndarray, toxic_idx: list[int]) -> dict[int, int]:
    base, extra = divmod(budget, len(toxic_idx))
    pressure = sorted(toxic_idx, key=lambda j: -int(np.isfinite(scores[:, j]).sum()))
    return {j: base + (1 if pressure.index(j) < extra else 0) for j in toxic_idx}
