"""LangChain messages <-> the framework-free :class:`~safeclip_guardrail.messages.extraction.MessageView`.

The extraction layer reads raw content (every block shape, every role) and writes back the
judged images; this module only converts, and keeps the GuardResult annotation in
``response_metadata``, which no provider payload includes.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage, ChatMessage

from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.langchain._metadata import as_metadata
from safeclip_guardrail.messages.extraction import MessageView
from safeclip_guardrail.result import GuardResult

__all__ = [
    "METADATA_KEY",
    "annotate",
    "guard_result_of",
    "message_of_view",
    "role_of",
    "view_of_message",
]

METADATA_KEY = "safeclip"
"""Key in ``message.response_metadata`` that holds the message's GuardResult (see ``_metadata``).

``response_metadata`` is never part of a provider request (``convert_to_openai_messages``
and the partner packages build payloads from ``content``, roles, names and tool calls),
so an annotation cannot leak into what the model sees.
"""

_ROLES = {"human": "user", "ai": "assistant", "AIMessageChunk": "assistant",
          "HumanMessageChunk": "user"}


def role_of(message: BaseMessage) -> str:
    """The message's role in provider terms (``user``, ``assistant``, ``system``, ``tool``...)."""
    if isinstance(message, ChatMessage):
        return {"human": "user", "ai": "assistant"}.get(message.role.lower(), message.role.lower())
    return _ROLES.get(message.type, message.type)


def view_of_message(message: BaseMessage) -> MessageView:
    if not isinstance(message, BaseMessage):
        msg = (f"expected LangChain messages, got {type(message).__name__}; convert dicts with "
               "langchain_core.messages.convert_to_messages first")
        raise ConfigurationError(msg)
    return MessageView(role=role_of(message), content=message.content,
                       extras=message.additional_kwargs)


def message_of_view(message: BaseMessage, view: MessageView) -> BaseMessage:
    """A copy of ``message`` holding the view's (guarded) content and additional kwargs."""
    update: dict[str, Any] = {"content": view.content}
    if view.extras != message.additional_kwargs:
        update["additional_kwargs"] = dict(view.extras)
    return message.model_copy(update=update)


def annotate(message: BaseMessage, result: GuardResult) -> BaseMessage:
    """A copy of ``message`` carrying ``result`` in ``response_metadata`` (see METADATA_KEY)."""
    meta = {**message.response_metadata, METADATA_KEY: as_metadata(result)}
    return message.model_copy(update={"response_metadata": meta})


def guard_result_of(message: BaseMessage) -> GuardResult | None:
    """The GuardResult a SafeCLIP guardrail attached to ``message``, if any."""
    raw = message.response_metadata.get(METADATA_KEY)
    if raw is None:
        return None
    if isinstance(raw, GuardResult):
        return raw
    return GuardResult.model_validate(raw)
