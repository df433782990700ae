"""Nested conversations, generated: known block types inside each other at random.

Document content sources, tool results, function and computer-call outputs,
``non_standard`` wrappers, search results, video/audio/media/file blocks, unknown fields of
known blocks and extra fields, nested up to six leaves deep, holding a flagged picture (or a
PDF, an office document, an SVG or an animation holding one), a benign one, a non-finite
one, garbage, audio, video or text, as base64, URL-safe base64, a data URL, raw bytes, an
http URL or a provider file id. Every payload must be judged or its part unreadable
(issue 19). Needs ``hypothesis`` (the ``testing`` extra).
"""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st

from safeclip_guardrail.testing.documents import MP4, TEXT_FILE, docx_of, svg_of, wav
from safeclip_guardrail.testing.pictures import animated_png
from safeclip_guardrail.testing.trust._images import TrustImages
from safeclip_guardrail.testing.trust._messages import Conversation, Message

__all__ = ["GARBAGE", "nested_conversations", "nested_payloads"]

GARBAGE = b"GIF89a this is not really an image"
"""Bytes that claim a picture format and are none."""
NESTED_PAYLOADS = ("flagged", "flagged", "flagged", "benign", "benign", "nonfinite", "garbage",
                   "empty", "pdf_benign", "pdf_flagged", "apng_flagged_later", "wav", "mp4",
                   "docx_flagged", "svg_flagged", "text_file")
NESTED_MIMES = ("image/png", "application/pdf", "video/mp4", "audio/wav", "text/plain",
                "application/octet-stream", "image/svg+xml", "")


def nested_payloads(imgs: TrustImages) -> dict[str, bytes]:
    """The payloads the generator draws from, by name."""
    return {"benign": imgs.benign, "flagged": imgs.flagged, "nonfinite": imgs.nonfinite,
            "garbage": GARBAGE, "empty": b"",
            "pdf_benign": imgs.pdf(imgs.benign), "pdf_flagged": imgs.pdf(imgs.flagged),
            "apng_flagged_later": animated_png(imgs.benign, imgs.flagged), "wav": wav(),
            "mp4": MP4, "docx_flagged": docx_of(imgs.flagged), "svg_flagged": svg_of(imgs.flagged),
            "text_file": TEXT_FILE}


def _in_text(p: Any) -> bool:
    """Payloads that may sit in a text position (a URL there is a link, not a source)."""
    return isinstance(p, str) and not p.startswith("http")


def _role_message(role: str, content: list[Any], extras: dict[str, Any], as_dict: bool) -> Any:
    if as_dict:  # a tool answer names its call, or LangChain cannot read it
        call = {"tool_call_id": "c1"} if role == "tool" else {}
        return {"role": role, "content": content, **call, **extras}
    if role == "tool":
        return Message("tool", content, extras=extras, tool_call_id="c1")
    kind = {"user": "human", "assistant": "ai"}.get(role, role)
    return Message(kind, content, extras=extras)  # type: ignore[arg-type]


def nested_conversations(imgs: TrustImages, *, max_messages: int = 3,
                         ) -> st.SearchStrategy[Conversation]:
    """Conversations of one to ``max_messages`` messages of nested blocks: all provider
    dicts or all :class:`Message`\\ s (drawn per conversation)."""
    data = nested_payloads(imgs)

    @st.composite
    def payload(draw: st.DrawFn) -> Any:
        raw = data[draw(st.sampled_from(NESTED_PAYLOADS))]
        encoding = draw(st.sampled_from(["b64", "b64", "data_url", "urlsafe", "bytes", "http",
                                         "file_id"]))
        if encoding == "b64":
            return base64.b64encode(raw).decode()
        if encoding == "urlsafe":
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if encoding == "data_url":
            mime = draw(st.sampled_from(NESTED_MIMES))
            return f"data:{mime};base64,{base64.b64encode(raw).decode()}"
        if encoding == "bytes":
            return raw
        return "https://files.example.com/x" if encoding == "http" else "file-abc123"

    @st.composite
    def leaf(draw: st.DrawFn) -> Any:
        s = draw(payload())
        t = draw(payload().filter(_in_text))
        m = draw(st.sampled_from(NESTED_MIMES))
        shape = draw(st.integers(0, 20))
        block: Any = [
            {"type": "image", "base64": s}, {"type": "image", "url": s},
            {"type": "image_url", "image_url": {"url": s}}, {"type": "input_image", "image_url": s},
            {"type": "image", "source": {"type": "base64", "media_type": m, "data": s}},
            {"type": "file", "base64": s, "mime_type": m},
            {"type": "file", "file": {"file_data": s, "filename": "x.pdf"}},
            {"type": "input_file", "file_data": s, "filename": "x"},
            {"type": "document", "source": {"type": "base64", "media_type": m, "data": s}},
            {"type": "video", "url": s, "mime_type": m}, {"type": "video", "base64": s},
            {"type": "audio", "base64": s, "mime_type": m},
            {"type": "audio", "source": {"type": "base64", "media_type": m, "data": s}},
            {"type": "input_audio", "input_audio": {"data": s, "format": "wav"}},
            {"type": "media", "mime_type": m, "data": s}, {"type": "text", "text": t},
            {"type": "computer_screenshot", "image_url": s},
            {"type": draw(st.sampled_from(["picture", "IMAGE", "document_url"])), "data": s},
            t, {"type": "text", "text": "plain words"},
            {"type": "thinking", "thinking": "hmm",
             "signature": base64.b64encode(bytes(range(200))).decode()},
        ][shape]
        if isinstance(block, dict) and draw(st.integers(0, 5)) == 0:  # a payload in another field
            block = {**block, "extras": {"preview": draw(payload())}}
        return block

    def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        blocks = children.filter(lambda c: isinstance(c, dict))
        many = st.lists(children, min_size=1, max_size=3)
        text_or_many = st.one_of(many, payload().filter(_in_text))
        return st.one_of(
            st.builds(lambda c: {"type": "document", "title": "t",
                                 "source": {"type": "content", "content": c}}, many),
            st.builds(lambda c: {"type": "tool_result", "tool_use_id": "t1", "content": c},
                      text_or_many),
            st.builds(lambda c: {"type": "function_call_output", "call_id": "c1", "output": c},
                      text_or_many),
            st.builds(lambda c: {"type": "computer_call_output", "call_id": "c1", "output": c},
                      blocks),
            st.builds(lambda c: {"type": "non_standard", "value": c}, blocks),
            st.builds(lambda c: {"type": "search_result", "source": "kb/doc-1",
                                 "title": "t", "content": c}, many),
            st.builds(lambda c: {"type": "tool_result", "tool_use_id": "t1", "content": "ok",
                                 "artifact": {"item": c}}, children),
        )

    block = st.recursive(leaf(), containers, max_leaves=6)
    extras = st.one_of(
        st.just({}), st.builds(lambda p: {"images": [p]}, payload()),
        st.builds(lambda b: {"attachments": [b]}, block),
        st.builds(lambda p: {"meta": {"deep": [{"blob": p}]}}, payload()))
    message = st.tuples(st.sampled_from(["user", "assistant", "tool", "system"]),
                        st.lists(block, min_size=1, max_size=3), extras)

    def conversation(messages: list[tuple[str, list[Any], dict[str, Any]]],
                     as_dict: bool) -> Conversation:
        return [_role_message(role, content, extras, as_dict) for role, content, extras in messages]

    return st.builds(conversation, st.lists(message, min_size=1, max_size=max_messages),
                     st.booleans())
