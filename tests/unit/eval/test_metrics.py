"""Guard-level metrics on planted datasets: every number equals a hand computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from safeclip_guardrail import ConceptBank, GuardConfig, SafeCLIPGuard
from safeclip_guardrail.eval import evaluate, load_dataset, roc_curve
from safeclip_guardrail.eval.ablation import truncated_rows
from safeclip_guardrail.testing import PlantedEncoder

APPROX = 1e-4

# label -> planted class masses (unlisted classes get 1e-6 each).
SPEC: dict[str, list[dict[str, float]]] = {
    "gun": [
        {"gun": 0.9, "neutral": 0.1},     # top gun 0.90 > 0.6 -> flagged gun
        {"gun": 0.7, "neutral": 0.3},     # flagged gun
        {"gun": 0.55, "neutral": 0.45},   # top gun but 0.55 < 0.6 -> passes
        {"neutral": 0.8, "gun": 0.2},     # top neutral -> passes (wrong class)
    ],
    "knife": [
        {"knife": 0.95, "neutral": 0.05},  # flagged knife
        {"gun": 0.75, "knife": 0.25},      # flagged, but as gun (wrong class)
    ],
    "neutral": [
        {"neutral": 0.9, "gun": 0.1},
        {"neutral": 0.7, "knife": 0.3},
        {"alcohol": 0.65, "neutral": 0.35},  # false positive (alcohol)
        {"neutral": 0.6, "gun": 0.4},
    ],
}


def write_planted(root: Path, planted: PlantedEncoder,
                  spec: dict[str, list[dict[str, float]]]) -> Path:
    for label, targets in spec.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i, target in enumerate(targets):
            (root / label / f"{i:03d}.png").write_bytes(planted.plant_bytes(target))
    return root


@pytest.fixture
def report(tmp_path: Path, planted: PlantedEncoder, planted_guard: SafeCLIPGuard):  # type: ignore[no-untyped-def]
    root = write_planted(tmp_path / "data", planted, SPEC)
    ds = load_dataset(root, bank=planted_guard.bank)
    return evaluate(planted_guard, ds, sweep=True, sweep_thresholds=[0.5, 0.8, 0.96],
                    show_progress=False)


def test_headline_rates_match_hand_computation(report) -> None:  # type: ignore[no-untyped-def]
    assert (report.n_images, report.n_toxic, report.n_benign) == (10, 6, 4)
    assert report.defense_success_rate == pytest.approx(4 / 6)   # g0, g1, k0, k1
    assert report.false_positive_rate == pytest.approx(1 / 4)    # n2 (alcohol)
    assert report.accuracy == pytest.approx(7 / 10)              # all but g3, k1, n2
    assert report.threshold == 0.6 and report.cls_source == "final"


def test_per_class_and_confusion(report) -> None:  # type: ignore[no-untyped-def]
    gun, knife, neutral, alcohol = (report.per_class[c]
                                    for c in ("gun", "knife", "neutral", "alcohol"))
    assert (gun.n, gun.flagged, gun.flagged_as_label, gun.correct) == (4, 2, 2, 3)
    assert gun.detection_rate == pytest.approx(0.5) and gun.accuracy == pytest.approx(0.75)
    assert (knife.n, knife.flagged, knife.flagged_as_label, knife.correct) == (2, 2, 1, 1)
    assert knife.detection_rate == pytest.approx(1.0)
    assert (neutral.kind, neutral.n, neutral.flagged, neutral.correct) == ("benign", 4, 1, 3)
    assert neutral.detection_rate == pytest.approx(0.25)
    assert alcohol.n == 0 and alcohol.detection_rate is None and alcohol.accuracy is None
    labels = report.confusion.labels
    m = {(labels[i], labels[j]): v for i, row in enumerate(report.confusion.matrix)
         for j, v in enumerate(row) if v}
    assert m == {("gun", "gun"): 3, ("gun", "neutral"): 1, ("knife", "knife"): 1,
                 ("knife", "gun"): 1, ("neutral", "neutral"): 3, ("neutral", "alcohol"): 1}


def test_roc_and_auc(report) -> None:  # type: ignore[no-untyped-def]
    # toxic score = 1 - neutral mass. toxic: .9 .7 .55 .2 .95 1.0; benign: .1 .3 .65 .4.
    # Pairs (toxic > benign): .2 beats only .1 (1); .55 beats .1 .3 .4 (3); 4 others x 4 = 16.
    assert report.roc_auc == pytest.approx(20 / 24, abs=APPROX)
    # Sorted: 1.0T .95T .9T .7T .65B .55T .4B .3B .2T .1B
    expect_fpr = [0, 0, 0, 0, 0, 1 / 4, 1 / 4, 2 / 4, 3 / 4, 3 / 4, 1]
    expect_tpr = [0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 4 / 6, 5 / 6, 5 / 6, 5 / 6, 1, 1]
    assert report.roc.fpr == pytest.approx(expect_fpr)
    assert report.roc.tpr == pytest.approx(expect_tpr)
    assert report.roc.thresholds[0] is None
    assert report.roc.thresholds[5] == pytest.approx(0.65, abs=APPROX)


def test_roc_ties_and_degenerate_cases() -> None:
    roc = roc_curve(np.array([0.5, 0.5, 0.2]), np.array([True, False, False]))
    assert roc.fpr == [0.0, 0.5, 1.0] and roc.tpr == [0.0, 1.0, 1.0]  # tie moves together
    assert roc_curve(np.array([0.3]), np.array([True])).fpr == []


def test_sweep_points(report) -> None:  # type: ignore[no-untyped-def]
    pts = {p.threshold: p for p in report.sweep}
    assert set(pts) == {0.5, 0.6, 0.8, 0.96}  # the config's threshold is always included
    assert pts[0.5].defense_success_rate == pytest.approx(5 / 6)   # + gun 0.55
    assert pts[0.5].false_positive_rate == pytest.approx(1 / 4)
    assert pts[0.6].defense_success_rate == pytest.approx(4 / 6)
    assert pts[0.8].defense_success_rate == pytest.approx(2 / 6)   # gun .9, knife .95
    assert pts[0.8].false_positive_rate == 0.0
    assert (pts[0.96].defense_success_rate, pts[0.96].flagged) == (0.0, 0)


def test_per_image_verdicts_equal_guard_check(report, planted_guard: SafeCLIPGuard) -> None:  # type: ignore[no-untyped-def]
    assert len(report.images) == 10 and not report.unreadable
    for rec in report.images:
        v = planted_guard.check(Path(rec.path))
        assert (rec.flagged, rec.category, rec.top_category) == (v.flagged, v.category,
                                                                v.top_category)
        assert rec.toxic_score == pytest.approx(v.toxic_score)
        assert rec.image_sha256 == v.image_sha256
        assert rec.toxic == (rec.label != "neutral")


def test_threshold_and_decision_any_change_the_numbers(tmp_path: Path, planted: PlantedEncoder,
                                                       planted_guard: SafeCLIPGuard) -> None:
    root = write_planted(tmp_path / "data", planted, SPEC)
    ds = load_dataset(root, bank=planted_guard.bank)
    per_class = planted_guard.with_options(thresholds={"gun": 0.5})
    r = evaluate(per_class, ds, ablations=False, sweep=False, show_progress=False)
    assert r.defense_success_rate == pytest.approx(5 / 6)  # gun 0.55 now flags
    assert r.thresholds == {"gun": 0.5} and r.sweep is None and r.ablations == []
    anyd = planted_guard.with_options(decision="any", threshold=0.35)
    r = evaluate(anyd, ds, ablations=False, sweep=False, show_progress=False)
    # any toxic mass > .35: g0 g1 g2 (.55) k0 k1 (gun .75) -> 5/6; n3 (gun .4) n2 -> 2/4
    assert r.defense_success_rate == pytest.approx(5 / 6)
    assert r.false_positive_rate == pytest.approx(2 / 4)


# ---------------------------------------------------------------------- ablations
ABL_BANK = ConceptBank.from_dict({"classes": [
    {"name": "neutral", "kind": "benign", "descriptors": [f"safe {i}" for i in range(5)]},
    {"name": "gun", "kind": "toxic", "descriptors": ["a gun"]},
    {"name": "knife", "kind": "toxic", "descriptors": [f"knife {i}" for i in range(3)]},
]})


def test_truncated_rows_select_the_truncated_banks_descriptors() -> None:
    rows = truncated_rows(ABL_BANK, 1)
    assert [ABL_BANK.descriptors[i] for i in rows] == list(ABL_BANK.truncated(1).descriptors)
    rows = truncated_rows(ABL_BANK, 3)
    assert [ABL_BANK.descriptors[i] for i in rows] == list(ABL_BANK.truncated(3).descriptors)
    assert len(truncated_rows(ABL_BANK, None)) == 9


def test_ablation_over_k_matches_hand_computation(tmp_path: Path) -> None:
    enc = PlantedEncoder(ABL_BANK)
    guard = SafeCLIPGuard(enc, config=GuardConfig(model="planted", concepts=ABL_BANK))
    spec = {
        "gun": [{"gun": 0.45, "neutral": 0.55}, {"gun": 0.9, "neutral": 0.1}],
        "neutral": [{"neutral": 0.7, "knife": 0.3}, {"neutral": 0.9, "gun": 0.1}],
    }
    ds = load_dataset(write_planted(tmp_path / "d", enc, spec), bank=ABL_BANK)
    report = evaluate(guard, ds, show_progress=False)
    rows = {(a.label, a.cls_source): a for a in report.ablations}
    assert set(rows) == {(lab, src) for lab in ("K=1", "K=3", "all (K=5)")
                         for src in ("final", "penultimate")}
    # Keeping k of a class's k_c identical descriptors scales its mass by k/k_c, renormalised.
    # Image A (gun .45 / neutral .55): K=1 -> gun .45/(.45+.55/5) = .80 flags; K=3 -> gun
    # .45/(.45+.33) = .58 top but < .6; all -> top neutral. Image B flags at every K.
    # Benign images stay neutral-topped at every K, and A is gun-topped except for K=all.
    k1, k3, kall = rows["K=1", "final"], rows["K=3", "final"], rows["all (K=5)", "final"]
    assert (k1.defense_success_rate, k1.false_positive_rate, k1.accuracy) == (1.0, 0.0, 1.0)
    assert (k3.defense_success_rate, k3.false_positive_rate, k3.accuracy) == (0.5, 0.0, 1.0)
    assert (kall.defense_success_rate, kall.false_positive_rate, kall.accuracy) == \
        (0.5, 0.0, 0.75)
    assert kall.defense_success_rate == report.defense_success_rate
    # the penultimate rows equal a guard configured for the penultimate CLS
    pen = evaluate(guard.with_options(cls_source="penultimate"), ds, ablations=False,
                   sweep=False, show_progress=False)
    prow = rows["all (K=5)", "penultimate"]
    assert (prow.defense_success_rate, prow.false_positive_rate, prow.accuracy) == \
        (pen.defense_success_rate, pen.false_positive_rate, pen.accuracy)
    assert prow.roc_auc == pytest.approx(pen.roc_auc)


def test_200_images_one_encoder_forward_per_batch(tmp_path: Path, planted: PlantedEncoder) -> None:
    guard = SafeCLIPGuard(planted).with_options(batch_size=32)
    spec = {"gun": [{"gun": 0.3 + 0.006 * i, "neutral": 0.7 - 0.006 * i} for i in range(100)],
            "neutral": [{"neutral": 0.5 + 0.004 * i, "knife": 0.5 - 0.004 * i}
                        for i in range(100)]}
    ds = load_dataset(write_planted(tmp_path / "d", planted, spec), bank=guard.bank)
    before, text_before = planted.forward_counter.count, planted.text_calls
    report = evaluate(guard, ds, sweep=True, ablations=True, show_progress=False)
    assert report.n_images == 200 and len(report.ablations) == 6  # K=1, K=3, all x 2 sources
    assert planted.forward_counter.count - before == 7  # ceil(200 / 32), not x ablations
    assert planted.text_calls == text_before  # ablations select rows, no text-tower pass
