from __future__ import annotations

import pytest

from safeclip_guardrail import ImageInputError
from safeclip_guardrail.blocks import classify_block, image_source_from_block


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"type": "image", "base64": "QUJD", "mime_type": "image/png"}, "data:image/png;base64,QUJD"),
        ({"type": "image", "url": "https://x/y.png"}, "https://x/y.png"),
        ({"type": "image", "source_type": "base64", "data": "QUJD", "mime_type": "image/jpeg"},
         "data:image/jpeg;base64,QUJD"),
        ({"type": "image", "source_type": "url", "url": "https://x/y.png"}, "https://x/y.png"),
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
         "data:image/png;base64,QUJD"),
        ({"type": "image_url", "image_url": "https://x/y.png"}, "https://x/y.png"),
        ({"type": "input_image", "image_url": "data:image/png;base64,QUJD"},
         "data:image/png;base64,QUJD"),
        ({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QUJD"}},
         "data:image/png;base64,QUJD"),
        ({"type": "non_standard", "value": {"type": "image_url", "image_url": {"url": "u://x"}}},
         "u://x"),
    ],
)
def test_every_image_block_shape(block: dict, expected: str) -> None:
    assert classify_block(block) == "image"
    assert image_source_from_block(block) == expected


@pytest.mark.parametrize(
    ("block", "needle"),
    [
        ({"type": "image", "file_id": "file-123"}, "provider file id"),
        ({"type": "image", "source_type": "id", "id": "f"}, "provider file id"),
        ({"type": "image"}, "no image data"),
        ({"type": "image", "base64": ""}, "empty or missing base64"),
        ({"type": "image_url", "image_url": {}}, "no usable image_url"),
        ({"type": "image", "source": {"type": "file"}}, "base64 data or a url"),
        ({"type": "text", "text": "hi"}, "not an image block"),
    ],
)
def test_unreadable_image_blocks(block: dict, needle: str) -> None:
    with pytest.raises(ImageInputError, match=needle):
        image_source_from_block(block)


def test_classify() -> None:
    assert classify_block("plain text") == "text"
    assert classify_block({"type": "text", "text": "x"}) == "text"
    assert classify_block({"type": "audio", "base64": "x"}) == "other"
    assert classify_block({"type": "hologram"}) == "unknown"
    # a provider block LangChain wrapped as non_standard is judged by what it wraps
    assert classify_block({"type": "non_standard", "value": {"type": "hologram"}}) == "unknown"
    assert classify_block({"type": "non_standard", "value": "opaque"}) == "unknown"
    assert classify_block({"type": "non_standard", "value": {"type": "citation"}}) == "other"
    assert classify_block({"type": "non_standard", "value": {"type": "text", "text": "x"}}) == "text"
    assert classify_block(42) == "unknown"
