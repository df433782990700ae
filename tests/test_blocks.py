"""The deprecated ``safeclip_guardrail.blocks`` shim: the extraction layer's trust rules."""

from __future__ import annotations

import base64
import io
import sys
from typing import Any

import pytest
from PIL import Image

from safeclip_guardrail import ImageInputError
from safeclip_guardrail.blocks import classify_block, image_source_from_block

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


B64 = base64.b64encode(_png()).decode()
URL = f"data:image/png;base64,{B64}"


@pytest.mark.parametrize("block", [
    {"type": "image", "base64": B64, "mime_type": "image/png"},
    {"type": "image", "source_type": "base64", "data": B64, "mime_type": "image/jpeg"},
    {"type": "image_url", "image_url": {"url": URL}},
    {"type": "image_url", "image_url": URL},
    {"type": "input_image", "image_url": URL},
    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": B64}},
    {"type": "non_standard", "value": {"type": "image_url", "image_url": {"url": URL}}},
    {"type": "file", "base64": B64, "mime_type": "application/pdf"},  # bytes decide, not MIME
])
def test_every_image_block_shape_gives_a_data_url_of_its_bytes(block: dict[str, Any]) -> None:
    assert classify_block(block) == "image"
    out = image_source_from_block(block)
    assert out.startswith("data:image/") and base64.b64decode(out.split(",", 1)[1]) == _png()


@pytest.mark.parametrize(("block", "needle"), [
    ({"type": "image", "file_id": "file-123"}, "provider file id"),
    ({"type": "image"}, "no image data"),
    ({"type": "image", "base64": B64, "url": "https://x/y.png"}, "2 sources"),
    ({"type": "image_url", "image_url": {"url": "/etc/hostname"}}, "file paths"),
    ({"type": "image", "url": "https://example.com/x.png"}, "http"),
    ({"type": "hologram"}, "unknown type"),
    ({"type": "text", "text": "hi"}, "holds no image"),
])
def test_unreadable_blocks_raise(block: dict[str, Any], needle: str) -> None:
    with pytest.raises(ImageInputError, match=needle):
        image_source_from_block(block)


def test_a_path_is_never_opened() -> None:
    opened: list[str] = []

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in ("open", "os.stat", "os.listdir") and args and "hostname" in str(args[0]):
            opened.append(event)

    sys.addaudithook(hook)
    with pytest.raises(ImageInputError):
        image_source_from_block({"type": "image_url", "image_url": {"url": "/etc/hostname"}})
    assert opened == []


def test_classify_and_deprecation() -> None:
    with pytest.warns(DeprecationWarning, match="extraction"):
        assert classify_block("plain text") == "text"
    assert classify_block({"type": "text", "text": "x"}) == "text"
    assert classify_block({"type": "refusal", "refusal": "no"}) == "other"
    # an audio payload is not judged: the part is unreadable (fails closed)
    assert classify_block({"type": "audio", "base64": "AAAA"}) == "image"
    assert classify_block({"type": "hologram"}) == "image"  # unknown: unreadable, fails closed
    assert classify_block({"type": "non_standard", "value": {"type": "citation"}}) == "other"
