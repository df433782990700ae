"""The input shapes a guardrail accepts, and how guarded messages go back into each (private).

A guardrail takes a ``str``, a message, a list of messages, a ``PromptValue`` or a dict with
``"messages"``, and returns the same shape, always built from the guarded messages (never
from the original value, which may hold what the guard removed or re-encoded). This module
is the one place that knows those shapes, shared by the Runnable, ``wrap`` and the
composition helpers, so none of them imports another to reach it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, convert_to_messages
from langchain_core.prompt_values import (
    ChatPromptValue,
    ImagePromptValue,
    PromptValue,
    StringPromptValue,
)

from safeclip_guardrail.errors import ConfigurationError

__all__ = ["Shaped", "shape", "try_shape"]


@dataclass(frozen=True)
class Shaped:
    """The messages inside one input, and how to put guarded messages back in its shape."""

    messages: list[BaseMessage]
    rebuild: Callable[[list[BaseMessage]], Any]


def try_shape(value: Any) -> Shaped | Exception:
    try:
        return shape(value)
    except (TypeError, ValueError) as exc:
        return exc


def shape(value: Any) -> Shaped:
    """The messages inside ``value`` and how to put guarded messages back in its shape."""
    if isinstance(value, str):
        return Shaped([HumanMessage(value)], _text_or_messages)
    if isinstance(value, BaseMessage):
        return Shaped([value], lambda ms: ms[0])
    if isinstance(value, ChatPromptValue):
        return Shaped(list(value.messages), lambda ms: ChatPromptValue(messages=ms))
    if isinstance(value, ImagePromptValue):  # its messages hold a block with no type
        block = {"type": "image_url", "image_url": dict(value.image_url)}
        return Shaped([HumanMessage(content=[block])], _prompt_value)
    if isinstance(value, PromptValue):  # StringPromptValue and others
        return Shaped(value.to_messages(), _prompt_value)
    if isinstance(value, Mapping) and "messages" in value:
        msgs = convert_to_messages(value["messages"])
        return Shaped(msgs, lambda ms: {**value, "messages": ms})
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return Shaped(convert_to_messages(value), lambda ms: ms)
    msg = (f"SafeCLIPGuardrail cannot read an input of type {type(value).__name__}; pass a str, "
           "a message, a list of messages, a PromptValue or a dict with a 'messages' key")
    raise ConfigurationError(msg)


# Every rebuild works from the GUARDED messages, never from the original value: a string
# that was a flagged data URL comes back redacted, an animation comes back as its judged frame.
def _text_or_messages(messages: list[BaseMessage]) -> Any:
    """A ``str`` input's output: the guarded text, or the guarded messages if not text."""
    if len(messages) == 1 and isinstance(messages[0].content, str):
        return messages[0].content
    return messages


def _prompt_value(messages: list[BaseMessage]) -> PromptValue:
    """A ``StringPromptValue`` stays one when the guarded content is text; any other
    prompt value (``ImagePromptValue``...) becomes the ChatPromptValue of its messages."""
    if len(messages) == 1 and isinstance(messages[0], HumanMessage) \
            and isinstance(messages[0].content, str):
        return StringPromptValue(text=messages[0].content)
    return ChatPromptValue(messages=messages)
