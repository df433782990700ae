"""safeclip_node + safeclip_router in a hand-built LangGraph graph."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from safeclip_guardrail_langchain import is_blocked, safeclip_node, safeclip_router

from safeclip_guardrail import ConfigurationError, GuardrailViolation


def _graph(guard, model, *, action="end", key="messages", state=MessagesState):
    visited: list[str] = []

    def call_model(s: dict[str, Any]) -> dict[str, Any]:
        visited.append("model")
        return {key: [model.invoke(s[key])]}

    def refusal(s: dict[str, Any]) -> dict[str, Any]:
        visited.append("refusal")
        return {}

    builder = StateGraph(state)
    builder.add_node("safeclip", safeclip_node(guard, action=action, messages_key=key))
    builder.add_node("model", call_model)
    builder.add_node("refusal", refusal)
    builder.add_edge(START, "safeclip")
    builder.add_conditional_edges("safeclip", safeclip_router(messages_key=key),
                                  ["refusal", "model"])
    builder.add_edge("model", END)
    builder.add_edge("refusal", END)
    return builder.compile(), visited


def test_flagged_input_is_routed_to_the_refusal_node(planted, planted_guard, make_model,
                                                     image_message):
    model = make_model()
    graph, visited = _graph(planted_guard, model)
    out = graph.invoke({"messages": [image_message(planted.plant_bytes("gun"))]})
    assert visited == ["refusal"] and model.calls == 0
    assert is_blocked(out["messages"]) and "gun" in out["messages"][-1].text


def test_benign_input_is_routed_to_the_model(planted, planted_guard, make_model, image_message):
    model = make_model()
    graph, visited = _graph(planted_guard, model)
    out = graph.invoke({"messages": [image_message(planted.plant_bytes("neutral"))]})
    assert visited == ["model"] and model.calls == 1
    assert not is_blocked(out["messages"])


async def test_async_graph_routes_the_same_way(planted, planted_guard, make_model, image_message):
    model = make_model()
    graph, visited = _graph(planted_guard, model)
    await graph.ainvoke({"messages": [image_message(planted.plant_bytes("blood"))]})
    await graph.ainvoke({"messages": [HumanMessage("no picture")]})
    assert visited == ["refusal", "model"] and model.calls == 1


def test_redact_passes_to_the_model_without_the_image(planted, planted_guard, make_model,
                                                      image_message):
    model = make_model()
    graph, visited = _graph(planted_guard, model, action="redact")
    graph.invoke({"messages": [image_message(planted.plant_bytes("gun"))]})
    assert visited == ["model"] and model.images_seen() == []


def test_error_action_raises_from_the_node(planted, planted_guard, make_model, image_message):
    graph, visited = _graph(planted_guard, make_model(), action="error")
    with pytest.raises(GuardrailViolation):
        graph.invoke({"messages": [image_message(planted.plant_bytes("gun"))]})
    assert visited == []


class ChatState(TypedDict):
    chat: Annotated[list[AnyMessage], add_messages]


def test_custom_messages_key(planted, planted_guard, make_model, image_message):
    graph, visited = _graph(planted_guard, make_model(), key="chat", state=ChatState)
    graph.invoke({"chat": [image_message(planted.plant_bytes("gun"))]})
    assert visited == ["refusal"]
    with pytest.raises(ConfigurationError, match="has no 'messages' list"):
        safeclip_node(planted_guard).invoke({"chat": []})


def test_router_reads_only_the_newest_message(planted, planted_guard, image_message):
    route = safeclip_router(blocked="stop", passed="go")
    node = safeclip_node(planted_guard)
    assert node.invoke({"messages": [HumanMessage("hi", id="h0")]}) == {"messages": []}
    flagged = image_message(planted.plant_bytes("gun"))
    flagged.id = "h1"
    update = node.invoke({"messages": [flagged]})["messages"]
    assert [m.id for m in update[:-1]] == ["h1"]  # replaced in place by add_messages
    refusal = update[-1]
    assert route({"messages": [update[0], refusal]}) == "stop"
    assert route({"messages": [update[0], refusal, HumanMessage("next turn")]}) == "go"
    assert route({"messages": []}) == "go"
    assert route({"messages": [AIMessage("plain answer")]}) == "go"
