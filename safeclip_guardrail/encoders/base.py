"""The encoder protocol the guard talks to, and the pieces the torch backends share.

An :class:`ImageTextEncoder` turns decoded images into L2-normalised embeddings in CLIP's
joint space (both CLS sources from *one* vision pass) and descriptor texts into normalised
text embeddings. The guard never touches torch directly, so a planted test encoder, the
transformers backend and the open_clip backend are interchangeable.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from safeclip_guardrail.config import ClsSource

__all__ = [
    "EncodesFrames",
    "ImageEmbeddings",
    "ImageTextEncoder",
    "ProjectsCLS",
    "ResizesTo",
    "l2_normalize",
]


@dataclass(frozen=True)
class ImageEmbeddings:
    """Normalised image embeddings from one vision pass, for both CLS sources."""

    final: np.ndarray
    """(n, d) float32: projection of the post-layernorm final CLS (CLIP's image embedding)."""
    penultimate: np.ndarray | None = None
    """(n, d) float32: projection of the layer -2 CLS without layernorm (paper's code)."""

    def get(self, source: ClsSource) -> np.ndarray:
        if source == "final":
            return self.final
        if self.penultimate is None:
            from safeclip_guardrail.errors import ConfigurationError

            msg = "this encoder does not provide penultimate-layer embeddings; use cls_source='final'"
            raise ConfigurationError(msg)
        return self.penultimate

    def __len__(self) -> int:
        return int(self.final.shape[0])

    @staticmethod
    def concat(parts: Sequence[ImageEmbeddings], dim: int) -> ImageEmbeddings:
        if not parts:
            return ImageEmbeddings(final=np.zeros((0, dim), np.float32),
                                   penultimate=np.zeros((0, dim), np.float32))
        pen = (
            None if any(p.penultimate is None for p in parts)
            else np.concatenate([p.penultimate for p in parts if p.penultimate is not None])
        )
        return ImageEmbeddings(final=np.concatenate([p.final for p in parts]), penultimate=pen)


@runtime_checkable
class ImageTextEncoder(Protocol):
    """What the guard needs from a CLIP-like model."""

    name: str
    """Human-readable model id (reports, errors)."""
    cache_key: str | None
    """Identifies the exact weights for the descriptor-embedding cache; None disables it."""
    logit_scale: float
    """The model's own logit scale (100 for OpenAI CLIP)."""
    embed_dim: int
    """Dimension of the joint image-text space."""

    def encode_images(self, images: Sequence[Image.Image]) -> ImageEmbeddings:
        """One vision forward over ``images`` (already decoded RGB)."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(m, d) float32 normalised text embeddings."""
        ...


# ---------------------------------------------------------------------- capabilities
# Optional abilities an encoder declares by having them; the guard asks with isinstance,
# so a planted test encoder, a remote encoder and the torch backends stay interchangeable.
@runtime_checkable
class ProjectsCLS(Protocol):
    """Projects CLS features from an LVLM's own vision pass (the fused guard of ChatLlava)."""

    def project_cls(self, cls_features: Any) -> np.ndarray:
        """(n, d) normalised embeddings from raw CLS features of the same tower."""
        ...


@runtime_checkable
class EncodesFrames(Protocol):
    """Encodes a long list of frames itself: pipelined chunks, out-of-memory batch halving."""

    def encode_frames(self, frames: Sequence[Image.Image], *, batch_size: int) -> ImageEmbeddings:
        ...


@runtime_checkable
class ResizesTo(Protocol):
    """Declares the size its preprocessing resizes images to, so decoding can stop there
    (JPEG draft mode never decodes below it)."""

    @property
    def input_size(self) -> int: ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.maximum(norm, 1e-12), dtype=np.float32)


class ForwardCounter:
    """Counts vision forwards (thread-safe); tests and benchmarks read ``count``."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, *_: Any) -> None:
        with self._lock:
            self.count += 1
