"""CUDA graphs for the vision forward: batch-1 latency without Python/launch overhead.

A ViT-L/14-336 forward launches a few hundred kernels; at batch 1 on an H100/H200 the GPU
finishes them faster than Python issues them (7 ms eager vs 2 ms replayed from a graph).
A CUDA graph records the launches once for a fixed input shape and replays them with one
call. Shapes are fixed, so batches are padded up to the next *bucket* (1, 2, 4, 8 by
default); larger batches are already launch-efficient and run eagerly. Each bucket's graph
is captured lazily, on first use, into one shared memory pool (replays never overlap: the
encoder holds its lock, and outputs are cloned before the next replay).

If capture fails (an op that syncs with the host, an unsupported kernel), the runner logs
a warning, turns itself off and every call runs eagerly: a guard must not fail because of
an optimisation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from safeclip_guardrail.errors import ConfigurationError

__all__ = ["DEFAULT_BUCKETS", "CudaGraphRunner", "bucket_for"]

log = logging.getLogger(__name__)

DEFAULT_BUCKETS: tuple[int, ...] = (1, 2, 4, 8)
"""Batch sizes that get a graph; a batch of 3 is padded to 4, a batch of 9 runs eagerly."""

Outputs = tuple[torch.Tensor, torch.Tensor | None]


def bucket_for(n: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket holding ``n`` images, or None when ``n`` exceeds them all."""
    if n < 1:
        msg = f"a CUDA graph bucket needs a batch of at least one image, got {n}"
        raise ConfigurationError(msg)
    fitting = [b for b in buckets if b >= n]
    return min(fitting) if fitting else None


class CudaGraphRunner:
    """Replays ``forward`` from per-bucket CUDA graphs; eager for batches above the buckets.

    ``forward`` maps pixels ``(b, 3, H, W)`` to ``(final_cls, penultimate_cls)``; it must be
    capturable (no host synchronisation), which the CLIP vision towers are.
    """

    def __init__(self, forward: Callable[[torch.Tensor], Outputs], *,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, warmup: int = 3) -> None:
        if not buckets or any(int(b) < 1 for b in buckets):
            msg = (f"buckets must be positive batch sizes, got {tuple(buckets)!r}; pass e.g. "
                   f"{DEFAULT_BUCKETS!r}")
            raise ConfigurationError(msg)
        self.forward = forward
        self.buckets = tuple(sorted({int(b) for b in buckets}))
        self.warmup = warmup
        self.enabled = True
        self._graphs: dict[tuple[Any, ...], tuple[Any, torch.Tensor, Outputs]] = {}
        self._pool: Any = None

    @property
    def captured(self) -> list[int]:
        """Bucket sizes captured so far."""
        return sorted(key[0] for key in self._graphs)

    def __call__(self, pixels: torch.Tensor) -> Outputs:
        n = int(pixels.shape[0])
        bucket = bucket_for(n, self.buckets) if self.enabled and pixels.is_cuda else None
        if bucket is None:
            return self.forward(pixels)
        key = (bucket, *pixels.shape[1:], pixels.dtype, pixels.device)
        entry = self._graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(key, pixels)
            except RuntimeError as exc:
                self.enabled = False
                log.warning("CUDA graph capture failed (%s); running the vision tower eagerly",
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                return self.forward(pixels)
            self._graphs[key] = entry
        graph, static_in, static_out = entry
        static_in[:n].copy_(pixels)
        graph.replay()
        final, pen = static_out
        return final[:n].clone(), (pen[:n].clone() if pen is not None else None)

    def _capture(self, key: tuple[Any, ...],
                 like: torch.Tensor) -> tuple[Any, torch.Tensor, Outputs]:
        bucket = key[0]
        static_in = torch.zeros((bucket, *like.shape[1:]), dtype=like.dtype, device=like.device)
        static_in[: like.shape[0]].copy_(like)
        stream = torch.cuda.Stream(device=like.device)
        stream.wait_stream(torch.cuda.current_stream(like.device))
        with torch.cuda.stream(stream):  # warm-up off the capture stream (cuBLAS/cuDNN init)
            for _ in range(self.warmup):
                self.forward(static_in)
        torch.cuda.current_stream(like.device).wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: the preprocessing worker may launch kernels while this thread captures
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            static_out = self.forward(static_in)
        log.debug("captured a CUDA graph for batch bucket %d", bucket)
        return graph, static_in, static_out
