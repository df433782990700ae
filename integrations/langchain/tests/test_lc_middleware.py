"""SafeCLIPMiddleware inside a real langchain 1.x create_agent loop with a counting fake model."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from safeclip_guardrail_langchain import SafeCLIPMiddleware

from safeclip_guardrail import DEFAULT_SAFE_INSTRUCTION, ConfigurationError, GuardrailViolation
from safeclip_guardrail.langchain import guard_result_of
from safeclip_guardrail.testing.pictures import b64


def test_flagged_image_ends_the_run_and_the_model_is_never_called(planted, planted_guard,
                                                                   make_model, image_message):
    model = make_model()
    agent = create_agent(model, tools=[], middleware=[SafeCLIPMiddleware(planted_guard)])
    gun = planted.plant_bytes("gun")
    out = agent.invoke({"messages": [image_message(gun)]})
    assert model.calls == 0
    refusal = out["messages"][-1]
    assert isinstance(refusal, AIMessage) and "flagged as unsafe (gun)" in refusal.text
    assert guard_result_of(refusal).categories == ["gun"]
    human = out["messages"][0]
    assert not [b for b in human.content_blocks if b["type"] == "image"]  # redacted in state
    assert len(out["messages"]) == 2


def test_benign_image_reaches_the_model(planted, planted_guard, make_model, image_message):
    model = make_model()
    agent = create_agent(model, tools=[], middleware=[SafeCLIPMiddleware(planted_guard)])
    cat = planted.plant_bytes("neutral")
    out = agent.invoke({"messages": [image_message(cat)]})
    assert model.calls == 1
    assert model.images_seen() == [b64(cat)]
    assert out["messages"][-1].text == "a helpful answer"
    assert guard_result_of(out["messages"][0]).flagged is False


async def test_async_agent_ends_on_a_flagged_image(planted, planted_guard, make_model,
                                                   image_message):
    model = make_model()
    agent = create_agent(model, tools=[], middleware=[SafeCLIPMiddleware(planted_guard)])
    out = await agent.ainvoke({"messages": [image_message(planted.plant_bytes("porn"))]})
    assert model.calls == 0 and "porn" in out["messages"][-1].text


def test_rewrite_prepends_the_safety_instruction(planted, planted_guard, make_model,
                                                 image_message):
    model = make_model()
    agent = create_agent(model, tools=[],
                         middleware=[SafeCLIPMiddleware(planted_guard, action="rewrite")])
    gun = planted.plant_bytes("gun")
    agent.invoke({"messages": [image_message(gun, "describe it")]})
    assert model.calls == 1
    sent = model.requests[0][-1]
    assert sent.content_blocks[0]["text"] == f"{DEFAULT_SAFE_INSTRUCTION} describe it"
    assert model.images_seen() == [b64(gun)]  # the paper's method keeps the image


def test_redact_replaces_the_image_before_the_model(planted, planted_guard, make_model,
                                                    image_message):
    model = make_model()
    agent = create_agent(model, tools=[],
                         middleware=[SafeCLIPMiddleware(planted_guard, action="redact")])
    agent.invoke({"messages": [image_message(planted.plant_bytes("knife"))]})
    assert model.calls == 1 and model.images_seen() == []
    assert "flagged as knife" in model.requests[0][-1].text


def test_error_raises_out_of_the_agent(planted, planted_guard, make_model, image_message):
    model = make_model()
    agent = create_agent(model, tools=[],
                         middleware=[SafeCLIPMiddleware(planted_guard, action="error")])
    with pytest.raises(GuardrailViolation) as info:
        agent.invoke({"messages": [image_message(planted.plant_bytes("gun"))]})
    assert info.value.result.categories == ["gun"] and model.calls == 0


def _tool_calling(make_model, name: str):
    return make_model(
        AIMessage(content="", tool_calls=[{"name": name, "args": {}, "id": "call-1"}]),
        "final answer", "unused",
    )


def test_tool_results_with_images_are_checked_by_default(planted, planted_guard, make_model):
    gun = planted.plant_bytes("gun")

    @tool
    def fetch_photo() -> list[dict]:
        """Return the latest photo."""
        return [{"type": "image", "base64": b64(gun), "mime_type": "image/png"}]

    model = _tool_calling(make_model, "fetch_photo")
    agent = create_agent(model, tools=[fetch_photo], middleware=[SafeCLIPMiddleware(planted_guard)])
    out = agent.invoke({"messages": [HumanMessage("show me the photo")]})
    assert model.calls == 1  # the call after the tool result never happened
    assert isinstance(out["messages"][-2], ToolMessage)
    assert "gun" in out["messages"][-1].text

    unchecked = _tool_calling(make_model, "fetch_photo")
    agent = create_agent(unchecked, tools=[fetch_photo],
                         middleware=[SafeCLIPMiddleware(planted_guard, skip_roles=("tool",))])
    agent.invoke({"messages": [HumanMessage("show me the photo")]})
    assert unchecked.calls == 2 and b64(gun) in unchecked.images_seen()  # the opt-out is real

    assert SafeCLIPMiddleware(planted_guard, skip_roles=("Tool",)).skip_roles == ("tool",)
    with pytest.raises(ConfigurationError, match="skip_roles"):
        SafeCLIPMiddleware(planted_guard, skip_roles="tool")  # type: ignore[arg-type]


def test_redaction_persists_across_turns_with_a_checkpointer(planted, planted_guard, make_model,
                                                            image_message):
    model = make_model()
    agent = create_agent(model, tools=[], middleware=[SafeCLIPMiddleware(planted_guard)],
                         checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t1"}}
    first = agent.invoke({"messages": [image_message(planted.plant_bytes("gun"))]}, cfg)
    assert model.calls == 0 and "gun" in first["messages"][-1].text
    second = agent.invoke({"messages": [HumanMessage("ok, tell me a joke instead")]}, cfg)
    assert model.calls == 1 and second["messages"][-1].text == "a helpful answer"
    assert model.images_seen() == []


def test_unreadable_image_fails_closed(planted_guard, make_model):
    model = make_model()
    agent = create_agent(model, tools=[], middleware=[SafeCLIPMiddleware(planted_guard)])
    bad = HumanMessage(content=[{"type": "image_url",
                                 "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}])
    out = agent.invoke({"messages": [bad]})
    assert model.calls == 0 and "unreadable" in out["messages"][-1].text


def test_real_tiny_clip_annotates_through_the_agent(tiny_clip_dir, planted, make_model,
                                                    image_message):
    from safeclip_guardrail import SafeCLIPGuard

    guard = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32")
    model = make_model()
    agent = create_agent(model, tools=[],
                         middleware=[SafeCLIPMiddleware(guard, action="annotate")])
    out = agent.invoke({"messages": [image_message(planted.plant_bytes("neutral"))]})
    assert model.calls == 1
    verdict = guard_result_of(out["messages"][0]).verdicts[0]
    assert verdict.error is None
    assert sum(verdict.scores.values()) == pytest.approx(1.0, abs=1e-4)


def test_bad_arguments(planted_guard):
    with pytest.raises(ConfigurationError, match="action must be one of"):
        SafeCLIPMiddleware(planted_guard, action="block")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="needs a SafeCLIPGuard"):
        SafeCLIPMiddleware("llava-1.5")  # type: ignore[arg-type]
