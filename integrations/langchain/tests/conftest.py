"""Fixtures for the LangChain adapter: a counting fake chat model, planted image messages."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatResult
from pydantic import Field


class CountingChatModel(GenericFakeChatModel):
    """langchain-core's GenericFakeChatModel that records every request it receives."""

    requests: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.requests.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> CountingChatModel:
        return self  # the scripted answers decide which tool calls happen

    @property
    def calls(self) -> int:
        return len(self.requests)

    def images_seen(self) -> list[str]:
        """base64 payloads of every image block the model received."""
        out = []
        for request in self.requests:
            for message in request:
                for block in message.content_blocks:
                    if block.get("type") == "image":
                        out.append(str(block.get("base64")))
        return out


def _make_model(*answers: AIMessage | str) -> CountingChatModel:
    scripted: Iterator[AIMessage | str] = iter(answers or ("a helpful answer",) * 8)
    return CountingChatModel(messages=scripted)


def _image_message(data: bytes, text: str = "what is in this picture?") -> HumanMessage:
    """A human message with an OpenAI-style image_url data URL (the most common shape)."""
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    return HumanMessage(content=[{"type": "text", "text": text},
                                 {"type": "image_url", "image_url": {"url": url}}])


@pytest.fixture
def make_model() -> Any:
    """``make_model(*answers)``: a fresh counting fake answering with ``answers`` in order."""
    return _make_model


@pytest.fixture
def image_message() -> Any:
    """``image_message(png_bytes, text=...)``: a HumanMessage with an image_url data URL."""
    return _image_message
