"""A tool-calling agent (``langchain.agents.create_agent``) whose model is ``guardrail.wrap(llm)``.

The agent binds its tools to the model it is given (``model.bind_tools``) and calls it in
a loop; with the guarded model it is blocked on a flagged image (the refusal ends the run,
no tool runs, the model is never called) and answered on a clean one (tool call, tool
result, final answer).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from safeclip_guardrail import SafeCLIPGuard, SafeCLIPGuardrail
from safeclip_guardrail.langchain import guard_result_of
from safeclip_guardrail.testing import PlantedEncoder
from tests._fake_chat import ToolCallingFakeChatModel

pytest.importorskip("langchain.agents")

CALLS: list[str] = []


@tool
def lookup(topic: str) -> str:
    """Look a topic up in the encyclopedia."""
    CALLS.append(topic)
    return f"an entry about {topic}"


def _ask(planted: PlantedEncoder, target: str) -> dict[str, Any]:
    data = base64.b64encode(planted.plant_bytes(target)).decode()
    return {"messages": [HumanMessage(content=[
        {"type": "text", "text": "What is this? Look it up."},
        {"type": "image", "base64": data, "mime_type": "image/png"}])]}


@pytest.fixture(autouse=True)
def _no_calls() -> None:
    CALLS.clear()


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream"])
def test_agent_with_a_guarded_model(planted: PlantedEncoder, planted_guard: SafeCLIPGuard,
                                    how: str) -> None:
    from langchain.agents import create_agent

    fake = ToolCallingFakeChatModel(tool_args={"topic": "cats"}, answer="A cat.")
    guarded = SafeCLIPGuardrail(guard=planted_guard, mode="block").wrap(fake)
    agent: Any = create_agent(guarded, tools=[lookup])

    def run(state: dict[str, Any]) -> list[Any]:
        if how == "invoke":
            return list(agent.invoke(state)["messages"])
        if how == "ainvoke":
            return list(asyncio.run(agent.ainvoke(state))["messages"])
        last: dict[str, Any] = {}
        for update in agent.stream(state, stream_mode="values"):
            last = update
        return list(last["messages"])

    blocked = run(_ask(planted, "gun"))
    refusal = blocked[-1]
    assert isinstance(refusal, AIMessage) and refusal.text.startswith("I cannot")
    assert guard_result_of(refusal).categories == ["gun"]  # type: ignore[union-attr]
    assert not refusal.tool_calls and CALLS == [] and fake.requests == []

    answered = run(_ask(planted, "neutral"))
    kinds = [type(m).__name__ for m in answered]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert answered[1].tool_calls[0]["name"] == "lookup" and CALLS == ["cats"]
    assert isinstance(answered[2], ToolMessage) and answered[3].text == "A cat. (an entry about cats)"
    assert len(fake.requests) == 2  # both turns went through the guard to the model
    for request in fake.requests:
        assert request.kwargs["tools"][0]["function"]["name"] == "lookup"
