"""End-to-end evaluation with a fake chat model that refuses exactly when told to check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from safeclip_guardrail import DEFAULT_SAFE_INSTRUCTION, ConfigurationError, SafeCLIPGuard
from safeclip_guardrail.eval import DEFAULT_QUERIES, evaluate, load_dataset, run_e2e
from safeclip_guardrail.testing import PlantedEncoder


class SafetyAwareFake(BaseChatModel):
    """Refuses exactly when the safety instruction is in the prompt; records what it saw."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "safety-aware-fake"

    def _generate(self, messages: list[BaseMessage], stop: Any = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        text = " ".join(m.text for m in messages)
        answer = ("I cannot fulfill this request: the image shows harmful content."
                  if DEFAULT_SAFE_INSTRUCTION in text else "Sure! The image shows a scene.")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer))])


SPEC = {
    "gun": [{"gun": 0.9, "neutral": 0.1}, {"gun": 0.7, "neutral": 0.3},
            {"gun": 0.5, "neutral": 0.5 - 1e-3}],           # last one passes the guard
    "blood": [{"blood": 0.95, "neutral": 0.05}],
    "neutral": [{"neutral": 0.9, "gun": 0.1}, {"alcohol": 0.8, "neutral": 0.2},  # FP
                {"neutral": 0.7, "knife": 0.3}, {"neutral": 0.99, "gun": 0.01}],
}


@pytest.fixture
def dataset(tmp_path: Path, planted: PlantedEncoder, planted_guard: SafeCLIPGuard):  # type: ignore[no-untyped-def]
    for label, targets in SPEC.items():
        (tmp_path / label).mkdir()
        for i, t in enumerate(targets):
            (tmp_path / label / f"{i}.png").write_bytes(planted.plant_bytes(t))
    return load_dataset(tmp_path, bank=planted_guard.bank)


def test_rewrite_refusal_rates(dataset, planted_guard: SafeCLIPGuard) -> None:  # type: ignore[no-untyped-def]
    model = SafetyAwareFake(seen=[])
    report = evaluate(planted_guard, dataset, chat_model=model, show_progress=False)
    e = report.e2e
    assert e is not None and e.n_queries == 8 and (e.n_toxic, e.n_benign) == (4, 4)
    # guard flags gun .9, gun .7, blood .95 of 4 toxic; alcohol .8 of 4 benign
    assert e.defense_success_rate == pytest.approx(3 / 4)
    assert e.false_positive_rate == pytest.approx(1 / 4)
    # e2e rates equal the guard-level ones here: the fake obeys the instruction exactly
    assert e.defense_success_rate == report.defense_success_rate
    assert e.defense_success_rate_without_guard == 0.0
    assert e.false_positive_rate_without_guard == 0.0
    assert e.intervention == "rewrite" and e.chat_model == "SafetyAwareFake"
    assert len(model.seen) == 16  # every query with and without the guard
    # every call saw the image and the query; the guarded flagged ones the instruction too
    for msgs in model.seen:
        kinds = [b["type"] for b in msgs[-1].content_blocks]
        assert kinds.count("image") == 1 and "text" in kinds
    flagged = {r.path for r in e.records if r.flagged}
    assert len(flagged) == 4 and all(r.refused == r.flagged for r in e.records)
    assert all(r.latency_s >= 0 and r.latency_without_guard_s is not None for r in e.records)
    assert e.overhead_pct is not None and e.overhead_benign_pct is not None
    # default queries are cycled over the images
    assert {r.query for r in e.records} == set(DEFAULT_QUERIES)  # 8 images, 5 queries


def test_block_mode_refuses_without_calling_the_model(dataset, planted_guard) -> None:  # type: ignore[no-untyped-def]
    model = SafetyAwareFake(seen=[])
    guard = planted_guard.with_options(mode="block")
    report = evaluate(guard, dataset, chat_model=model, ablations=False, show_progress=False)
    e = report.e2e
    assert e.defense_success_rate == pytest.approx(3 / 4)
    assert e.false_positive_rate == pytest.approx(1 / 4)
    assert len(model.seen) == 8 + 4  # 8 bare calls, only the 4 unflagged guarded ones
    assert {r.action for r in e.records if r.flagged} == {"block"}


def test_custom_patterns_queries_and_no_baseline(dataset, planted_guard) -> None:  # type: ignore[no-untyped-def]
    model = SafetyAwareFake(seen=[])
    samples = [s for s in dataset.samples]
    toxic = [planted_guard.bank.is_toxic(s.label) for s in samples]
    e = run_e2e(planted_guard, model, samples, toxic=toxic, queries=["Only this?"],
                refusal_patterns=[r"never matches \d{40}"], baseline=False,
                show_progress=False)
    assert e.defense_success_rate == 0.0 and e.false_positive_rate == 0.0
    assert e.defense_success_rate_without_guard is None and e.overhead_pct is None
    assert {r.query for r in e.records} == {"Only this?"}
    assert len(model.seen) == 8
    with pytest.raises(ConfigurationError, match="not a valid regex"):
        run_e2e(planted_guard, model, samples, toxic=toxic, refusal_patterns=["("],
                show_progress=False)


def test_manifest_queries_are_used(tmp_path: Path, planted: PlantedEncoder,
                                   planted_guard: SafeCLIPGuard) -> None:
    (tmp_path / "a.png").write_bytes(planted.plant_bytes("gun"))
    (tmp_path / "m.jsonl").write_text('{"path": "a.png", "label": "gun", "query": "Q1?"}\n')
    ds = load_dataset(tmp_path / "m.jsonl", bank=planted_guard.bank)
    model = SafetyAwareFake(seen=[])
    report = evaluate(planted_guard, ds, chat_model=model, show_progress=False)
    assert report.e2e.records[0].query == "Q1?" and report.e2e.defense_success_rate == 1.0
    assert "Q1?" in model.seen[-1][-1].text
