"""SafeCLIP as LangChain 1.x agent middleware: images are checked before every model call.

``before_model`` runs ahead of each model call of a ``create_agent`` loop, so every image of
the conversation (every role: the user's, a tool's result, an image in an AI or system
message) is judged before any model sees it, and only the judged bytes are forwarded. All
images of the conversation go through one guard batch; images already checked in earlier
turns or steps come from the guard's hash cache.

What the middleware writes back is persisted in the agent state (messages are replaced by
id): the state shows what the model saw, and a redacted image stays redacted in later turns.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from langchain.agents.middleware.types import AgentMiddleware, AgentState, hook_config
from langgraph.runtime import Runtime

from safeclip_guardrail import ConfigurationError, GuardConfig, SafeCLIPGuard
from safeclip_guardrail.langchain import GuardOutcome, aguard_messages, guard_messages
from safeclip_guardrail_langchain._actions import (
    AgentAction,
    config_for,
    message_updates,
    roles_to_skip,
)

__all__ = ["SafeCLIPMiddleware"]


class SafeCLIPMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Check the conversation's images before each model call of an agent.

    Actions on a flagged image (per-class ``policy`` of the guard's config still applies):

    - ``rewrite`` (the paper's method): prepend the safety instruction to the message
      holding the image; the vision-language model then refuses with a reason.
    - ``redact``: replace the image by a short text placeholder, then call the model.
    - ``end`` (default): end the run with a refusal ``AIMessage``; the model is not called,
      and the flagged image is redacted in the state.
    - ``error``: raise :class:`~safeclip_guardrail.GuardrailViolation` out of the agent.
    - ``annotate``: only record the verdicts in the messages' ``response_metadata``.

    An unreadable image fails closed (``end``) under the guard's default ``on_error``.

    ``skip_roles`` names roles whose images are not judged (e.g. ``("tool",)`` when only
    your own tools write tool messages); empty by default.
    """

    def __init__(self, guard: SafeCLIPGuard, *, action: AgentAction = "end",
                 skip_roles: Collection[str] = ()) -> None:
        if not isinstance(guard, SafeCLIPGuard):
            msg = (f"SafeCLIPMiddleware needs a SafeCLIPGuard, got {type(guard).__name__}; "
                   "build one with SafeCLIPGuard.from_pretrained(...)")
            raise ConfigurationError(msg)
        super().__init__()
        self.guard = guard
        self.action = action
        self.skip_roles: tuple[str, ...] = roles_to_skip(
            skip_roles, owner="SafeCLIPMiddleware")
        """Roles whose images are not judged (empty: every role is)."""
        self.config: GuardConfig = config_for(guard, action)
        """The guard's config with the mode for ``action``; what the intervention uses."""
        self.tools = []

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: AgentState[Any],
                     runtime: Runtime[Any]) -> dict[str, Any] | None:
        messages = state["messages"]
        outcome = guard_messages(self.guard, messages, config=self.config,
                                 skip_roles=self.skip_roles)
        return _update(messages, outcome)

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: AgentState[Any],
                            runtime: Runtime[Any]) -> dict[str, Any] | None:
        messages = state["messages"]
        outcome = await aguard_messages(self.guard, messages, config=self.config,
                                        skip_roles=self.skip_roles)
        return _update(messages, outcome)


def _update(messages: list[Any], outcome: GuardOutcome) -> dict[str, Any] | None:
    updates: list[Any] = message_updates(messages, outcome.messages)
    if outcome.blocked and outcome.refusal is not None:
        return {"messages": [*updates, outcome.refusal], "jump_to": "end"}
    return {"messages": updates} if updates else None
