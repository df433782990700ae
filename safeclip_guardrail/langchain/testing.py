"""LangChain pieces of the trust contract: a recording chat model, converters, call styles.

:class:`RecordingChatModel` is langchain-core's ``GenericFakeChatModel`` recording every
request; :meth:`RecordingChatModel.received` hands what it got to the referee
(:func:`safeclip_guardrail.testing.trust.scan`). :func:`as_langchain` turns the contract's
framework-free conversations into LangChain messages, :func:`call` runs a Runnable in one
of :data:`RUNNABLE_STYLES`. Used by the LangChain surfaces' subclasses of
:class:`~safeclip_guardrail.testing.trust.TrustContract` (``tests/`` and the
``safeclip-guardrail-langchain`` integration).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatResult
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable
from pydantic import Field

from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.testing.trust import Conversation, Message, Received, scan

__all__ = ["ANSWER", "RUNNABLE_STYLES", "RecordingChatModel", "as_langchain", "call", "plain",
           "received_from", "text_of"]

ANSWER = "a helpful answer"
"""What :class:`RecordingChatModel` answers (a refusal is anything else)."""
RUNNABLE_STYLES = ("invoke", "ainvoke", "batch", "abatch", "stream", "astream")
"""Every way a Runnable is called."""


def _answers() -> Iterator[AIMessage | str]:
    return itertools.cycle([ANSWER])


class RecordingChatModel(GenericFakeChatModel):
    """langchain-core's GenericFakeChatModel recording every request (sync, async, stream)."""

    messages: Iterator[AIMessage | str] = Field(default_factory=_answers)
    requests: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.requests.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> RecordingChatModel:
        return self  # the scripted answer decides; agents bind tools before calling

    def received(self) -> Received:
        """Every picture, URL, string and PDF of every request."""
        return received_from(self.requests)


def plain(value: Any) -> Any:
    """``value`` with LangChain messages as ``(content, additional_kwargs)`` and prompt
    values as their messages, so the framework-free referee reads every field."""
    if isinstance(value, PromptValue):
        return plain(value.to_messages())
    if isinstance(value, BaseMessage):
        return [plain(value.content), plain(value.additional_kwargs)]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def received_from(value: Any) -> Received:
    """What the referee finds in ``value`` (messages, prompt values, outputs, dicts)."""
    out = Received()
    scan(plain(value), out)
    return out


def as_langchain(conversation: Conversation) -> list[Any]:
    """The conversation with each :class:`Message` as its LangChain class (dicts and
    LangChain messages kept: LangChain converts dicts itself)."""
    return [_message(m) if isinstance(m, Message) else m for m in conversation]


def _message(m: Message) -> BaseMessage:
    kw: dict[str, Any] = {"additional_kwargs": dict(m.extras)}
    if m.kind == "human":
        return HumanMessage(content=m.content, **kw)
    if m.kind == "ai":
        return AIMessage(content=m.content, tool_calls=[dict(c) for c in m.tool_calls], **kw)
    if m.kind == "system":
        return SystemMessage(content=m.content, **kw)
    if m.kind == "tool":
        return ToolMessage(content=m.content, tool_call_id=m.tool_call_id, **kw)
    if m.kind == "function":
        return FunctionMessage(content=m.content, name=m.name, **kw)
    return ChatMessage(content=m.content, role=m.role, **kw)


def call(runnable: Runnable[Any, Any], value: Any, style: str) -> Any:
    """Run ``runnable`` on ``value`` in ``style``; batches return their exception in place,
    streams return the list of chunks."""
    if style == "invoke":
        return runnable.invoke(value)
    if style == "ainvoke":
        return asyncio.run(runnable.ainvoke(value))
    if style == "batch":
        return runnable.batch([value], return_exceptions=True)[0]
    if style == "abatch":
        return asyncio.run(runnable.abatch([value], return_exceptions=True))[0]
    if style == "stream":
        return list(runnable.stream(value))
    if style == "astream":
        async def drain() -> list[Any]:
            return [chunk async for chunk in runnable.astream(value)]
        return asyncio.run(drain())
    msg = f"unknown call style {style!r}; use one of {RUNNABLE_STYLES}"
    raise ConfigurationError(msg)


def text_of(out: Any) -> str:
    """The text of an answer, a chunk or a list of chunks."""
    if isinstance(out, list):
        return "".join(text_of(o) for o in out)
    return str(getattr(out, "content", out))
