"""``response_metadata["safeclip"]`` is a GuardResult on the guardrail's surfaces, and LangChain
serialises messages carrying it (``langchain/_metadata.py``; ChatLlava's is checked in
``tests/unit/langchain/test_chat_llava_loading.py``)."""

from __future__ import annotations

import base64
import json

from langchain_core.load import dumpd, dumps, loads
from langchain_core.messages import AIMessage, HumanMessage, messages_from_dict, messages_to_dict
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from safeclip_guardrail import GuardResult, SafeCLIPGuard, SafeCLIPGuardrail
from safeclip_guardrail.langchain import guard_result_of
from safeclip_guardrail.testing import PlantedEncoder
from tests._fake_chat import ToolCallingFakeChatModel


def _message(planted: PlantedEncoder, target: str) -> HumanMessage:
    data = base64.b64encode(planted.plant_bytes(target)).decode()
    return HumanMessage(content=[{"type": "text", "text": "Describe it."},
                                 {"type": "image", "base64": data, "mime_type": "image/png"}])


def _round_trips(message: AIMessage | HumanMessage, expected: GuardResult) -> None:
    """Every way LangChain and LangGraph write a message keeps the result's data."""
    text = dumps(message)
    assert json.loads(text)["kwargs"]["response_metadata"]["safeclip"]["categories"] == \
        expected.categories
    assert dumpd(message)["kwargs"]["response_metadata"]["safeclip"]["flagged"] is \
        expected.flagged
    serde = JsonPlusSerializer()
    for back in (loads(text, allowed_objects="messages"),
                 messages_from_dict(messages_to_dict([message]))[0],
                 serde.loads_typed(serde.dumps_typed(message))):
        again = guard_result_of(back)
        assert again is not None
        assert again.model_dump() == GuardResult.model_validate(expected.model_dump()).model_dump()


def test_the_refusal_of_wrap_carries_a_guard_result(planted: PlantedEncoder,
                                                   planted_guard: SafeCLIPGuard) -> None:
    wrapped = SafeCLIPGuardrail(guard=planted_guard, mode="block").wrap(
        ToolCallingFakeChatModel())
    refusal = wrapped.invoke([_message(planted, "gun")])
    result = refusal.response_metadata["safeclip"]
    assert isinstance(result, GuardResult)
    assert result.flagged and result.categories == ["gun"] and result.action == "block"
    _round_trips(refusal, result)


def test_annotations_carry_a_guard_result(planted: PlantedEncoder,
                                          planted_guard: SafeCLIPGuard) -> None:
    (annotated,) = SafeCLIPGuardrail(guard=planted_guard, mode="annotate").invoke(
        [_message(planted, "knife")])
    result = annotated.response_metadata["safeclip"]
    assert isinstance(result, GuardResult) and result.action == "annotate"
    _round_trips(annotated, result)
