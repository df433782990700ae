"""Report files: JSON validating against its schema, Markdown tables, real PNG plots."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeclip_guardrail import MissingDependencyError, SafeCLIPGuard
from safeclip_guardrail.eval import EvalReport, evaluate, load_dataset, write_report
from safeclip_guardrail.testing import PlantedEncoder

SPEC = {
    "gun": [{"gun": 0.9, "neutral": 0.1}, {"gun": 0.55, "neutral": 0.45},
            {"neutral": 0.7, "gun": 0.3}],
    "knife": [{"knife": 0.8, "neutral": 0.2}],
    "neutral": [{"neutral": 0.9, "gun": 0.1}, {"alcohol": 0.7, "neutral": 0.3},
                {"neutral": 0.6, "knife": 0.4}],
}


@pytest.fixture
def report(tmp_path: Path, planted: PlantedEncoder, planted_guard: SafeCLIPGuard) -> EvalReport:
    root = tmp_path / "data"
    for label, targets in SPEC.items():
        (root / label).mkdir(parents=True)
        for i, t in enumerate(targets):
            (root / label / f"{i}.png").write_bytes(planted.plant_bytes(t))
    (root / "gun" / "broken.jpg").write_bytes(b"not a jpeg")
    return evaluate(planted_guard, load_dataset(root, bank=planted_guard.bank),
                    show_progress=False)


def _assert_real_plot(path: Path) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size[0] >= 300 and im.size[1] >= 300
        arr = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert arr.std() > 10  # not blank
    colours = {tuple(c) for c in arr.reshape(-1, 3)[:: 7]}
    assert len(colours) > 20  # lines, text and axes, not a flat fill
    # something coloured was drawn (matplotlib's blue/red/green), not only grey text
    saturation = arr.max(axis=2) - arr.min(axis=2)
    assert (saturation > 80).sum() > 200


def test_files_schema_and_plots(report: EvalReport, tmp_path: Path) -> None:
    files = write_report(report, tmp_path / "out")
    assert files.json_path.is_file() and files.markdown_path.is_file()
    assert set(files.plots) == {"roc", "sweep", "confusion"}
    for p in files.plots.values():
        _assert_real_plot(p)

    data = json.loads(files.json_path.read_text())
    for key in ("defense_success_rate", "false_positive_rate", "per_class", "roc_auc",
                "threshold", "images", "config", "model", "library_versions", "unreadable",
                "confusion", "roc", "sweep", "ablations", "accuracy"):
        assert key in data, key
    again = EvalReport.model_validate_json(files.json_path.read_text())
    assert again == report
    assert data["model"] == "planted" and data["config"]["threshold"] == 0.6
    assert {"safeclip-guardrail", "numpy", "torch"} <= set(data["library_versions"])
    assert len(data["images"]) == 7 and data["images"][0]["path"].endswith(".png")
    assert {"flagged", "category", "scores", "toxic_score", "label"} <= set(data["images"][0])
    assert [Path(u["path"]).name for u in data["unreadable"]] == ["broken.jpg"]

    md = files.markdown_path.read_text()
    assert "| defense success rate (toxic flagged) | 50.0% |" in md
    assert "| false positive rate (benign flagged) | 33.3% |" in md
    assert "## Ablations" in md and "## Threshold sweep" in md and "broken.jpg" in md
    assert "![roc](roc.png)" in md


def test_invalid_report_json_is_rejected(report: EvalReport, tmp_path: Path) -> None:
    files = write_report(report, tmp_path / "o", plots=False)
    data = json.loads(files.json_path.read_text())
    data["defense_success_rate"] = "high"
    with pytest.raises(ValueError, match="defense_success_rate"):
        EvalReport.model_validate(data)
    data = json.loads(files.json_path.read_text())
    data["surprise"] = 1
    with pytest.raises(ValueError, match="surprise"):
        EvalReport.model_validate(data)


def test_no_plots_and_missing_matplotlib(report: EvalReport, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    files = write_report(report, tmp_path / "np", plots=False)
    assert files.plots == {} and not list((tmp_path / "np").glob("*.png"))
    assert "![" not in files.markdown_path.read_text()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"pip install \"matplotlib>=3.8\""):
        write_report(report, tmp_path / "mm")
