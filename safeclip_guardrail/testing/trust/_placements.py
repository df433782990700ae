"""Every place a picture can sit in a conversation: the placements of the trust suite.

Each :class:`Placement` builds a conversation that puts one picture somewhere a model could
receive it: every finding of issues 10 and 19 and the ones found since (parser
differentials, every role, file blocks whose bytes are a picture whatever they declare,
paths and URLs in content, non-finite embeddings, nested and wrapped blocks, other
dialects, frames and transparency, PDFs in every block shape, audio, video, office and
markup documents, text that must pass). Each runs with the flagged picture B and with a
benign picture A; ``flagged`` and ``benign`` say what must happen (see :class:`Placement`).

Conversations are framework-free (:mod:`._messages`); add a placement here and every
surface that subclasses the contract runs it.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from safeclip_guardrail.testing.documents import MP4, TEXT_FILE, docx_of, html_of, svg_of, wav
from safeclip_guardrail.testing.pictures import animated_png, b64, encode
from safeclip_guardrail.testing.pictures import data_url as durl
from safeclip_guardrail.testing.trust._images import TrustImages, pixel_key
from safeclip_guardrail.testing.trust._messages import (
    Conversation,
    Message,
    ask,
    human,
    tool_conversation,
)
from safeclip_guardrail.testing.trust._messages import image_url_block as img_url

__all__ = ["PLACEMENTS", "Placement", "alpha_hidden"]


def alpha_hidden(imgs: TrustImages, data: bytes) -> bytes:
    """A PNG whose RGB channels are ``data``'s pixels under a fully transparent alpha."""
    rgb = Image.open(io.BytesIO(data)).convert("RGB")
    rgba = rgb.copy()
    rgba.putalpha(0)
    out = encode(rgba)
    judged = imgs.guard.decode(out).frames[0]  # what the guard sees: register it benign
    imgs.encoder.register(judged, imgs.encoder.embedding_for("neutral"))
    imgs.forbidden.add(pixel_key(rgb))  # what a decoder ignoring alpha would see
    return out


def _pair(i: TrustImages) -> tuple[bytes, bytes]:
    return i.flagged, i.benign


@dataclass(frozen=True)
class Placement:
    """One place an image can sit. ``build(imgs, image_bytes)`` -> conversation."""

    name: str
    build: Callable[[TrustImages, bytes], Conversation]
    flagged: str = "block"
    """Expected with the flagged image B: ``block`` or ``safe``."""
    benign: str = "forward"
    """Expected with the benign image A: ``forward`` (A's pixels arrive), ``pass`` (not
    blocked; what arrives is a judged re-encoding), ``block`` (unreadable) or ``safe``.
    ``text``: not blocked, no image involved (no blanket blocking). ``document``: a PDF;
    when the guard judges PDFs the PDF sent arrives, else it is unreadable (``block``)."""
    images: Callable[[TrustImages], tuple[bytes, bytes]] = _pair
    """The (flagged-variant, benign-variant) images."""


def _file(mime: str | None) -> Callable[[TrustImages, bytes], Conversation]:
    def build(imgs: TrustImages, x: bytes) -> Conversation:
        block: dict[str, Any] = {"type": "file", "base64": b64(x)}
        if mime is not None:
            block["mime_type"] = mime
        return [human(block)]
    return build


def _extras(extras: dict[str, Any]) -> Message:
    return Message("human", "what is this?", extras=extras)


PLACEMENTS: list[Placement] = [
    # 1. parser differentials: two sources in one block -> unreadable -> blocked
    Placement("two_sources_base64_url", lambda i, x: [human(
        {"type": "image", "base64": b64(i.benign), "mime_type": "image/png", "url": durl(x)})],
        benign="block"),
    Placement("two_sources_anthropic_source_base64", lambda i, x: [human(
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": b64(i.benign)}, "base64": b64(x)})],
        benign="block"),
    Placement("two_sources_image_url_url", lambda i, x: [human(
        {"type": "image_url", "image_url": {"url": durl(i.benign)}, "url": durl(x)})],
        benign="block"),
    Placement("two_sources_v0_source_type", lambda i, x: [human(
        {"type": "image", "source_type": "base64", "data": b64(i.benign),
         "mime_type": "image/png", "url": durl(x)})], benign="block"),
    # 2. every role
    Placement("ai_message", lambda i, x: [ask(), Message("ai", [img_url(x)])]),
    Placement("system_message", lambda i, x: [Message("system", [img_url(x)]), ask()]),
    Placement("tool_message", lambda i, x: tool_conversation([img_url(x)])),
    Placement("tool_message_v1", lambda i, x: tool_conversation(
        [{"type": "image", "base64": b64(x), "mime_type": "image/png"}])),
    Placement("function_message", lambda i, x: [ask(), Message(
        "function", name="photo", content=[img_url(x)])]),
    Placement("chat_message_assistant", lambda i, x: [ask(), Message(
        "chat", role="assistant", content=[img_url(x)])]),
    Placement("chat_message_User_capitalised", lambda i, x: [Message(
        "chat", role="User", content=[img_url(x)])]),
    Placement("chat_message_narrator", lambda i, x: [ask(), Message(
        "chat", role="narrator", content=[img_url(x)])]),
    Placement("dict_assistant", lambda i, x: [
        {"role": "user", "content": "look"}, {"role": "assistant", "content": [img_url(x)]}]),
    Placement("dict_developer", lambda i, x: [
        {"role": "developer", "content": [img_url(x)]}, {"role": "user", "content": "hi"}]),
    # 3. file blocks whose bytes are an image, whatever they declare
    Placement("file_upper_case_mime", _file("IMAGE/PNG")),
    Placement("file_mime_whitespace", _file(" image/png ")),
    Placement("file_octet_stream", _file("application/octet-stream")),
    Placement("file_pdf_mime", _file("application/pdf")),
    Placement("file_no_mime", _file(None)),
    Placement("openai_file_data", lambda i, x: [human(
        {"type": "file", "file": {"filename": "scan.pdf", "file_data": durl(x, "application/pdf")}})]),
    Placement("openai_file_data_plain_base64", lambda i, x: [human(
        {"type": "file", "file": {"filename": "scan.pdf", "file_data": b64(x)}})]),
    Placement("anthropic_document", lambda i, x: [human(
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": b64(x)}})]),
    # 4. local paths in message content: never read -> unreadable -> blocked
    Placement("path_in_image_url", lambda i, x: [human(
        {"type": "image_url", "image_url": {"url": i.path_of(x, "in_image_url.png")}})],
        benign="block"),
    Placement("path_in_url", lambda i, x: [human(
        {"type": "image", "url": i.path_of(x, "in_url.png")})], benign="block"),
    Placement("file_uri_in_url", lambda i, x: [human(
        {"type": "image", "url": Path(i.path_of(x, "as_uri.png")).as_uri()})], benign="block"),
    Placement("remote_url_not_allowed", lambda i, x: [human(
        {"type": "image_url", "image_url": {"url": "https://images.example.com/x.png"}})],
        benign="block"),
    # 5. non-finite embeddings fail closed
    Placement("nonfinite_embedding", lambda i, x: [human(img_url(x))], benign="block",
              images=lambda i: (i.nonfinite, i.nonfinite)),
    # found since: nested, wrapped, extra fields, plain strings, other dialects
    Placement("tool_result_nested", lambda i, x: [human({
        "type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": b64(x)}}]})]),
    Placement("non_standard_wrapper", lambda i, x: [human(
        {"type": "non_standard", "value": img_url(x)})]),
    Placement("additional_kwargs_images", lambda i, x: [_extras({"images": [b64(x)]})]),
    Placement("additional_kwargs_data_url", lambda i, x: [_extras({"attachment": {"preview": durl(x)}})]),
    Placement("additional_kwargs_raw_bytes", lambda i, x: [_extras({"images": [x]})]),
    Placement("ollama_dict_raw_bytes", lambda i, x: [
        {"role": "user", "content": "what is this?", "images": [x]}]),
    Placement("tool_result_string_data_url", lambda i, x: [human(
        {"type": "tool_result", "tool_use_id": "t1", "content": durl(x)})]),
    Placement("non_string_block_type", lambda i, x: [human(
        {"type": ["image"], "base64": b64(x)})], benign="block"),
    Placement("ollama_dict_images", lambda i, x: [
        {"role": "user", "content": "what is this?", "images": [b64(x)]}]),
    Placement("data_url_string_content", lambda i, x: [Message("human", durl(x))]),
    Placement("data_url_in_text_block", lambda i, x: [human({"type": "text", "text": durl(x)})]),
    Placement("data_url_string_item", lambda i, x: [Message("human", ["look", durl(x)])]),
    Placement("input_image_responses", lambda i, x: [human(
        {"type": "input_image", "image_url": durl(x)})]),
    Placement("url_safe_base64", lambda i, x: [human(
        {"type": "image", "base64": base64.urlsafe_b64encode(x).decode(),
         "mime_type": "image/png"})]),
    Placement("data_url_octet_stream", lambda i, x: [human(
        {"type": "image_url", "image_url": {"url": durl(x, "application/octet-stream")}})]),
    Placement("data_url_upper_case_mime", lambda i, x: [human(
        {"type": "image_url", "image_url": {"url": durl(x, "IMAGE/PNG")}})]),
    Placement("data_url_text_plain_mime", lambda i, x: [human(
        {"type": "image_url", "image_url": {"url": durl(x, "text/plain")}})], benign="safe"),
    Placement("v0_source_type_base64", lambda i, x: [human(
        {"type": "image", "source_type": "base64", "data": b64(x), "mime_type": "image/png"})]),
    Placement("anthropic_source", lambda i, x: [human(
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": b64(x)}})]),
    Placement("unknown_block_type", lambda i, x: [human(
        {"type": "picture", "data": b64(x)})], benign="block"),
    Placement("audio_block_with_image_bytes", lambda i, x: [human(
        {"type": "audio", "base64": b64(x), "mime_type": "audio/wav"})]),
    Placement("second_turn", lambda i, x: [human(img_url(i.benign)), Message("ai", "a cat"),
                                           human(img_url(x))]),
    # frames and transparency: only judged pixels are forwarded
    Placement("animation_flagged_later_frame", lambda i, x: [human(img_url(animated_png(i.benign, x)))],
              flagged="safe", benign="pass", images=lambda i: (i.flagged, i.benign2)),
    Placement("alpha_hides_pixels", lambda i, x: [human(img_url(alpha_hidden(i, x)))],
              flagged="safe", benign="pass",  # a fresh benign picture: alpha_hidden forbids it
              images=lambda i: (i.flagged, i.png("neutral"))),
]


# ---------------------------------------------------------------------- issue 19
# Every payload is accounted for: known blocks whose nested content was never read, PDFs in
# every block shape, video and audio, other documents, payloads in fields nobody expected.
def _anthropic_image(x: bytes) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                        "data": b64(x)}}


def _content_document(x: bytes) -> dict[str, Any]:
    return {"type": "document", "title": "scan", "source": {"type": "content", "content": [
        {"type": "text", "text": "page 1"}, _anthropic_image(x)]}}


def _pdf_block(shape: str) -> Callable[[TrustImages, bytes], Conversation]:
    def build(i: TrustImages, x: bytes) -> Conversation:
        pdf = i.pdf(x)
        blocks: dict[str, dict[str, Any]] = {
            "v1": {"type": "file", "base64": b64(pdf), "mime_type": "application/pdf"},
            "openai": {"type": "file", "file": {"filename": "scan.pdf",
                                                "file_data": durl(pdf, "application/pdf")}},
            "anthropic": {"type": "document", "source": {
                "type": "base64", "media_type": "application/pdf", "data": b64(pdf)}},
            "responses": {"type": "input_file", "filename": "scan.pdf",
                          "file_data": durl(pdf, "application/pdf")},
            "junk_prefix": {"type": "file", "base64": b64(b"%junk\n" * 60 + pdf),
                            "mime_type": "application/octet-stream"},
        }
        return [human(blocks[shape])]
    return build


PLACEMENTS += [
    Placement("document_content_source", lambda i, x: [human(_content_document(x))]),
    Placement("tool_result_document_content", lambda i, x: [human({
        "type": "tool_result", "tool_use_id": "t1", "content": [_content_document(x)]})]),
    Placement("non_standard_document_content", lambda i, x: [human(
        {"type": "non_standard", "value": _content_document(x)})]),
    Placement("function_call_output_in_content", lambda i, x: [human({
        "type": "function_call_output", "call_id": "c1", "output": [
            {"type": "input_text", "text": "done"}, {"type": "input_image", "image_url": durl(x)}]})]),
    Placement("function_call_output_string", lambda i, x: [human(
        {"type": "function_call_output", "call_id": "c1", "output": durl(x)})]),
    Placement("computer_call_output_screenshot", lambda i, x: [human({
        "type": "computer_call_output", "call_id": "c1",
        "output": {"type": "computer_screenshot", "image_url": durl(x)}})]),
    Placement("video_block_image_data_url", lambda i, x: [human(
        {"type": "video", "url": durl(x), "mime_type": "video/mp4"})]),
    Placement("audio_block_anthropic_source", lambda i, x: [human({
        "type": "audio", "source": {"type": "base64", "media_type": "audio/wav", "data": b64(x)}})]),
    Placement("input_audio_image_bytes", lambda i, x: [human(
        {"type": "input_audio", "input_audio": {"data": b64(x), "format": "wav"}})]),
    Placement("gemini_media_block", lambda i, x: [human(
        {"type": "media", "mime_type": "image/png", "data": b64(x)})]),
    Placement("text_block_plain_base64", lambda i, x: [human({"type": "text", "text": b64(x)})]),
    Placement("unknown_field_of_known_block", lambda i, x: [human({
        "type": "tool_result", "tool_use_id": "t1", "content": "ok",
        "artifact": {"thumbnail": b64(x)}})]),
    Placement("extra_field_of_an_image_block", lambda i, x: [human(
        {**img_url(i.benign2), "extras": {"preview": durl(x)}})], benign="pass"),
    Placement("additional_kwargs_nested_payload", lambda i, x: [_extras(
        {"attachments": [{"kind": "photo", "payload": {"bytes": b64(x)}}]})]),
    *(Placement(f"pdf_{shape}", _pdf_block(shape), benign="document")
      for shape in ("v1", "openai", "anthropic", "responses", "junk_prefix")),
    Placement("pdf_in_tool_result", lambda i, x: [human({
        "type": "tool_result", "tool_use_id": "t1", "content": [{"type": "document", "source": {
            "type": "base64", "media_type": "application/pdf", "data": b64(i.pdf(x))}}]})],
        benign="document"),
    # unreadable by default, whatever they hold
    Placement("wav_audio_block", lambda i, x: [human(
        {"type": "audio", "base64": b64(wav()), "mime_type": "audio/wav"})], benign="block"),
    Placement("mp4_video_block", lambda i, x: [human(
        {"type": "video", "base64": b64(MP4), "mime_type": "video/mp4"})], benign="block"),
    Placement("docx_holding_the_picture", lambda i, x: [human(
        {"type": "file", "base64": b64(docx_of(x)), "mime_type": "application/vnd.openxmlformats-"
         "officedocument.wordprocessingml.document"})], benign="block"),
    Placement("svg_embedding_the_picture", lambda i, x: [human(
        {"type": "file", "base64": b64(svg_of(x)), "mime_type": "image/svg+xml"})], benign="block"),
    Placement("html_embedding_the_picture", lambda i, x: [human(
        {"type": "input_file", "filename": "a.html", "file_data": durl(html_of(x), "text/html")})],
        benign="block"),
    Placement("url_in_unknown_field", lambda i, x: [human({
        "type": "tool_result", "tool_use_id": "t1", "content": "ok",
        "link": "https://images.example.com/x.png"})], benign="block"),
    Placement("responses_input_file_id", lambda i, x: [human(
        {"type": "input_file", "file_id": "file-abc123"})], benign="block"),
    # no blanket blocking: text files and text-only documents pass
    Placement("plain_text_file", lambda i, x: [human(
        {"type": "file", "base64": b64(TEXT_FILE), "mime_type": "text/plain"})],
        flagged="text", benign="text"),
    Placement("text_document_and_reasoning", lambda i, x: [ask(), Message("ai", [
        {"type": "thinking", "thinking": "hmm", "signature": b64(bytes(range(256)) * 2)},
        {"type": "text", "text": "done"}]), human({"type": "document", "source": {
            "type": "text", "media_type": "text/plain", "data": "plain words"}})],
        flagged="text", benign="text"),
]
