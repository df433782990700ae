"""Fuzzing the trust boundary: generated conversations never get an unjudged image through.

Hypothesis builds conversations that mix roles, block shapes, fields, MIME types, sources
(base64, URL-safe base64, data URLs with odd media types, http URLs, paths, file URIs,
provider file ids), several sources in one block, nesting, extra fields, and images that
are benign, flagged, non-finite or not images at all. Each goes through the LangChain layer
(``langchain.guard_messages``, what ``wrap``/the Runnable/the middleware call) or the
provider-dict layer (``conversation.guard_dict_messages``, what NeMo and the service call),
with ``mode`` block or redact and ``on_error`` block or allow. Then, unless the request was
blocked, the referee (``safeclip_guardrail.testing.trust.scan``) decodes everything that
would be forwarded:

- no flagged or non-finite image, no URL, no planted path is forwarded;
- every forwarded frame was judged by the encoder;
- nothing raises but a SafeCLIPError (none is expected under these configs).

A second property (issue 19) nests known block types at random — document content
sources, tool results, function outputs, ``non_standard`` wrappers, video/audio/media/file
blocks, unknown fields of known blocks, extra fields — with a flagged picture, a PDF, an
office document, an SVG or an animation holding one anywhere, and finds no escape (the
generator is ``safeclip_guardrail.testing.trust.fuzz``; every surface's trust contract runs
a small profile of it through the surface itself).

CI runs a few hundred conversations. ``SAFECLIP_FUZZ_EXAMPLES=10000`` runs the long profile
(``-k nested`` for the nested property alone); the numbers generated are printed.
"""

from __future__ import annotations

import base64
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from safeclip_guardrail import GuardConfig, SafeCLIPError, SafeCLIPGuard
from safeclip_guardrail.langchain import guard_messages
from safeclip_guardrail.langchain.testing import as_langchain, received_from
from safeclip_guardrail.messages.conversation import guard_dict_messages
from safeclip_guardrail.testing.trust import (
    Conversation,
    Message,
    Received,
    TrustImages,
    as_dicts,
    assert_only_judged,
    make_images,
    pixel_key,
    scan,
)
from safeclip_guardrail.testing.trust.fuzz import GARBAGE, nested_conversations
from tests._trust_chat import raised_in_langchain_core, tiny_llava_dir

EXAMPLES = int(os.environ.get("SAFECLIP_FUZZ_EXAMPLES", "250"))
MESSAGES_SEEN = {"messages": 0, "conversations": 0, "blocked": 0, "forwarded_images": 0}


@cache
def _ctx() -> TrustImages:
    return make_images(Path(tempfile.mkdtemp(prefix="safeclip_fuzz_")))


# ---------------------------------------------------------------------- strategies
PAYLOADS = ("benign", "flagged", "nonfinite", "garbage", "empty")
MIMES = ("image/png", "IMAGE/PNG", " image/png ", "image/jpeg", "application/octet-stream",
         "application/pdf", "text/plain", "", None)
ENCODINGS = ("b64", "urlsafe", "data_url", "http", "path", "file_uri", "spaces")


def _bytes(name: str) -> bytes:
    imgs = _ctx()
    return {"benign": imgs.benign, "flagged": imgs.flagged, "nonfinite": imgs.nonfinite,
            "garbage": GARBAGE, "empty": b""}[name]


def _encode(payload: str, encoding: str, mime: str | None) -> str:
    data = _bytes(payload)
    if encoding == "b64":
        return base64.b64encode(data).decode()
    if encoding == "urlsafe":
        return base64.urlsafe_b64encode(data).decode().rstrip("=")
    if encoding == "spaces":
        raw = base64.b64encode(data).decode()
        return "\n".join(raw[i:i + 60] for i in range(0, len(raw), 60))
    if encoding == "data_url":
        return f"data:{mime or ''};base64,{base64.b64encode(data).decode()}"
    if encoding == "http":
        return f"https://images.example.com/{payload}.png"
    imgs = _ctx()
    path = imgs.path_of(data or b"x", f"{payload}.png")
    return Path(path).as_uri() if encoding == "file_uri" else path


source = st.builds(_encode, st.sampled_from(PAYLOADS), st.sampled_from(ENCODINGS),
                   st.sampled_from(MIMES))


@st.composite
def image_block(draw: st.DrawFn) -> dict[str, Any]:
    s = draw(source)
    mime = draw(st.sampled_from(MIMES))
    shape = draw(st.sampled_from([
        "v1_base64", "v1_url", "v1_data", "image_url_dict", "image_url_str", "input_image",
        "anthropic", "anthropic_url", "v0", "file_base64", "file_openai", "file_id",
        "document", "audio", "unknown", "text_data_url",
    ]))
    block: dict[str, Any]
    if shape == "v1_base64":
        block = {"type": "image", "base64": s}
    elif shape == "v1_url":
        block = {"type": "image", "url": s}
    elif shape == "v1_data":
        block = {"type": "image", "data": s}
    elif shape == "image_url_dict":
        block = {"type": "image_url", "image_url": {"url": s, "detail": "auto"}}
    elif shape == "image_url_str":
        block = {"type": "image_url", "image_url": s}
    elif shape == "input_image":
        block = {"type": "input_image", "image_url": s}
    elif shape == "anthropic":
        block = {"type": "image", "source": {"type": "base64", "media_type": mime, "data": s}}
    elif shape == "anthropic_url":
        block = {"type": "image", "source": {"type": "url", "url": s}}
    elif shape == "v0":
        block = {"type": "image", "source_type": "base64", "data": s}
    elif shape == "file_base64":
        block = {"type": "file", "base64": s}
    elif shape == "file_openai":
        block = {"type": "file", "file": {"file_data": s, "filename": "x.pdf"}}
    elif shape == "file_id":
        block = {"type": draw(st.sampled_from(["image", "file", "input_image"])),
                 "file_id": "file-123"}
    elif shape == "document":
        block = {"type": "document", "source": {"type": "base64", "media_type": mime, "data": s}}
    elif shape == "audio":  # inline bytes only: a URL there is audio for the provider
        block = {"type": "audio", "base64": _encode(draw(st.sampled_from(PAYLOADS)), "b64", None)}
    elif shape == "unknown":
        block = {"type": draw(st.sampled_from(["picture", "img", "IMAGE", None, ["image"], 3])),
                 "data": s}
    else:  # text that is, as a whole, a data URL (any other text is just text)
        block = {"type": "text", "text": _encode(draw(st.sampled_from(PAYLOADS)), "data_url", mime)}
    if mime is not None and shape not in ("anthropic", "document"):
        block["mime_type"] = mime
    if shape != "audio" and draw(st.integers(0, 5)) == 0:  # a second source in the same block
        key = draw(st.sampled_from(["url", "base64", "data", "image_url", "source", "file_id"]))
        block[key] = draw(source)
    if draw(st.integers(0, 6)) == 0:
        block = {"type": "non_standard", "value": block}
    if draw(st.integers(0, 6)) == 0:
        block = {"type": "tool_result", "tool_use_id": "t1", "content": [block]}
    elif draw(st.integers(0, 12)) == 0:  # a tool result whose content is one string
        block = {"type": "tool_result", "tool_use_id": "t1",
                 "content": _encode(draw(st.sampled_from(PAYLOADS)), "data_url", mime)}
    return block


item = st.one_of(st.builds(lambda t: {"type": "text", "text": t}, st.sampled_from(
    ["what is this?", "look", ""])), image_block(),
    st.sampled_from(["plain words"]), source.filter(lambda s: s.startswith("data:")))
content = st.one_of(st.sampled_from(["hello", ""]), st.lists(item, min_size=0, max_size=4),
                    source.filter(lambda s: s.startswith("data:")))
extras = st.one_of(st.just({}), st.builds(lambda s: {"images": [s]}, source),
                   st.builds(lambda p: {"images": [_bytes(p)]}, st.sampled_from(PAYLOADS)),
                   st.builds(lambda p: {"blob": _bytes(p)}, st.sampled_from(PAYLOADS)),
                   st.builds(lambda s: {"attachment": {"preview": s}},
                             source.filter(lambda s: s.startswith("data:"))))
ROLES = ("user", "human", "assistant", "ai", "system", "developer", "tool", "function",
         "narrator", "User", "Assistant")


def _lc_message(role: str, body: Any, kwargs: dict[str, Any]) -> BaseMessage:
    low = role.lower()
    if low in ("user", "human") and role == low:
        return HumanMessage(content=body, additional_kwargs=kwargs)
    if low in ("assistant", "ai") and role == low:
        return AIMessage(content=body, additional_kwargs=kwargs)
    if low == "system":
        return SystemMessage(content=body, additional_kwargs=kwargs)
    if low == "tool":
        return ToolMessage(content=body, tool_call_id="c1", additional_kwargs=kwargs)
    if low == "function":
        return FunctionMessage(content=body, name="f", additional_kwargs=kwargs)
    return ChatMessage(role=role, content=body, additional_kwargs=kwargs)


message = st.tuples(st.sampled_from(ROLES), content, extras)
conversation = st.lists(message, min_size=1, max_size=6)


# ---------------------------------------------------------------------- the property
def _sent_on(guard: SafeCLIPGuard, config: GuardConfig, dicts: list[dict[str, Any]], *,
             langchain: list[BaseMessage] | None) -> Received | None:
    """What reaches the model when ``dicts`` go through the dict path (or, given
    ``langchain``, those messages through LangChain's); None when the request is blocked. A
    typed error fails the test: none is expected under block/redact and on_error block/allow."""
    received = Received()
    try:
        if langchain is None:
            outcome = guard_dict_messages(guard, dicts, config=config)
            if outcome.blocked:
                return None
            scan(outcome.as_dicts(dicts), received)
            return received
        lc = guard_messages(guard, langchain, config=config)
        return None if lc.blocked else received_from(lc.messages)
    except SafeCLIPError as exc:
        pytest.fail(f"unexpected {type(exc).__name__}: {exc}")


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(conv=conversation, as_dicts=st.booleans(), mode=st.sampled_from(["block", "redact"]),
       on_error=st.sampled_from(["block", "allow"]))
def test_no_generated_conversation_forwards_an_unjudged_image(
        conv: list[tuple[str, Any, dict[str, Any]]], as_dicts: bool, mode: str,
        on_error: str) -> None:
    imgs = _ctx()
    guard = imgs.guard
    config = guard.config.replace(mode=mode, on_error=on_error)
    MESSAGES_SEEN["messages"] += len(conv)
    MESSAGES_SEEN["conversations"] += 1
    dicts = [{"role": r, "content": c, **x} for r, c, x in conv]
    received = _sent_on(guard, config, dicts, langchain=None if as_dicts else [
        _lc_message(r, c, x) for r, c, x in conv])
    if received is None:
        MESSAGES_SEEN["blocked"] += 1
        return
    MESSAGES_SEEN["forwarded_images"] += len(received.frames)
    assert_only_judged(received, imgs, f"fuzz ({'dicts' if as_dicts else 'langchain'})")


@settings(max_examples=max(50, EXAMPLES // 2), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(conv=conversation, mode=st.sampled_from(["block", "redact"]),
       on_error=st.sampled_from(["block", "allow"]))
def test_chat_llava_fuzzed_conversations_send_only_judged_images(
        conv: list[tuple[str, Any, dict[str, Any]]], mode: str, on_error: str) -> None:
    """The fuzzer's conversations through ChatLlava: what LLaVA's processor receives is
    judged and never flagged; nothing raises but a SafeCLIPError (ConfigurationError for
    blocks LLaVA cannot show) or langchain-core's own refusal of a malformed block."""
    from safeclip_guardrail.langchain import ChatLlava

    imgs = _ctx()
    llm = ChatLlava.from_pretrained(tiny_llava_dir(), device="cpu", dtype="float32",
                                    max_new_tokens=1,
                                    guard=imgs.guard.with_options(mode=mode, on_error=on_error))
    received = Received()
    processor_cls = type(llm.processor)
    real_call = processor_cls.__call__

    def record(self: Any, *args: Any, **kwargs: Any) -> Any:
        for im in kwargs.get("images") or []:
            received.frames.append(pixel_key(im))
        return real_call(self, *args, **kwargs)

    processor_cls.__call__ = record
    try:
        llm.invoke([_lc_message(r, c, x) for r, c, x in conv])
    except SafeCLIPError:
        pass
    except (ValueError, TypeError) as exc:
        if not raised_in_langchain_core(exc):
            raise
    finally:
        processor_cls.__call__ = real_call
    assert_only_judged(received, imgs, "fuzz (chat_llava)")


# ---------------------------------------------------------------------- nested known blocks
# Issue 19: known block types nested at random (safeclip_guardrail.testing.trust.fuzz, the
# generator every surface's contract runs a small profile of), with a flagged picture (or a
# PDF, an office document, an SVG, an animation holding one) anywhere; every payload must be
# judged or its part unreadable. Here the long profile, through the two message layers.
NESTED_SEEN = {"conversations": 0, "messages": 0, "hostile": 0, "blocked": 0,
               "hostile_forwarded": 0, "forwarded_frames": 0, "forwarded_pdfs": 0}


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(conv=st.deferred(lambda: nested_conversations(_ctx())), mode=st.sampled_from(["block", "redact"]),
       on_error=st.sampled_from(["block", "allow"]))
def test_nested_known_blocks_never_forward_an_unjudged_payload(
        conv: Conversation, mode: str, on_error: str) -> None:
    imgs = _ctx()
    config = imgs.guard.config.replace(mode=mode, on_error=on_error)
    as_dict_messages = not isinstance(conv[0], Message)
    dicts = as_dicts(conv)
    sent = Received()
    scan(dicts, sent)
    hostile = bool(set(sent.frames) & imgs.forbidden or set(sent.documents) & imgs.forbidden_docs)
    NESTED_SEEN["conversations"] += 1
    NESTED_SEEN["messages"] += len(conv)
    NESTED_SEEN["hostile"] += hostile
    received = _sent_on(imgs.guard, config, dicts,
                        langchain=None if as_dict_messages else as_langchain(conv))
    if received is None:
        NESTED_SEEN["blocked"] += 1
        return
    NESTED_SEEN["hostile_forwarded"] += hostile
    NESTED_SEEN["forwarded_frames"] += len(received.frames)
    NESTED_SEEN["forwarded_pdfs"] += len(received.documents)
    assert_only_judged(received, imgs, f"nested fuzz ({'dicts' if as_dict_messages else 'langchain'})")


def test_fuzz_report(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints how much the fuzzers generated (run after the properties in file order)."""
    with capsys.disabled():
        print(f"\nsafeclip fuzz: {MESSAGES_SEEN}\nsafeclip nested fuzz: {NESTED_SEEN}")
