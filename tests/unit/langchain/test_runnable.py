"""SafeCLIPGuardrail and guardrail.wrap(model): every mode under every execution mode."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    convert_to_openai_messages,
)
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.schemas import Run

from safeclip_guardrail import (
    ConfigurationError,
    GuardrailViolation,
    SafeCLIPGuard,
    SafeCLIPGuardrail,
)
from safeclip_guardrail.langchain import VERDICT_EVENT, guard_result_of
from safeclip_guardrail.testing import PlantedEncoder
from safeclip_guardrail.testing.pictures import b64, encode, noise

MODES = ["rewrite", "annotate", "redact", "block", "raise"]
EXECUTIONS = ["invoke", "ainvoke", "batch", "abatch", "stream", "astream"]


class Recorder(BaseCallbackHandler):
    """Counts chat model calls and keeps the messages each call received."""

    def __init__(self) -> None:
        self.calls: list[list[BaseMessage]] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]],
                            *, run_id: UUID, **kwargs: Any) -> None:
        self.calls.extend(messages)


def counting_llm(answer: str = "It is a picture.") -> tuple[FakeListChatModel, Recorder]:
    rec = Recorder()
    return FakeListChatModel(responses=[answer], callbacks=[rec]), rec


def image_message(planted: PlantedEncoder, target: Any, text: str = "Describe it.") -> HumanMessage:
    data = base64.b64encode(planted.plant_bytes(target)).decode()
    return HumanMessage(content=[
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
    ])


def execute(runnable: Any, value: Any, how: str) -> Any:
    """Run ``value`` through ``runnable`` the way ``how`` says; streams are reassembled."""
    if how == "invoke":
        return runnable.invoke(value)
    if how == "ainvoke":
        return asyncio.run(runnable.ainvoke(value))
    if how == "batch":
        return runnable.batch([value])[0]
    if how == "abatch":
        return asyncio.run(runnable.abatch([value]))[0]
    if how == "stream":
        chunks = list(runnable.stream(value))
    else:
        async def collect() -> list[Any]:
            return [c async for c in runnable.astream(value)]
        chunks = asyncio.run(collect())
    if isinstance(chunks[0], AIMessageChunk):
        total = chunks[0]
        for c in chunks[1:]:
            total = total + c
        return total
    assert len(chunks) == 1
    return chunks[0]


# ---------------------------------------------------------------- the matrix
@pytest.mark.parametrize("how", EXECUTIONS)
@pytest.mark.parametrize("mode", MODES)
def test_guardrail_mode_under_execution(planted: PlantedEncoder, planted_guard: SafeCLIPGuard,
                                        mode: str, how: str) -> None:
    guardrail = SafeCLIPGuardrail(guard=planted_guard, mode=mode)
    msg = image_message(planted, "gun")
    if mode in ("raise", "block"):  # a plain chain must stop: the model is never called
        with pytest.raises(GuardrailViolation) as info:
            execute(guardrail, [msg], how)
        assert info.value.result.categories == ["gun"]
        assert (info.value.refusal is not None) == (mode == "block")
        return
    (out,) = execute(guardrail, [msg], how)
    result = guard_result_of(out)
    assert result is not None and result.action == mode and result.categories == ["gun"]
    if mode == "rewrite":
        assert out.content[0]["text"].startswith(guardrail.config.safe_instruction)
        assert out.content[1] == msg.content[1]
    elif mode == "annotate":
        assert out.content == msg.content
        assert convert_to_openai_messages(out) == convert_to_openai_messages(msg)
    else:  # redact: the image never passes on
        assert out.content[0] == msg.content[0]
        assert out.content[1]["type"] == "text" and "gun" in out.content[1]["text"]


@pytest.mark.parametrize("how", EXECUTIONS)
@pytest.mark.parametrize("mode", MODES)
def test_wrapped_model_mode_under_execution(planted: PlantedEncoder,
                                            planted_guard: SafeCLIPGuard,
                                            mode: str, how: str) -> None:
    llm, rec = counting_llm()
    safe = SafeCLIPGuardrail(guard=planted_guard, mode=mode).wrap(llm)
    msg = image_message(planted, "porn")
    if mode == "raise":
        with pytest.raises(GuardrailViolation):
            execute(safe, [msg], how)
        assert rec.calls == []
        return
    answer = execute(safe, [msg], how)
    if mode == "block":
        assert rec.calls == []  # the model was never called
        assert "porn" in answer.content and answer.content.startswith("I cannot fulfill")
        return
    assert answer.content == "It is a picture." and len(rec.calls) == 1
    (sent,) = rec.calls[0]
    if mode == "redact":
        assert "image_url" not in str(sent.content)
    if mode == "rewrite":
        assert sent.text.startswith(planted_guard.config.safe_instruction)


@pytest.mark.parametrize("how", EXECUTIONS)
def test_benign_request_calls_the_model_once(planted: PlantedEncoder,
                                             planted_guard: SafeCLIPGuard, how: str) -> None:
    llm, rec = counting_llm()
    safe = SafeCLIPGuardrail(guard=planted_guard, mode="block").wrap(llm)
    msg = image_message(planted, "neutral")
    answer = execute(safe, [msg], how)
    assert answer.content == "It is a picture." and len(rec.calls) == 1
    assert rec.calls[0][0].content == msg.content


# ---------------------------------------------------------------- shapes
def test_input_shapes_are_kept(planted: PlantedEncoder, planted_guard: SafeCLIPGuard) -> None:
    guardrail = SafeCLIPGuardrail(guard=planted_guard, mode="redact")
    msg = image_message(planted, "blood")
    assert guardrail.invoke("just text") == "just text"
    assert isinstance(guardrail.invoke(msg), HumanMessage)
    assert "image_url" not in str(guardrail.invoke(msg).content)
    pv = guardrail.invoke(ChatPromptValue(messages=[msg]))
    assert isinstance(pv, ChatPromptValue) and "image_url" not in str(pv.messages[0].content)
    state = guardrail.invoke({"messages": [msg], "user": "u1"})
    assert state["user"] == "u1" and "image_url" not in str(state["messages"][0].content)
    as_dicts = guardrail.invoke([{"role": "user", "content": msg.content}])
    assert "image_url" not in str(as_dicts[0].content)
    with pytest.raises(ConfigurationError, match="cannot read an input of type int"):
        guardrail.invoke(42)


def test_prompt_template_then_guardrail_then_model(planted: PlantedEncoder,
                                                   planted_guard: SafeCLIPGuard) -> None:
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You describe images."),
        ("user", [{"type": "text", "text": "{question}"},
                  {"type": "image_url", "image_url": {"url": "{image}"}}]),
    ])
    llm, rec = counting_llm()
    guardrail = SafeCLIPGuardrail(guard=planted_guard)
    chain = prompt | guardrail.wrap(llm)
    data = base64.b64encode(planted.plant_bytes("knife")).decode()
    chain.invoke({"question": "What is it?", "image": f"data:image/png;base64,{data}"})
    sent = rec.calls[0][1]
    assert sent.text.startswith(guardrail.config.safe_instruction)


# ---------------------------------------------------------------- LangChain-native
def test_batch_of_eight_is_one_encoder_forward(planted: PlantedEncoder,
                                               planted_guard: SafeCLIPGuard) -> None:
    guardrail = SafeCLIPGuardrail(guard=planted_guard, mode="block", on_block="defer")
    inputs = [[image_message(planted, "gun" if i % 3 == 0 else "neutral")] for i in range(8)]
    outs = guardrail.batch(inputs)
    assert planted.forward_counter.count == 1
    actions = [guard_result_of(o[0]).action for o in outs]  # type: ignore[union-attr]
    assert actions == ["block" if i % 3 == 0 else "pass" for i in range(8)]


async def test_abatch_of_eight_is_one_encoder_forward(planted: PlantedEncoder,
                                                      planted_guard: SafeCLIPGuard) -> None:
    llm, rec = counting_llm()
    safe = SafeCLIPGuardrail(guard=planted_guard, mode="block").wrap(llm)
    inputs = [[image_message(planted, "gun" if i < 2 else "neutral")] for i in range(8)]
    answers = await safe.abatch(inputs)
    assert planted.forward_counter.count == 1 and len(rec.calls) == 6
    assert [a.content.startswith("I cannot") for a in answers] == [True, True] + [False] * 6


def test_batch_return_exceptions_keeps_the_others(planted: PlantedEncoder,
                                                  planted_guard: SafeCLIPGuard) -> None:
    guardrail = SafeCLIPGuardrail(guard=planted_guard, mode="raise")
    outs = guardrail.batch([[image_message(planted, "gun")], 7, "fine"], return_exceptions=True)
    assert isinstance(outs[0], GuardrailViolation) and isinstance(outs[1], ConfigurationError)
    assert outs[2] == "fine"
    with pytest.raises(GuardrailViolation):
        guardrail.batch([[image_message(planted, "gun")], "fine"])


def test_custom_event_and_run_metadata(planted: PlantedEncoder,
                                       planted_guard: SafeCLIPGuard) -> None:
    guardrail = SafeCLIPGuardrail(guard=planted_guard, mode="annotate")
    seen: list[Any] = []

    class Events(BaseCallbackHandler):
        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            seen.append((name, data))

    with collect_runs() as runs:
        guardrail.invoke([image_message(planted, "cigarette")], {"callbacks": [Events()]})
    assert seen[0][0] == VERDICT_EVENT and seen[0][1]["categories"] == ["cigarette"]
    run = runs.traced_runs[0]
    assert run.name == "SafeCLIPGuardrail"
    (verdict,) = [c for c in run.child_runs if c.name == VERDICT_EVENT]
    assert verdict.metadata["safeclip"]["action"] == "annotate"
    assert verdict.outputs is not None and verdict.outputs["categories"] == ["cigarette"]
    assert "safeclip" not in run.metadata  # the guardrail's own run is left as it started


class KeptRuns(BaseTracer):
    """A tracer of one's own (LangSmith's shape): keeps every finished root run."""

    def __init__(self) -> None:
        super().__init__()
        self.roots: list[Run] = []

    def _persist_run(self, run: Run) -> None:
        self.roots.append(run)


async def test_a_tracer_sees_each_inputs_verdict(planted: PlantedEncoder,
                                                 planted_guard: SafeCLIPGuard) -> None:
    """Every input of a batch, async and behind ``wrap``, traces its own verdict run."""
    tracer = KeptRuns()
    guardrail = SafeCLIPGuardrail(guard=planted_guard, mode="block", on_block="defer")
    await guardrail.abatch([[image_message(planted, "gun")], [image_message(planted, "neutral")]],
                           {"callbacks": [tracer]})
    llm, rec = counting_llm()
    guardrail.wrap(llm).invoke([image_message(planted, "knife")], {"callbacks": [tracer]})
    found = [[(c.metadata["safeclip"]["categories"], c.metadata["safeclip"]["blocked"])
              for c in root.child_runs if c.name == VERDICT_EVENT] for root in tracer.roots]
    assert sorted(found) == [[([], False)], [(["gun"], True)], [(["knife"], True)]]
    assert not rec.calls


async def test_astream_events_shows_the_verdict(planted: PlantedEncoder,
                                                planted_guard: SafeCLIPGuard) -> None:
    llm, _ = counting_llm()
    safe = SafeCLIPGuardrail(guard=planted_guard, mode="block").wrap(llm)
    events = [e async for e in safe.astream_events([image_message(planted, "gun")],
                                                   version="v2")]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert custom[0]["name"] == VERDICT_EVENT and custom[0]["data"]["blocked"] is True
    assert not [e for e in events if e["event"] == "on_chat_model_start"]


def test_with_config_retry_fallbacks_and_pipes(planted: PlantedEncoder,
                                               planted_guard: SafeCLIPGuard) -> None:
    guardrail = SafeCLIPGuardrail(guard=planted_guard, mode="block")
    msg = image_message(planted, "gun")
    named = guardrail.with_config(run_name="image-check")
    with collect_runs() as runs, pytest.raises(GuardrailViolation):
        named.invoke([msg])
    assert runs.traced_runs[0].name == "image-check"
    assert runs.traced_runs[0].error  # the block is visible in the trace

    failing = GenericFakeChatModel(messages=iter([]))  # raises StopIteration-based error
    llm, rec = counting_llm("from fallback")
    chain = guardrail.wrap(failing).with_fallbacks([guardrail.wrap(llm)])
    assert chain.invoke([image_message(planted, "neutral")]).content == "from fallback"
    assert chain.invoke([msg]).content.startswith("I cannot")  # blocked before any model
    assert len(rec.calls) == 1

    attempts: list[int] = []

    def flaky(messages: Any) -> AIMessage:
        attempts.append(1)
        if len(attempts) < 2:
            raise RuntimeError("transient")
        return AIMessage("second try")

    retried = guardrail.wrap(RunnableLambda(flaky)).with_retry(
        stop_after_attempt=2, retry_if_exception_type=(RuntimeError,), wait_exponential_jitter=False)
    assert retried.invoke([image_message(planted, "neutral")]).content == "second try"
    never: list[Any] = []
    stopped = guardrail | RunnableLambda(lambda ms: never.append(ms))
    with pytest.raises(GuardrailViolation) as info:
        stopped.invoke([msg])
    assert never == [] and info.value.refusal and info.value.refusal.startswith("I cannot")
    deferred = guardrail.model_copy(update={"on_block": "defer"})
    piped = deferred | RunnableLambda(lambda ms: guard_result_of(ms[0]))
    assert piped.invoke([msg]).action == "block"  # type: ignore[union-attr]


def test_policy_overrides_and_bad_options(planted: PlantedEncoder,
                                          planted_guard: SafeCLIPGuard) -> None:
    guardrail = SafeCLIPGuardrail(guard=planted_guard, mode="block",
                                  policy={"alcohol": "annotate"})
    out = guardrail.invoke([image_message(planted, "alcohol")])
    assert guard_result_of(out[0]).action == "annotate"  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError, match="not in the concept bank"):
        SafeCLIPGuardrail(guard=planted_guard, policy={"weapons": "block"})
    with pytest.raises(ConfigurationError):
        SafeCLIPGuardrail(guard=planted_guard, mode="shout")  # type: ignore[arg-type]


def test_multi_turn_history_checks_a_resent_image_once(planted: PlantedEncoder,
                                                       planted_guard: SafeCLIPGuard) -> None:
    guardrail = SafeCLIPGuardrail(guard=planted_guard, mode="redact")
    first = image_message(planted, "gun")
    history: list[BaseMessage] = [first, AIMessage("No."), first, AIMessage("No."), first]
    out = guardrail.invoke(history)
    assert planted.forward_counter.count == 1
    assert all("image_url" not in str(m.content) for m in out)
    guardrail.invoke([*history, AIMessage("No."), first])
    assert planted.forward_counter.count == 1


# ---------------------------------------------------------------- a real tiny CLIP
def test_from_pretrained_tiny_clip_batch_is_one_vision_forward(tiny_clip_dir: Path) -> None:
    guardrail = SafeCLIPGuardrail.from_pretrained(str(tiny_clip_dir), device="cpu",
                                                  dtype="float32", mode="annotate")
    calls: list[int] = []
    vision = guardrail.guard.encoder.model.vision_model  # type: ignore[attr-defined]
    handle = vision.register_forward_hook(lambda *_: calls.append(1))
    try:


        def png(seed: int) -> str:
            return b64(encode(noise(40, 40, seed)))

        inputs = [[HumanMessage(content=[{"type": "text", "text": "hi"},
                                         {"type": "image", "base64": png(i),
                                          "mime_type": "image/png"}])] for i in range(8)]
        outs = guardrail.batch(inputs)
    finally:
        handle.remove()
    assert len(calls) == 1
    for out, sent in zip(outs, inputs, strict=True):
        result = guard_result_of(out[0])
        assert result is not None and len(result.verdicts) == 1
        assert abs(sum(result.verdicts[0].scores.values()) - 1.0) < 1e-4
        assert convert_to_openai_messages(out) == convert_to_openai_messages(sent)
