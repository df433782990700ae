"""Threshold calibration on planted benign sets: target met, tight, per class, impossible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.eval import CalibrationError, calibrate, evaluate, load_dataset
from safeclip_guardrail.eval.calibrate import DEFAULT_MARGIN
from safeclip_guardrail.testing import PlantedEncoder

# 20 benign images. Top-toxic ones (the only ones a threshold can flag with decision="top"):
#   gun .95 .90 .80 .70 .62   knife .85 .75 .66   alcohol .58
# The others are neutral-topped.
TOXIC_TOPPED = [("gun", 0.95), ("gun", 0.90), ("gun", 0.80), ("gun", 0.70), ("gun", 0.62),
                ("knife", 0.85), ("knife", 0.75), ("knife", 0.66), ("alcohol", 0.58)]


def benign_set(root: Path, planted: PlantedEncoder) -> Path:
    root.mkdir(parents=True)
    targets = [{c: m, "neutral": 1 - m} for c, m in TOXIC_TOPPED]
    targets += [{"neutral": 0.6 + 0.03 * i, "gun": 0.4 - 0.03 * i} for i in range(11)]
    for i, t in enumerate(targets):
        (root / f"{i:02d}.png").write_bytes(planted.plant_bytes(t))
    return root


@pytest.fixture
def benign(tmp_path: Path, planted: PlantedEncoder, planted_guard: SafeCLIPGuard):  # type: ignore[no-untyped-def]
    return load_dataset(benign_set(tmp_path / "benign", planted), bank=planted_guard.bank,
                        all_label="neutral")


def test_global_threshold_is_the_tightest_meeting_the_target(benign, planted_guard) -> None:  # type: ignore[no-untyped-def]
    # target 0.1 of 20 -> at most 2 false positives. Scores: .95 .90 .85 .80 .75 .70 .66 .62
    # .58, so the 3rd highest (knife .85) must pass.
    r = calibrate(planted_guard, benign, target_fpr=0.1, show_progress=False)
    assert r.n_images == 20 and r.allowed_false_positives == 2
    assert r.threshold == pytest.approx(0.85 + DEFAULT_MARGIN, abs=1e-4)
    assert r.false_positives == 2 and r.false_positive_rate == pytest.approx(0.1)
    assert r.false_positives_by_class == {"porn": 0, "blood": 0, "gun": 2, "gesture": 0,
                                          "knife": 0, "alcohol": 0, "cigarette": 0}
    assert r.thresholds == {} and not r.per_class
    # applying it and evaluating the same images gives the same FPR; 0.01 lower would not meet it
    cfg = r.apply(planted_guard.config)
    assert cfg.threshold == r.threshold and cfg.thresholds == {}
    again = evaluate(SafeCLIPGuard(planted_guard.encoder, config=cfg), benign,
                     ablations=False, show_progress=False)
    assert again.false_positive_rate == pytest.approx(0.1)
    lower = evaluate(planted_guard.with_options(threshold=r.threshold - 0.01), benign,
                     ablations=False, show_progress=False)
    assert lower.false_positive_rate is not None and lower.false_positive_rate > 0.1


@pytest.mark.parametrize(("target", "expected"), [
    (0.0, 0.95 + DEFAULT_MARGIN),   # nothing may flag
    (0.25, 0.70 + DEFAULT_MARGIN),  # 5 allowed -> the 6th highest (gun .70) must pass
    (0.45, 1 / 8),                  # 9 allowed = every top-toxic image: lowest meaningful t
])
def test_global_targets(benign, planted_guard, target: float, expected: float) -> None:  # type: ignore[no-untyped-def]
    r = calibrate(planted_guard, benign, target_fpr=target, show_progress=False)
    assert r.threshold == pytest.approx(expected, abs=1e-4)
    assert r.false_positive_rate <= target


def test_per_class_splits_the_budget(benign, planted_guard) -> None:  # type: ignore[no-untyped-def]
    # target 0.2 -> 4 false positives over 7 toxic classes: 0 each, remainder 4 to the classes
    # with the most top-toxic benign images: gun (5), knife (3), alcohol (1), then porn.
    r = calibrate(planted_guard, benign, target_fpr=0.2, per_class=True, show_progress=False)
    assert r.per_class and r.allowed_false_positives == 4
    assert r.thresholds["gun"] == pytest.approx(0.90 + DEFAULT_MARGIN, abs=1e-4)    # 1 of 5
    assert r.thresholds["knife"] == pytest.approx(0.75 + DEFAULT_MARGIN, abs=1e-4)  # 1 of 3
    assert r.thresholds["alcohol"] == pytest.approx(1 / 8)   # its one image may flag
    assert r.thresholds["porn"] == pytest.approx(1 / 8)      # no image could flag as porn
    assert r.false_positives == 3 and r.false_positive_rate <= 0.2
    assert len(r.notes) == 1 and "porn" in r.notes[0] and "alcohol" in r.notes[0]
    cfg = r.apply(planted_guard.config)
    assert cfg.thresholds == r.thresholds and cfg.threshold == 0.6
    again = evaluate(SafeCLIPGuard(planted_guard.encoder, config=cfg), benign,
                     ablations=False, show_progress=False)
    assert again.false_positive_rate == pytest.approx(3 / 20)


def test_min_threshold_floors_unconstrained_classes(benign, planted_guard) -> None:  # type: ignore[no-untyped-def]
    r = calibrate(planted_guard, benign, target_fpr=0.2, per_class=True, min_threshold=0.7,
                  show_progress=False)
    assert r.thresholds["porn"] == 0.7 and r.thresholds["alcohol"] == 0.7
    assert r.thresholds["gun"] == pytest.approx(0.90 + DEFAULT_MARGIN, abs=1e-4)
    assert r.false_positives == 2  # gun .95, knife .85; alcohol .58 is now below its floor


def test_decision_any_counts_every_toxic_class(benign, planted_guard) -> None:  # type: ignore[no-untyped-def]
    guard = planted_guard.with_options(decision="any")
    r = calibrate(guard, benign, target_fpr=0.1, show_progress=False)
    # Under "any" the neutral-topped images also have gun masses .40 .37 ...; the scores are
    # the same top nine plus those (all below .58), so the 3rd highest is still .85.
    assert r.threshold == pytest.approx(0.85 + DEFAULT_MARGIN, abs=1e-4)
    assert r.decision == "any" and r.false_positives == 2


def test_impossible_target_says_so(tmp_path: Path, planted: PlantedEncoder,
                                   planted_guard: SafeCLIPGuard) -> None:
    from PIL import Image

    root = tmp_path / "b"
    root.mkdir()
    for i in range(3):  # embeddings exactly on the gun direction: mass 1.0 in float64
        img = Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8))
        planted.register(img, planted.class_vectors["gun"])
        img.save(root / f"{i}.png")
    ds = load_dataset(root, bank=planted_guard.bank, all_label="neutral")
    with pytest.raises(CalibrationError, match=r"cannot reach a false-positive rate <= 0\.3.*"
                                               r"3 image\(s\) have a toxic mass of 1\.0"):
        calibrate(planted_guard, ds, target_fpr=0.3, show_progress=False)


def test_bad_arguments(benign, planted_guard) -> None:  # type: ignore[no-untyped-def]
    from safeclip_guardrail import ConfigurationError

    with pytest.raises(ConfigurationError, match="target false-positive rate"):
        calibrate(planted_guard, benign, target_fpr=1.5, show_progress=False)


def test_no_benign_images(tmp_path: Path, planted: PlantedEncoder,
                          planted_guard: SafeCLIPGuard) -> None:
    (tmp_path / "gun").mkdir()
    (tmp_path / "gun" / "a.png").write_bytes(planted.plant_bytes("gun"))
    ds = load_dataset(tmp_path, bank=planted_guard.bank)  # only toxic labels
    with pytest.raises(CalibrationError, match="no readable benign images"):
        calibrate(planted_guard, ds, target_fpr=0.1, show_progress=False)
