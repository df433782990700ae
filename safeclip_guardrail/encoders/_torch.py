"""Device / dtype choice and the forward plumbing shared by the torch CLIP backends."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from safeclip_guardrail.encoders.base import ForwardCounter, ImageEmbeddings, l2_normalize
from safeclip_guardrail.encoders.preprocess import ClipPreprocess
from safeclip_guardrail.errors import ConfigurationError

__all__ = ["TorchClipEncoder", "resolve_device", "resolve_dtype"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | None) -> torch.device:
    """``None`` -> the first CUDA GPU when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigurationError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device {device!r} requested but CUDA is not available here")
    return dev


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """``None`` -> float16 on GPU (CLIP ships fp16 weights), float32 on CPU."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    return _DTYPES[dtype]


class TorchClipEncoder:
    """Base of the torch backends: preprocessing, a locked forward, CLS capture.

    Subclasses set ``vision`` (module whose forward returns the final pooled CLS),
    ``penultimate_block`` (module whose output holds the layer -2 hidden states) and
    implement :meth:`_project` and :meth:`encode_texts`.
    """

    name: str
    cache_key: str | None
    logit_scale: float
    embed_dim: int
    preprocess: ClipPreprocess
    device: torch.device
    dtype: torch.dtype

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._captured: torch.Tensor | None = None
        self.forward_counter = ForwardCounter()
        """Vision forwards run so far (tests, benchmarks)."""

    def _install_hook(self, block: torch.nn.Module, *, batch_first: bool = True) -> None:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            self._captured = hidden[:, 0] if batch_first else hidden[0]

        block.register_forward_hook(hook)

    # ------------------------------------------------------------------ images
    def encode_images(self, images: Sequence[Image.Image]) -> ImageEmbeddings:
        pixels = self.preprocess(images)
        return self.encode_pixels(pixels)

    @torch.inference_mode()
    def encode_pixels(self, pixel_values: torch.Tensor) -> ImageEmbeddings:
        """One vision forward over normalised ``(n, 3, H, W)`` pixels."""
        with self._lock:
            x = pixel_values.to(self.device, dtype=self.dtype, non_blocking=True)
            self._captured = None
            final_cls = self._final_cls(x)
            pen_cls = self._captured
            self._captured = None
            self.forward_counter()
            final = self._project(final_cls)
            pen = self._project(pen_cls) if pen_cls is not None else None
        return ImageEmbeddings(final=final, penultimate=pen)

    def project_cls(self, cls_features: torch.Tensor) -> np.ndarray:
        """Project CLS features computed elsewhere (e.g. inside LLaVA) and normalise them.

        Pass the post-layernorm CLS for ``cls_source="final"`` or the raw layer -2 CLS for
        ``"penultimate"``; the projection is the same matrix.
        """
        with torch.inference_mode():
            return self._project(cls_features.to(self.device, dtype=self.dtype))

    def _final_cls(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _project(self, cls_features: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def _normalized(t: torch.Tensor) -> np.ndarray:
        return l2_normalize(t.float().cpu().numpy())
