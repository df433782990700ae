"""langchain-tests' standard unit suite for ChatLlava, on a tiny real LLaVA built offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_tests.unit_tests import ChatModelUnitTests

from safeclip_guardrail.langchain import ChatLlava
from safeclip_guardrail.testing import build_tiny_llava

_DIR: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def _tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> None:
    _DIR["path"] = build_tiny_llava(tmp_path_factory.mktemp("tiny_llava_std"))


class TestChatLlavaStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatLlava]:
        return ChatLlava

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": str(_DIR["path"]), "device": "cpu", "dtype": "float32",
                "max_new_tokens": 4}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True
