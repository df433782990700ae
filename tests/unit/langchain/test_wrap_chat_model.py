"""``guardrail.wrap(llm)`` is a whole chat model and every way in keeps the guard in front.

The wrapped model is the tool-calling fake of ``tests/_fake_chat.py``, which records every
request; the guard is the planted one (an image that *must* flag). For each entry point a
framework uses (invoke, ainvoke, batch, abatch, stream, astream, bind_tools, bind,
with_config, with_structured_output, generate, agenerate, v3 event streams, token
counting) a flagged image never reaches the model, and a clean one reaches it as judged.
"""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any
from uuid import UUID

import numpy as np
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableBinding, RunnableLambda
from langchain_core.tools import tool
from PIL import Image
from pydantic import BaseModel

from safeclip_guardrail import GuardrailViolation, GuardResult, SafeCLIPGuard, SafeCLIPGuardrail
from safeclip_guardrail.langchain import VERDICT_EVENT, GuardedChatModel, guard_result_of
from safeclip_guardrail.testing import PlantedEncoder
from tests._fake_chat import ToolCallingFakeChatModel


class Person(BaseModel):
    name: str
    age: int


@tool
def describe(question: str) -> str:
    """Look the question up."""
    return f"looked up: {question}"


def _message(planted: PlantedEncoder, target: str) -> HumanMessage:
    data = base64.b64encode(planted.plant_bytes(target)).decode()
    return HumanMessage(content=[{"type": "text", "text": "Describe it."},
                                 {"type": "image", "base64": data, "mime_type": "image/png"}])


def _images(messages: list[BaseMessage]) -> list[np.ndarray]:
    """The pixels of every image block the model received."""
    out = []
    for m in messages:
        for block in m.content_blocks:
            if block["type"] == "image":
                raw = base64.b64decode(block["base64"])
                out.append(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")))
    return out




def _drain(chunks: Any) -> Any:
    total = None
    for c in chunks:
        total = c if total is None else total + c
    return total


async def _adrain(chunks: Any) -> Any:
    total = None
    async for c in chunks:
        total = c if total is None else total + c
    return total


def _run(model: Any, messages: list[BaseMessage], how: str) -> Any:
    """One request through ``how``; returns the answer (a message, or what the runnable gives)."""
    if how == "invoke":
        return model.invoke(messages)
    if how == "ainvoke":
        return asyncio.run(model.ainvoke(messages))
    if how == "batch":
        return model.batch([messages])[0]
    if how == "abatch":
        return asyncio.run(model.abatch([messages]))[0]
    if how == "stream":
        return _drain(model.stream(messages))
    if how == "astream":
        return asyncio.run(_adrain(model.astream(messages)))
    if how == "generate":
        return model.generate([messages]).generations[0][0].message
    if how == "agenerate":
        return asyncio.run(model.agenerate([messages])).generations[0][0].message
    if how == "events_v3":
        stream = model.stream_events(messages, version="v3")
        list(stream)
        return stream.output
    if how == "astream_events":
        async def events() -> Any:
            return [e async for e in model.astream_events(messages, version="v2")]
        ends = [e for e in asyncio.run(events())
                if e["event"].endswith("_end") and not e["parent_ids"]]  # the outermost run
        return ends[-1]["data"]["output"]
    raise AssertionError(how)


HOWS = ["invoke", "ainvoke", "batch", "abatch", "stream", "astream", "generate", "agenerate",
        "events_v3", "astream_events"]
SHAPES = ["plain", "bind_tools", "bind", "with_config", "wrap_of_bound"]


def _shape(guardrail: SafeCLIPGuardrail | None, fake: ToolCallingFakeChatModel,
           shape: str) -> Any:
    """``fake`` in ``shape``, behind ``guardrail`` (None: the same shape unguarded)."""
    def wrap(model: Any) -> Any:
        return model if guardrail is None else guardrail.wrap(model)

    if shape == "plain":
        return wrap(fake)
    if shape == "bind_tools":
        return wrap(fake).bind_tools([describe])
    if shape == "bind":
        return wrap(fake).bind(stop=["never"])
    if shape == "with_config":
        return wrap(fake).with_config(run_name="guarded", tags=["t"])
    return wrap(fake.bind_tools([describe]))  # documented: wrap a bound model


# ---------------------------------------------------------------------- a chat model
def test_wrap_returns_a_chat_model_with_the_wrapped_models_face(
        planted_guard: SafeCLIPGuard) -> None:
    fake = ToolCallingFakeChatModel(model="fake-7b", temperature=0.2, max_tokens=9)
    wrapped = SafeCLIPGuardrail(guard=planted_guard, mode="block").wrap(fake)
    assert isinstance(wrapped, BaseChatModel) and isinstance(wrapped, GuardedChatModel)
    assert wrapped._llm_type == "tool-calling-fake" and wrapped.model_name == "fake-7b"
    assert wrapped._get_ls_params(stop=["x"]) == fake._get_ls_params(stop=["x"])
    assert wrapped.profile == fake.profile
    assert wrapped.get_name() == "SafeCLIPGuarded[ToolCallingFakeChatModel]"
    bound = wrapped.bind_tools([describe], tool_choice="any")
    assert isinstance(bound, RunnableBinding) and bound.bound is wrapped
    assert bound.kwargs["tool_choice"] == "any"
    assert bound.kwargs["tools"][0]["function"]["name"] == "describe"
    assert wrapped.with_structured_output(Person) is not None


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("how", HOWS)
def test_a_flagged_image_never_reaches_the_model(planted: PlantedEncoder,
                                                 planted_guard: SafeCLIPGuard,
                                                 how: str, shape: str) -> None:
    fake = ToolCallingFakeChatModel()
    model = _shape(SafeCLIPGuardrail(guard=planted_guard, mode="block"), fake, shape)
    answer = _run(model, [_message(planted, "gun")], how)
    assert fake.requests == []
    assert isinstance(answer, AIMessage) and answer.text.startswith("I cannot")
    result = guard_result_of(answer)
    assert result is not None and result.categories == ["gun"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("how", HOWS)
def test_a_clean_image_reaches_the_model_as_judged(planted: PlantedEncoder,
                                                   planted_guard: SafeCLIPGuard,
                                                   how: str, shape: str) -> None:
    """The model gets the judged picture and exactly the arguments it gets unwrapped."""
    clean = _message(planted, "neutral")
    fake, bare = ToolCallingFakeChatModel(), ToolCallingFakeChatModel()
    model = _shape(SafeCLIPGuardrail(guard=planted_guard, mode="block"), fake, shape)
    answer = _run(model, [clean], how)
    expected = _run(_shape(None, bare, shape), [clean], how)
    assert isinstance(answer, AIMessage) and answer.usage_metadata is not None
    (request,), (direct,) = fake.requests, bare.requests
    (seen,) = _images(request.messages)
    np.testing.assert_array_equal(seen, _images([clean])[0])
    assert (request.kwargs, request.stop) == (direct.kwargs, direct.stop)
    assert (answer.text, answer.tool_calls) == (expected.text, expected.tool_calls)
    if how in ("generate", "agenerate"):
        return  # a binding's arguments never reach generate(), wrapped or not (checked above)
    if shape in ("bind_tools", "wrap_of_bound"):
        assert answer.tool_calls[0]["name"] == "describe"  # bound tools reached the model
    if shape == "bind":
        assert request.stop == ["never"]


def test_redact_passes_the_conversation_on_without_the_image(
        planted: PlantedEncoder, planted_guard: SafeCLIPGuard) -> None:
    fake = ToolCallingFakeChatModel()
    model = SafeCLIPGuardrail(guard=planted_guard, mode="redact").wrap(fake)
    for how in ("invoke", "stream", "generate"):
        fake.requests.clear()
        _run(model.bind_tools([describe]), [_message(planted, "blood")], how)
        (request,) = fake.requests
        assert _images(request.messages) == [] and "blood" in request.messages[0].text


# ---------------------------------------------------------------------- structured output
@pytest.mark.parametrize("how", ["invoke", "ainvoke", "batch", "stream", "astream"])
def test_structured_output_is_guarded(planted: PlantedEncoder, planted_guard: SafeCLIPGuard,
                                      how: str) -> None:
    fake = ToolCallingFakeChatModel(tool_args={"name": "Ada", "age": 36})
    wrapped = SafeCLIPGuardrail(guard=planted_guard, mode="block").wrap(fake)
    structured = wrapped.with_structured_output(Person, method="function_calling")
    assert _run(structured, [_message(planted, "neutral")], how) == Person(name="Ada", age=36)
    assert len(fake.requests) == 1
    if how == "batch":  # a batch returns the violation in place, like any batch error
        out = structured.batch([[_message(planted, "gun")]], return_exceptions=True)[0]
        assert isinstance(out, GuardrailViolation)
    else:
        with pytest.raises(GuardrailViolation) as info:  # a refusal is not a Person
            _run(structured, [_message(planted, "gun")], how)
        assert info.value.result.categories == ["gun"] and info.value.refusal
    raw = wrapped.with_structured_output(Person, include_raw=True).invoke(
        [_message(planted, "gun")])
    assert raw["parsed"] is None and isinstance(raw["parsing_error"], GuardrailViolation)
    assert str(raw["raw"].content).startswith("I cannot")
    assert len(fake.requests) == 1  # the flagged requests never reached it


# ---------------------------------------------------------------------- tracing, callbacks
class _Seen(BaseCallbackHandler):
    def __init__(self) -> None:
        self.model_starts: list[str] = []
        self.events: list[Any] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]],
                            *, run_id: UUID, **kwargs: Any) -> None:
        self.model_starts.append(kwargs.get("name") or "")

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.events.append((name, data))


def test_callbacks_see_the_verdict_and_one_model_run(planted: PlantedEncoder,
                                                     planted_guard: SafeCLIPGuard) -> None:
    from langchain_core.callbacks import get_usage_metadata_callback

    own = _Seen()
    fake = ToolCallingFakeChatModel(callbacks=[own])  # the wrapped model's own callbacks
    wrapped = SafeCLIPGuardrail(guard=planted_guard, mode="block").wrap(fake)
    seen = _Seen()
    with get_usage_metadata_callback() as usage:
        wrapped.invoke([_message(planted, "neutral")], {"callbacks": [seen]})
    assert len(seen.model_starts) == 1 and len(own.model_starts) == 1
    assert seen.events[0][0] == VERDICT_EVENT and seen.events[0][1]["blocked"] is False
    (answer_usage,) = usage.usage_metadata.values()
    assert answer_usage["total_tokens"] == 2  # one request, counted once (1 message + 1)
    blocked = _Seen()
    wrapped.invoke([_message(planted, "gun")], {"callbacks": [blocked]})
    assert blocked.model_starts == [] and blocked.events[0][1]["blocked"] is True


def test_token_counting_counts_what_the_model_would_receive(
        planted: PlantedEncoder, planted_guard: SafeCLIPGuard) -> None:
    counted: list[list[BaseMessage]] = []

    class Counting(ToolCallingFakeChatModel):
        def get_num_tokens_from_messages(self, messages: list[BaseMessage],
                                         tools: Any = None) -> int:
            counted.append(list(messages))  # a provider may upload these to count them
            return 7

    wrapped = SafeCLIPGuardrail(guard=planted_guard, mode="block").wrap(Counting())
    assert wrapped.get_num_tokens_from_messages([_message(planted, "gun")]) == 7
    assert _images(counted[0]) == []  # the flagged image was never handed to the counter
    clean = _message(planted, "neutral")
    wrapped.get_num_tokens_from_messages([clean])
    np.testing.assert_array_equal(_images(counted[1])[0], _images([clean])[0])


def test_a_cache_never_answers_before_the_guard(planted: PlantedEncoder,
                                                planted_guard: SafeCLIPGuard) -> None:
    from langchain_core.caches import InMemoryCache
    from langchain_core.globals import set_llm_cache

    fake = ToolCallingFakeChatModel()
    flagged: list[BaseMessage] = [_message(planted, "gun")]
    set_llm_cache(InMemoryCache())
    try:
        fake.invoke(flagged)  # the unguarded model answered this input and cached it
        wrapped = SafeCLIPGuardrail(guard=planted_guard, mode="block").wrap(fake)
        for how in ("invoke", "generate"):
            assert str(_run(wrapped, flagged, how).content).startswith("I cannot")
        assert len(fake.requests) == 1
    finally:
        set_llm_cache(None)


def test_any_other_bound_shape_gets_the_guard_in_front(planted: PlantedEncoder,
                                                       planted_guard: SafeCLIPGuard) -> None:
    fake = ToolCallingFakeChatModel()

    class Odd(ToolCallingFakeChatModel):  # bind_tools that returns a pipeline, not a binding
        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return RunnableLambda(lambda x: x) | fake

    wrapped = SafeCLIPGuardrail(guard=planted_guard, mode="block").wrap(Odd())
    bound = wrapped.bind_tools([describe])
    assert str(bound.invoke([_message(planted, "gun")]).content).startswith("I cannot")
    assert fake.requests == []
    bound.invoke([_message(planted, "neutral")])
    assert len(fake.requests) == 1


def test_one_guard_batch_for_a_batch(planted: PlantedEncoder,
                                     planted_guard: SafeCLIPGuard) -> None:
    fake = ToolCallingFakeChatModel()
    bound = SafeCLIPGuardrail(guard=planted_guard, mode="block").wrap(fake).bind_tools([describe])
    inputs: list[Any] = [[_message(planted, "gun" if i % 4 == 0 else "neutral")]
                         for i in range(8)]
    answers = bound.batch(inputs)
    assert planted.forward_counter.count == 1 and len(fake.requests) == 6
    assert [bool(a.tool_calls) for a in answers] == [i % 4 != 0 for i in range(8)]
    assert all(isinstance(guard_result_of(a), GuardResult) for a in answers
               if not a.tool_calls)


def test_a_copy_with_another_model_keeps_the_guard_in_front(
        planted: PlantedEncoder, planted_guard: SafeCLIPGuard) -> None:
    first, second = ToolCallingFakeChatModel(), ToolCallingFakeChatModel(answer="second")
    wrapped = SafeCLIPGuardrail(guard=planted_guard, mode="block").wrap(first)
    swapped = wrapped.model_copy(update={"chat_model": second})
    assert swapped.invoke([_message(planted, "gun")]).text.startswith("I cannot")
    assert swapped.invoke([_message(planted, "neutral")]).text == "second"
    assert first.requests == [] and len(second.requests) == 1
