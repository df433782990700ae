"""The dict path and the HTTP service as surfaces of the trust matrix.

- ``dicts``: provider dict messages through ``conversation.guard_dict_messages`` (what NeMo,
  the service and the LiteLLM guardrail build on) and ``aguard_conversations``; the model
  receives ``outcome.as_dicts(...)``.
- ``service_litellm``: a real ``safeclip serve`` app on loopback, LiteLLM's Generic
  Guardrail API (``POST /beta/litellm_basic_guardrail_api`` with ``structured_messages``).
  LiteLLM forwards the ORIGINAL request when the answer is ``NONE``, so that is what the
  model receives: the route may only say NONE when every payload of it was judged clean.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from safeclip_guardrail.conversation import aguard_conversations, guard_dict_messages
from safeclip_guardrail.extraction import view_of_dict
from tests._trust import Conversation, Images, Outcome, Received, Surface, run_async, scan

LOOPBACK = ["127.0.0.1"]


def as_dicts(conv: Conversation) -> list[dict[str, Any]]:
    """Provider dicts holding the raw content and every extra field (no LangChain rewriting)."""
    from safeclip_guardrail.langchain._messages import role_of

    return [m if isinstance(m, dict) else
            {"role": role_of(m), "content": m.content, **m.additional_kwargs} for m in conv]


# ---------------------------------------------------------------------- dict path
def _dict_path(imgs: Images) -> Any:
    def run(conv: Conversation, style: str) -> Outcome:
        dicts = as_dicts(conv)
        config = imgs.guard.config.replace(mode="block")
        if style == "guard_dict_messages":
            outcome = guard_dict_messages(imgs.guard, dicts, config=config)
        else:
            views = [view_of_dict(d) for d in dicts]
            found = run_async(aguard_conversations(imgs.guard, [views], config=config))[0]
            if isinstance(found, Exception):
                raise found
            outcome = found
        received = Received()
        if not outcome.blocked:
            scan(outcome.as_dicts(dicts), received)
        return Outcome(outcome.blocked, received, not outcome.blocked)
    return run


def dict_surface() -> Surface:
    return Surface("dicts", ("guard_dict_messages", "aguard_conversations"), _dict_path)


# ---------------------------------------------------------------------- the service
def _json_ok(conv: Conversation) -> bool:
    try:
        json.dumps(as_dicts(conv))
    except TypeError:
        return False
    return True


class _ServiceRunner:
    """A served guard on loopback; ``close()`` stops it."""

    def __init__(self, imgs: Images) -> None:
        from safeclip_guardrail.serve import BackgroundServer, create_app

        self.server = BackgroundServer(create_app(imgs.guard.with_options(mode="block")))
        self.server.start()

    def __call__(self, conv: Conversation, style: str) -> Outcome:
        import httpx

        dicts = as_dicts(conv)
        body = {"input_type": "request", "texts": [], "structured_messages": dicts}
        r = httpx.post(f"{self.server.url}/beta/litellm_basic_guardrail_api", json=body,
                       timeout=60)
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

    def close(self) -> None:
        self.server.stop()


def service_surface() -> Surface:
    return Surface("service_litellm", ("post",), _ServiceRunner, supports=_json_ok,
                   marks=(pytest.mark.enable_socket, pytest.mark.allow_hosts(LOOPBACK)))
