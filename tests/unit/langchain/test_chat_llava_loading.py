"""ChatLlava as a user first meets it: a local LLaVA directory, ``guard="auto"``, quiet loading,
and the GuardResult in ``response_metadata`` (issue 22, items 3 and 7).

Every LLaVA here is a tiny real checkpoint saved by ``build_tiny_llava`` and loaded through
the public path (``ChatLlava.from_pretrained(<dir>)``), as a user's local copy is.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.load import dumps, loads
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from PIL import Image
from safetensors.torch import load_file, save_file

from safeclip_guardrail import (
    ConfigurationError,
    GuardConfig,
    GuardResult,
    ModelLoadError,
    SafeCLIPGuard,
)
from safeclip_guardrail.langchain import ChatLlava, guard_result_of
from safeclip_guardrail.testing import build_tiny_llava

PICTURE = Image.fromarray(np.random.default_rng(3).integers(0, 256, (32, 32, 3), np.uint8))


def _ask(img: Image.Image = PICTURE) -> list[HumanMessage]:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    return [HumanMessage(content=[{"type": "image", "base64": data, "mime_type": "image/png"},
                                  {"type": "text", "text": "What is this?"}])]


def _load(path: Path, **options: Any) -> ChatLlava:
    options.setdefault("dtype", "float32")
    return ChatLlava.from_pretrained(str(path), device="cpu", max_new_tokens=4, **options)


def _edit_config(path: Path, **changes: Any) -> None:
    config = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (path / "config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the docs tell a user to build: no ``clip_dir``, the CLIP is saved alongside."""
    return build_tiny_llava(tmp_path_factory.mktemp("llava_own_clip"))


# ---------------------------------------------------------------------- 22.7 quiet loading
def test_building_and_loading_print_nothing(tmp_path: Path, tiny_clip_dir: Path,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    def printed(what: str) -> None:
        out = capfd.readouterr()
        text = out.out + out.err
        assert "Loading weights" not in text and "Writing model shards" not in text, what
        assert text == "", f"{what} printed: {text[:300]!r}"

    capfd.readouterr()
    path = build_tiny_llava(tmp_path / "llava", clip_dir=tiny_clip_dir)
    printed("build_tiny_llava")
    _load(path)
    printed("from_pretrained")
    fused = _load(path, guard="auto", dtype="bfloat16")  # not the cached load: loads again
    printed("from_pretrained(guard='auto')")
    assert fused.guard_is_fused


def test_a_llava_with_missing_weights_is_refused(llava_dir: Path, tmp_path: Path) -> None:
    """Silencing transformers' load report must not hide what it reported: a tower with its
    weights missing would answer and, fused, judge with random layers."""
    broken = shutil.copytree(llava_dir, tmp_path / "broken")
    weights = load_file(str(broken / "model.safetensors"))
    kept = {k: v for k, v in weights.items() if "vision_tower" not in k}
    assert len(kept) < len(weights)
    save_file(kept, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"refusing LLaVA checkpoint .*missing.*vision_tower"):
        _load(broken)


# ---------------------------------------------------------------------- 22.3 guard="auto"
def test_guard_auto_finds_the_clip_the_checkpoint_records(llava_dir: Path,
                                                          tmp_path: Path) -> None:
    llm = _load(llava_dir, guard="auto", guard_config=GuardConfig(mode="annotate"))
    assert llm.guard_is_fused and llm.guard_name == str(llava_dir / "clip")
    fused = llm.safeclip_guard
    standalone = SafeCLIPGuard.from_pretrained(str(llava_dir / "clip"), device="cpu",
                                               dtype="float32")
    assert fused is not None
    np.testing.assert_array_equal(fused.text_embeddings, standalone.text_embeddings)
    answer = llm.invoke(_ask())
    (verdict,) = guard_result_of(answer).verdicts  # type: ignore[union-attr]
    reference = standalone.check(PICTURE)
    assert verdict.top_category == reference.top_category
    for name, mass in reference.scores.items():
        assert verdict.scores[name] == pytest.approx(mass, abs=1e-4)
    # the record is relative to the checkpoint, so a moved copy still finds its CLIP
    moved = _load(shutil.copytree(llava_dir, tmp_path / "moved"), guard="auto")
    assert moved.guard_name == str(tmp_path / "moved" / "clip")


def test_guard_auto_reads_the_vision_configs_name_or_path(tiny_clip_dir: Path,
                                                          tmp_path: Path) -> None:
    path = build_tiny_llava(tmp_path / "llava", clip_dir=tiny_clip_dir, record_clip=False)
    config = json.loads((path / "config.json").read_text())
    assert "mm_vision_tower" not in config
    config["vision_config"]["_name_or_path"] = str(tiny_clip_dir)
    (path / "config.json").write_text(json.dumps(config))
    llm = _load(path, guard="auto")
    assert llm.guard_is_fused and llm.guard_name == str(tiny_clip_dir)
    # the standalone guard reads the same record
    guard = SafeCLIPGuard.from_pretrained(str(path), device="cpu", dtype="float32")
    assert guard.model_name == f"{tiny_clip_dir} (via {path})"


def test_guard_auto_without_a_record_keeps_its_one_line_error(llava_dir: Path,
                                                              tmp_path: Path) -> None:
    bare = shutil.copytree(llava_dir, tmp_path / "bare")
    _edit_config(bare, mm_vision_tower=None)
    with pytest.raises(ConfigurationError) as info:
        _load(bare, guard="auto")
    message = str(info.value)
    assert "does not know which CLIP" in message and "guard_model=" in message
    assert "\n" not in message
    assert _load(bare, guard="auto", guard_model=str(bare / "clip")).guard_is_fused


def test_a_recorded_clip_that_cannot_load_names_the_record(llava_dir: Path,
                                                           tmp_path: Path) -> None:
    gone = shutil.copytree(llava_dir, tmp_path / "gone")
    _edit_config(gone, mm_vision_tower=str(tmp_path / "no-such-clip"))
    with pytest.raises(ModelLoadError, match=r"records the CLIP of its tower as .*no-such-clip"
                                             r".*mm_vision_tower"):
        _load(gone, guard="auto")
    itself = shutil.copytree(llava_dir, tmp_path / "itself")
    _edit_config(itself, mm_vision_tower=".")  # names the LLaVA itself: no record at all
    with pytest.raises(ConfigurationError, match="does not know which CLIP"):
        _load(itself, guard="auto")


# ---------------------------------------------------------------------- 22.7 one result type
def test_response_metadata_holds_a_guard_result_that_serialises(llava_dir: Path) -> None:
    llm = _load(llava_dir, guard="auto", guard_config=GuardConfig(mode="annotate"))
    answer = llm.invoke(_ask())
    chunks = list(llm.stream(_ask()))
    streamed: AIMessageChunk = chunks[0]
    for chunk in chunks[1:]:
        streamed = streamed + chunk
    for message in (answer, streamed):
        result = message.response_metadata["safeclip"]
        assert isinstance(result, GuardResult)
        assert result.flagged is False and result.action == "pass"
        assert len(result.verdicts) == 1 and result.verdicts[0].image_sha256
    # tracers and caches write messages with LangChain's serialiser: the result is its JSON
    text = dumps(answer)
    assert '"safeclip": {"verdicts": [{"flagged": false' in text
    back = loads(text, allowed_objects="messages")
    assert isinstance(back, AIMessage) and isinstance(back.response_metadata["safeclip"], dict)
    again = guard_result_of(back)
    assert again is not None
    assert again.model_dump() == GuardResult.model_validate(
        answer.response_metadata["safeclip"].model_dump()).model_dump()
