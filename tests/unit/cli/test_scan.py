"""``safeclip scan`` and ``safeclip bank`` in-process and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from safeclip_guardrail.cli import main
from safeclip_guardrail.testing.pictures import encode, noise


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.png").write_bytes(encode(noise(seed=1)))
    (root / "sub" / "b.jpg").write_bytes(encode(noise(seed=2), "JPEG"))
    (root / "sub" / "deeper" / "c.webp").write_bytes(encode(noise(seed=3), "WEBP"))
    (root / "notes.txt").write_text("not an image: skipped in folders, and reported")
    return root


def _scan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["scan", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_scan_folder_recursively_json(capsys: pytest.CaptureFixture[str], tiny_clip_dir: Path,
                                      image_tree: Path, constant_bank: Path) -> None:
    code, out, err = _scan(capsys, str(image_tree), "--model", str(tiny_clip_dir), "--concepts",
                           str(constant_bank), "--threshold", "0.7", "--json", "--device", "cpu")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 2  # notes.txt was not checked
    skipped = [r for r in rows if r.get("skipped")]
    assert [(Path(r["path"]).name, r["reason"]) for r in skipped] == [("notes.txt", "not an image")]
    verdicts = [r for r in rows if not r.get("skipped")]
    assert [Path(r["path"]).name for r in verdicts] == ["a.png", "b.jpg", "c.webp"]
    assert all(r["flagged"] and r["category"] == "gun" for r in verdicts)
    assert all(r["scores"]["gun"] == pytest.approx(0.8, abs=1e-5) for r in verdicts)
    assert "1 skipped" in err and "notes.txt" in err
    code, out, _ = _scan(capsys, str(image_tree), "--model", str(tiny_clip_dir), "--concepts",
                         str(constant_bank), "--threshold", "0.7", "--json", "--device", "cpu",
                         "--allow-non-images")
    assert code == 1
    assert sum(1 for line in out.splitlines() if json.loads(line).get("skipped")) == 1


def test_scan_clean_exit_zero_text_output(capsys: pytest.CaptureFixture[str], tiny_clip_dir: Path,
                                          image_tree: Path, constant_bank: Path) -> None:
    code, out, _ = _scan(capsys, str(image_tree / "a.png"), "--model", str(tiny_clip_dir),
                         "--concepts", str(constant_bank), "--threshold", "0.9")
    assert code == 0
    first, summary = out.splitlines()
    assert first.split() == ["ok", "gun", "0.800", str(image_tree / "a.png")]
    assert summary.startswith("scanned 1 image(s) in ")
    assert "0 flagged; 0 unreadable; 0 skipped" in summary


def test_scan_config_file(capsys: pytest.CaptureFixture[str], tiny_clip_dir: Path,
                          image_tree: Path, constant_bank: Path, tmp_path: Path) -> None:
    from safeclip_guardrail import ConceptBank, GuardConfig

    cfg = GuardConfig(model=str(tiny_clip_dir), concepts=ConceptBank.from_file(constant_bank),
                      threshold=0.9, device="cpu").to_file(tmp_path / "guard.json")
    ok = "--allow-non-images"
    assert _scan(capsys, str(image_tree), "--config", str(cfg), ok)[0] == 0
    assert _scan(capsys, str(image_tree), "--config", str(cfg), "--threshold", "0.7", ok)[0] == 1


def test_unreadable_image_exit_two(capsys: pytest.CaptureFixture[str], tiny_clip_dir: Path,
                                   image_tree: Path, constant_bank: Path) -> None:
    (image_tree / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (image_tree / "empty.jpg").write_bytes(b"")
    code, out, err = _scan(capsys, str(image_tree), "--model", str(tiny_clip_dir),
                           "--concepts", str(constant_bank), "--threshold", "0.9")
    assert code == 2
    errors = [line for line in out.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 2 and "broken.png" in errors[0] and "empty.jpg" in errors[1]
    assert all(line.count(str(image_tree)) == 1 for line in errors)  # the path, once
    assert out.splitlines()[-1].endswith(f"0 flagged; 2 unreadable; 1 skipped (not checked): "
                                         f"{image_tree / 'notes.txt'}")
    assert err.strip().splitlines() == [
        "safeclip: error: 2 of 5 image(s) could not be read; 1 file(s) skipped, not checked "
        "(not images, hidden, links to folders...; --allow-non-images to accept that)"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["scan", "/no/such/path.png"], "no such file or directory"),
        (["scan", "x.png", "--threshold", "1.5"], "must be between 0 and 1"),
        (["scan", "x.png", "--threshold", "abc"], "not a number"),
        (["scan", "x.png", "--cls-source", "middle"], "invalid choice"),
        (["scan", "x.png", "--batch-size", "0"], "must be >= 1"),
        (["scan"], "required"),
        (["frobnicate"], "invalid choice"),
        (["bank", "show", "--concepts", "/no/bank.json"], "concept bank file not found"),
    ],
)
def test_usage_errors_one_line_exit_two(capsys: pytest.CaptureFixture[str], args: list[str],
                                        needle: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert "Traceback" not in err[0]


def test_model_errors_one_line(capsys: pytest.CaptureFixture[str], image_tree: Path,
                               tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"threshold": 7}')
    for args in (["--model", str(tmp_path / "missing-model")], ["--config", str(bad)],
                 ["--model", "llava-1.5"]):
        assert main(["scan", str(image_tree / "a.png"), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("safeclip: error:"), err


def test_bank_show_and_export(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["bank", "show"]) == 0
    out = capsys.readouterr().out
    assert "8 classes, 40 descriptors" in out and "Gun picture" in out
    assert main(["bank", "export", str(tmp_path / "b.yaml")]) == 0
    from safeclip_guardrail import ConceptBank

    assert ConceptBank.from_file(tmp_path / "b.yaml").classes == ConceptBank.default().classes
    assert main(["bank", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["classes"][0]["name"] == "neutral"


def test_console_script_subprocess(image_tree: Path) -> None:
    """The installed entry point: a bad model path is one line on stderr and exit code 2."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "safeclip_guardrail.cli", "scan", str(image_tree),
         "--model", "/definitely/missing"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("safeclip: error:")
    assert "Traceback" not in proc.stderr
