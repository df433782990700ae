"""Recalibration from a scan's stored embeddings: the report of `safeclip eval` on the
images, with zero image-encoder forwards (counted with a global torch forward hook)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from safeclip_guardrail import ConceptBank
from safeclip_guardrail.cli import main


@pytest.fixture
def vision_forwards() -> Iterator[list[int]]:
    """Counts forwards of any CLIP vision transformer in this process."""
    count = [0]

    def hook(module: torch.nn.Module, *_: Any) -> None:
        if type(module).__name__ in {"CLIPVisionModel", "CLIPVisionTransformer"}:
            count[0] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield count
    handle.remove()


def _dataset(root: Path) -> Path:
    rng = np.random.default_rng(3)
    for label, n in {"gun": 4, "neutral": 5, "knife": 2}.items():
        (root / label).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 256, (32, 32, 3), np.uint8)
            Image.fromarray(arr).save(root / label / f"{i:02d}.png")
    (root / "neutral" / "zz_bad.png").write_bytes(b"broken")
    return root


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    report = dict(report)
    report.pop("created_at")
    return report


def _assert_close(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-5), where
    else:
        assert a == b, where


def test_eval_and_calibrate_from_stored_embeddings(tiny_clip_dir: Path, tmp_path: Path,
                                                   vision_forwards: list[int],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = _dataset(tmp_path / "data")
    model = ["--model", str(tiny_clip_dir), "--device", "cpu", "--dtype", "float32",
             "--no-progress", "--batch-size", "4"]
    scan = tmp_path / "scan"
    assert main(["scan-corpus", str(data), "--out", str(scan), "--embeddings", *model]) == 0
    assert vision_forwards[0] > 0
    for threshold in ("0.6", "0.3"):  # a new threshold: only the decision changes
        args = ["--threshold", threshold, "--sweep", "--no-plots", *model]
        assert main(["eval", str(data), "--out", str(tmp_path / f"images{threshold}"),
                     *args]) == 0
        vision_forwards[0] = 0
        assert main(["eval", str(data), "--out", str(tmp_path / f"stored{threshold}"),
                     "--from-embeddings", str(scan), *args]) == 0
        assert vision_forwards[0] == 0
        on_images = json.loads((tmp_path / f"images{threshold}" / "report.json").read_text())
        stored = json.loads((tmp_path / f"stored{threshold}" / "report.json").read_text())
        _assert_close(_comparable(on_images), _comparable(stored))
        assert stored["n_images"] == 11 and len(stored["unreadable"]) == 1
        assert stored["ablations"]  # both CLS sources were stored
    capsys.readouterr()
    # calibration: the same thresholds as from the images, no image forward
    for extra in ([], ["--from-embeddings", str(scan)]):
        vision_forwards[0] = 0
        out = tmp_path / f"guard{len(extra)}.json"
        assert main(["calibrate", str(data / "neutral"), "--target-fpr", "0.2", "--per-class",
                     "--out", str(out), *extra, *model]) == 0
        assert (vision_forwards[0] == 0) == bool(extra)
    first = json.loads((tmp_path / "guard0.json").read_text())["thresholds"]
    again = json.loads((tmp_path / "guard2.json").read_text())["thresholds"]
    _assert_close(first, again)
    # a new concept bank: the text tower runs, the image tower does not
    bank = ConceptBank.default().with_class("toy", ["a toy gun", "a water pistol"], kind="benign")
    bank.to_file(tmp_path / "bank.json")
    vision_forwards[0] = 0
    assert main(["eval", str(data), "--concepts", str(tmp_path / "bank.json"), "--no-ablations",
                 "--from-embeddings", str(scan), *model]) == 0
    assert vision_forwards[0] == 0 and "toy" in capsys.readouterr().out


def test_from_embeddings_refuses_what_it_cannot_use(tiny_clip_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = _dataset(tmp_path / "data")
    model = ["--model", str(tiny_clip_dir), "--device", "cpu", "--dtype", "float32",
             "--no-progress"]
    assert main(["scan-corpus", str(data / "gun"), "--out", str(tmp_path / "plain"), *model]) == 0
    assert main(["scan-corpus", str(data / "gun"), "--out", str(tmp_path / "emb"), "--embeddings",
                 *model]) == 0
    capsys.readouterr()
    other = ["--model", "other-model", "--device", "cpu", "--no-progress"]
    cases = [
        (["eval", str(data), "--from-embeddings", str(tmp_path / "plain"), *model],
         "has no embeddings"),
        (["eval", str(data), "--from-embeddings", str(tmp_path / "emb"), *model],
         "8 of 12 images"),
        (["eval", str(data), "--from-embeddings", str(tmp_path / "nope"), *model],
         "no scan found"),
        (["calibrate", str(data / "gun"), "--target-fpr", "0.1", "--out", str(tmp_path / "g.json"),
          "--from-embeddings", str(tmp_path / "emb"), *other], "pass --model"),
        (["eval", str(data), "--e2e", "--chat-model", "llava:x", "--from-embeddings",
          str(tmp_path / "emb"), *model], "cannot use --from-embeddings"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
