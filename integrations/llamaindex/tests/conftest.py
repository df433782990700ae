"""Fixtures for the LlamaIndex adapter: planted images as LlamaIndex nodes, a recording LLM."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, ImageBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM


class LLMRecorder:
    """LlamaIndex's own MockFunctionCallingLLM, recording the images of every chat call."""

    def __init__(self) -> None:
        self.calls = 0
        self.image_hashes: list[str] = []
        self.llm = MockFunctionCallingLLM(is_chat_model=True, response_generator=self._answer)

    def _answer(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        self.calls += 1
        for message in messages:
            for block in message.blocks:
                if isinstance(block, ImageBlock):
                    data = block.resolve_image().read()
                    self.image_hashes.append(hashlib.sha256(data).hexdigest())
        return ChatMessage(role="assistant", content="an answer")


@pytest.fixture
def recorder() -> LLMRecorder:
    return LLMRecorder()
