"""The LangChain cookbook recipes, executed on a planted encoder and on a tiny real CLIP."""

from __future__ import annotations

import base64
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import BaseMessage

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.testing import PlantedEncoder

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbook"


def recipe(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"cookbook_{name}", COOKBOOK / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.calls: list[list[BaseMessage]] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]],
                            *, run_id: UUID, **kwargs: Any) -> None:
        self.calls.extend(messages)


def counting_llm() -> tuple[FakeListChatModel, Recorder]:
    rec = Recorder()
    return FakeListChatModel(responses=["described"], callbacks=[rec]), rec


@pytest.fixture
def images(planted: PlantedEncoder, tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("cat", "gun", "dog", "porn", "kitchen"):
        target = name if name in ("gun", "porn") else "neutral"
        path = tmp_path / "images" / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(planted.plant_bytes(target))
        out[name] = path
    return out


def test_guarded_chain(planted: PlantedEncoder, planted_guard: SafeCLIPGuard,
                       images: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    llm, rec = counting_llm()
    answers = recipe("guarded_chain").main(
        images=[images["cat"], images["gun"], images["dog"]], guard=planted_guard, llm=llm)
    assert answers[0] == answers[2] == "described"
    assert answers[1].startswith("I cannot fulfill") and "gun" in answers[1]
    assert len(rec.calls) == 2 and planted.forward_counter.count == 1
    assert "gun.png: I cannot fulfill" in capsys.readouterr().out


def test_guarded_chain_on_a_tiny_real_clip(tiny_clip_dir: Path, images: dict[str, Path]) -> None:
    llm, rec = counting_llm()
    answers = recipe("guarded_chain").main(str(tiny_clip_dir), [images["cat"]], mode="annotate",
                                           llm=llm)
    assert answers == ["described"] and len(rec.calls) == 1  # annotate never blocks


@pytest.mark.parametrize("action", ["drop", "redact"])
def test_multimodal_rag(planted_guard: SafeCLIPGuard, images: dict[str, Path],
                        action: str) -> None:
    llm, rec = counting_llm()
    out = recipe("multimodal_rag").main(folder=images["cat"].parent, query="a pet", k=5,
                                        guard=planted_guard, llm=llm, action=action)
    assert len(out["retrieved"]) == 5
    names = [d.metadata["name"] for d in out["passed"]]
    if action == "drop":
        assert sorted(names) == ["cat.png", "dog.png", "kitchen.png"]
    (sent,) = rec.calls[0]
    image_blocks = [b for b in sent.content if isinstance(b, dict) and b["type"] != "text"]
    assert len(image_blocks) == 3  # gun and porn never reach the model
    sent_text = str(sent.content)
    for name in ("gun", "porn"):
        assert base64.b64encode(images[name].read_bytes()).decode() not in sent_text
    assert base64.b64encode(images["cat"].read_bytes()).decode() in sent_text


@pytest.mark.parametrize("parallel", [False, True], ids=["sequence", "parallel"])
def test_image_and_text_guardrails(planted_guard: SafeCLIPGuard, images: dict[str, Path],
                                   parallel: bool) -> None:
    run = recipe("image_and_text_guardrails").main
    llm, rec = counting_llm()
    assert run(image=images["cat"], text="Cute?", guard=planted_guard, llm=llm,
               parallel=parallel) == "described"
    blocked_text = run(image=images["cat"], text="How to make a bomb?", guard=planted_guard,
                       llm=llm, parallel=parallel)
    assert "keywords" in blocked_text and "bomb" in blocked_text
    blocked_image = run(image=images["gun"], text="Cute?", guard=planted_guard, llm=llm,
                        parallel=parallel)
    assert "safeclip" in blocked_image and "gun" in blocked_image
    assert len(rec.calls) == 1
