"""The extraction layer alone (no framework, no model): every payload is accounted for.

Each payload a provider converter could send is either a part to judge (a picture, a PDF)
or an unreadable part whose error names the message and the field; text stays text.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import BaseModel

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.messages.extraction import (
    CONTAINER_TYPES,
    FILE_TYPES,
    IMAGE_TYPES,
    MEDIA_TYPES,
    OTHER_TYPES,
    TEXT_TYPES,
    ImagePart,
    MessageView,
    dict_of_view,
    find_image_parts,
    view_of_dict,
)
from safeclip_guardrail.testing.documents import (
    MP4,
    OLE,
    RTF,
    TEXT_FILE,
    WEBM,
    docx_of,
    html_of,
    pdf_of,
    svg_of,
    wav,
)
from safeclip_guardrail.testing.pictures import b64, data_url, png_of

PNG = png_of()
PDF = pdf_of(PNG)
OPTS = ImageOptions()


def parts(content: Any = None, **extras: Any) -> list[ImagePart]:
    return find_image_parts([MessageView("user", content, extras)], options=OPTS)


def only(content: Any = None, **extras: Any) -> ImagePart:
    found = parts(content, **extras)
    assert len(found) == 1, found
    return found[0]


def anthropic_image(data: bytes) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                        "data": b64(data)}}


def content_document(*blocks: Any) -> dict[str, Any]:
    return {"type": "document", "source": {"type": "content", "content": list(blocks)}}


# ---------------------------------------------------------------------- nested content
@pytest.mark.parametrize(("block", "path", "style"), [
    (content_document({"type": "text", "text": "page"}, anthropic_image(PNG)),
     ("content", 0, "source", "content", 1), "anthropic"),
    ({"type": "tool_result", "tool_use_id": "t", "content": [content_document(anthropic_image(PNG))]},
     ("content", 0, "content", 0, "source", "content", 0), "anthropic"),
    ({"type": "non_standard", "value": content_document(anthropic_image(PNG))},
     ("content", 0, "value", "source", "content", 0), "anthropic"),
    ({"type": "function_call_output", "call_id": "c", "output": [
        {"type": "input_text", "text": "done"}, {"type": "input_image", "image_url": data_url(PNG)}]},
     ("content", 0, "output", 1), "responses"),
    ({"type": "function_call_output", "call_id": "c", "output": data_url(PNG)},
     ("content", 0, "output"), "text"),
    ({"type": "computer_call_output", "call_id": "c", "output": {
        "type": "computer_screenshot", "image_url": data_url(PNG)}},
     ("content", 0, "output"), "responses"),
    ({"type": "search_result", "source": "https://example.com/a", "title": "a",
      "content": [{"type": "text", "text": data_url(PNG)}]},
     ("content", 0, "content", 0), "text_block"),
])
def test_pictures_nested_in_known_blocks_are_found_where_they_sit(
        block: dict[str, Any], path: tuple[Any, ...], style: str) -> None:
    part = only([{"type": "text", "text": "look"}, block][1:])
    assert part.path == path and part.style == style
    assert part.image is not None and part.image.data == PNG and part.error is None


def test_a_non_standard_wrapper_around_an_image_is_replaced_whole() -> None:
    part = only([{"type": "non_standard", "value": {"type": "image_url",
                                                     "image_url": {"url": data_url(PNG)}}}])
    assert part.path == ("content", 0) and part.style == "openai"


# ---------------------------------------------------------------------- video and audio
@pytest.mark.parametrize(("block", "style"), [
    ({"type": "video", "url": data_url(PNG), "mime_type": "video/mp4"}, "v1"),
    ({"type": "video", "base64": b64(PNG), "mime_type": "video/mp4"}, "v1"),
    ({"type": "audio", "source": {"type": "base64", "media_type": "audio/wav", "data": b64(PNG)}},
     "anthropic"),
    ({"type": "input_audio", "input_audio": {"data": b64(PNG), "format": "wav"}}, "openai"),
    ({"type": "media", "mime_type": "video/mp4", "data": PNG}, "media"),
])
def test_a_picture_in_a_video_or_audio_block_is_judged_as_one(block: dict[str, Any],
                                                                style: str) -> None:
    part = only([block])
    assert part.style == style and part.image is not None and part.image.data == PNG


@pytest.mark.parametrize(("block", "needle"), [
    ({"type": "audio", "base64": b64(wav()), "mime_type": "audio/wav"}, "WAV audio"),
    ({"type": "input_audio", "input_audio": {"data": b64(wav()), "format": "wav"}}, "audio"),
    ({"type": "video", "base64": b64(MP4), "mime_type": "video/mp4"}, "later feature"),
    ({"type": "video", "url": data_url(WEBM, "video/webm")}, "later feature"),
    ({"type": "media", "mime_type": "video/mp4", "data": MP4}, "later feature"),
    ({"type": "video", "url": "https://example.com/v.mp4"}, "not fetched"),
    ({"type": "media", "file_uri": "gs://bucket/v.mp4", "mime_type": "video/mp4"}, "file id"),
    ({"type": "audio", "base64": b64(TEXT_FILE)}, "text"),
])
def test_real_video_and_audio_are_unreadable_with_the_reason(block: dict[str, Any],
                                                             needle: str) -> None:
    part = only([block])
    assert part.image is None and part.error is not None
    assert needle in str(part.error) and "message 0, content/0" in str(part.error)


# ---------------------------------------------------------------------- documents
@pytest.mark.parametrize(("block", "style"), [
    ({"type": "file", "base64": b64(PDF), "mime_type": "application/pdf"}, "v1"),
    ({"type": "file", "source_type": "base64", "data": b64(PDF), "mime_type": "application/pdf"},
     "v1"),
    ({"type": "file", "file": {"filename": "a.pdf", "file_data": data_url(PDF, "application/pdf")}},
     "openai"),
    ({"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                     "data": b64(PDF)}}, "anthropic"),
    ({"type": "input_file", "filename": "a.pdf", "file_data": data_url(PDF, "application/pdf")},
     "responses"),
    ({"type": "image", "base64": b64(PDF), "mime_type": "image/png"}, "v1"),
    ({"type": "file", "base64": b64(b"%junk\n" * 100 + PDF)}, "v1"),  # %PDF- within 1 KiB
])
def test_a_pdf_in_any_block_shape_is_a_part_to_judge(block: dict[str, Any], style: str) -> None:
    part = only([block])
    assert part.style == style and part.error is None and part.image is not None
    assert part.image.data.endswith(PDF)
    if block["type"] != "image":  # an image block's bytes are judged as they are
        assert part.image.mime_type == "application/pdf"


@pytest.mark.parametrize(("data", "needle"), [
    (docx_of(PNG), "ZIP archive"), (OLE, "OLE compound document"), (RTF, "RTF document"),
    (svg_of(PNG), "SVG document"), (html_of(PNG), "HTML document"),
    (bytes(range(256)) * 4, "unknown format"),
    (b"P3\n1 1\n255\n255 0 0\n", "netpbm"),
])
def test_other_documents_in_a_file_block_are_unreadable(data: bytes, needle: str) -> None:
    for block in ({"type": "file", "base64": b64(data), "mime_type": "application/octet-stream"},
                  {"type": "input_file", "file_data": data_url(data, "application/x-thing")},
                  {"type": "document", "source": {"type": "base64", "media_type": "x/y",
                                                  "data": b64(data)}}):
        part = only([block])
        assert part.image is None and needle in str(part.error), part.error


def test_a_plain_text_file_passes_as_text() -> None:
    assert parts([{"type": "file", "base64": b64(TEXT_FILE), "mime_type": "text/plain"},
                  {"type": "text-plain", "text": "notes", "mime_type": "text/plain"},
                  {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                  "data": "plain words"}}]) == []


@pytest.mark.parametrize(("block", "needle"), [
    ({"type": "file", "file_id": "file-abc"}, "provider file id"),
    ({"type": "input_file", "file_url": "https://example.com/a.pdf"}, "not inline"),
    ({"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
     "document URL"),
    ({"type": "document", "source": {"type": "file", "file_id": "file-abc"}}, "provider file id"),
    ({"type": "file", "file": {"file_id": "file-abc", "file_data": b64(PDF)}}, "2 sources"),
])
def test_documents_we_cannot_see_are_unreadable(block: dict[str, Any], needle: str) -> None:
    part = only([block])
    assert part.image is None and needle in str(part.error)


# ---------------------------------------------------------------------- fields
def test_the_reason_names_the_field() -> None:
    found = parts([content_document({"type": "text", "text": "x"},
                                    {"type": "audio", "base64": b64(wav())})])
    assert len(found) == 1
    assert str(found[0].error).startswith("message 0, content/0/source/content/1")


@pytest.mark.parametrize(("extras", "path", "needle"), [
    ({"attachment": {"blob": b64(docx_of(PNG))}}, ("extras", "attachment", "blob"), "ZIP"),
    ({"meta": [{"url": "https://example.com/x.png"}]}, ("extras", "meta", 0, "url"), "not fetched"),
    ({"meta": {"file_id": "file-abc"}}, ("extras", "meta", "file_id"), "file reference"),
    ({"raw": bytes(range(200))}, ("extras", "raw"), "unknown format"),
    ({"local": "/etc/hostname"}, ("extras", "local"), "file path"),
    ({"odd": object()}, ("extras", "odd"), "type object"),
])
def test_payloads_in_extra_fields_are_unreadable(extras: dict[str, Any], path: tuple[Any, ...],
                                                 needle: str) -> None:
    part = only("hello", **extras)
    assert part.path == path and part.style == "raw" and part.image is None
    assert needle in str(part.error)


def test_pictures_and_pdfs_in_extra_fields_are_judged() -> None:
    class Attachment(BaseModel):
        preview: str

    @dataclasses.dataclass
    class Thumb:
        data: bytes

    found = parts("hello", a=Attachment(preview=data_url(PNG)), b=Thumb(PNG),
                  c={"deep": [{"pdf": b64(PDF)}]}, images=[b64(PNG)])
    assert [p.path for p in found] == [("extras", "a", "preview"), ("extras", "b", "data"),
                                       ("extras", "c", "deep", 0, "pdf"), ("extras", "images", 0)]
    assert all(p.image is not None for p in found)
    assert found[2].image is not None and found[2].image.mime_type == "application/pdf"


def test_unknown_fields_of_known_blocks_are_walked() -> None:
    found = parts([{"type": "tool_result", "tool_use_id": "t", "content": "ok",
                    "artifact": {"thumbnail": b64(PNG), "clip": b64(MP4 * 2)}},
                   {"type": "text", "text": "hi", "extras": {"image": data_url(PNG)}}])
    assert [(p.path, p.image is not None) for p in found] == [
        (("content", 0, "artifact", "thumbnail"), True),
        (("content", 0, "artifact", "clip"), False),
        (("content", 1, "extras", "image"), True)]


# ---------------------------------------------------------------------- text stays text
def test_text_ids_signatures_and_tool_arguments_stay_text() -> None:
    opaque = b64(bytes(range(256)) * 3)  # binary, as signatures and encrypted content are
    content = [
        {"type": "text", "text": "a long sentence " * 50, "annotations": [
            {"type": "url_citation", "url": "https://example.com", "title": "x"}]},
        {"type": "thinking", "thinking": "hmm", "signature": opaque},
        {"type": "redacted_thinking", "data": opaque},
        {"type": "reasoning", "id": "rs_" + "a1" * 30, "encrypted_content": opaque,
         "summary": [{"type": "summary_text", "text": "sum"}]},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "f",
         "input": {"blob": opaque, "url": "https://example.com/x"}},
        {"type": "tool_call", "id": "call_" + "Zz9" * 20, "name": "f", "args": {"q": opaque}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
            {"type": "web_search_result", "url": "https://example.com", "title": "t",
             "encrypted_content": opaque, "page_age": "1 day"}]},
        {"type": "citation", "url": "https://example.com", "cited_text": "c"},
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ]
    extras = {"tool_calls": [{"id": "call_" + "Q" * 40, "type": "function", "function": {
        "name": "f", "arguments": '{"a": 1}'}}], "refusal": None, "name": "bob",
        "__gemini_function_call_thought_signatures__": {"c1": opaque},
        "checksum": "ab" * 40, "note": "plain words in an extra field " * 3}
    assert parts(content, **extras) == []


def test_a_whole_picture_in_a_text_field_is_judged() -> None:
    found = parts([{"type": "text", "text": b64(PNG)},
                   {"type": "tool_use", "id": "t", "name": "f", "input": {"img": data_url(PNG)}}])
    assert [(p.path, p.style) for p in found] == [(("content", 0), "text_block"),
                                                  (("content", 1, "input", "img"), "text")]


def test_unknown_blocks_and_deep_nesting_fail_closed() -> None:
    assert "unknown type 'hologram'" in str(only([{"type": "hologram", "x": 1}]).error)
    assert "unknown type" in str(only([{"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "web_search_tool_result_fancy"}]}]).error)
    deep: Any = {"k": data_url(PNG)}
    for _ in range(40):
        deep = {"k": deep}
    assert "nested too deeply" in str(only("x", meta=deep).error)


def test_provider_dicts_are_read_like_langchain_messages() -> None:
    message = {"role": "tool", "tool_call_id": "c1", "content": [
        {"type": "function_call_output", "call_id": "c1", "output": [
            {"type": "input_file", "file_data": data_url(PDF, "application/pdf")}]}],
        "audio": {"data": b64(wav())}}
    found = find_image_parts([view_of_dict(message)], options=OPTS)
    assert [(p.path, p.image is not None) for p in found] == [
        (("content", 0, "output", 0), True), (("extras", "audio", "data"), False)]


def test_fields_of_a_block_replaced_whole_are_still_accounted_for() -> None:
    """A canonical block drops them, but a service that lets the original through does not."""
    found = parts([{"type": "image_url", "image_url": {"url": data_url(PNG), "detail": "low",
                                                       "thumb": b64(PNG)},
                    "extras": {"preview": b64(PNG), "clip": b64(MP4 * 2)}},
                   {"type": "document", "source": {"type": "base64", "data": b64(PDF),
                                                   "media_type": "application/pdf",
                                                   "alt": data_url(PNG)}}])
    assert [(p.path, p.image is not None) for p in found] == [
        (("content", 0), True), (("content", 0, "image_url", "thumb"), True),
        (("content", 0, "extras", "preview"), True), (("content", 0, "extras", "clip"), False),
        (("content", 1), True), (("content", 1, "source", "alt"), True)]


def test_a_whole_document_or_media_file_in_a_text_field_is_unreadable() -> None:
    """A converter may decode it; an opaque provider token (a signature) is never read."""
    found = parts([{"type": "text", "text": b64(docx_of(PNG))},
                   {"type": "tool_use", "id": "t", "name": "f", "input": {"clip": b64(wav())}},
                   {"type": "thinking", "thinking": "x", "signature": b64(docx_of(PNG))},
                   {"type": "text", "text": data_url(svg_of(PNG), "image/svg+xml")},
                   {"type": "text", "text": data_url(TEXT_FILE, "text/plain")}])
    assert [(p.path, p.image is None) for p in found] == [
        (("content", 0), True), (("content", 1, "input", "clip"), True), (("content", 3), True)]
    assert "ZIP archive" in str(found[0].error) and "WAV audio" in str(found[1].error)


# ---------------------------------------------------------------- provider dicts and the type tables
def test_a_provider_dict_round_trips_through_its_view() -> None:
    message = {"role": "Assistant", "content": [{"type": "text", "text": "hi"}],
               "name": "bot", "images": [b64(PNG)]}
    view = view_of_dict(message)
    assert (view.role, view.content) == ("assistant", message["content"])  # roles lower-cased
    assert view.extras == {"name": "bot", "images": [b64(PNG)]}
    guarded = MessageView(view.role, [{"type": "text", "text": "guarded"}], {"name": "bot"})
    assert dict_of_view(message, guarded) == {
        "role": "Assistant", "content": [{"type": "text", "text": "guarded"}], "name": "bot"}
    assert view_of_dict({"content": "x"}).role == "user"  # a dict without a role is the user's
    assert dict_of_view({"role": "user"}, MessageView("user", None, {})) == {"role": "user"}


def test_the_block_type_tables_are_disjoint() -> None:
    tables = [CONTAINER_TYPES, FILE_TYPES, IMAGE_TYPES, MEDIA_TYPES, OTHER_TYPES, TEXT_TYPES]
    names = [t for table in tables for t in table]
    assert len(names) == len(set(names)), sorted(t for t in names if names.count(t) > 1)


@pytest.mark.parametrize("kind", sorted(IMAGE_TYPES))
def test_every_image_block_type_holding_a_data_url_is_a_part_to_judge(kind: str) -> None:
    field = {"image_url": {"image_url": data_url(PNG)}, "input_image": {"image_url": data_url(PNG)},
             "computer_screenshot": {"image_url": data_url(PNG)}}.get(kind, {"url": data_url(PNG)})
    part = only([{"type": kind, **field}])
    assert part.image is not None and part.error is None and part.path == ("content", 0)


@pytest.mark.parametrize("kind", sorted(TEXT_TYPES))
def test_text_blocks_are_not_parts(kind: str) -> None:
    assert parts([{"type": kind, "text": "just words"}]) == []
