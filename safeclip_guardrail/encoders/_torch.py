"""Device / dtype choice and the forward plumbing shared by the torch CLIP backends.

The fast paths live here (their pieces in :mod:`._cpu`, :mod:`._cuda_graphs` and
:mod:`.preprocess`): half precision by default where the hardware runs it natively,
preprocessing of chunk k+1 overlapped with the forward of chunk k, preprocessing on the GPU
from uint8 uploads, optional CUDA graphs for small batches, and halving the batch on a
CUDA out-of-memory error instead of failing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image

from safeclip_guardrail.encoders._cpu import (
    available_cores,
    configure_cpu_threads,
    cpu_has_native_bf16,
)
from safeclip_guardrail.encoders._cuda_graphs import DEFAULT_BUCKETS, CudaGraphRunner
from safeclip_guardrail.encoders.base import ForwardCounter, ImageEmbeddings, l2_normalize
from safeclip_guardrail.encoders.preprocess import ClipPreprocess
from safeclip_guardrail.errors import ConfigurationError

__all__ = ["TorchClipEncoder", "resolve_device", "resolve_dtype"]

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | None) -> torch.device:
    """``None`` -> the first CUDA GPU when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        msg = f"unknown device {device!r}: {exc}"
        raise ConfigurationError(msg) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = f"device {device!r} requested but CUDA is not available here"
        raise ConfigurationError(msg)
    return dev


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """``None`` -> float16 on GPU (CLIP ships fp16 weights), float32 on CPU.

    bf16 is not the CPU default even where the CPU runs it natively (AMX / AVX512-BF16,
    2-4x faster): its 8-bit mantissa keeps embeddings at cosine >= 0.9999 but moves class
    masses by up to ~0.04 after CLIP's x100 logit scale, so verdicts near a threshold can
    differ from float32. Ask for it with ``dtype="bfloat16"`` (see docs/performance.md);
    requesting it on a CPU without native bf16 logs a warning, as it is then slower.
    """
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    chosen = _DTYPES[dtype]
    if device.type == "cpu" and chosen == torch.bfloat16 and not cpu_has_native_bf16():
        log.warning("dtype='bfloat16' on a CPU without AMX-BF16/AVX512-BF16 is emulated and "
                    "slower than float32; use dtype='float32' here")
    return chosen


class TorchClipEncoder:
    """Base of the torch backends: what they hold, preprocessing, a locked forward, CLS capture.

    A backend's loader (``from_pretrained``, ``from_spec``) resolves the device and dtype,
    loads and checks the checkpoint, and hands the model (on its device, in eval mode) to
    this constructor, which keeps what every backend keeps. Subclasses implement
    :meth:`_attach` (embedding size, the hook on the layer -2 block, anything else their
    model has), :meth:`_final_cls`, :meth:`_project` and :meth:`encode_texts`.
    """

    name: str
    cache_key: str | None
    logit_scale: float
    embed_dim: int
    preprocess: ClipPreprocess
    device: torch.device
    dtype: torch.dtype

    @property
    def input_size(self) -> int:
        """The short side images are resized to (capability :class:`ResizesTo`)."""
        return int(self.preprocess.size)

    def __init__(self, model: Any, tokenizer: Any, preprocess: ClipPreprocess, *, name: str,
                 cache_key: str | None, device: torch.device, dtype: torch.dtype) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.name = name
        self.cache_key = cache_key
        """Content key of the text side (descriptor embeddings are cached under it)."""
        self.device = device
        self.dtype = dtype
        self.logit_scale = float(model.logit_scale.detach().float().exp().item())
        self._lock = threading.RLock()
        self._captured: torch.Tensor | None = None
        self.forward_counter = ForwardCounter()
        """Vision forwards run so far (tests, benchmarks)."""
        self.overlap_preprocessing = True
        """Preprocess chunk k+1 in a worker thread while chunk k runs through the tower."""
        self.max_batch: int | None = None
        """Largest batch per forward; lowered automatically after a CUDA out-of-memory error."""
        self._graphs: CudaGraphRunner | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._resizers: ThreadPoolExecutor | None = None
        self._pools_lock = threading.Lock()
        self._runtime_ready = False

        self._attach()

    def _attach(self) -> None:
        """Backend-specific set-up once the model is held: ``embed_dim``, the CLS hook."""
        raise NotImplementedError

    def _install_hook(self, block: torch.nn.Module, *, batch_first: bool = True) -> None:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            self._captured = hidden[:, 0] if batch_first else hidden[0]

        block.register_forward_hook(hook)

    # ------------------------------------------------------------------ fast-path switches
    def enable_cuda_graphs(self, buckets: Sequence[int] = DEFAULT_BUCKETS) -> None:
        """Replay the vision forward from CUDA graphs for batches up to ``max(buckets)``.

        Cuts batch-1 latency about 3x on a large GPU (launch overhead dominates there).
        Graphs are captured on first use of each bucket; a no-op on the CPU. Also switched
        on by ``SAFECLIP_CUDA_GRAPHS=1``.
        """
        self._graphs = CudaGraphRunner(self._vision_forward, buckets=buckets)

    def disable_cuda_graphs(self) -> None:
        self._graphs = None

    @property
    def cuda_graphs(self) -> CudaGraphRunner | None:
        """The graph runner when CUDA graphs are on (``captured`` lists the buckets)."""
        return self._graphs

    def _ensure_runtime(self) -> None:
        if self._runtime_ready:
            return
        if self.device.type == "cpu":
            configure_cpu_threads()
        elif (self.device.type == "cuda" and self._graphs is None
              and os.environ.get("SAFECLIP_CUDA_GRAPHS", "").strip() in {"1", "true", "yes", "on"}):
            self.enable_cuda_graphs()
        self._runtime_ready = True

    # ------------------------------------------------------------------ images
    def encode_images(self, images: Sequence[Image.Image]) -> ImageEmbeddings:
        """One vision forward over ``images`` (split only if the GPU runs out of memory)."""
        return self.encode_frames(images, batch_size=max(1, len(images)))

    def encode_frames(self, frames: Sequence[Image.Image], *, batch_size: int) -> ImageEmbeddings:
        """Encode ``frames`` in chunks of ``batch_size``, preprocessing ahead of the tower.

        While chunk k runs through the vision tower, a worker thread resizes and normalises
        chunk k+1 (PIL and the uint8 upload release the GIL), so preprocessing costs little
        wall time for multi-chunk batches. Results are identical to chunk-by-chunk encoding.
        """
        self._ensure_runtime()
        size = max(1, min(batch_size, self.max_batch or batch_size))
        chunks = [frames[i:i + size] for i in range(0, len(frames), size)]
        if not chunks:
            return ImageEmbeddings.concat([], self.embed_dim)
        if len(chunks) == 1 or not self.overlap_preprocessing:
            return ImageEmbeddings.concat(
                [self._encode_halving(self.prepare(c)) for c in chunks], self.embed_dim)
        pool = self._worker()
        parts = []
        ahead: Future[torch.Tensor] = pool.submit(self.prepare, chunks[0])
        for k in range(len(chunks)):
            pixels = ahead.result()
            if k + 1 < len(chunks):
                ahead = pool.submit(self.prepare, chunks[k + 1])
            parts.append(self._encode_halving(pixels))
        return ImageEmbeddings.concat(parts, self.embed_dim)

    def prepare(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Normalised pixels for ``images``: on the GPU from uint8 uploads, else PIL on the CPU.

        On the CPU the images of a batch are resized in parallel, one thread per core (PIL
        releases the GIL while resampling); the result is the same as one by one.
        """
        if self.device.type == "cuda":
            return self.preprocess.on_device(images, self.device, self.dtype)
        if len(images) < 2 or available_cores() < 2:
            return self.preprocess(images)
        arrays = list(self._resize_pool().map(self.preprocess.to_uint8, images))
        return self.preprocess.normalize(torch.from_numpy(np.stack(arrays)))

    def _worker(self) -> ThreadPoolExecutor:
        with self._pools_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix="safeclip-preprocess")
            return self._pool

    def _resize_pool(self) -> ThreadPoolExecutor:
        # not self._lock: the forward holds that one while the worker prepares the next chunk
        with self._pools_lock:
            if self._resizers is None:
                self._resizers = ThreadPoolExecutor(max_workers=available_cores(),
                                                    thread_name_prefix="safeclip-resize")
            return self._resizers

    def _encode_halving(self, pixels: torch.Tensor) -> ImageEmbeddings:
        """Encode; on CUDA out-of-memory, split the batch in halves (down to 1) and retry."""
        try:
            return self.encode_pixels(pixels)
        except torch.OutOfMemoryError:
            n = int(pixels.shape[0])
            if n <= 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = (n + 1) // 2
            self.max_batch = min(self.max_batch or half, half)
            log.warning("out of memory encoding %d images on %s; retrying in batches of %d",
                        n, self.device, half)
            parts = [self._encode_halving(pixels[:half]), self._encode_halving(pixels[half:])]
            return ImageEmbeddings.concat(parts, self.embed_dim)

    @torch.inference_mode()
    def encode_pixels(self, pixel_values: torch.Tensor) -> ImageEmbeddings:
        """One vision forward over normalised ``(n, 3, H, W)`` pixels."""
        self._ensure_runtime()
        with self._lock:
            x = pixel_values.to(self.device, dtype=self.dtype, non_blocking=True)
            runner = self._graphs
            final_cls, pen_cls = runner(x) if runner is not None else self._vision_forward(x)
            self.forward_counter()
            final = self._project(final_cls)
            pen = self._project(pen_cls) if pen_cls is not None else None
        return ImageEmbeddings(final=final, penultimate=pen)

    def _vision_forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(final pooled CLS, layer -2 CLS) from one pass; what a CUDA graph captures."""
        self._captured = None
        final_cls = self._final_cls(pixels)
        pen_cls, self._captured = self._captured, None
        return final_cls, pen_cls

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
