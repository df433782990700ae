"""Calibration and evaluation polish: honest digits, warnings, safe hints, token limits,
folder datasets by content, and where an unreadable image ranks."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from PIL import Image

from safeclip_guardrail import ConceptBank, ConfigurationError, ImageVerdict
from safeclip_guardrail.cli import main
from safeclip_guardrail.cli.calibrate import _high_threshold_warnings, threshold_text
from safeclip_guardrail.cli.evaluate import _with_token_limit
from safeclip_guardrail.errors import CliError
from safeclip_guardrail.eval.datasets import label_hint, load_dataset

BANK = ConceptBank.default()


def _img(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 120, 200)).save(buf, format=fmt)
    return buf.getvalue()


def test_threshold_text_never_rounds_to_one() -> None:
    assert threshold_text(0.6) == "0.6"
    assert threshold_text(0.123456789) == "0.123457"
    assert threshold_text(0.9999996) == "0.9999996"  # .6g would print "1"
    assert float(threshold_text(0.99999991234)) == 0.99999991234


def test_high_threshold_warns_that_almost_nothing_is_flagged() -> None:
    assert _high_threshold_warnings({"": 0.7}) == []
    (warning,) = _high_threshold_warnings({"gun": 0.7, "knife": 0.99})
    assert "knife 0.99" in warning and "gun" not in warning
    assert "flag almost nothing" in warning


def test_label_hint_never_maps_an_unknown_folder_onto_a_benign_class() -> None:
    for name in ("weapons", "drugs", "nsfw", "violence", "neutral_ish"):
        hint = label_hint([name], BANK)
        assert f"{name}=neutral" not in hint and "=CLASS" in hint and "--hod" in hint
    assert "--label-map guns=gun" in label_hint(["guns"], BANK)
    assert "--label-map insulting_gesture=gesture" in label_hint(["insulting_gesture"], BANK)
    assert "(it knows insulting_gesture)" in label_hint(["insulting_gesture"], BANK)


def test_folder_dataset_sniffs_content_and_lists_skipped(tmp_path: Path) -> None:
    (tmp_path / "gun").mkdir()
    (tmp_path / "neutral").mkdir()
    (tmp_path / "gun" / "upload_01").write_bytes(_img("JPEG"))  # no extension
    (tmp_path / "neutral" / "a.webp").write_bytes(_img("WEBP"))
    (tmp_path / "neutral" / "labels.csv").write_text("not,an,image\n")
    (tmp_path / "neutral" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    ds = load_dataset(tmp_path, bank=BANK)
    assert sorted((s.path.name, s.label) for s in ds.samples) == [
        ("a.webp", "neutral"), ("upload_01", "gun")]
    assert [(f.path.name, f.reason) for f in ds.skipped] == [  # listed, never dropped silently
        (".DS_Store", "hidden"), ("labels.csv", "not an image")]
    with pytest.raises(ConfigurationError) as info:
        (tmp_path / "weapons").mkdir()
        load_dataset(tmp_path, bank=BANK)
    assert "weapons=neutral" not in str(info.value) and "--hod" in str(info.value)


def test_unreadable_verdict_ranks_with_the_most_suspicious() -> None:
    ok = ImageVerdict(flagged=False, top_category="neutral", scores={"neutral": 0.9, "gun": 0.1},
                      toxic_score=0.1)
    bad = ImageVerdict(flagged=False, error="image is empty (0 bytes)")  # on_error="allow"
    assert bad.toxic_score == 1.0
    assert sorted([bad, ok], key=lambda v: v.toxic_score)[0] is ok
    assert ImageVerdict.model_validate_json(bad.model_dump_json()).toxic_score == 1.0


def test_max_new_tokens_reaches_the_chat_model() -> None:
    class Limited(FakeListChatModel):
        max_tokens: int | None = None

    model = _with_token_limit(Limited(responses=["x"]), 12, "mod:Limited")
    assert model.max_tokens == 12
    with pytest.raises(CliError, match="no max_new_tokens or max_tokens field"):
        _with_token_limit(FakeListChatModel(responses=["x"]), 12, "mod:Fake")
    assert _with_token_limit(FakeListChatModel(responses=["x"]), None, "mod:Fake") is not None


def test_max_new_tokens_needs_e2e(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "gun").mkdir()
    (tmp_path / "gun" / "a.png").write_bytes(_img("PNG"))
    assert main(["eval", str(tmp_path), "--max-new-tokens", "8"]) == 2
    assert "only used with --e2e" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--e2e", "--max-new-tokens", "0"]) == 2
    assert "must be >= 1" in capsys.readouterr().err


def test_eval_warns_about_files_that_are_not_images(tmp_path: Path, tiny_clip_dir: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for label in ("gun", "neutral"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "img").write_bytes(_img("PNG"))
    (tmp_path / "gun" / "notes.md").write_text("# the gun folder\n")
    code = main(["eval", str(tmp_path), "--model", str(tiny_clip_dir), "--device", "cpu",
                 "--no-ablations", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2 images" in captured.out and "1 skipped (not checked)" in captured.out
    assert "1 file(s) skipped, not checked: " in captured.err
    assert "notes.md (not an image)" in captured.err
