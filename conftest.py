"""Shared fixtures: tiny real CLIP checkpoints built offline, planted encoders, isolated caches."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import contextlib
from pathlib import Path

import pytest

# uvloop keeps the ``socket.socket`` it finds at its first import. Imported first inside a test
# whose sockets pytest-socket has disabled (a docs fragment that imports ray does that), it
# would keep the blocking stand-in, and every uvicorn server started later in the session
# would accept connections it can never read: the serve cookbook hung for 600 s after
# docs/scale.md's fragments. Importing it here, before any test runs, keeps the real class.
with contextlib.suppress(ImportError):
    import uvloop  # noqa: F401

from safeclip_guardrail import ConceptBank, SafeCLIPGuard
from safeclip_guardrail.testing import PlantedEncoder, build_tiny_clip


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own descriptor-embedding cache directory."""
    d = tmp_path_factory.mktemp("safeclip_cache")
    monkeypatch.setenv("SAFECLIP_CACHE_DIR", str(d))
    return d


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny transformers CLIPModel checkpoint (seed 0)."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip_hf"), backend="transformers", seed=0)


@pytest.fixture(scope="session")
def tiny_open_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same vision weights as ``tiny_clip_dir``, saved as an open_clip checkpoint."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip_oc"), backend="open_clip", seed=0)


@pytest.fixture
def tiny_guard(tiny_clip_dir: Path) -> SafeCLIPGuard:
    return SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32")


@pytest.fixture
def planted() -> PlantedEncoder:
    """A planted encoder over the paper's bank."""
    return PlantedEncoder(ConceptBank.default())


@pytest.fixture
def planted_guard(planted: PlantedEncoder) -> SafeCLIPGuard:
    return SafeCLIPGuard(planted)
