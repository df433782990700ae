"""The message-level intervention API: every image form, every mode, fail-closed errors."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_openai_messages,
)

from safeclip_guardrail import (
    ConfigurationError,
    GuardConfig,
    GuardrailViolation,
    ImageInputError,
    SafeCLIPGuard,
)
from safeclip_guardrail.langchain import (
    GuardOutcome,
    SafeCLIPGuardrail,
    aguard_messages,
    guard_messages,
    guard_result_of,
)
from safeclip_guardrail.policy import REDACTED, UNREADABLE_PLACEHOLDER, strongest_action
from safeclip_guardrail.testing import PlantedEncoder


def b64(planted: PlantedEncoder, target: Any) -> str:
    return base64.b64encode(planted.plant_bytes(target)).decode()


def openai_image(data: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}


def ask(*blocks: Any, text: str = "What is in this picture?") -> HumanMessage:
    return HumanMessage(content=[{"type": "text", "text": text}, *blocks])


def cfg(guard: SafeCLIPGuard, **changes: Any) -> GuardConfig:
    return guard.config.replace(**changes)


# ---------------------------------------------------------------- image forms
FORMS = {
    "openai_data_url": lambda d: {"type": "image_url",
                                  "image_url": {"url": f"data:image/png;base64,{d}"}},
    "openai_bare_string": lambda d: {"type": "image_url", "image_url": f"data:image/png;base64,{d}"},
    "v1_base64": lambda d: {"type": "image", "base64": d, "mime_type": "image/png"},
    "v0_source_type": lambda d: {"type": "image", "source_type": "base64", "data": d,
                                 "mime_type": "image/png"},
    "anthropic": lambda d: {"type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": d}},
    "responses_input_image": lambda d: {"type": "input_image",
                                        "image_url": f"data:image/png;base64,{d}"},
    "v1_file_with_image_mime": lambda d: {"type": "file", "base64": d, "mime_type": "image/png"},
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_inline_image_form_is_read(planted: PlantedEncoder, planted_guard: SafeCLIPGuard,
                                         form: str) -> None:
    msg = ask(FORMS[form](b64(planted, "gun")))
    out = guard_messages(planted_guard, [msg], config=cfg(planted_guard, mode="redact"))
    assert out.result.categories == ["gun"]
    assert out.result.verdicts[0].error is None
    kind = "input_text" if form == "responses_input_image" else "text"  # the block's dialect
    assert out.messages[0].content[1] == {"type": kind, "text": REDACTED.format(category="gun")}


@pytest.mark.parametrize("block", [
    {"type": "image_url", "image_url": {"url": "http://images.example.com/a.png"}},
    {"type": "image", "url": "https://images.example.com/a.png"},
    {"type": "image", "source_type": "url", "url": "https://images.example.com/a.png"},
], ids=["openai_http", "v1_url", "v0_url"])
def test_remote_urls_fail_closed_when_fetching_is_off(planted_guard: SafeCLIPGuard,
                                                      block: dict[str, Any]) -> None:
    out = guard_messages(planted_guard, [ask(block)], config=cfg(planted_guard, mode="rewrite"))
    (verdict,) = out.result.verdicts
    assert verdict.flagged and verdict.category == "unreadable"
    assert "URL fetching is off" in (verdict.error or "")
    assert out.blocked  # fail closed beats the milder mode


@pytest.mark.parametrize("block", [
    {"type": "image", "file_id": "file-abc"},
    {"type": "image", "source_type": "id", "id": "file-abc"},
], ids=["v1_file_id", "v0_id"])
def test_file_ids_cannot_be_checked_and_fail_closed(planted_guard: SafeCLIPGuard,
                                                    block: dict[str, Any]) -> None:
    out = guard_messages(planted_guard, [ask(block)])
    (verdict,) = out.result.verdicts
    assert verdict.category == "unreadable"
    assert "file id" in (verdict.error or "")
    assert out.blocked


MALFORMED = [
    {"type": "mystery_image", "payload": "AAAA"},
    {"payload": "AAAA"},
    {"type": "image_url"},
    {"type": "image_url", "image_url": {"url": ""}},
    {"type": "image", "source_type": "base64"},
    {"type": "image", "base64": "bm90IGFuIGltYWdl", "mime_type": "image/png"},
]


@pytest.mark.parametrize("block", MALFORMED, ids=lambda b: str(b)[:40])
def test_malformed_or_unknown_blocks_follow_on_error(planted_guard: SafeCLIPGuard,
                                                     block: dict[str, Any]) -> None:
    msg = ask(block)
    closed = guard_messages(planted_guard, [msg])
    assert closed.blocked and closed.result.categories == ["unreadable"]
    assert closed.result.verdicts[0].error
    assert closed.messages[0].content[1] == {  # the block was redacted away
        "type": "text", "text": UNREADABLE_PLACEHOLDER}

    # "allow" lets the request go on, but a part that was not judged is never forwarded
    allowed = guard_messages(planted_guard, [msg], config=cfg(planted_guard, on_error="allow"))
    assert not allowed.blocked
    assert allowed.messages[0].content == [msg.content[0],
                                           {"type": "text", "text": UNREADABLE_PLACEHOLDER}]

    with pytest.raises(ImageInputError):
        guard_messages(planted_guard, [msg], config=cfg(planted_guard, on_error="raise"))


def test_unknown_block_error_names_the_block(planted_guard: SafeCLIPGuard) -> None:
    out = guard_messages(planted_guard, [ask({"type": "mystery_image"})])
    assert "unknown type 'mystery_image'" in (out.result.verdicts[0].error or "")


# ---------------------------------------------------------------- modes
def test_rewrite_prepends_the_instruction_once(planted: PlantedEncoder,
                                               planted_guard: SafeCLIPGuard) -> None:
    config = cfg(planted_guard, mode="rewrite", safe_instruction="CHECK THE IMAGE.")
    out = guard_messages(planted_guard, [ask(openai_image(b64(planted, "gun")))], config=config)
    assert out.result.action == "rewrite" and not out.blocked
    assert out.messages[0].content[0]["text"] == "CHECK THE IMAGE. What is in this picture?"
    again = guard_messages(planted_guard, out.messages, config=config)
    assert again.messages[0].content == out.messages[0].content


def test_rewrite_without_text_inserts_the_instruction(planted: PlantedEncoder,
                                                      planted_guard: SafeCLIPGuard) -> None:
    msg = HumanMessage(content=[openai_image(b64(planted, "gun"))])
    out = guard_messages(planted_guard, [msg])
    assert out.messages[0].content[0] == {"type": "text",
                                          "text": planted_guard.config.safe_instruction}


def test_annotate_never_reaches_the_provider_payload(planted: PlantedEncoder,
                                                     planted_guard: SafeCLIPGuard) -> None:
    history: list[BaseMessage] = [
        SystemMessage("Be brief."), ask(openai_image(b64(planted, "gun"))), AIMessage("A gun."),
        ask({"type": "image", "base64": b64(planted, "neutral"), "mime_type": "image/png"}),
    ]
    out = guard_messages(planted_guard, history, config=cfg(planted_guard, mode="annotate"))
    assert out.result.action == "annotate" and out.result.categories == ["gun"]
    assert convert_to_openai_messages(out.messages) == convert_to_openai_messages(history)
    first = guard_result_of(out.messages[1])
    assert first is not None and first.categories == ["gun"] and first.action == "annotate"
    last = guard_result_of(out.messages[3])
    assert last is not None and not last.flagged and last.action == "pass"
    assert guard_result_of(out.messages[0]) is None


def test_block_returns_a_refusal_and_redacted_messages(planted: PlantedEncoder,
                                                       planted_guard: SafeCLIPGuard) -> None:
    out = guard_messages(planted_guard, [ask(openai_image(b64(planted, "porn")))],
                         config=cfg(planted_guard, mode="block", refusal="No ({categories})."))
    assert out.blocked and out.refusal is not None
    assert out.refusal.content == "No (porn)."
    assert "image_url" not in str(out.messages[0].content)


def test_raise_carries_the_result(planted: PlantedEncoder, planted_guard: SafeCLIPGuard) -> None:
    with pytest.raises(GuardrailViolation) as info:
        guard_messages(planted_guard, [ask(openai_image(b64(planted, "blood")))],
                       config=cfg(planted_guard, mode="raise"))
    assert info.value.result.categories == ["blood"] and info.value.result.action == "raise"


def test_benign_images_pass_unchanged(planted: PlantedEncoder,
                                      planted_guard: SafeCLIPGuard) -> None:
    msg = ask(openai_image(b64(planted, "neutral")))
    for mode in ("rewrite", "annotate", "redact", "block", "raise"):
        out = guard_messages(planted_guard, [msg], config=cfg(planted_guard, mode=mode))
        assert out.result.action == "pass" and not out.blocked
        assert out.messages[0].content == msg.content


def test_strongest_policy_wins_within_a_message(planted: PlantedEncoder,
                                                planted_guard: SafeCLIPGuard) -> None:
    msg = ask(openai_image(b64(planted, "alcohol")), openai_image(b64(planted, "knife")))
    policy = {"alcohol": "annotate", "knife": "redact"}
    out = guard_messages(planted_guard, [msg], config=cfg(planted_guard, policy=policy))
    assert out.result.action == "redact"
    assert [b["type"] for b in out.messages[0].content] == ["text", "text", "text"]
    only_alcohol = guard_messages(planted_guard, [ask(openai_image(b64(planted, "alcohol")))],
                                  config=cfg(planted_guard, policy=policy))
    assert only_alcohol.result.action == "annotate"
    assert strongest_action(["annotate", "raise", "block"]) == "raise"


def test_redact_keeps_unflagged_images(planted: PlantedEncoder,
                                       planted_guard: SafeCLIPGuard) -> None:
    keep = openai_image(b64(planted, "neutral"))
    msg = ask(keep, openai_image(b64(planted, "gun")))
    out = guard_messages(planted_guard, [msg], config=cfg(planted_guard, mode="redact"))
    assert out.messages[0].content[1] == keep
    assert out.messages[0].content[2]["type"] == "text"


# ---------------------------------------------------------------- scope and batching
def test_every_human_turn_is_checked_and_a_resent_image_once(
        planted: PlantedEncoder, planted_guard: SafeCLIPGuard) -> None:
    same = openai_image(b64(planted, "gun"))
    history = [ask(same), AIMessage("no"), ask(same, text="and now?"), AIMessage("no"),
               ask(same, text="please")]
    out = guard_messages(planted_guard, history, config=cfg(planted_guard, mode="redact"))
    assert len(out.result.verdicts) == 3 and planted.forward_counter.count == 1
    assert all("image_url" not in str(m.content) for m in out.messages)
    guard_messages(planted_guard, history)  # the next turn: served from the sha256 cache
    assert planted.forward_counter.count == 1


def test_tool_messages_are_judged_unless_skipped(planted: PlantedEncoder,
                                                 planted_guard: SafeCLIPGuard) -> None:
    tool = ToolMessage(content=[openai_image(b64(planted, "gun"))], tool_call_id="call-1")
    out = guard_messages(planted_guard, [tool])
    assert out.result.categories == ["gun"] and out.result.action == "rewrite"
    assert not guard_messages(planted_guard, [tool], skip_roles=("tool",)).result.verdicts
    with pytest.raises(ConfigurationError, match="skip_roles"):
        guard_messages(planted_guard, [tool], skip_roles="tool")  # type: ignore[arg-type]


def test_many_conversations_make_one_guard_call(planted: PlantedEncoder,
                                                planted_guard: SafeCLIPGuard) -> None:
    """Many conversations: the Runnable's batch, one guard call, each outcome in place."""
    convs = [[ask(openai_image(b64(planted, "gun" if i % 2 else "neutral")))] for i in range(8)]
    outs = SafeCLIPGuardrail(guard=planted_guard, mode="block").batch(convs,
                                                                      return_exceptions=True)
    assert planted.forward_counter.count == 1
    assert [isinstance(o, GuardrailViolation) for o in outs] == [bool(i % 2) for i in range(8)]
    assert [guard_result_of(o[0]).action for o in outs[::2]] == ["pass"] * 4  # annotated in place


async def test_async_twin(planted: PlantedEncoder, planted_guard: SafeCLIPGuard) -> None:
    msg = ask(openai_image(b64(planted, "gun")))
    one = await aguard_messages(planted_guard, [msg], config=cfg(planted_guard, mode="block"))
    assert isinstance(one, GuardOutcome) and one.blocked and one.refusal is not None
    assert one.output == one.messages  # a list of messages comes back as the guarded list
    assert (await aguard_messages(planted_guard, [HumanMessage("hi")])).result.action == "pass"


def test_non_messages_are_a_clear_error(planted_guard: SafeCLIPGuard) -> None:
    with pytest.raises(ConfigurationError, match="convert_to_messages"):
        guard_messages(planted_guard, [{"role": "user", "content": "hi"}])  # type: ignore[list-item]


def test_user_chat_messages_and_odd_content_items(planted: PlantedEncoder,
                                                  planted_guard: SafeCLIPGuard) -> None:
    from langchain_core.messages import ChatMessage

    user = ChatMessage(role="user", content=[openai_image(b64(planted, "gun"))])
    assert guard_messages(planted_guard, [user]).result.categories == ["gun"]
    odd = HumanMessage(content=["hello", {"type": "text", "text": "hi"}])
    odd.content.append(42)  # type: ignore[union-attr, arg-type]  # bypasses validation
    out = guard_messages(planted_guard, [odd])
    assert out.blocked and "of type int" in (out.result.verdicts[0].error or "")
