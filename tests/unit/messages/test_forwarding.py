"""The forwarding layer alone: one canonical block per judged part, in the part's dialect.

``canonical`` writes what ``Judgement.forward`` holds (made by hand here): a picture as an
image block, a PDF (``application/pdf``) as a file block, a string or field value in the
form it came. Nothing else of the original block survives.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.images.sources import EncodedImage
from safeclip_guardrail.messages.extraction import MessageView, find_image_parts
from safeclip_guardrail.messages.forwarding import apply_parts, canonical, placeholder, prepend_text, value_at
from safeclip_guardrail.testing.documents import pdf_of
from safeclip_guardrail.testing.pictures import b64, data_url, png_of

PNG = png_of((1, 2, 3))
PDF = pdf_of(PNG)
PDF_B64 = base64.b64encode(PDF).decode()
PDF_URL = f"data:application/pdf;base64,{PDF_B64}"
JUDGED_PDF = EncodedImage(PDF, "<judged>", "application/pdf")
JUDGED_PNG = EncodedImage(PNG, "<judged>", "image/png")


@pytest.mark.parametrize(("style", "original", "expected"), [
    ("v1", {"type": "file", "base64": "x", "mime_type": "image/png", "id": "f1", "extras": {}},
     {"type": "file", "base64": PDF_B64, "mime_type": "application/pdf"}),
    ("openai", {"type": "file", "file": {"file_data": "x", "filename": "scan.pdf"}},
     {"type": "file", "file": {"file_data": PDF_URL, "filename": "scan.pdf"}}),
    ("openai", {"type": "file", "file": {"file_data": "x", "filename": {"evil": "x"}}},
     {"type": "file", "file": {"file_data": PDF_URL}}),
    ("openai", {"type": "image_url", "image_url": {"url": "x"}},  # a PDF sent as an image
     {"type": "file", "file": {"file_data": PDF_URL}}),
    ("anthropic", {"type": "document", "source": {"type": "base64", "data": "x"}, "title": "t",
                   "citations": {"enabled": True}},
     {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                     "data": PDF_B64}}),
    ("responses", {"type": "input_file", "file_data": "x", "filename": "a.pdf", "file_id": "f"},
     {"type": "input_file", "file_data": PDF_URL, "filename": "a.pdf"}),
    ("media", {"type": "media", "mime_type": "video/mp4", "data": b"x"},
     {"type": "media", "mime_type": "application/pdf", "data": PDF_B64}),
    ("text", "data:application/pdf;base64,eA==", PDF_URL),
    ("text", "eHh4eHh4eHh4eHh4eHh4", PDF_B64),
    ("raw", b"%PDF-1.4 original", PDF),
])
def test_a_judged_pdf_is_written_back_as_a_file_block_in_the_parts_dialect(
        style: Any, original: Any, expected: Any) -> None:
    assert canonical(style, JUDGED_PDF, original=original) == expected


@pytest.mark.parametrize(("style", "original", "expected"), [
    ("openai", None, {"type": "image_url", "image_url": {"url": data_url(PNG), "detail": "low"}}),
    ("responses", {"type": "input_image", "image_url": "x", "file_id": "f"},
     {"type": "input_image", "image_url": data_url(PNG), "detail": "low"}),
    ("responses", {"type": "computer_screenshot", "image_url": "x"},
     {"type": "computer_screenshot", "image_url": data_url(PNG), "detail": "low"}),
    ("anthropic", {"type": "audio", "source": {}}, {"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": b64(PNG)}}),
    ("v1", {"type": "video", "url": "x"}, {"type": "image", "base64": b64(PNG),
                                           "mime_type": "image/png"}),
    ("media", {"type": "media", "data": b"x", "mime_type": "video/mp4"},
     {"type": "media", "mime_type": "image/png", "data": b64(PNG)}),
    ("text_block", {"type": "input_text", "text": "data:image/gif;base64,R0lG"},
     {"type": "input_text", "text": data_url(PNG)}),
    ("text_block", {"type": "text", "text": "iVBORw0KGgo="}, {"type": "text", "text": b64(PNG)}),
    ("raw", b"\x89PNG original", PNG),
    ("raw", "data:image/png;base64,AAAA", data_url(PNG)),
])
def test_a_judged_picture_is_one_image_block_or_the_same_form(style: Any, original: Any,
                                                              expected: Any) -> None:
    assert canonical(style, JUDGED_PNG, detail="low", original=original) == expected


def test_placeholders_keep_text_positions_and_drop_payload_fields() -> None:
    assert placeholder("responses", "gone") == {"type": "input_text", "text": "gone"}
    assert placeholder("media", "gone") == {"type": "text", "text": "gone"}
    assert placeholder("text", "gone") == "gone"
    view = MessageView("user", "x", {"meta": {"blob": "payload", "keep": 1}, "images": ["a", "b"]})
    out = apply_parts(view, {("extras", "meta", "blob"): placeholder("raw", "gone"),
                             ("extras", "images", 0): placeholder("raw", "gone")})
    assert out.extras == {"meta": {"keep": 1}, "images": ["b"]}


def test_nested_parts_are_replaced_in_place_and_the_original_is_untouched() -> None:
    doc = {"type": "document", "title": "t", "source": {"type": "content", "content": [
        {"type": "text", "text": "page"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": b64(PNG)}, "cache_control": {"type": "ephemeral"}}]}}
    output = {"type": "function_call_output", "call_id": "c", "output": [
        {"type": "input_file", "file_data": PDF_URL, "filename": "a.pdf"}]}
    view = MessageView("user", [{"type": "non_standard", "value": doc}, output])
    found = find_image_parts([view], options=ImageOptions())
    assert [p.path for p in found] == [("content", 0, "value", "source", "content", 1),
                                       ("content", 1, "output", 0)]
    replaced = {p.path: canonical(p.style, JUDGED_PDF if p.image and p.image.mime_type else
                                  JUDGED_PNG, original=value_at(view, p.path)) for p in found}
    out = apply_parts(view, replaced)
    inner = out.content[0]["value"]["source"]["content"]
    assert inner[0] == {"type": "text", "text": "page"}
    assert inner[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                    "data": b64(PNG)}}  # cache_control dropped
    assert out.content[0]["value"]["title"] == "t"
    assert out.content[1]["output"] == [{"type": "input_file", "file_data": PDF_URL,
                                         "filename": "a.pdf"}]
    assert view.content[0]["value"]["source"]["content"][1]["cache_control"]  # not mutated


def test_a_part_inside_a_part_replaced_whole_is_dropped_with_it() -> None:
    view = MessageView("user", [{"type": "image", "base64": b64(PNG), "extras": {"x": b64(PNG)}}])
    out = apply_parts(view, {("content", 0, "extras", "x"): placeholder("raw", "gone"),
                             ("content", 0): canonical("v1", JUDGED_PNG)})
    assert out.content == [{"type": "image", "base64": b64(PNG), "mime_type": "image/png"}]


# ---------------------------------------------------------------- the rewrite instruction
SAFE = "First check the picture."


@pytest.mark.parametrize(("content", "expected"), [
    ("what is this?", f"{SAFE} what is this?"),
    (None, SAFE),
    ("", SAFE),
    (["look", {"type": "text", "text": "b"}], [f"{SAFE} look", {"type": "text", "text": "b"}]),
    ([{"type": "image_url", "image_url": {"url": "x"}}, {"type": "input_text", "text": "q"}],
     [{"type": "image_url", "image_url": {"url": "x"}}, {"type": "input_text", "text": f"{SAFE} q"}]),
])
def test_the_instruction_goes_before_the_first_text(content: Any, expected: Any) -> None:
    assert prepend_text(content, SAFE) == expected
    assert prepend_text(expected, SAFE) == expected  # idempotent: never twice


def test_without_text_the_instruction_is_a_text_block_of_the_messages_dialect() -> None:
    picture = {"type": "input_image", "image_url": data_url(png_of())}
    chat = prepend_text([picture], SAFE)
    assert chat == [{"type": "text", "text": SAFE}, picture]
    assert prepend_text([picture], SAFE, responses_style=True)[0] == {"type": "input_text", "text": SAFE}
    # a data URL in a text block is a payload, not the question: the instruction goes first
    url_text = {"type": "text", "text": data_url(png_of())}
    assert prepend_text([url_text], SAFE) == [{"type": "text", "text": SAFE}, url_text]
