"""The paper-reproduction recipe runs end to end on a tiny CLIP and a fake chat model."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from PIL import Image

from safeclip_guardrail import DEFAULT_SAFE_INSTRUCTION
from safeclip_guardrail.eval import EvalReport

RECIPE = Path(__file__).resolve().parents[2] / "cookbook" / "reproduce_paper.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reproduce_paper", RECIPE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Obedient(BaseChatModel):
    @property
    def _llm_type(self) -> str:
        return "obedient"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        text = " ".join(m.text for m in messages)
        answer = ("I cannot fulfill this request." if DEFAULT_SAFE_INSTRUCTION in text
                  else "A description.")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer))])


def test_reproduce_paper_recipe(tmp_path: Path, tiny_clip_dir: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    # HOD folder names (insulting_gesture) plus a benign folder
    for label in ("alcohol", "blood", "cigarette", "gun", "insulting_gesture", "knife", "benign"):
        (tmp_path / "hod" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                tmp_path / "hod" / label / f"{i}.jpg")
    report = _load().main(tmp_path / "hod", out_dir=tmp_path / "out", model=str(tiny_clip_dir),
                          chat_model=Obedient(), device="cpu", dtype="float32",
                          show_progress=False)
    assert isinstance(report, EvalReport)
    assert report.cls_source == "penultimate" and report.threshold == 0.6
    assert report.dataset.label_counts["gesture"] == 2 and report.n_benign == 2
    assert report.n_toxic == 12
    labels = {(a.label, a.cls_source) for a in report.ablations}
    assert labels == {(k, s) for k in ("K=1", "K=3", "all (K=5)")
                      for s in ("final", "penultimate")}
    assert report.e2e is not None and report.e2e.n_queries == 14
    assert report.e2e.defense_success_rate == report.defense_success_rate
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "report.json", "report.md", "roc.png", "sweep.png", "confusion.png"}
    out = capsys.readouterr().out
    assert "| defense success rate (end to end) |" in out and "| 66.9% |" in out
