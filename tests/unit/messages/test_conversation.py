"""The conversation layer alone (no framework): find -> judge in one batch -> policy -> forward.

``guard_conversations`` / ``aguard_conversations`` / ``guard_dict_messages`` with a planted
guard and provider dict messages: every image of every conversation in one judging call,
each conversation's outcome independent (its error returned in its place), the policy's
action per message, what is forwarded is the judged picture. No LangChain: importing and
running this layer loads no framework (checked in a fresh interpreter).
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from pathlib import Path

import pytest

from safeclip_guardrail import ConceptBank, GuardrailViolation, ImageInputError, SafeCLIPGuard
from safeclip_guardrail.messages.conversation import (
    GuardedConversation,
    aguard_conversations,
    guard_conversations,
    guard_dict_messages,
)
from safeclip_guardrail.messages.extraction import MessageView, view_of_dict
from safeclip_guardrail.policy import UNREADABLE_PLACEHOLDER
from safeclip_guardrail.testing import PlantedEncoder
from safeclip_guardrail.testing.pictures import data_url
from safeclip_guardrail.testing.trust import frames_of, pixel_key

ROOT = Path(__file__).resolve().parents[3]
BROKEN = "data:image/png;base64,bm90IGFu"


@pytest.fixture
def enc() -> PlantedEncoder:
    return PlantedEncoder(ConceptBank.default())


@pytest.fixture
def guard(enc: PlantedEncoder) -> SafeCLIPGuard:
    return SafeCLIPGuard(enc)


def user(*urls: str, text: str = "what is this?") -> dict[str, object]:
    return {"role": "user", "content": [{"type": "text", "text": text},
                                        *({"type": "image_url", "image_url": {"url": u}} for u in urls)]}


def views(*messages: dict[str, object]) -> list[MessageView]:
    return [view_of_dict(m) for m in messages]


def test_every_image_of_every_conversation_is_judged_in_one_forward(
        enc: PlantedEncoder, guard: SafeCLIPGuard) -> None:
    convs = [views(user(data_url(enc.plant_bytes("gun")))),
             views({"role": "user", "content": "no images"}),
             views(user(data_url(enc.plant_bytes("neutral")), data_url(enc.plant_bytes("blood"))))]
    before = enc.forward_counter.count
    out = guard_conversations(guard, convs, config=guard.config.replace(mode="block"))
    assert enc.forward_counter.count - before == 1  # one encoder forward for three images
    assert [type(o) for o in out] == [GuardedConversation] * 3
    first, text_only, third = out  # type: ignore[misc]
    assert first.blocked and first.result.categories == ["gun"] and first.refusal
    assert not text_only.blocked and text_only.result.verdicts == [] and text_only.action == "pass"
    assert third.blocked and third.result.categories == ["blood"]


def test_the_async_twin_decides_the_same(enc: PlantedEncoder, guard: SafeCLIPGuard) -> None:
    convs = [views(user(data_url(enc.plant_bytes("gun")))), views(user(data_url(enc.plant_bytes("neutral"))))]
    sync = guard_conversations(guard, convs)
    asynced = asyncio.run(aguard_conversations(guard, convs))
    assert [o.result.model_dump() for o in asynced] == [o.result.model_dump() for o in sync]  # type: ignore[union-attr]


def test_errors_come_back_in_their_conversations_place(enc: PlantedEncoder,
                                                       guard: SafeCLIPGuard) -> None:
    ok = views(user(data_url(enc.plant_bytes("neutral"))))
    strict = guard.config.replace(on_error="raise")
    out = guard_conversations(guard, [ok, views(user(BROKEN)), ok], config=strict)
    assert isinstance(out[1], ImageInputError)  # returned, not raised
    assert isinstance(out[0], GuardedConversation) and isinstance(out[2], GuardedConversation)
    violent = guard.config.replace(mode="raise")
    out = guard_conversations(guard, [views(user(data_url(enc.plant_bytes("gun")))), ok], config=violent)
    assert isinstance(out[0], GuardrailViolation) and out[0].result.categories == ["gun"]
    assert isinstance(out[1], GuardedConversation) and out[1].action == "pass"


def test_guard_dict_messages_raises_what_guard_conversations_returns(
        enc: PlantedEncoder, guard: SafeCLIPGuard) -> None:
    with pytest.raises(ImageInputError):
        guard_dict_messages(guard, [user(BROKEN)], config=guard.config.replace(on_error="raise"))
    outcome = guard_dict_messages(guard, [user(BROKEN)])  # default on_error: block
    assert outcome.blocked and outcome.result.verdicts[0].category == "unreadable"


def test_what_is_forwarded_is_the_judged_picture_and_other_fields_stay(
        enc: PlantedEncoder, guard: SafeCLIPGuard) -> None:
    picture = enc.plant_bytes("neutral")
    messages = [{"role": "system", "content": "be brief", "name": "sys"},
                {**user(data_url(picture)), "name": "alice"}]
    outcome = guard_dict_messages(guard, messages)
    assert outcome.changed == [False, True] and outcome.message_results[0] is None
    sent = outcome.as_dicts(messages)
    assert sent[0] == messages[0] and sent[1]["name"] == "alice"
    url = sent[1]["content"][1]["image_url"]["url"]  # type: ignore[index]
    forwarded = frames_of(base64.b64decode(url.split(",", 1)[1]))
    assert forwarded is not None and [pixel_key(f) for f in forwarded] == \
        [pixel_key(f) for f in frames_of(picture) or []]  # the judged pixels, one frame
    assert messages[1]["content"][1]["image_url"]["url"] == data_url(picture)  # type: ignore[index]


def test_each_mode_acts_on_the_message_that_holds_the_picture(
        enc: PlantedEncoder, guard: SafeCLIPGuard) -> None:
    gun = data_url(enc.plant_bytes("gun"))
    messages = [user(text="first"), user(gun, text="second")]
    rewrite = guard_dict_messages(guard, messages, config=guard.config.replace(mode="rewrite"))
    text = rewrite.as_dicts(messages)[1]["content"][0]["text"]  # type: ignore[index]
    assert text.startswith(guard.config.safe_instruction) and text.endswith("second")
    assert rewrite.as_dicts(messages)[0] == messages[0]  # the other message is untouched
    redact = guard_dict_messages(guard, messages, config=guard.config.replace(mode="redact"))
    blocks = redact.as_dicts(messages)[1]["content"]
    assert "flagged as gun" in str(blocks) and gun not in str(blocks)
    annotate = guard_dict_messages(guard, messages, config=guard.config.replace(mode="annotate"))
    assert annotate.action == "annotate" and annotate.result.flagged and not annotate.blocked
    unreadable = guard_dict_messages(guard, [user(BROKEN)],
                                     config=guard.config.replace(on_error="allow"))
    assert UNREADABLE_PLACEHOLDER in str(unreadable.as_dicts([user(BROKEN)]))


def test_skipped_roles_are_not_read(enc: PlantedEncoder, guard: SafeCLIPGuard) -> None:
    messages = [{"role": "assistant", "content": [{"type": "image_url", "image_url": {
        "url": data_url(enc.plant_bytes("gun"))}}]}, user(text="and now?")]
    assert guard_dict_messages(guard, messages).result.categories == ["gun"]  # every role, by default
    skipped = guard_dict_messages(guard, messages, skip_roles=("assistant",))
    assert skipped.result.verdicts == [] and skipped.as_dicts(messages) == messages


def test_one_judging_call_sees_the_images_of_every_conversation(
        enc: PlantedEncoder, guard: SafeCLIPGuard) -> None:
    calls: list[int] = []

    def judge(images: list) -> list:  # type: ignore[type-arg]
        calls.append(len(images))
        return guard.judge_batch(images, forward=True)

    convs = [views(user(data_url(enc.plant_bytes("neutral")))), views(user(BROKEN)),
             views(user(data_url(enc.plant_bytes("gun")), "file:///etc/passwd",
                        data_url(enc.plant_bytes("neutral"))))]
    out = guard_conversations(guard, convs, judge=judge)
    assert calls == [4]  # one call; the file URL never reaches a judge (bytes that are no
    assert [len(o.result.verdicts) for o in out] == [1, 1, 3]  # picture do, and fail there)


def test_the_layer_imports_and_runs_without_any_framework() -> None:
    code = (
        "import sys\n"
        "from safeclip_guardrail import ConceptBank, SafeCLIPGuard\n"
        "from safeclip_guardrail.messages.conversation import guard_dict_messages\n"
        "from safeclip_guardrail.testing import PlantedEncoder\n"
        "from safeclip_guardrail.testing.pictures import data_url\n"
        "enc = PlantedEncoder(ConceptBank.default())\n"
        "msg = {'role': 'user', 'content': [{'type': 'image_url', 'image_url': "
        "{'url': data_url(enc.plant_bytes('gun'))}}]}\n"
        "out = guard_dict_messages(SafeCLIPGuard(enc), [msg])\n"
        "assert out.result.categories == ['gun'], out.result\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'langchain', 'langchain_core',"
        " 'langgraph', 'llama_index', 'nemoguardrails', 'litellm', 'fastapi'})\n"
        "print(bad); sys.exit(1 if bad else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
