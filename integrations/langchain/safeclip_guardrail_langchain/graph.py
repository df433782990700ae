"""LangGraph building blocks: a guard node over a messages state and a router after it.

::

    builder = StateGraph(MessagesState)
    builder.add_node("safeclip", safeclip_node(guard))
    builder.add_node("model", call_model)
    builder.add_node("refusal", log_refusal)           # or route "blocked" straight to END
    builder.add_edge(START, "safeclip")
    builder.add_conditional_edges("safeclip", safeclip_router(blocked="refusal", passed="model"),
                                  ["refusal", "model"])

The node writes its decision into the messages themselves, so it works with any state
that has a messages list (``MessagesState`` or your own): when the request is blocked it
appends the refusal ``AIMessage`` (carrying the GuardResult in ``response_metadata``), and
the router sends the graph to the refusal branch exactly when the newest message is that
refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableLambda

from safeclip_guardrail import ConfigurationError, SafeCLIPGuard
from safeclip_guardrail.langchain import (
    GuardOutcome,
    aguard_messages,
    guard_messages,
    guard_result_of,
)
from safeclip_guardrail_langchain._actions import (
    AgentAction,
    config_for,
    message_updates,
    roles_to_skip,
)

__all__ = ["is_blocked", "safeclip_node", "safeclip_router"]


def safeclip_node(guard: SafeCLIPGuard, *, action: AgentAction = "end",
                  messages_key: str = "messages", skip_roles: Collection[str] = (),
                  name: str = "safeclip") -> RunnableLambda[Any, dict[str, Any]]:
    """A graph node (sync and async) that guards ``state[messages_key]``.

    ``action`` is as in :class:`~safeclip_guardrail_langchain.SafeCLIPMiddleware`; with
    ``end`` a flagged request gets a refusal appended and :func:`safeclip_router` routes it
    to the refusal branch. With ``error`` the node raises ``GuardrailViolation``.
    Every role is judged unless named in ``skip_roles``.
    """
    if not isinstance(guard, SafeCLIPGuard):
        msg = (f"safeclip_node needs a SafeCLIPGuard, got {type(guard).__name__}; "
               "build one with SafeCLIPGuard.from_pretrained(...)")
        raise ConfigurationError(msg)
    config = config_for(guard, action)
    roles = roles_to_skip(skip_roles, owner="safeclip_node")

    def run(state: Mapping[str, Any]) -> dict[str, Any]:
        messages = _messages(state, messages_key)
        outcome = guard_messages(guard, messages, config=config,
                                 skip_roles=roles)
        return _update(messages, outcome, messages_key)

    async def arun(state: Mapping[str, Any]) -> dict[str, Any]:
        messages = _messages(state, messages_key)
        outcome = await aguard_messages(guard, messages, config=config,
                                        skip_roles=roles)
        return _update(messages, outcome, messages_key)

    return RunnableLambda(run, afunc=arun, name=name)


def is_blocked(messages: list[BaseMessage]) -> bool:
    """True when the newest message is a SafeCLIP refusal (the guard blocked the request)."""
    if not messages or not isinstance(messages[-1], AIMessage):
        return False
    result = guard_result_of(messages[-1])
    return result is not None and result.action == "block"


def safeclip_router(*, blocked: str = "refusal", passed: str = "model",
                    messages_key: str = "messages") -> Callable[[Mapping[str, Any]], str]:
    """A conditional-edge function: ``blocked`` after a refusal, else ``passed``."""

    def route(state: Mapping[str, Any]) -> str:
        return blocked if is_blocked(_messages(state, messages_key)) else passed

    return route


def _messages(state: Mapping[str, Any], key: str) -> list[BaseMessage]:
    try:
        messages = state[key]
    except (KeyError, TypeError):
        msg = (f"the graph state has no {key!r} list; pass messages_key= to name the key "
               "that holds the conversation")
        raise ConfigurationError(msg) from None
    return list(messages)


def _update(messages: list[BaseMessage], outcome: GuardOutcome, key: str) -> dict[str, Any]:
    updates: list[BaseMessage] = message_updates(messages, outcome.messages)
    if outcome.blocked and outcome.refusal is not None:
        updates.append(outcome.refusal)
    return {key: updates}
