"""Fixtures of the engine's tests."""

from __future__ import annotations

import numpy as np
import pytest

from safeclip_guardrail.encoders.hf import TransformersCLIPEncoder


@pytest.fixture
def text_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Number of texts per text-tower pass (a cache hit runs none)."""
    calls: list[int] = []
    original = TransformersCLIPEncoder.encode_texts

    def counting(self: TransformersCLIPEncoder, texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(TransformersCLIPEncoder, "encode_texts", counting)
    return calls
