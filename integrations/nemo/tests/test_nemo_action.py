"""The SafeCLIP input rail inside real NeMo Guardrails LLMRails, driven by a fake chat model."""

from __future__ import annotations

import base64

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage, convert_to_openai_messages
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter
from safeclip_guardrail_nemo import (
    ACTION_NAME,
    SafeCLIPImageRail,
    example_config_dir,
    example_rails_config,
    register_safeclip,
)

from safeclip_guardrail import ConfigurationError, SafeCLIPGuard

ANSWER = "a helpful answer"


def _user(text: str, *images: bytes) -> dict:
    parts: list[dict] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url",
               "image_url": {"url": "data:image/png;base64," + base64.b64encode(i).decode()}}
              for i in images]
    return {"role": "user", "content": parts}


def _rails(guard: SafeCLIPGuard, config: RailsConfig | None = None,
           **kwargs) -> tuple[LLMRails, FakeListChatModel]:
    fake = FakeListChatModel(responses=[ANSWER] * 4)
    rails = LLMRails(config or example_rails_config(), llm=LangChainLLMAdapter(fake))
    register_safeclip(rails, guard, **kwargs)
    return rails, fake


def test_flagged_image_is_blocked_before_the_llm(planted, planted_guard):
    rails, fake = _rails(planted_guard)
    out = rails.generate(messages=[_user("what is this?", planted.plant_bytes("gun"))])
    assert out["content"] == planted_guard.config.refusal.replace("{categories}", "gun")
    assert fake.i == 0  # the model was never called


def test_benign_image_reaches_the_llm(planted, planted_guard):
    rails, fake = _rails(planted_guard)
    out = rails.generate(messages=[_user("what is this?", planted.plant_bytes("neutral"))])
    assert out["content"] == ANSWER
    assert fake.i == 1


async def test_config_from_content_and_async(planted, planted_guard):
    d = example_config_dir()
    config = RailsConfig.from_content(yaml_content=(d / "config.yml").read_text(),
                                      colang_content=(d / "safeclip.co").read_text())
    rails, fake = _rails(planted_guard, config)
    bad = await rails.generate_async(
        messages=[_user("hi", planted.plant_bytes("neutral"), planted.plant_bytes("porn"))])
    ok = await rails.generate_async(messages=[{"role": "user", "content": "no image"}])
    assert "porn" in bad["content"] and ok["content"] == ANSWER
    assert fake.i == 1


def test_langchain_messages_via_convert_to_openai_messages(planted, planted_guard):
    gun = base64.b64encode(planted.plant_bytes("gun")).decode()
    message = HumanMessage(content_blocks=[
        {"type": "text", "text": "describe"},
        {"type": "image", "base64": gun, "mime_type": "image/png"},
    ])
    rails, fake = _rails(planted_guard)
    out = rails.generate(messages=convert_to_openai_messages([message]))
    assert "gun" in out["content"] and fake.i == 0


def test_unreadable_image_parts_fail_closed(planted_guard):
    rails, fake = _rails(planted_guard)
    for part in (
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "input_image", "file_id": "file-123"},
        {"type": "image_url", "image_url": {}},
    ):
        out = rails.generate(messages=[{"role": "user", "content": [part]}])
        assert "unreadable" in out["content"], part
    assert fake.i == 0


def test_every_role_and_the_history_are_judged_by_default(planted, planted_guard):
    history = [_user("look", planted.plant_bytes("gun")),
               {"role": "assistant", "content": "ok"},
               {"role": "user", "content": "and now?"}]
    rails, fake = _rails(planted_guard)
    assert "gun" in rails.generate(messages=history)["content"]
    system = [{"role": "system", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png;base64," + base64.b64encode(planted.plant_bytes("porn")).decode()}}]},
        {"role": "user", "content": "hi"}]
    assert "porn" in rails.generate(messages=system)["content"]
    assert fake.i == 0
    rails, fake = _rails(planted_guard, skip_roles=("system",))
    assert rails.generate(messages=system)["content"] == ANSWER


async def test_action_result_carries_reason_and_scores(planted, planted_guard):
    rail = SafeCLIPImageRail(planted_guard)
    msg = _user("two images", planted.plant_bytes("neutral"),
                planted.plant_bytes({"knife": 0.8, "neutral": 0.2}))
    result = await rail.check(context={"user_message": msg["content"]})
    assert result["allowed"] is False and result["images"] == 2
    assert result["categories"] == ["knife"]
    assert result["reason"] == "image 2 of 2 flagged as knife (0.80)"
    assert result["verdicts"][1]["scores"]["knife"] == pytest.approx(0.8, abs=1e-3)
    assert result["verdicts"][0]["flagged"] is False
    clean = await rail.check(context={"user_message": "just text"})
    assert clean == {"allowed": True, "reason": None, "refusal": None, "categories": [],
                     "images": 0, "verdicts": []}


async def test_real_tiny_clip_through_the_public_loader(tiny_clip_dir, planted):
    guard = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32")
    result = await SafeCLIPImageRail(guard).check(
        context={"user_message": _user("x", planted.plant_bytes("neutral"))["content"]})
    assert result["images"] == 1 and result["verdicts"][0]["error"] is None
    assert sum(result["verdicts"][0]["scores"].values()) == pytest.approx(1.0, abs=1e-4)


def test_registration_and_bad_arguments(planted_guard):
    rails, _ = _rails(planted_guard, action_name="my_check")
    assert rails.runtime.action_dispatcher.has_registered("my_check")
    assert ACTION_NAME == "safeclip_check_image"
    with pytest.raises(ConfigurationError, match="needs a SafeCLIPGuard"):
        SafeCLIPImageRail("llava-1.5")  # type: ignore[arg-type]


def test_on_error_raise_still_keeps_the_llm_out(planted_guard):
    rails, fake = _rails(planted_guard.with_options(on_error="raise"))
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}
    out = rails.generate(messages=[{"role": "user", "content": [part]}])
    assert "internal error" in out["content"]  # NeMo's answer to a failing action
    assert fake.i == 0
