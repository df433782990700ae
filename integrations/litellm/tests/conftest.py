"""Fixtures for the LiteLLM guardrail: planted guards, a recorder of what the model receives."""

from __future__ import annotations

import base64
import os
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger
from litellm.llms.custom_llm import CustomLLM

from safeclip_guardrail import ConceptBank, SafeCLIPGuard
from safeclip_guardrail.testing import PlantedEncoder


class ModelRecorder(CustomLogger):
    """Records the messages LiteLLM is about to send to the model (before the mock answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[dict[str, Any]]] = []

    def log_pre_api_call(self, model: str, messages: Any, kwargs: dict[str, Any]) -> None:
        self.calls.append(list(messages or []))


class RecordingLLM(CustomLLM):
    """A LiteLLM custom provider standing in for the VLM: records what it receives, answers
    a fixed text (the model-side boundary is the only thing replaced)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[list[dict[str, Any]]] = []

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
        self.received.append(list(messages))
        return litellm.ModelResponse(choices=[{"message": {"role": "assistant",
                                                           "content": "a photo of a cat"}}])


@pytest.fixture
def vlm() -> Any:
    """``model="recorder/vlm"`` reaches a :class:`RecordingLLM`."""
    saved = list(litellm.custom_provider_map)
    llm = RecordingLLM()
    litellm.custom_provider_map = [*saved, {"provider": "recorder", "custom_handler": llm}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    yield llm
    litellm.custom_provider_map = saved


@pytest.fixture
def planted() -> PlantedEncoder:
    return PlantedEncoder(ConceptBank.default())


@pytest.fixture
def guard(planted: PlantedEncoder) -> SafeCLIPGuard:
    return SafeCLIPGuard(planted)


@pytest.fixture
def recorder() -> Any:
    """LiteLLM callbacks are process-global: restore them after each test."""
    saved = list(litellm.callbacks)
    rec = ModelRecorder()
    yield rec
    litellm.callbacks = saved


@pytest.fixture
def image_url(planted: PlantedEncoder) -> Any:
    """``image_url("gun")``: a data URL of a new planted image of that class."""

    def make(target: str) -> str:
        return "data:image/png;base64," + base64.b64encode(planted.plant_bytes(target)).decode()

    return make
