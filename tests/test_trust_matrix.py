"""What is judged is what is sent: placements x surfaces x call styles (issue 10).

Every PLACEMENT is a conversation builder that puts one image somewhere a model could
receive it (every finding of issue 10 and the ones found since). Each runs in two variants:
with the flagged image B, and with a benign image A. Every SURFACE runs it in every call
style it has, with ``mode="block"`` semantics, in front of a recording model that decodes
every image it receives (tests/_trust.py). For each (placement, variant):

- ``block``: the request is refused and the model is never called;
- ``forward``: the model is called and receives A's pixels;
- ``safe``: either, as long as the safety checks hold;

and always: no forbidden image (B, a non-finite-embedding image, pixels hidden under alpha
or in an unjudged frame), no URL and no planted path reach the model, and every frame it
receives was judged by the guard's encoder.

Adding a surface (ChatLlava and the RAG guard are in tests/_trust_chat.py) is a few lines: write
``def _my_surface(imgs) -> Runner`` returning ``run(conversation, style) -> Outcome`` and
append ``Surface("name", ("invoke", ...), _my_surface)`` to ``SURFACES`` (or to
``NODE_SURFACES`` for document/node inputs). A conversation is a list of LangChain messages
or provider dict messages; ``_lc(conv)`` / ``_dicts(conv)`` convert. Use
``RecordingChatModel`` as the model, report ``Outcome(blocked, model.received(), called)``.
Declare ``supports=`` only for conversations the framework itself cannot represent.
"""

from __future__ import annotations

import base64
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from PIL import Image

from safeclip_guardrail import GuardrailViolation, SafeCLIPGuardrail
from tests._documents import MP4, TEXT_FILE, docx_of, html_of, svg_of, wav
from tests._trust import (
    ANSWER,
    Conversation,
    Images,
    Outcome,
    Received,
    RecordingChatModel,
    Runner,
    Surface,
    adrain,
    assert_only_judged,
    drain,
    frames_of,
    make_images,
    pixel_key,
    run_async,
    scan,
)
from tests._trust_chat import chat_llava_surface, doc_placements, rag_run
from tests._trust_service import dict_surface, service_surface


# ---------------------------------------------------------------------- helpers
def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def durl(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{b64(data)}"


def img_url(data: bytes) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": durl(data)}}


def human(*blocks: Any) -> HumanMessage:
    return HumanMessage(content=[{"type": "text", "text": "what is this?"}, *blocks])


def ask() -> HumanMessage:
    return HumanMessage("what is in the pictures?")


def apng(*frames: bytes) -> bytes:
    ims = [Image.open(io.BytesIO(f)).convert("RGB") for f in frames]
    buf = io.BytesIO()
    ims[0].save(buf, format="PNG", save_all=True, append_images=ims[1:], duration=100, loop=0)
    return buf.getvalue()


def alpha_hidden(imgs: Images, data: bytes) -> bytes:
    """A PNG whose RGB channels are ``data``'s pixels under a fully transparent alpha."""
    rgb = Image.open(io.BytesIO(data)).convert("RGB")
    rgba = rgb.copy()
    rgba.putalpha(0)
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    out = buf.getvalue()
    judged = imgs.guard.decode(out).frames[0]  # what the guard sees: register it benign
    imgs.encoder.register(judged, imgs.encoder.embedding_for("neutral"))
    imgs.forbidden.add(pixel_key(rgb))  # what a decoder ignoring alpha would see
    return out


# ---------------------------------------------------------------------- placements
@dataclass(frozen=True)
class Placement:
    """One place an image can sit. ``build(imgs, image_bytes)`` -> conversation."""

    name: str
    build: Callable[[Images, bytes], Conversation]
    flagged: str = "block"
    """Expected with the flagged image B: ``block`` or ``safe``."""
    benign: str = "forward"
    """Expected with the benign image A: ``forward`` (A's pixels arrive), ``pass`` (not
    blocked; what arrives is a judged re-encoding), ``block`` (unreadable) or ``safe``.
    ``text``: not blocked, no image involved (no blanket blocking). ``document``: a PDF;
    when the guard judges PDFs the PDF sent arrives, else it is unreadable (``block``)."""
    images: Callable[[Images], tuple[bytes, bytes]] = lambda i: (i.flagged, i.benign)
    """The (flagged-variant, benign-variant) images."""


def _file(mime: str | None) -> Callable[[Images, bytes], Conversation]:
    def build(imgs: Images, x: bytes) -> Conversation:
        block: dict[str, Any] = {"type": "file", "base64": b64(x)}
        if mime is not None:
            block["mime_type"] = mime
        return [human(block)]
    return build


def _tool_conv(content: Any) -> Conversation:
    call = AIMessage("", tool_calls=[{"name": "photo", "args": {}, "id": "call-1"}])
    return [ask(), call, ToolMessage(content=content, tool_call_id="call-1")]


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
    Placement("ai_message", lambda i, x: [ask(), AIMessage(content=[img_url(x)])]),
    Placement("system_message", lambda i, x: [SystemMessage(content=[img_url(x)]), ask()]),
    Placement("tool_message", lambda i, x: _tool_conv([img_url(x)])),
    Placement("tool_message_v1", lambda i, x: _tool_conv(
        [{"type": "image", "base64": b64(x), "mime_type": "image/png"}])),
    Placement("function_message", lambda i, x: [ask(), FunctionMessage(
        name="photo", content=[img_url(x)])]),
    Placement("chat_message_assistant", lambda i, x: [ask(), ChatMessage(
        role="assistant", content=[img_url(x)])]),
    Placement("chat_message_User_capitalised", lambda i, x: [ChatMessage(
        role="User", content=[img_url(x)])]),
    Placement("chat_message_narrator", lambda i, x: [ask(), ChatMessage(
        role="narrator", content=[img_url(x)])]),
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
    Placement("additional_kwargs_images", lambda i, x: [HumanMessage(
        "what is this?", additional_kwargs={"images": [b64(x)]})]),
    Placement("additional_kwargs_data_url", lambda i, x: [HumanMessage(
        "what is this?", additional_kwargs={"attachment": {"preview": durl(x)}})]),
    Placement("additional_kwargs_raw_bytes", lambda i, x: [HumanMessage(
        "what is this?", additional_kwargs={"images": [x]})]),
    Placement("ollama_dict_raw_bytes", lambda i, x: [
        {"role": "user", "content": "what is this?", "images": [x]}]),
    Placement("tool_result_string_data_url", lambda i, x: [human(
        {"type": "tool_result", "tool_use_id": "t1", "content": durl(x)})]),
    Placement("non_string_block_type", lambda i, x: [human(
        {"type": ["image"], "base64": b64(x)})], benign="block"),
    Placement("ollama_dict_images", lambda i, x: [
        {"role": "user", "content": "what is this?", "images": [b64(x)]}]),
    Placement("data_url_string_content", lambda i, x: [HumanMessage(content=durl(x))]),
    Placement("data_url_in_text_block", lambda i, x: [human({"type": "text", "text": durl(x)})]),
    Placement("data_url_string_item", lambda i, x: [HumanMessage(content=["look", durl(x)])]),
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
    Placement("second_turn", lambda i, x: [human(img_url(i.benign)), AIMessage("a cat"),
                                           human(img_url(x))]),
    # frames and transparency: only judged pixels are forwarded
    Placement("animation_flagged_later_frame", lambda i, x: [human(img_url(apng(i.benign, x)))],
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


def _pdf_block(shape: str) -> Callable[[Images, bytes], Conversation]:
    def build(i: Images, x: bytes) -> Conversation:
        pdf = i.pdf(x)
        block: dict[str, Any] = {
            "v1": {"type": "file", "base64": b64(pdf), "mime_type": "application/pdf"},
            "openai": {"type": "file", "file": {"filename": "scan.pdf",
                                                "file_data": durl(pdf, "application/pdf")}},
            "anthropic": {"type": "document", "source": {
                "type": "base64", "media_type": "application/pdf", "data": b64(pdf)}},
            "responses": {"type": "input_file", "filename": "scan.pdf",
                          "file_data": durl(pdf, "application/pdf")},
            "junk_prefix": {"type": "file", "base64": b64(b"%junk\n" * 60 + pdf),
                            "mime_type": "application/octet-stream"},
        }[shape]
        return [human(block)]
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
    Placement("additional_kwargs_nested_payload", lambda i, x: [HumanMessage(
        "what is this?", additional_kwargs={"attachments": [{"kind": "photo",
                                                             "payload": {"bytes": b64(x)}}]})]),
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
    Placement("text_document_and_reasoning", lambda i, x: [ask(), AIMessage(content=[
        {"type": "thinking", "thinking": "hmm", "signature": b64(bytes(range(256)) * 2)},
        {"type": "text", "text": "done"}]), human({"type": "document", "source": {
            "type": "text", "media_type": "text/plain", "data": "plain words"}})],
        flagged="text", benign="text"),
]


def _variants() -> list[tuple[Placement, str]]:
    return [(p, v) for p in PLACEMENTS for v in ("flagged", "benign")]


# ---------------------------------------------------------------------- surfaces
def _lc(conv: Conversation) -> list[BaseMessage]:
    return convert_to_messages(conv)


def _dicts(conv: Conversation) -> list[dict[str, Any]]:
    """Provider dicts holding the raw content and every extra field (no LangChain rewriting)."""
    from safeclip_guardrail.langchain._messages import role_of

    return [m if isinstance(m, dict) else
            {"role": role_of(m), "content": m.content, **m.additional_kwargs} for m in conv]


def _text(out: Any) -> str:
    if isinstance(out, list):
        return "".join(_text(o) for o in out)
    return str(getattr(out, "content", out))


def _call(runnable: Any, value: Any, style: str) -> Any:
    if style == "invoke":
        return runnable.invoke(value)
    if style == "ainvoke":
        return run_async(runnable.ainvoke(value))
    if style == "batch":
        return runnable.batch([value], return_exceptions=True)[0]
    if style == "abatch":
        return run_async(runnable.abatch([value], return_exceptions=True))[0]
    if style == "stream":
        return drain(runnable.stream(value))
    if style == "astream":
        return run_async(adrain(runnable.astream(value)))
    raise AssertionError(style)


def _wrapped(imgs: Images) -> Runner:
    def run(conv: Conversation, style: str) -> Outcome:
        model = RecordingChatModel()
        guarded = SafeCLIPGuardrail(guard=imgs.guard, mode="block").wrap(model)
        out = _call(guarded, conv, style)
        assert not isinstance(out, Exception), out
        blocked = not model.requests
        assert blocked == (ANSWER not in _text(out)), _text(out)
        return Outcome(blocked, model.received(), bool(model.requests))
    return run


def _plain_chain(imgs: Images) -> Runner:
    def run(conv: Conversation, style: str) -> Outcome:
        model = RecordingChatModel()
        chain = SafeCLIPGuardrail(guard=imgs.guard, mode="block") | model
        try:
            out = _call(chain, conv, style)
        except GuardrailViolation as exc:
            out = exc
        if isinstance(out, Exception):
            assert isinstance(out, GuardrailViolation), repr(out)
            assert out.refusal and not model.requests
        return Outcome(isinstance(out, GuardrailViolation), model.received(),
                       bool(model.requests))
    return run


def _middleware(imgs: Images) -> Runner:
    from langchain.agents import create_agent
    from safeclip_guardrail_langchain import SafeCLIPMiddleware

    def run(conv: Conversation, style: str) -> Outcome:
        model = RecordingChatModel()
        agent = create_agent(model, tools=[], middleware=[SafeCLIPMiddleware(imgs.guard)])
        out = _call(agent, {"messages": conv}, style)
        assert not isinstance(out, Exception), out
        return Outcome(not model.requests, model.received(), bool(model.requests))
    return run


def _langgraph(imgs: Images) -> Runner:
    from langchain_core.runnables import RunnableLambda
    from langgraph.graph import END, START, MessagesState, StateGraph
    from safeclip_guardrail_langchain import safeclip_node, safeclip_router

    def run(conv: Conversation, style: str) -> Outcome:
        model = RecordingChatModel()

        def call(state: dict[str, Any]) -> dict[str, Any]:
            return {"messages": [model.invoke(state["messages"])]}

        async def acall(state: dict[str, Any]) -> dict[str, Any]:
            return {"messages": [await model.ainvoke(state["messages"])]}

        builder = StateGraph(MessagesState)
        builder.add_node("safeclip", safeclip_node(imgs.guard))
        builder.add_node("model", RunnableLambda(call, afunc=acall))
        builder.add_edge(START, "safeclip")
        builder.add_conditional_edges("safeclip", safeclip_router(blocked=END, passed="model"),
                                      [END, "model"])
        builder.add_edge("model", END)
        out = _call(builder.compile(), {"messages": conv}, style)
        assert not isinstance(out, Exception), out
        return Outcome(not model.requests, model.received(), bool(model.requests))
    return run


def _nemo_supports(conv: Conversation) -> bool:
    # NeMo's own limits, not the guard's: bot turns must be strings (it asserts); roles other
    # than these and fields other than role/content are dropped by NeMo before any rail or
    # model sees them; bare strings inside a content list crash NeMo's history cache.
    for m in _dicts(conv):
        content = m.get("content")
        if m["role"] not in ("user", "assistant", "system", "developer") or set(m) - {
                "role", "content"}:
            return False
        if m["role"] == "assistant" and not isinstance(content, str):
            return False
        if isinstance(content, list) and not all(isinstance(c, dict) for c in content):
            return False
    return True


def _nemo(imgs: Images) -> Runner:
    from nemoguardrails import LLMRails
    from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter
    from safeclip_guardrail_nemo import example_rails_config, register_safeclip

    model = RecordingChatModel()
    rails = LLMRails(example_rails_config(), llm=LangChainLLMAdapter(model))
    register_safeclip(rails, imgs.guard)

    def run(conv: Conversation, style: str) -> Outcome:
        model.requests.clear()
        messages = _dicts(conv)
        out = (rails.generate(messages=messages) if style == "invoke"
               else run_async(rails.generate_async(messages=messages)))
        blocked = not model.requests
        assert blocked == (out["content"] != ANSWER), out
        return Outcome(blocked, model.received(), bool(model.requests))
    return run


SURFACES: list[Surface] = [
    Surface("wrap", ("invoke", "ainvoke", "batch", "abatch", "stream", "astream"), _wrapped),
    Surface("plain_chain", ("invoke", "ainvoke", "batch", "stream", "astream"), _plain_chain),
    Surface("middleware", ("invoke", "ainvoke", "batch", "stream", "astream"), _middleware),
    Surface("langgraph", ("invoke", "ainvoke", "batch", "stream", "astream"), _langgraph),
    Surface("nemo", ("invoke", "ainvoke"), _nemo, supports=_nemo_supports,
            forwards_images=False),
    chat_llava_surface(_call),  # LLaVA itself is the model (tests/_trust_chat.py)
    dict_surface(),  # conversation.guard_dict_messages (tests/_trust_service.py)
]
"""Message surfaces. The RAG guard's documents: test_rag_documents_... below."""
PLACEMENT_SURFACES = [*SURFACES, service_surface()]
"""Also the service's LiteLLM route, which lets the original request through on NONE."""


def judges_documents(imgs: Images) -> bool:
    """Whether the guard judges PDFs (renders their pages) or finds them unreadable."""
    from safeclip_guardrail.sources import EncodedImage

    probe = EncodedImage(imgs.pdf(imgs.benign), "<probe>", "application/pdf")
    return imgs.guard.judge_batch([probe])[0].verdict is not None


KNOWN_HOLES: dict[tuple[str, str], str] = {}
"""Holes this matrix finds that another branch fixes. Each must still fail (strict): when it
passes, the test fails until its entry is removed."""


def _check(surface: Surface, run: Runner, imgs: Images, style: str) -> list[str]:
    failures = _check_all(surface, run, imgs, style)
    out = [f for f in failures
           if not any(f.startswith(f"{s}/{style}/{p}/") for s, p in KNOWN_HOLES)]
    for s, p in KNOWN_HOLES:
        if s == surface.name and not any(f.startswith(f"{s}/{style}/{p}/") for f in failures):
            out.append(f"{s}/{style}/{p}: a known hole now holds; remove it from KNOWN_HOLES")
    return out


def _check_all(surface: Surface, run: Runner, imgs: Images, style: str) -> list[str]:
    failures: list[str] = []
    documents = "forward_document" if judges_documents(imgs) else "block"
    for placement, variant in _variants():
        conv_image = placement.images(imgs)[0 if variant == "flagged" else 1]
        conv = placement.build(imgs, conv_image)
        if not surface.supports(conv):
            continue
        where = f"{surface.name}/{style}/{placement.name}/{variant}"
        expect = placement.flagged if variant == "flagged" else placement.benign
        expect = documents if expect == "document" else expect
        try:
            outcome = run(conv, style)
            assert_only_judged(outcome.received, imgs, where)
            if expect == "block":
                assert outcome.blocked and not outcome.called, f"{where}: not blocked"
            elif expect == "text":
                assert not outcome.blocked, f"{where}: blocked, expected to go through"
            elif expect == "forward_document":
                assert not outcome.blocked, f"{where}: blocked, expected to go through"
                sent = Received()
                scan(conv, sent)
                if surface.forwards_images and surface.forwards_documents:
                    assert set(sent.documents) <= set(outcome.received.documents), \
                        f"{where}: the judged PDF did not arrive"
            elif expect in ("forward", "pass"):
                assert not outcome.blocked, f"{where}: blocked, expected to go through"
                if surface.forwards_images:
                    assert outcome.received.frames, f"{where}: no image arrived"
                if surface.forwards_images and expect == "forward":
                    got = set(outcome.received.frames)
                    want = {pixel_key(f) for f in frames_of(conv_image) or []}
                    assert want <= got, f"{where}: the judged benign image did not arrive"
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0][:300])
        except Exception as exc:
            failures.append(f"{where}: {type(exc).__name__}: {str(exc)[:200]}")
    return failures


@pytest.mark.parametrize(("surface", "style"), [
    pytest.param(s, st, id=f"{s.name}-{st}", marks=s.marks)
    for s in PLACEMENT_SURFACES for st in s.styles])
def test_every_placement_blocks_or_forwards_only_judged_bytes(surface: Surface, style: str,
                                                              tmp_path: Path) -> None:
    if surface.name in ("middleware", "langgraph"):
        pytest.importorskip("safeclip_guardrail_langchain")
    if surface.name == "nemo":
        pytest.importorskip("safeclip_guardrail_nemo")
    imgs = make_images(tmp_path)
    run = surface.build(imgs)
    try:
        failures = _check(surface, run, imgs, style)
    finally:
        getattr(run, "close", lambda: None)()
    assert not failures, "\n".join(failures)


def test_the_referee_sees_what_an_unguarded_model_gets(tmp_path: Path) -> None:
    """Without a guard, the recording model finds B in every placement that forwards it:
    the matrix above can fail."""
    imgs = make_images(tmp_path)
    missed = []
    for placement in PLACEMENTS:
        if placement.name.startswith(("remote_url", "nonfinite", "path_", "file_uri",
                                      "animation", "alpha", "wav_", "mp4_", "url_in",
                                      "responses_input_file_id")) or placement.flagged == "text":
            continue
        conv = placement.build(imgs, imgs.flagged)
        model = RecordingChatModel()
        try:
            model.invoke(_lc(conv))
        except (ValueError, TypeError):  # langchain-core itself refuses it (no MIME, odd type)
            continue
        received = model.received()
        if placement.benign == "document":  # a PDF holding B
            if not set(received.documents) & imgs.forbidden_docs:
                missed.append(placement.name)
        elif pixel_key(frames_of(imgs.flagged)[0]) not in received.frames:  # type: ignore[index]
            missed.append(placement.name)
    assert not missed, missed
    raw = Received()
    scan(human(img_url(apng(imgs.benign, imgs.flagged))), raw)
    assert set(raw.frames) & imgs.forbidden  # the later frame is there to be found


# ---------------------------------------------------------------------- LlamaIndex nodes
@dataclass(frozen=True)
class NodePlacement:
    name: str
    build: Callable[[Images, bytes], Any]
    flagged: str = "block"
    benign: str = "forward"


def _node_placements() -> list[NodePlacement]:
    from llama_index.core.schema import ImageNode, MediaResource, Node

    def node(**fields: Any) -> Any:
        return ImageNode(text="a photo", **fields)

    def trusted(i: Images, x: bytes) -> str:
        return i.path_of(x, f"trusted_{pixel_key(frames_of(x)[0])[:8]}.png")  # type: ignore[index]

    def resource_url(i: Images, x: bytes) -> Any:
        url = Path(i.path_of(x, "res.png")).as_uri()
        return Node(text_resource=MediaResource(text="a photo"),
                    image_resource=MediaResource(url=url))

    return [
        NodePlacement("image_base64", lambda i, x: node(image=b64(x), image_mimetype="image/png")),
        NodePlacement("image_data_url", lambda i, x: node(image=durl(x))),
        NodePlacement("image_path_trusted", lambda i, x: node(image_path=trusted(i, x))),
        NodePlacement("image_url_data_url", lambda i, x: node(image_url=durl(x))),
        NodePlacement("image_url_local_path", lambda i, x: node(
            image_url=i.path_of(x, "node_url.png")), benign="block"),
        NodePlacement("image_url_remote", lambda i, x: node(
            image_url="https://images.example.com/x.png"), benign="block"),
        NodePlacement("image_base64_and_path", lambda i, x: node(
            image=b64(x), image_path=i.path_of(i.flagged, "other.png"))),
        # (Node.image_resource.data is not here: LlamaIndex's docstore drops it on storage,
        # so a retrieved Node never carries it; the postprocessor reads it when present.)
        NodePlacement("resource_url_local_path", resource_url, benign="block"),
        NodePlacement("nonfinite", lambda i, x: node(image=b64(i.nonfinite)), benign="block"),
    ]


class _LLMRecorder:
    """LlamaIndex's own MockLLM; decodes every image block of every chat call."""

    def __init__(self) -> None:
        from llama_index.core.base.llms.types import ChatMessage as LIChatMessage
        from llama_index.core.llms.mock import MockFunctionCallingLLM

        self.calls = 0
        self.received = Received()
        self._message = LIChatMessage

        def answer(messages: Any, **kwargs: Any) -> Any:
            from llama_index.core.base.llms.types import ImageBlock

            self.calls += 1
            for m in messages:
                for block in m.blocks:
                    if isinstance(block, ImageBlock):
                        if block.url is not None:
                            scan(str(block.url), self.received)  # data URL: decoded; else noted
                        if block.path is not None:
                            self.received.strings.append(str(block.path))
                        if block.image is not None:  # how the LLM reads it
                            scan(block.resolve_image().read(), self.received)
            return self._message(role="assistant", content=ANSWER)

        self.llm = MockFunctionCallingLLM(is_chat_model=True, response_generator=answer)


def _llamaindex_run(imgs: Images, node: Any, style: str) -> Outcome:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.schema import TextNode
    from safeclip_guardrail_llamaindex import SafeCLIPImagePostprocessor

    rec = _LLMRecorder()
    index = VectorStoreIndex([node, TextNode(text="a note")], embed_model=MockEmbedding(embed_dim=8))
    engine = RetrieverQueryEngine.from_args(
        index.as_retriever(similarity_top_k=10), llm=rec.llm, multimodal=True,
        node_postprocessors=[SafeCLIPImagePostprocessor(imgs.guard)])
    response = (engine.query("what is in the pictures?") if style == "query"
                else run_async(engine.aquery("what is in the pictures?")))
    kept = [n.node for n in response.source_nodes if n.node.node_id == node.node_id]
    return Outcome(not kept, rec.received, rec.calls > 0)


@pytest.mark.parametrize("style", ["query", "aquery"])
def test_llamaindex_nodes_block_or_forward_only_judged_bytes(style: str, tmp_path: Path) -> None:
    pytest.importorskip("safeclip_guardrail_llamaindex")
    imgs = make_images(tmp_path)
    failures = []
    for placement in _node_placements():
        for variant, image in (("flagged", imgs.flagged), ("benign", imgs.benign)):
            where = f"llamaindex/{style}/{placement.name}/{variant}"
            expect = placement.flagged if variant == "flagged" else placement.benign
            try:
                outcome = _llamaindex_run(imgs, placement.build(imgs, image), style)
                assert_only_judged(outcome.received, imgs, where)
                if expect == "block":
                    assert outcome.blocked, f"{where}: node kept"
                elif expect == "forward":
                    assert not outcome.blocked, f"{where}: node dropped"
                    want = pixel_key(frames_of(image)[0])  # type: ignore[index]
                    assert want in outcome.received.frames, f"{where}: image did not arrive"
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0][:300])
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------- RAG documents
@pytest.mark.parametrize("style", ["invoke", "ainvoke", "batch", "abatch", "stream", "astream"])
def test_rag_documents_block_or_forward_only_judged_bytes(style: str, tmp_path: Path) -> None:
    """retriever | SafeCLIPDocumentGuard | prompt builder | recording model, over documents
    carrying the image under each metadata key and as page content (tests/_trust_chat.py)."""
    imgs = make_images(tmp_path)
    failures = []
    for placement in doc_placements():
        for variant, image in (("flagged", imgs.flagged), ("benign", imgs.benign)):
            where = f"rag/{style}/{placement.name}/{variant}"
            expect = placement.flagged if variant == "flagged" else placement.benign
            try:
                outcome = rag_run(imgs, placement.build(imgs, image), style, _call)
                assert_only_judged(outcome.received, imgs, where)
                if expect == "block":
                    assert outcome.blocked, f"{where}: document kept"
                elif expect == "forward":
                    assert not outcome.blocked, f"{where}: document dropped"
                    want = pixel_key(frames_of(image)[0])  # type: ignore[index]
                    assert want in outcome.received.frames, f"{where}: image did not arrive"
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0][:300])
            except Exception as exc:
                failures.append(f"{where}: {type(exc).__name__}: {str(exc)[:200]}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------- audit hook
_OPENED: list[tuple[str, str]] = []
_WATCH: set[str] = set()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WATCH and (event == "open" or event.startswith(("os.", "shutil.", "pathlib."))):
        text = " ".join(str(a) for a in args)
        if any(w in text for w in _WATCH):
            _OPENED.append((event, text[:200]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one only records


@pytest.mark.parametrize("surface", SURFACES, ids=[s.name for s in SURFACES])
def test_no_path_inside_a_message_is_ever_opened(surface: Surface, tmp_path: Path) -> None:
    """sys.addaudithook: a path in message content never appears in an open/os.* event."""
    if surface.name in ("middleware", "langgraph"):
        pytest.importorskip("safeclip_guardrail_langchain")
    if surface.name == "nemo":
        pytest.importorskip("safeclip_guardrail_nemo")
    imgs = make_images(tmp_path)
    secret = tmp_path / "secret_dir"
    secret.mkdir()
    paths = {name: secret / f"{name}.png" for name in ("a", "b", "c", "d", "e", "f")}
    for p in paths.values():
        p.write_bytes(imgs.flagged)
    missing = str(secret / "missing.png")
    convs: list[Conversation] = [
        [human({"type": "image_url", "image_url": {"url": str(paths["a"])}})],
        [human({"type": "image", "url": str(paths["b"])})],
        [human({"type": "image", "url": paths["c"].as_uri()})],
        [human({"type": "image_url", "image_url": {"url": missing}})],
        [human({"type": "image", "base64": str(paths["d"]), "mime_type": "image/png"})],
        [HumanMessage("x", additional_kwargs={"images": [str(paths["e"])]})],
        [{"role": "user", "content": [{"type": "input_image", "image_url": str(paths["f"])}]}],
    ]
    run = surface.build(imgs)
    _OPENED.clear()
    _WATCH.update({str(secret), secret.as_uri()})
    outcomes = []
    try:
        for conv in convs:
            if surface.supports(conv):
                outcomes.append(run(conv, surface.styles[0]))
    finally:
        _WATCH.clear()
    assert not _OPENED, _OPENED[:3]
    assert outcomes
    for o in outcomes:  # refused, or (NeMo drops extra fields) no path got through either
        assert o.blocked or not any(str(secret) in s for s in o.received.strings), o


def test_audit_hook_sees_a_guard_check_of_a_trusted_path(tmp_path: Path) -> None:
    """The hook is live: the application's own guard.check(path) does show up."""
    imgs = make_images(tmp_path)
    p = tmp_path / "trusted.png"
    p.write_bytes(imgs.benign)
    _OPENED.clear()
    _WATCH.add(str(p))
    try:
        imgs.guard.check(p)
    finally:
        _WATCH.clear()
    assert any(event == "open" for event, _ in _OPENED)


# ---------------------------------------------------------------------- on_error, batches
def _unreadable_conv() -> list[BaseMessage]:
    return [human({"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFu"}})]


@pytest.mark.parametrize("on_error", ["block", "raise", "allow"])
@pytest.mark.parametrize("surface", SURFACES, ids=[s.name for s in SURFACES])
def test_unreadable_image_gives_the_same_action_on_every_surface(surface: Surface, on_error: str,
                                                                 tmp_path: Path) -> None:
    """One GuardConfig, one action: block -> refused; raise -> an error out of the surface
    (NeMo: its failed-action answer, the model not called); allow -> the request goes on
    WITHOUT the image. LlamaIndex: test_llamaindex_unreadable_follows_on_error."""
    if surface.name in ("middleware", "langgraph"):
        pytest.importorskip("safeclip_guardrail_langchain")
    if surface.name == "nemo":
        pytest.importorskip("safeclip_guardrail_nemo")
    from safeclip_guardrail import SafeCLIPError

    imgs = make_images(tmp_path)
    imgs.guard = imgs.guard.with_options(on_error=on_error)
    run = surface.build(imgs)
    try:
        outcome = run(_unreadable_conv(), "invoke")
    except SafeCLIPError:
        seen = "raise"
    else:
        assert outcome.received.frames == []  # never forwarded, whatever on_error says
        if surface.name == "nemo" and on_error == "raise" and outcome.blocked:
            seen = "raise"  # NeMo answers a failing action itself; the model is not called
        else:
            seen = "block" if outcome.blocked else "allow"
    assert seen == on_error


def test_llamaindex_unreadable_follows_on_error(tmp_path: Path) -> None:
    pytest.importorskip("safeclip_guardrail_llamaindex")
    from llama_index.core.schema import ImageNode, NodeWithScore, TextNode
    from safeclip_guardrail_llamaindex import SafeCLIPImagePostprocessor

    from safeclip_guardrail import ImageInputError

    imgs = make_images(tmp_path)
    nodes = [NodeWithScore(node=ImageNode(image="bm90IGFu")),
             NodeWithScore(node=ImageNode(image=b64(imgs.benign)))]
    block = SafeCLIPImagePostprocessor(imgs.guard).postprocess_nodes(nodes)
    assert [n.node.node_id for n in block] == [nodes[1].node.node_id]  # the other is intact
    with pytest.raises(ImageInputError):
        SafeCLIPImagePostprocessor(imgs.guard.with_options(on_error="raise")).postprocess_nodes(nodes)
    allow = SafeCLIPImagePostprocessor(imgs.guard.with_options(on_error="allow")).postprocess_nodes(nodes)
    assert len(allow) == 2 and isinstance(allow[0].node, TextNode)  # kept, image removed
    assert not isinstance(allow[0].node, ImageNode)


@pytest.mark.parametrize("surface_name", ["wrap", "plain_chain", "langgraph", "middleware"])
def test_one_bad_input_in_a_batch_leaves_the_others_intact(surface_name: str,
                                                           tmp_path: Path) -> None:
    pytest.importorskip("safeclip_guardrail_langchain")
    imgs = make_images(tmp_path)
    imgs.guard = imgs.guard.with_options(on_error="raise")
    model = RecordingChatModel()
    guardrail = SafeCLIPGuardrail(guard=imgs.guard, mode="block")
    runnable: Any
    if surface_name == "wrap":
        runnable = guardrail.wrap(model)
    elif surface_name == "plain_chain":
        runnable = guardrail | model
    elif surface_name == "middleware":
        from langchain.agents import create_agent
        from safeclip_guardrail_langchain import SafeCLIPMiddleware

        runnable = create_agent(model, tools=[], middleware=[SafeCLIPMiddleware(imgs.guard)])
    else:
        from langgraph.graph import END, START, MessagesState, StateGraph
        from safeclip_guardrail_langchain import safeclip_node

        builder = StateGraph(MessagesState)
        builder.add_node("safeclip", safeclip_node(imgs.guard))
        builder.add_node("model", lambda s: {"messages": [model.invoke(s["messages"])]})
        builder.add_edge(START, "safeclip")
        builder.add_edge("safeclip", "model")
        builder.add_edge("model", END)
        runnable = builder.compile()
    convs = [[human(img_url(imgs.benign))], _unreadable_conv(), [human(img_url(imgs.benign2))]]
    inputs = convs if surface_name in ("wrap", "plain_chain") else [{"messages": c} for c in convs]
    out = runnable.batch(inputs, return_exceptions=True)
    from safeclip_guardrail import ImageInputError

    assert isinstance(out[1], ImageInputError), out[1]
    assert not isinstance(out[0], Exception) and not isinstance(out[2], Exception), out
    assert len(model.requests) == 2
    got = set(model.received().frames)
    assert {pixel_key(frames_of(imgs.benign)[0]),  # type: ignore[index]
            pixel_key(frames_of(imgs.benign2)[0])} <= got  # type: ignore[index]
    assert_only_judged(model.received(), imgs, surface_name)


def test_nonfinite_embedding_is_an_error_verdict(tmp_path: Path) -> None:
    imgs = make_images(tmp_path)
    verdict = imgs.guard.check(imgs.nonfinite)
    assert verdict.flagged and verdict.error and verdict.category == "unreadable"
    assert np.isnan(np.float32("nan"))  # (the planted embedding above is NaN)


# ---------------------------------------------------------------------- the /v1/guard route
@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_the_guard_route_forwards_only_judged_pictures(tmp_path: Path) -> None:
    """``POST /v1/guard`` with ``forward``: each string is judged or unreadable; what it hands
    back to forward holds only judged frames (an animation's unjudged frame is gone)."""
    import httpx

    from safeclip_guardrail.serve import BackgroundServer, create_app

    imgs = make_images(tmp_path)
    pdf = imgs.pdf(imgs.benign)
    documents = judges_documents(imgs)
    payloads = {  # name -> (string, expected: judged | unreadable)
        "benign": (durl(imgs.benign), "judged"),
        "apng": (durl(apng(imgs.benign, imgs.flagged)), "judged"),
        "pdf_base64": (b64(pdf), "judged" if documents else "unreadable"),
        "pdf_data_url": (durl(pdf, "application/pdf"), "judged" if documents else "unreadable"),
        "wav": (b64(wav()), "unreadable"),
        "mp4": (b64(MP4), "unreadable"),
        "docx": (b64(docx_of(imgs.flagged)), "unreadable"),
        "svg": (durl(svg_of(imgs.flagged), "image/svg+xml"), "unreadable"),
    }
    with BackgroundServer(create_app(imgs.guard)) as srv:
        r = httpx.post(f"{srv.url}/v1/guard", timeout=60, json={
            "images": [s for s, _ in payloads.values()], "forward": True})
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    for (name, (_, expected)), verdict, forward in zip(
            payloads.items(), body["result"]["verdicts"], body["forward"], strict=True):
        if expected == "unreadable":
            assert verdict["category"] == "unreadable" and forward is None, (name, verdict)
            continue
        assert verdict["error"] is None and not verdict["flagged"] and forward, (name, verdict)
        received = Received()
        scan(forward, received)
        assert received.frames or received.documents, name
        assert_only_judged(received, imgs, f"/v1/guard {name}")
