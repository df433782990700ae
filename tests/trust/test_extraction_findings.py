"""Regressions found by the trust matrix and probing in the extraction layer (issue 10)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from safeclip_guardrail.messages.conversation import guard_dict_messages
from safeclip_guardrail.testing.pictures import data_url
from safeclip_guardrail.testing.trust import Received, assert_only_judged, make_images, scan


@pytest.mark.parametrize("block_type", [["image"], {"a": 1}, 3])
def test_a_block_type_that_is_not_a_string_is_unreadable_not_a_type_error(
        block_type: object, tmp_path: Path) -> None:
    imgs = make_images(tmp_path)
    msgs = [{"role": "user", "content": [{"type": block_type,
                                          "base64": base64.b64encode(imgs.flagged).decode()}]}]
    outcome = guard_dict_messages(imgs.guard, msgs)  # was: TypeError: unhashable type
    assert outcome.blocked and outcome.result.verdicts[0].category == "unreadable"


def test_a_tool_results_string_content_that_is_a_data_url_is_judged(tmp_path: Path) -> None:
    imgs = make_images(tmp_path)
    msgs = [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": data_url(imgs.flagged)}]}]
    outcome = guard_dict_messages(imgs.guard, msgs, config=imgs.guard.config.replace(mode="block"))
    assert outcome.blocked and outcome.result.categories == ["gun"]  # was: forwarded unjudged
    ok = [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": data_url(imgs.benign)}]}]
    out = guard_dict_messages(imgs.guard, ok)
    received = Received()
    scan(out.as_dicts(ok), received)
    assert received.frames and not out.blocked
    assert_only_judged(received, imgs, "tool_result string")


@pytest.mark.parametrize("key", ["images", "attachment"])
def test_raw_image_bytes_in_extra_fields_are_judged(key: str, tmp_path: Path) -> None:
    """Ollama's client takes raw bytes in ``images``; bytes anywhere are sniffed."""
    imgs = make_images(tmp_path)
    bad = [{"role": "user", "content": "what is this?", key: [imgs.flagged]}]
    outcome = guard_dict_messages(imgs.guard, bad, config=imgs.guard.config.replace(mode="block"))
    assert outcome.blocked and outcome.result.categories == ["gun"]  # was: forwarded unjudged
    ok = [{"role": "user", "content": "what is this?", key: [imgs.benign]}]
    out = guard_dict_messages(imgs.guard, ok)
    forwarded = out.as_dicts(ok)[0][key][0]
    assert forwarded == imgs.benign  # the judged bytes, in the form they came (bytes)


def test_image_data_nested_deeper_than_checked_in_extra_fields_fails_closed(
        tmp_path: Path) -> None:
    imgs = make_images(tmp_path)
    deep: object = data_url(imgs.flagged)
    for k in range(40):  # deeper than the walk reads (32 levels)
        deep = {f"k{k}": deep}
    outcome = guard_dict_messages(imgs.guard, [{"role": "user", "content": "x", "meta": deep}])
    assert outcome.blocked  # was: passed without a verdict
    assert outcome.result.verdicts[0].category == "unreadable"


def test_png_gamma_chunk_is_forwarded_as_judged_pixels() -> None:
    import io
    import struct

    from PIL import Image, PngImagePlugin

    from safeclip_guardrail.config import ImageOptions
    from safeclip_guardrail.images.decode import decode_image, forward_image

    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", struct.pack(">I", 5000))  # gamma 0.05: a decoder that applies it brightens
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 10, 200)).save(buf, format="PNG", pnginfo=info)
    data = buf.getvalue()
    assert forward_image(decode_image(data, ImageOptions())).data != data
