"""The decision rule, checked against an independent recomputation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safeclip_guardrail import ConceptBank
from safeclip_guardrail.config import build_config
from safeclip_guardrail.scoring import class_masses, decide, descriptor_probabilities, score


def _reference(v: np.ndarray, t: np.ndarray, s: float, bank: ConceptBank) -> dict[str, float]:
    """Straight from the paper: joint softmax over all descriptors, class mass = sum."""
    logits = [s * float(np.dot(v.astype(np.float64), row.astype(np.float64))) for row in t]
    m = max(logits)
    z = sum(math.exp(x - m) for x in logits)
    p = [math.exp(x - m) / z for x in logits]
    masses: dict[str, float] = {}
    for prob, ci in zip(p, bank.descriptor_class_index):
        name = bank.class_names[ci]
        masses[name] = masses.get(name, 0.0) + prob
    return masses


def _unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.standard_normal(shape)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("scale", [100.0, 14.3])
def test_masses_match_independent_recomputation(scale: float) -> None:
    rng = np.random.default_rng(1)
    bank = ConceptBank.default()
    text = _unit(rng, 40, 16)
    images = _unit(rng, 6, 16)
    verdicts = score(images, text, logit_scale=scale, bank=bank, config=build_config())
    for v, img in zip(verdicts, images):
        ref = _reference(img, text, scale, bank)
        assert v.scores == pytest.approx(ref, abs=1e-9)
        assert sum(v.scores.values()) == pytest.approx(1.0, abs=1e-9)
        top = max(ref, key=ref.get)  # type: ignore[arg-type]
        assert v.top_category == top
        expect = bank.is_toxic(top) and ref[top] > 0.6
        assert v.flagged == expect
        assert v.category == (top if expect else None)
        assert v.toxic_score == pytest.approx(1.0 - ref["neutral"], abs=1e-9)


def test_benign_top_never_flags_and_thresholds_are_strict() -> None:
    masses = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]])
    toxic = np.array([False, True])
    flags, deciding = decide(masses, toxic=toxic, thresholds=np.array([0.6, 0.6]))
    assert flags.tolist() == [False, False, True]  # 0.6 is not > 0.6
    assert deciding.tolist() == [0, 1, 1]


def test_any_decision_flags_a_toxic_class_that_is_not_top() -> None:
    masses = np.array([[0.5, 0.45, 0.05]])
    toxic = np.array([False, True, True])
    th = np.array([0.6, 0.4, 0.6])
    top_flags, _ = decide(masses, toxic=toxic, thresholds=th, decision="top")
    any_flags, deciding = decide(masses, toxic=toxic, thresholds=th, decision="any")
    assert not top_flags[0]
    assert any_flags[0] and deciding[0] == 1


def test_probabilities_and_class_masses_shapes() -> None:
    p = descriptor_probabilities(np.eye(3)[:2], np.eye(3), 10.0)
    assert p.shape == (2, 3) and np.allclose(p.sum(axis=1), 1.0)
    m = class_masses(p, [0, 0, 1], 2)
    assert m.shape == (2, 2) and np.allclose(m.sum(axis=1), 1.0)


def test_per_class_threshold_respected(planted_guard) -> None:  # type: ignore[no-untyped-def]
    planted = planted_guard.encoder
    img = planted.plant({"alcohol": 0.7, "neutral": 0.3})
    assert planted_guard.check(img).flagged
    strict = planted_guard.with_options(thresholds={"alcohol": 0.8})
    v = strict.check(img)
    assert not v.flagged and v.top_category == "alcohol" and v.threshold == 0.8
    assert strict.check(planted.plant({"gun": 0.7, "neutral": 0.3})).flagged
