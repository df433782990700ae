"""Conversations described without a framework, and their provider-dict form.

A conversation of the trust suite is a list whose items are provider dict messages (kept
as they are, on every surface: LangChain converts them itself) or :class:`Message`\\ s, a
framework message named by its kind. A LangChain surface turns a ``Message`` into that
LangChain class (:func:`safeclip_guardrail.langchain.testing.as_langchain`); a dict surface
into the dict LangChain's own converters would read from it (:func:`as_dicts`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from safeclip_guardrail.testing.pictures import data_url

__all__ = ["Conversation", "Message", "as_dicts", "ask", "human", "image_url_block",
           "json_safe", "tool_conversation"]

Kind = Literal["human", "ai", "system", "tool", "function", "chat"]


@dataclass(frozen=True)
class Message:
    """A message of one of the kinds frameworks have, without the framework's class.

    ``kind`` is LangChain's message type (``chat`` is a ``ChatMessage`` with any ``role``);
    ``extras`` are the fields beside the content (``additional_kwargs``).
    """

    kind: Kind
    content: str | list[Any]
    extras: Mapping[str, Any] = field(default_factory=dict)
    role: str = ""
    """The role of a ``chat`` message, as written (``"User"``, ``"narrator"``...)."""
    name: str = ""
    """The function's name (a ``function`` message)."""
    tool_call_id: str = ""
    """The call a ``tool`` message answers."""
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    """The tool calls an ``ai`` message makes."""

    @property
    def provider_role(self) -> str:
        """The role a provider dict gives it (``user``, ``assistant``, ``system``...)."""
        if self.kind == "chat":
            low = self.role.lower()
            return {"human": "user", "ai": "assistant"}.get(low, low)
        return {"human": "user", "ai": "assistant"}.get(self.kind, self.kind)


Conversation: TypeAlias = list[Any]
"""Provider dict messages and :class:`Message`\\ s (or a framework's own messages, for a
surface's own tests)."""


def as_dicts(conversation: Conversation) -> list[dict[str, Any]]:
    """Provider dicts holding the raw content and every extra field (nothing rewritten)."""
    out: list[dict[str, Any]] = []
    for m in conversation:
        if isinstance(m, Message):
            out.append({"role": m.provider_role, "content": m.content, **m.extras})
        else:
            out.append(m)
    return out


def json_safe(conversation: Conversation) -> bool:
    """Whether the conversation can travel as JSON (raw bytes cannot: an HTTP client or a
    gateway refuses them before any guard runs)."""
    try:
        json.dumps(as_dicts(conversation))
    except TypeError:
        return False
    return True


def image_url_block(data: bytes) -> dict[str, Any]:
    """An OpenAI ``image_url`` block holding ``data`` as a PNG data URL."""
    return {"type": "image_url", "image_url": {"url": data_url(data)}}


def human(*blocks: Any) -> Message:
    """A user message: a question, then ``blocks``."""
    return Message("human", [{"type": "text", "text": "what is this?"}, *blocks])


def ask() -> Message:
    """A user message of text only."""
    return Message("human", "what is in the pictures?")


def tool_conversation(content: Any) -> Conversation:
    """A question, the model's tool call, and the tool's result holding ``content``."""
    call = Message("ai", "", tool_calls=({"name": "photo", "args": {}, "id": "call-1"},))
    return [ask(), call, Message("tool", content, tool_call_id="call-1")]
