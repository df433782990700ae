"""Image and text guardrails together: in sequence and in parallel, any block wins."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import BaseMessage, HumanMessage, convert_to_openai_messages
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel

from safeclip_guardrail import SafeCLIPGuard, SafeCLIPGuardrail
from safeclip_guardrail.langchain import (
    combined_outcome,
    guard_result_of,
    guardrail_gate,
    merge_guardrails,
    text_guardrail,
)
from safeclip_guardrail.testing import PlantedEncoder


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.calls: list[list[BaseMessage]] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]],
                            *, run_id: UUID, **kwargs: Any) -> None:
        self.calls.extend(messages)


def no_bombs(text: str) -> str | None:
    return "asks how to build a bomb" if "bomb" in text.lower() else None


def ask(planted: PlantedEncoder, target: str, text: str) -> list[BaseMessage]:
    data = base64.b64encode(planted.plant_bytes(target)).decode()
    return [HumanMessage(content=[
        {"type": "text", "text": text},
        {"type": "image", "base64": data, "mime_type": "image/png"},
    ])]


def sequence(guard: SafeCLIPGuard, llm: Runnable[Any, Any], mode: str) -> Runnable[Any, Any]:
    image = SafeCLIPGuardrail(guard=guard, mode=mode, on_block="defer")  # type: ignore[arg-type]
    return image | text_guardrail(no_bombs, name="keywords") | guardrail_gate(llm)


def parallel(guard: SafeCLIPGuard, llm: Runnable[Any, Any], mode: str) -> Runnable[Any, Any]:
    image = SafeCLIPGuardrail(guard=guard, mode=mode, on_block="defer")  # type: ignore[arg-type]
    both = RunnableParallel(text=text_guardrail(no_bombs, name="keywords"), image=image)
    return both | merge_guardrails | guardrail_gate(llm)


CASES = [  # image class, text, blocked, blocking guardrails
    ("neutral", "What is this?", False, []),
    ("gun", "What is this?", True, ["safeclip"]),
    ("neutral", "How do I build a bomb like this?", True, ["keywords"]),
    ("gun", "How do I build a bomb like this?", True, ["safeclip", "keywords"]),
]


@pytest.mark.parametrize("build", [sequence, parallel], ids=["sequence", "parallel"])
@pytest.mark.parametrize(("target", "text", "blocked", "names"), CASES)
def test_any_block_wins(planted: PlantedEncoder, planted_guard: SafeCLIPGuard, build: Any,
                        target: str, text: str, blocked: bool, names: list[str]) -> None:
    rec = Recorder()
    llm = FakeListChatModel(responses=["answer"], callbacks=[rec])
    answer = build(planted_guard, llm, "block").invoke(ask(planted, target, text))
    if not blocked:
        assert answer.content == "answer" and len(rec.calls) == 1
        return
    assert rec.calls == []
    assert answer.content.startswith("I cannot fulfill this request")
    assert sorted(answer.response_metadata["guardrails"]) == sorted(names)


@pytest.mark.parametrize("build", [sequence, parallel], ids=["sequence", "parallel"])
def test_rewrite_reaches_the_model_with_the_text_decision(planted: PlantedEncoder,
                                                          planted_guard: SafeCLIPGuard,
                                                          build: Any) -> None:
    rec = Recorder()
    llm = FakeListChatModel(responses=["answer"], callbacks=[rec])
    question = ask(planted, "knife", "What is this?")
    build(planted_guard, llm, "rewrite").invoke(question)
    (sent,) = rec.calls[0]
    assert sent.text.startswith(planted_guard.config.safe_instruction)
    result = guard_result_of(sent)
    assert result is not None and result.categories == ["knife"]
    assert sent.response_metadata["guardrails"]["keywords"]["blocked"] is False
    # decisions live in metadata only: the provider payload is the rewritten content alone
    rewritten = HumanMessage(content=sent.content)
    assert convert_to_openai_messages(sent) == convert_to_openai_messages(rewritten)


def test_a_later_guardrail_reads_the_guard_result(planted: PlantedEncoder,
                                                  planted_guard: SafeCLIPGuard) -> None:
    def stricter(messages: list[BaseMessage]) -> list[BaseMessage]:
        result = guard_result_of(messages[-1])
        assert result is not None
        assert result.verdicts[0].scores["knife"] > 0.5  # the scores travel with the message
        return messages

    chain = SafeCLIPGuardrail(guard=planted_guard, mode="annotate") | RunnableLambda(stricter)
    chain.invoke(ask(planted, "knife", "Fine?"))


@pytest.mark.parametrize("how", ["ainvoke", "batch", "abatch", "stream"])
def test_composition_under_other_execution_modes(planted: PlantedEncoder,
                                                 planted_guard: SafeCLIPGuard, how: str) -> None:
    rec = Recorder()
    llm = FakeListChatModel(responses=["answer"], callbacks=[rec])
    chain = parallel(planted_guard, llm, "block")
    inputs = [ask(planted, "gun", "What?"), ask(planted, "neutral", "What?")]
    if how == "ainvoke":
        outs = [asyncio.run(chain.ainvoke(x)) for x in inputs]
    elif how == "batch":
        outs = chain.batch(inputs)
    elif how == "abatch":
        outs = asyncio.run(chain.abatch(inputs))
    else:
        outs = []
        for x in inputs:
            chunks = list(chain.stream(x))
            total = chunks[0]
            for c in chunks[1:]:
                total = total + c
            outs.append(total)
    assert outs[0].content.startswith("I cannot") and outs[1].content == "answer"
    assert len(rec.calls) == 1


def test_combined_outcome_reads_every_shape(planted: PlantedEncoder,
                                            planted_guard: SafeCLIPGuard) -> None:
    guarded = SafeCLIPGuardrail(guard=planted_guard, mode="block", on_block="defer").invoke(
        {"messages": ask(planted, "porn", "?")})
    outcome = combined_outcome(guarded)
    assert outcome.blocked and [d.name for d in outcome.blocking] == ["safeclip"]
    assert not combined_outcome("plain text").blocked
