"""The dict path and the HTTP service as surfaces of the trust contract.

- ``dicts``: provider dict messages through ``conversation.guard_dict_messages`` (what NeMo,
  the service and the LiteLLM guardrail build on) and ``aguard_conversations``; the model
  receives ``outcome.as_dicts(...)``.
- ``service_litellm``: a real ``safeclip serve`` app on loopback, LiteLLM's Generic
  Guardrail API (``POST /beta/litellm_basic_guardrail_api`` with ``structured_messages``).
  LiteLLM forwards the ORIGINAL request when the answer is ``NONE``, so that is what the
  model receives: the route may only say NONE when every payload of it was judged clean.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.messages.conversation import aguard_conversations, guard_dict_messages
from safeclip_guardrail.messages.extraction import view_of_dict
from safeclip_guardrail.testing.trust import (
    Conversation,
    Outcome,
    Received,
    TrustContract,
    as_dicts,
    json_safe,
    scan,
)

LOOPBACK = ["127.0.0.1"]


class DictsSurface(TrustContract):
    """``guard_dict_messages`` and ``aguard_conversations`` over provider dicts."""

    name = "dicts"
    styles = ("guard_dict_messages", "aguard_conversations")

    def run(self, conversation: Conversation, style: str) -> Outcome:
        guard = self.images.guard
        dicts = as_dicts(conversation)
        config = guard.config.replace(mode="block")
        if style == "guard_dict_messages":
            outcome = guard_dict_messages(guard, dicts, config=config)
        else:
            views = [view_of_dict(d) for d in dicts]
            found = asyncio.run(aguard_conversations(guard, [views], config=config))[0]
            if isinstance(found, Exception):
                raise found
            outcome = found
        received = Received()
        if not outcome.blocked:
            scan(outcome.as_dicts(dicts), received)
        return Outcome(outcome.blocked, received, not outcome.blocked)


class ServiceLiteLLMRouteSurface(TrustContract):
    """A served guard on loopback, called the way LiteLLM's Generic Guardrail API calls it."""

    name = "service_litellm"
    styles = ("post",)
    pytestmark: ClassVar[list[Any]] = [pytest.mark.enable_socket, pytest.mark.allow_hosts(LOOPBACK)]

    def start(self) -> None:
        from safeclip_guardrail.serve import BackgroundServer, create_app

        self.server = BackgroundServer(create_app(self.images.guard.with_options(mode="block")))
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def supports(self, conversation: Conversation) -> bool:
        return json_safe(conversation)  # it travels as JSON

    def run(self, conversation: Conversation, style: str) -> Outcome:
        import httpx

        dicts = as_dicts(conversation)
        body = {"input_type": "request", "texts": [], "structured_messages": dicts}
        r = httpx.post(f"{self.server.url}/beta/litellm_basic_guardrail_api", json=body,
                       timeout=60)
        if r.status_code == 400 and r.json()["error"]["code"] == "unreadable_image":
            # on_error="raise": the guardrail call fails, so LiteLLM fails the request
            raise ImageInputError(r.json()["error"]["message"])
        assert r.status_code == 200, r.text[:300]
        answer = r.json()
        action = answer["action"]
        assert action in ("BLOCKED", "NONE", "GUARDRAIL_INTERVENED"), action
        received = Received()
        if action == "NONE":  # LiteLLM sends the original request on
            scan(dicts, received)
        elif action == "GUARDRAIL_INTERVENED":  # LiteLLM writes these messages into the request
            scan(answer["structured_messages"], received)
        return Outcome(action == "BLOCKED", received, action != "BLOCKED")
