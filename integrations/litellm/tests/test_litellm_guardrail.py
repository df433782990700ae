"""The guardrail inside LiteLLM's own machinery: completions with mock responses, no network."""

from __future__ import annotations

import asyncio
from pathlib import Path

import litellm
import pytest
import yaml
from fastapi import HTTPException
from litellm.proxy.types_utils.utils import get_instance_fn
from litellm.types.guardrails import LitellmParams
from safeclip_guardrail_litellm import SafeCLIPLiteLLMGuardrail

from safeclip_guardrail import DEFAULT_SAFE_INSTRUCTION
from safeclip_guardrail.serve import BackgroundServer, create_app

EXAMPLE = Path(__file__).parents[1] / "safeclip_guardrail_litellm" / "examples" / "config.yaml"


def _image_only(url: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]


def _complete(messages: list[dict], model: str = "gpt-4o") -> str:
    mock = {"mock_response": "a photo of a cat"} if model == "gpt-4o" else {}

    async def run() -> str:
        resp = await litellm.acompletion(model=model, messages=messages, guardrails=["safeclip"],
                                         **mock)
        return str(resp.choices[0].message.content)

    return asyncio.run(run())


def _from_config(**overrides: object) -> SafeCLIPLiteLLMGuardrail:
    """Build the guardrail the way LiteLLM's registry does from the example config.yaml."""
    entry = yaml.safe_load(EXAMPLE.read_text())["guardrails"][0]
    raw = {**entry["litellm_params"], **overrides}
    params = LitellmParams(**raw)
    extra = {k: v for k, v in params.model_dump(exclude_none=True).items()
             if k not in ("guardrail", "mode", "default_on", "stream_scope")}
    cls = get_instance_fn(raw["guardrail"], config_file_path=str(EXAMPLE))
    return cls(guardrail_name=entry["guardrail_name"], event_hook=params.mode,
               default_on=params.default_on, **extra)


def test_image_only_request_blocked_clean_one_answered(guard, image_url, recorder):
    rail = SafeCLIPLiteLLMGuardrail(guard=guard, guardrail_name="safeclip", event_hook="pre_call",
                                    default_on=True)
    litellm.callbacks = [rail, recorder]
    assert _complete(_image_only(image_url("neutral"))) == "a photo of a cat"
    assert len(recorder.calls) == 1
    with pytest.raises(HTTPException) as err:
        _complete(_image_only(image_url("gun")))
    assert err.value.status_code == 400
    assert err.value.detail["categories"] == ["gun"] and "gun" in err.value.detail["error"]
    assert len(recorder.calls) == 1  # the model never saw the flagged request


def test_unreadable_image_never_reaches_the_model(guard, recorder):
    rail = SafeCLIPLiteLLMGuardrail(guard=guard, guardrail_name="safeclip", event_hook="pre_call",
                                    default_on=True)
    litellm.callbacks = [rail, recorder]
    bad = "data:image/png;base64,bm90IGFuIGltYWdl"
    with pytest.raises(HTTPException) as err:
        _complete(_image_only(bad))
    assert err.value.detail["categories"] == ["unreadable"]
    assert recorder.calls == []


def test_rewrite_prepends_the_safe_instruction(guard, image_url, recorder, vlm):
    rail = SafeCLIPLiteLLMGuardrail(guard=guard, guardrail_name="safeclip", event_hook="pre_call",
                                    default_on=True, safeclip_action="rewrite")
    litellm.callbacks = [rail, recorder]
    flagged = image_url("knife")
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                             {"type": "image_url", "image_url": {"url": flagged}}]}]
    assert _complete(messages, model="recorder/vlm") == "a photo of a cat"
    (sent,) = vlm.received
    text = sent[1]["content"][0]["text"]
    assert text.startswith(DEFAULT_SAFE_INSTRUCTION) and text.endswith("what is this?")
    assert sent[1]["content"][1]["image_url"]["url"] == flagged  # the judged bytes, one source


def test_anthropic_messages_and_during_call(guard, image_url):
    rail = SafeCLIPLiteLLMGuardrail(guard=guard, guardrail_name="safeclip",
                                    event_hook="during_call", default_on=True)
    b64 = image_url("porn").split(",", 1)[1]
    anthropic = {"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64}},
        {"type": "text", "text": "describe"}]}]}
    with pytest.raises(HTTPException) as err:
        asyncio.run(rail.async_moderation_hook(data=anthropic, user_api_key_dict=None,
                                               call_type="anthropic_messages"))
    assert err.value.detail["categories"] == ["porn"]
    clean = {"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": image_url("neutral").split(",", 1)[1]}}]}]}
    assert asyncio.run(rail.async_moderation_hook(data=clean, user_api_key_dict=None,
                                                  call_type="anthropic_messages")) is None
    pre = SafeCLIPLiteLLMGuardrail(guard=guard, guardrail_name="safeclip", event_hook="pre_call",
                                   default_on=True)
    with pytest.raises(HTTPException):
        asyncio.run(pre.async_pre_call_hook(None, None, anthropic, "anthropic_messages"))


def test_not_configured_twice():
    with pytest.raises(Exception, match="exactly one"):
        SafeCLIPLiteLLMGuardrail(guardrail_name="safeclip")


@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_service_mode_from_the_example_config(guard, planted, image_url, recorder, monkeypatch):
    monkeypatch.setenv("SAFECLIP_API_KEY", "proxy-key")
    app = create_app(guard, api_keys=["proxy-key"])
    with BackgroundServer(app) as srv:
        rail = _from_config(api_base=srv.url)
        litellm.callbacks = [rail, recorder]
        assert _complete(_image_only(image_url("neutral"))) == "a photo of a cat"
        with pytest.raises(HTTPException) as err:
            _complete(_image_only(image_url("blood")))
        assert err.value.detail["categories"] == ["blood"]
        assert app.state.metrics.value("safeclip_images_total") == 2
        wrong = _from_config(api_base=srv.url, api_key="not-the-key")
        litellm.callbacks = [wrong, recorder]
        with pytest.raises(HTTPException) as err:
            _complete(_image_only(image_url("neutral")))
        assert err.value.status_code == 503 and "401" in err.value.detail["error"]
    # the service is gone: fail closed
    litellm.callbacks = [rail, recorder]
    with pytest.raises(HTTPException) as err:
        _complete(_image_only(image_url("neutral")))
    assert err.value.status_code == 503
    assert len(recorder.calls) == 1


@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_litellm_generic_guardrail_api_against_the_live_service(guard, image_url):
    from litellm.exceptions import GuardrailRaisedException
    from litellm.proxy.guardrails.guardrail_hooks.generic_guardrail_api.generic_guardrail_api import (
        GenericGuardrailAPI,
    )

    app = create_app(guard, api_keys=["generic-key"])
    with BackgroundServer(app) as srv:
        generic = GenericGuardrailAPI(api_base=srv.url, api_key="generic-key",
                                      guardrail_name="safeclip-generic")

        async def check(urls: list[str]) -> object:
            return await generic.apply_guardrail(inputs={"texts": ["hi"], "images": urls},
                                                 request_data={}, input_type="request")

        out = asyncio.run(check([image_url("neutral")]))
        assert out["texts"] == ["hi"]
        with pytest.raises(GuardrailRaisedException, match="gun"):
            asyncio.run(check([image_url("neutral"), image_url("gun")]))


def test_responses_api_input_items_are_judged(guard, image_url):
    rail = SafeCLIPLiteLLMGuardrail(guard=guard, guardrail_name="safeclip", event_hook="pre_call",
                                    default_on=True)
    data = {"model": "gpt-4o", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "what is it?"},
        {"type": "input_image", "image_url": image_url("gun")}]}]}
    with pytest.raises(HTTPException) as err:
        asyncio.run(rail.async_pre_call_hook(None, None, data, "responses"))
    assert err.value.detail["categories"] == ["gun"]
    clean = {"model": "gpt-4o", "input": "just text"}
    assert asyncio.run(rail.async_pre_call_hook(None, None, clean, "responses")) is clean


@pytest.mark.parametrize("options", [
    {"safeclip_action": "blok", "api_base": "http://127.0.0.1:1"},
    {"safeclip_timeout": "soon", "api_base": "http://127.0.0.1:1"},
    {"api_base": "http://127.0.0.1:1", "safeclip_model": "llava-1.5"},
    {"api_base": "http://127.0.0.1:1", "api_key": "os.environ/SAFECLIP_TEST_UNSET_KEY"},
    {"api_base": "http://127.0.0.1:1", "event_hook": "post_call"},
])
def test_a_misconfiguration_is_never_a_value_error(options, monkeypatch):
    """LiteLLM's proxy starts *without* a guardrail whose constructor raises ValueError or
    TypeError (logged, then skipped): every image would pass. Ours raises UsageError."""
    from safeclip_guardrail.errors import UsageError

    monkeypatch.delenv("SAFECLIP_TEST_UNSET_KEY", raising=False)
    with pytest.raises(UsageError, match="misconfigured") as err:
        SafeCLIPLiteLLMGuardrail(guardrail_name="safeclip", default_on=True, **options)
    assert not isinstance(err.value, (ValueError, TypeError))


def test_a_guard_that_cannot_load_refuses_without_naming_paths(image_url, tmp_path):
    missing = str(tmp_path / "no-such-model")
    rail = SafeCLIPLiteLLMGuardrail(safeclip_model=missing, guardrail_name="safeclip",
                                    event_hook="pre_call", default_on=True)
    data = {"model": "gpt-4o", "messages": _image_only(image_url("neutral"))}
    with pytest.raises(HTTPException) as err:
        asyncio.run(rail.async_pre_call_hook(None, None, data, "acompletion"))
    assert err.value.status_code == 503
    assert str(tmp_path) not in str(err.value.detail)
