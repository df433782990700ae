"""``safeclip calibrate`` on a tiny real CLIP; the saved config reproduces the FPR via the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeclip_guardrail import GuardConfig, SafeCLIPGuard
from safeclip_guardrail.cli import main


def _benign(root: Path, n: int, seed: int = 1) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)).save(
            root / f"{i:02d}.png")
    return root


@pytest.fixture
def model_args(tiny_clip_dir: Path) -> list[str]:
    return ["--model", str(tiny_clip_dir), "--device", "cpu", "--dtype", "float32"]


def _scan_flagged(paths: list[str], extra: list[str],
                  capsys: pytest.CaptureFixture[str]) -> list[bool]:
    main(["scan", *paths, "--json", *extra])
    return [json.loads(x)["flagged"] for x in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("per_class", [False, True])
def test_calibrated_config_reproduces_through_the_cli(
        tmp_path: Path, model_args: list[str], per_class: bool,
        capsys: pytest.CaptureFixture[str]) -> None:
    benign = _benign(tmp_path / "benign", 30)
    target = 0.5
    # with the default threshold the random tiny model flags far more than the target
    before = _scan_flagged([str(benign)], model_args, capsys)
    assert sum(before) / len(before) > target
    out = tmp_path / "guard.json"
    args = ["calibrate", str(benign), "--target-fpr", str(target), "--out", str(out),
            *model_args, "--no-progress"]
    code = main(args + (["--per-class"] if per_class else []))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"wrote {out}" in captured.out
    cfg = GuardConfig.from_file(out)
    assert cfg.model == model_args[1] and cfg.device == "cpu"
    if per_class:
        assert set(cfg.thresholds) == set(cfg.bank.toxic_classes)
    else:
        assert cfg.thresholds == {} and 0.6 < cfg.threshold < 1
    after = _scan_flagged([str(benign)], ["--config", str(out)], capsys)
    assert len(after) == 30 and sum(after) / 30 <= target
    assert sum(after) >= 1  # the tightest threshold: not "flag nothing"
    # the Python API loads the same file and agrees
    guard = SafeCLIPGuard.from_pretrained(config=out)
    api = [v.flagged for v in guard.check_batch(sorted(benign.glob("*.png")))]
    assert api == after


def test_yaml_output_and_manifest_input(tmp_path: Path, model_args: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    benign = _benign(tmp_path / "b", 6)
    manifest = tmp_path / "m.csv"
    rows = [f"b/{p.name},neutral" for p in sorted(benign.glob("*.png"))]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\nb/missing.png,neutral\n")
    out = tmp_path / "g.yaml"
    code = main(["calibrate", str(manifest), "--target-fpr", "0.34", "--out", str(out),
                 *model_args, "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "of 6 benign images flagged" in captured.out
    assert "1 file(s) could not be read" in captured.err and "missing.png" in captured.err
    assert GuardConfig.from_file(out).threshold > 0


@pytest.mark.parametrize(("extra", "message"), [
    (["--target-fpr", "1.2", "--out", "g.json"], "must be in [0, 1)"),
    (["--target-fpr", "0.1", "--out", "g.txt"], "must end in .json, .yaml or .yml"),
    (["--target-fpr", "0.1", "--out", "nowhere/g.json"], "folder of --out does not exist"),
    (["--target-fpr", "0.1", "--out", "g.json", "--benign-class", "gun"],
     "not a benign class"),
    (["--out", "g.json"], "--target-fpr"),
])
def test_calibrate_usage_errors(tmp_path: Path, extra: list[str], message: str,
                                monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    benign = _benign(tmp_path / "b", 1)
    assert main(["calibrate", str(benign), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_no_readable_images_is_one_line(tmp_path: Path, model_args: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(b"broken")
    code = main(["calibrate", str(tmp_path / "b"), "--target-fpr", "0.1", "--out",
                 str(tmp_path / "g.json"), *model_args, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "no readable benign images" in err and "Traceback" not in err
    assert not (tmp_path / "g.json").exists()
