"""Streaming a batch through the encoder: bounded memory, decode overlapped with encode.

``judge_batch`` decodes its inputs one by one into a *filling* chunk. When the chunk holds
``batch_size`` views (encoder inputs: every view of every frame, see
:mod:`safeclip_guardrail.images.views`) or ``chunk_pixels`` pixels (decoded, plus those the views
add) it is handed to one worker thread
for the encoder forward while the caller decodes the next chunk; before a further chunk is
handed over, the one in flight is collected (its results applied, its pixels released). So
a request holds at most two chunks of decoded images, whatever its length, and decoding on
the CPU overlaps the forward (on a GPU the decode is hidden entirely). Identical images
(same SHA-256) wait once, in whichever chunk already holds them.

Results are applied in the caller's thread (``settle``), so the verdict cache and the output
list are only ever touched there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, Protocol, TypeVar

__all__ = ["ChunkStream", "Costed"]

R = TypeVar("R")


class Costed(Protocol):
    """What a chunk counts of an item: its key, its encoder inputs and its pixels."""

    @property
    def sha256(self) -> str: ...
    @property
    def views(self) -> int: ...
    @property
    def pixels(self) -> int: ...


T = TypeVar("T", bound=Costed)


class _Chunk(Generic[T]):
    """Decoded images waiting for one encoder forward, keyed by SHA-256."""

    def __init__(self) -> None:
        self.images: dict[str, T] = {}
        self.waiting: dict[str, list[int]] = {}
        self.views = 0
        self.pixels = 0

    def add(self, img: T, index: int) -> None:
        self.images[img.sha256] = img
        self.waiting[img.sha256] = [index]
        self.views += img.views
        self.pixels += img.pixels


class ChunkStream(Generic[T, R]):
    """Chunks of decoded images in, ``settle(digest, result, input_indexes)`` calls out."""

    def __init__(self, score: Callable[[Sequence[T]], Mapping[str, R]],
                 settle: Callable[[str, R, list[int]], None], *, batch_size: int,
                 chunk_pixels: int) -> None:
        self._score = score
        self._settle = settle
        self._batch_size = batch_size
        self._chunk_pixels = chunk_pixels
        self._filling: _Chunk[T] = _Chunk()
        self._inflight: _Chunk[T] | None = None
        self._future: Future[Mapping[str, R]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.done: dict[str, R] = {}
        """Results of this request's chunks so far, by SHA-256."""

    def join(self, digest: str, index: int) -> bool:
        """Attach input ``index`` to an identical image already waiting; True when found."""
        for chunk in (self._inflight, self._filling):
            if chunk is not None and digest in chunk.waiting:
                chunk.waiting[digest].append(index)
                return True
        return False

    def add(self, img: T, index: int, *, more: bool) -> None:
        """Queue a new image; ``more``: further inputs follow (worth overlapping with)."""
        self._filling.add(img, index)
        if (self._filling.views >= self._batch_size
                or self._filling.pixels >= self._chunk_pixels):
            self._dispatch(overlap=more)

    def finish(self) -> None:
        """Encode whatever is left and apply every result (call once, at the end)."""
        try:
            self._collect()
            if self._filling.images:
                self._dispatch(overlap=False)
        finally:
            self.close()

    def close(self) -> None:
        """Release the worker (also after an error; results in flight are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _dispatch(self, *, overlap: bool) -> None:
        self._collect()  # at most one chunk in flight: memory stays at two chunks
        chunk, self._filling = self._filling, _Chunk()
        images = list(chunk.images.values())
        if not overlap:
            self._apply(chunk, self._score(images))
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="safeclip-encode")
        self._inflight, self._future = chunk, self._pool.submit(self._score, images)

    def _collect(self) -> None:
        if self._future is None or self._inflight is None:
            return
        chunk, future = self._inflight, self._future
        self._inflight = self._future = None
        self._apply(chunk, future.result())

    def _apply(self, chunk: _Chunk[T], results: Mapping[str, R]) -> None:
        for digest, result in results.items():
            self.done[digest] = result
            self._settle(digest, result, chunk.waiting[digest])
        chunk.images.clear()  # the decoded pixels go now
