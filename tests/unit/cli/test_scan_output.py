"""``safeclip scan``: images found by content, no silent skips, output a person (and a
script) can trust: aligned columns, escaped file names, a summary, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import features

from safeclip_guardrail.cli import main
from safeclip_guardrail.cli._common import describe_error, emit, printable
from safeclip_guardrail.images.discover import discover_images, sniff_image_format
from safeclip_guardrail.testing.pictures import encode, noise

HAS_AVIF = bool(features.check("avif"))


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """An extensionless JPEG, an AVIF (a TIFF named .dat where Pillow lacks AVIF) and text."""
    root = tmp_path / "uploads"
    root.mkdir()
    (root / "upload_7f3a").write_bytes(encode(noise(seed=1), "JPEG"))
    if HAS_AVIF:
        (root / "photo.avif").write_bytes(encode(noise(seed=2), "AVIF"))
    else:  # pragma: no cover - Pillow built without libavif
        (root / "photo.dat").write_bytes(encode(noise(seed=2), "TIFF"))
    (root / "readme.txt").write_text("these are the uploads of today\n")
    return root


def _scan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["scan", "--device", "cpu", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_folder_scan_sniffs_content_and_reports_the_skipped_file(
        capsys: pytest.CaptureFixture[str], tiny_clip_dir: Path, mixed: Path,
        constant_bank: Path) -> None:
    code, out, err = _scan(capsys, str(mixed), "--model", str(tiny_clip_dir),
                           "--concepts", str(constant_bank), "--threshold", "0.7")
    lines = out.splitlines()
    verdicts, summary = lines[:-1], lines[-1]
    names = sorted(Path(line.split()[-1]).name for line in verdicts)
    assert names == sorted(["upload_7f3a", "photo.avif" if HAS_AVIF else "photo.dat"])
    assert all(line.split()[:3] == ["FLAGGED", "gun", "0.800"] for line in verdicts)
    assert "2 flagged (gun 2); 0 unreadable; 1 skipped (not checked): " in summary
    assert summary.endswith("readme.txt")
    assert code == 2  # readme.txt was not checked
    assert "1 file(s) skipped, not checked (not images" in err

    code, out, _ = _scan(capsys, str(mixed), "--model", str(tiny_clip_dir),
                         "--concepts", str(constant_bank), "--threshold", "0.7", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["reason"] for r in rows if r.get("skipped")] == ["not an image"]
    assert sum(1 for r in rows if "flagged" in r) == 2
    assert code == 2


def test_columns_are_aligned(capsys: pytest.CaptureFixture[str], tiny_clip_dir: Path,
                             tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{'x' * (i * 7 + 1)}.png").write_bytes(encode(noise(seed=i)))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, out, _ = _scan(capsys, str(tmp_path), "--model", str(tiny_clip_dir))
    rows = out.splitlines()[:-1]
    assert code == 2 and len(rows) == 4
    starts = {line.index(str(tmp_path)) for line in rows}
    assert len(starts) == 1, out  # the path column starts at the same place on every line


def test_file_name_cannot_forge_an_output_line(capsys: pytest.CaptureFixture[str],
                                               tiny_clip_dir: Path, tmp_path: Path,
                                               constant_bank: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    forged = folder / "cat.png\nok       neutral    0.999  innocent.png"
    forged.write_bytes(encode(noise(seed=4)))
    ansi = folder / "red\x1b[31m.png"
    ansi.write_bytes(encode(noise(seed=5)))
    code, out, _ = _scan(capsys, str(folder), "--model", str(tiny_clip_dir),
                         "--concepts", str(constant_bank), "--threshold", "0.7")
    lines = out.splitlines()
    assert code == 1
    assert len(lines) == 3  # two verdicts and the summary: no forged "ok" line
    assert all(line.startswith("FLAGGED") for line in lines[:2])
    assert "\x1b" not in out
    assert any(line.endswith("cat.png\\nok       neutral    0.999  innocent.png") for line in lines)
    code, out, _ = _scan(capsys, str(folder), "--model", str(tiny_clip_dir),
                         "--concepts", str(constant_bank), "--threshold", "0.7", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2 and {r["path"] for r in rows} == {str(forged), str(ansi)}


def test_printable_escapes_controls_and_keeps_text() -> None:
    assert printable("plain/ünïcode 日本.png") == "plain/ünïcode 日本.png"
    assert printable("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert printable("x\x1b[2Ky\u202ez\udcff") == "x\\x1b[2Ky\\u202ez\\udcff"


def test_bank_file_that_is_an_image_is_one_line(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    img = tmp_path / "bank.yaml"
    img.write_bytes(encode(noise(), "JPEG"))
    code, _, err = _scan(capsys, str(img), "--concepts", str(img))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(img) in lines[0]
    assert "is a JPEG image, not a text file" in lines[0]  # the library's one wording
    assert "UnicodeDecodeError" not in lines[0]
    assert main(["bank", "show", "--concepts", str(img)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "JPEG image, not a text file" in lines[0] and str(img) in lines[0]
    code, _, err = _scan(capsys, str(img), "--config", str(tmp_path / "nope.json"))
    assert code == 2
    assert err.strip() == f"safeclip: error: --config: guard config file not found: {tmp_path / 'nope.json'}"


def test_os_errors_name_the_file_without_a_class_name() -> None:
    line = describe_error(FileNotFoundError(2, "No such file or directory", "/data/x.json"))
    assert line == "/data/x.json: no such file or directory"
    line = describe_error(PermissionError(13, "Permission denied", "/data/y"))
    assert line == "/data/y: permission denied"
    line = describe_error(RuntimeError("boom"))
    assert line.startswith("unexpected failure: boom") and "SAFECLIP_DEBUG" in line


def test_discovery_by_content(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "noext").write_bytes(encode(noise(), "PNG"))
    (tmp_path / "sub" / "g.bin").write_bytes(encode(noise(), "GIF"))
    (tmp_path / "w").write_bytes(encode(noise(), "WEBP"))
    (tmp_path / "t").write_bytes(encode(noise(), "TIFF"))
    (tmp_path / "b").write_bytes(encode(noise(), "BMP"))
    (tmp_path / "corrupt.jpg").write_bytes(b"not a jpeg at all")  # claims to be one: checked
    (tmp_path / "BMW.txt").write_text("BMW and other cars")          # 'BM' is not enough
    (tmp_path / "empty").write_bytes(b"")
    found = discover_images([tmp_path])
    assert sorted(p.name for p in found.images) == ["b", "corrupt.jpg", "g.bin", "noext", "t", "w"]
    assert sorted((s.path.name, s.reason) for s in found.skipped) == [
        ("BMW.txt", "not an image"), ("empty", "empty file")]
    assert sniff_image_format(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1") == "AVIF"
    assert sniff_image_format(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") == "HEIF"
    assert sniff_image_format(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00isommp42") is None


def test_emit_clears_an_active_progress_bar_first(capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []

    class Bar:
        disable = False

        def clear(self) -> None:
            calls.append("clear")

        def refresh(self) -> None:
            calls.append("refresh")

    emit("ok  gun  0.1  a.png", bar=Bar())
    assert calls == ["clear", "refresh"]
    assert capsys.readouterr().out == "ok  gun  0.1  a.png\n"
