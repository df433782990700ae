"""The agent middleware and the LangGraph node keep the guard's promise: the trust contract.

Each class supplies only how a conversation goes through its surface
(:class:`safeclip_guardrail.testing.trust.TrustContract`), in front of langchain-core's
recording fake model; every placement, the benign-passes test, the paths test, ``on_error``
and the nested fuzz are inherited. A batch with one unreadable input leaves the others
intact on both.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, MessagesState, StateGraph
from safeclip_guardrail_langchain import SafeCLIPMiddleware, safeclip_node, safeclip_router

from safeclip_guardrail import ImageInputError, SafeCLIPGuard
from safeclip_guardrail.langchain.testing import RecordingChatModel, as_langchain, call
from safeclip_guardrail.testing.trust import (
    Conversation,
    Outcome,
    TrustContract,
    assert_only_judged,
    frames_of,
    human,
    image_url_block,
    make_images,
    pixel_key,
)

STYLES = ("invoke", "ainvoke", "batch", "stream", "astream")


def _agent(guard: SafeCLIPGuard, model: RecordingChatModel) -> Any:
    return create_agent(model, tools=[], middleware=[SafeCLIPMiddleware(guard)])


def _graph(guard: SafeCLIPGuard, model: RecordingChatModel) -> Any:
    def ask_model(state: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    async def aask_model(state: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("safeclip", safeclip_node(guard))
    builder.add_node("model", RunnableLambda(ask_model, afunc=aask_model))
    builder.add_edge(START, "safeclip")
    builder.add_conditional_edges("safeclip", safeclip_router(blocked=END, passed="model"),
                                  [END, "model"])
    builder.add_edge("model", END)
    return builder.compile()


class TestMiddleware(TrustContract):
    name = "middleware"
    styles = STYLES

    def run(self, conversation: Conversation, style: str) -> Outcome:
        model = RecordingChatModel()
        out = call(_agent(self.images.guard, model), {"messages": as_langchain(conversation)}, style)
        assert not isinstance(out, Exception), out
        return Outcome(not model.requests, model.received(), bool(model.requests))


class TestLangGraph(TrustContract):
    name = "langgraph"
    styles = STYLES

    def run(self, conversation: Conversation, style: str) -> Outcome:
        model = RecordingChatModel()
        out = call(_graph(self.images.guard, model), {"messages": as_langchain(conversation)}, style)
        assert not isinstance(out, Exception), out
        return Outcome(not model.requests, model.received(), bool(model.requests))


@pytest.mark.parametrize("build", [_agent, _graph], ids=["middleware", "langgraph"])
def test_one_bad_input_in_a_batch_leaves_the_others_intact(build: Any, tmp_path: Any) -> None:
    imgs = make_images(tmp_path)
    model = RecordingChatModel()
    runnable = build(imgs.guard.with_options(on_error="raise"), model)
    unreadable = human({"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFu"}})
    convs = [[human(image_url_block(imgs.benign))], [unreadable],
             [human(image_url_block(imgs.benign2))]]
    out = runnable.batch([{"messages": as_langchain(c)} for c in convs], return_exceptions=True)
    assert isinstance(out[1], ImageInputError), out[1]
    assert not isinstance(out[0], Exception) and not isinstance(out[2], Exception), out
    assert len(model.requests) == 2
    got = set(model.received().frames)
    assert {pixel_key(frames_of(imgs.benign)[0]),  # type: ignore[index]
            pixel_key(frames_of(imgs.benign2)[0])} <= got  # type: ignore[index]
    assert_only_judged(model.received(), imgs, "batch")
