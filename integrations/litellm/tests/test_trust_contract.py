"""The LiteLLM guardrail keeps the guard's promise: the trust contract, through LiteLLM.

``litellm.acompletion(..., guardrails=["safeclip"])`` with the guardrail as a callback
(``pre_call``: LiteLLM runs the hook and sends what it returns) in front of a LiteLLM
custom provider that records what the model would be sent, for the conversations LiteLLM's
SDK accepts; and the hook as the proxy calls it, for every conversation (the model receives
``data["messages"]`` after it). A refusal is the
guardrail's HTTPException. Only conversations that can travel as JSON (no raw bytes) are
sent: LiteLLM's clients serialise requests.

(``during_call`` is not a surface of this contract: LiteLLM sends the request while the
moderation hook runs, so it can refuse an answer but never keep a picture from the model.)
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import litellm
from fastapi import HTTPException
from litellm.llms.custom_llm import CustomLLM
from litellm.utils import custom_llm_setup, validate_and_fix_openai_messages
from safeclip_guardrail_litellm import SafeCLIPLiteLLMGuardrail

from safeclip_guardrail import ImageInputError
from safeclip_guardrail.testing.trust import (
    Conversation,
    Outcome,
    Received,
    TrustContract,
    as_dicts,
    json_safe,
    scan,
)


class _RecordingLLM(CustomLLM):
    """The VLM behind LiteLLM: records the messages it is sent, answers a fixed text."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[list[dict[str, Any]]] = []

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
        self.received.append(copy.deepcopy(list(messages)))
        return litellm.ModelResponse(choices=[{"message": {"role": "assistant",
                                                           "content": "a photo of a cat"}}])


class _LiteLLMSurface(TrustContract):
    """The guardrail registered as LiteLLM's callback, a recording provider behind it."""

    def start(self) -> None:
        self.rail = SafeCLIPLiteLLMGuardrail(guard=self.images.guard, guardrail_name="safeclip",
                                             event_hook="pre_call", default_on=True)
        self.llm = _RecordingLLM()
        self.saved = (list(litellm.custom_provider_map), list(litellm.callbacks))
        litellm.custom_provider_map = [*self.saved[0],
                                       {"provider": "recorder", "custom_handler": self.llm}]
        custom_llm_setup()
        litellm.callbacks = [self.rail]

    def stop(self) -> None:
        litellm.custom_provider_map, litellm.callbacks = self.saved

    def supports(self, conversation: Conversation) -> bool:
        return json_safe(conversation)  # LiteLLM's clients send JSON

    def send(self, messages: list[dict[str, Any]], style: str) -> Any:
        """What the model is sent (raises the guardrail's HTTPException when refused)."""
        raise NotImplementedError

    def run(self, conversation: Conversation, style: str) -> Outcome:
        messages = copy.deepcopy(as_dicts(conversation))
        self.llm.received.clear()
        received = Received()
        try:
            sent = self.send(messages, style)
        except HTTPException as exc:
            assert exc.status_code == 400, exc.detail
            assert not self.llm.received
            if "categories" not in exc.detail:  # on_error="raise": the guard's error, as a 400
                raise ImageInputError(exc.detail["error"]) from exc
            return Outcome(True, received, False)
        scan(sent, received)
        return Outcome(False, received, True)


class TestLiteLLMCompletion(_LiteLLMSurface):
    """``litellm.acompletion(..., guardrails=["safeclip"])``: the SDK runs the hook."""

    name = "litellm_acompletion"
    styles = ("acompletion",)

    def supports(self, conversation: Conversation) -> bool:
        # LiteLLM's own limit: user messages hold OpenAI chat content only (the SDK refuses
        # the rest before any provider is called; the pre_call_hook class runs them all).
        # Its check reads the block type alone, so it lets in a LangChain v1 ``file`` block
        # and an Anthropic ``document``, which no OpenAI endpoint takes; the judged picture
        # written back in their own dialect (an ``image`` block) it then refuses: left out.
        dicts = as_dicts(conversation)
        try:
            validate_and_fix_openai_messages(copy.deepcopy(dicts))
        except Exception:  # LiteLLM raises a bare Exception for an invalid message
            return False
        blocks = [b for m in dicts if m.get("role") == "user" and isinstance(m.get("content"), list)
                  for b in m["content"] if isinstance(b, dict)]
        if any((b.get("type") == "file" and "file" not in b) or b.get("type") == "document"
               for b in blocks):
            return False
        return super().supports(conversation)

    def send(self, messages: list[dict[str, Any]], style: str) -> Any:
        asyncio.run(litellm.acompletion(model="recorder/vlm", messages=messages,
                                        guardrails=["safeclip"]))
        return self.llm.received


class TestLiteLLMPreCallHook(_LiteLLMSurface):
    """The hook as the proxy calls it: the model is sent ``data["messages"]`` after it."""

    name = "litellm_pre_call_hook"
    styles = ("pre_call_hook",)

    def send(self, messages: list[dict[str, Any]], style: str) -> Any:
        data = {"model": "gpt-4o", "messages": messages}
        return asyncio.run(self.rail.async_pre_call_hook(None, None, data, "acompletion"))["messages"]
