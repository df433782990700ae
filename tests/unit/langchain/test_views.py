"""Panoramas on the LangChain surfaces: a flagged third is blocked, a clean panorama reaches
the model, and the referee finds every view of what it received judged. ChatLlava with a
guard beside it judges the views of the picture it sends; fused into LLaVA-1.5 it judges the
one view llava-hf's processor makes (LLaVA-NeXT's views: tests/unit/langchain/test_chat_llava_next.py)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from PIL import Image

from safeclip_guardrail import GuardConfig, SafeCLIPGuard, SafeCLIPGuardrail
from safeclip_guardrail.images.views import picture_views
from safeclip_guardrail.langchain import ChatLlava
from safeclip_guardrail.langchain.testing import RecordingChatModel
from safeclip_guardrail.testing import PlantedEncoder, build_tiny_llava
from safeclip_guardrail.testing.trust import assert_only_judged, make_images, pixel_key


def _panorama(enc: PlantedEncoder, targets: list[str]) -> tuple[Image.Image, list[Image.Image]]:
    thirds = [enc.plant(t, size=(32, 32)) for t in targets]
    pano = Image.new("RGB", (32 * len(thirds), 32))
    for k, third in enumerate(thirds):
        pano.paste(third, (32 * k, 0))
    return pano, thirds


def _ask(img: Image.Image) -> list[HumanMessage]:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    block = {"type": "image", "base64": base64.b64encode(buf.getvalue()).decode(),
             "mime_type": "image/png"}
    return [HumanMessage(content=[{"type": "text", "text": "What is this?"}, block])]


@pytest.mark.parametrize("where", [0, 1, 2])
def test_wrap_blocks_a_panorama_whose_third_is_flagged(tmp_path: Path, where: int) -> None:
    imgs = make_images(tmp_path)
    targets = ["neutral"] * 3
    targets[where] = "gun"
    pano, thirds = _panorama(imgs.encoder, targets)
    imgs.forbidden.add(pixel_key(thirds[where]))
    imgs.encoder.register(picture_views(pano)[0], imgs.encoder.embedding_for("neutral"))
    model = RecordingChatModel()
    out = SafeCLIPGuardrail(guard=imgs.guard, mode="block").wrap(model).invoke(_ask(pano))
    assert not model.requests and "cannot fulfill" in str(out.content)
    assert_only_judged(model.received(), imgs, "wrap")


def test_wrap_forwards_a_clean_panorama_whose_every_view_was_judged(tmp_path: Path) -> None:
    imgs = make_images(tmp_path)
    pano, _ = _panorama(imgs.encoder, ["neutral"] * 3)
    imgs.encoder.register(picture_views(pano)[0], imgs.encoder.embedding_for("neutral"))
    model = RecordingChatModel()
    SafeCLIPGuardrail(guard=imgs.guard, mode="block").wrap(model).invoke(_ask(pano))
    received = model.received()
    assert received.frames == [pixel_key(pano)]  # the whole panorama reached the model
    assert_only_judged(received, imgs, "wrap")
    imgs.encoder.judged -= {pixel_key(picture_views(pano)[2])}  # had one tile gone unjudged
    with pytest.raises(AssertionError, match="nobody judged"):
        assert_only_judged(received, imgs, "wrap")


@pytest.fixture(scope="module")
def llava_dir(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava_views"), clip_dir=tiny_clip_dir)


def test_chat_llava_with_a_guard_beside_it_judges_the_views_it_sends(llava_dir: Path) -> None:
    enc = PlantedEncoder(unplanted="neutral")
    guard = SafeCLIPGuard(enc).with_options(mode="block")
    llm = ChatLlava.from_pretrained(str(llava_dir), device="cpu", dtype="float32",
                                    max_new_tokens=2, guard=guard)
    assert not llm.guard_is_fused
    bad, _ = _panorama(enc, ["neutral", "neutral", "gun"])
    blocked = llm.invoke(_ask(bad))
    [verdict] = blocked.response_metadata["safeclip"].verdicts
    assert verdict.category == "gun" and verdict.decided_by == "tile 3 of 3"
    assert blocked.response_metadata["finish_reason"] == "guardrail"
    good, _ = _panorama(enc, ["neutral"] * 3)
    passed = llm.invoke(_ask(good))
    [verdict] = passed.response_metadata["safeclip"].verdicts
    assert not verdict.flagged and verdict.views_checked == 4
    assert passed.response_metadata["finish_reason"] != "guardrail"


def test_fused_llava_15_judges_the_one_view_its_processor_makes(llava_dir: Path,
                                                                tiny_clip_dir: Path) -> None:
    llm = ChatLlava.from_pretrained(str(llava_dir), device="cpu", dtype="float32",
                                    max_new_tokens=2, guard="auto",
                                    guard_model=str(tiny_clip_dir),
                                    guard_config=GuardConfig(mode="annotate"))
    assert llm.guard_is_fused
    wide = Image.new("RGB", (96, 32), (40, 90, 200))
    msg: Any = llm.invoke(_ask(wide))
    [verdict] = msg.response_metadata["safeclip"].verdicts
    assert verdict.views_checked == 1 and verdict.decided_by == "model view"
